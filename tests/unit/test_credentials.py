"""Registry logins found where the docker CLI keeps them (credHelpers, credsStore, auths), and how registry
requests answer a registry's 401 with them. Credential helpers are fakes here (no process in unit tests);
tests/integration/test_registry_auth.py runs real helper programs against a registry that requires a login."""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
from pathlib import Path
from typing import IO

import pytest

from imgbuild.connections import Opened
from imgbuild.credentials import CredentialsError, DockerCredentials
from imgbuild.registry import Authorizer, Reference, RegistryClient, RegistryError

SECRET = "hunter2-very-secret"
DIGEST = "sha256:" + "b" * 64


class Helpers:
    """``docker-credential-<name> get``: each helper's answers by server; records each call."""

    def __init__(self, stores: dict[str, dict[str, tuple[str, str]]]) -> None:
        self.stores = stores
        self.calls: list[tuple[str, str]] = []

    def __call__(self, program: str, server: str) -> tuple[int, str, str]:
        self.calls.append((program, server))
        store = self.stores.get(program.removeprefix("docker-credential-"))
        if store is None:
            return 127, "", f"{program}: command not found"
        if server not in store:
            return 1, "credentials not found in native keychain\n", ""
        user, secret = store[server]
        return 0, json.dumps({"ServerURL": server, "Username": user, "Secret": secret}), ""


def config(tmp_path: Path, data: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(tmp_path)}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_cred_helpers_win_over_creds_store_which_wins_over_auths(tmp_path: Path) -> None:
    helpers = Helpers({"ecr-login": {"123.dkr.ecr.eu-west-1.amazonaws.com": ("AWS", "ecr-token")},
                       "desktop": {"ghcr.io": ("octocat", "ghp-token")}})
    env = config(tmp_path, {"credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"},
                            "credsStore": "desktop",
                            "auths": {"ghcr.io": {"auth": b64("old:stale")}, "quay.io": {"auth": b64("q:w")}}})
    creds = DockerCredentials(environ=env, run=helpers)
    ecr = creds.get("123.dkr.ecr.eu-west-1.amazonaws.com")
    assert ecr is not None and (ecr.username, ecr.secret) == ("AWS", "ecr-token")
    assert ecr.source == "the credential helper docker-credential-ecr-login"
    ghcr = creds.get("ghcr.io")
    assert ghcr is not None and (ghcr.username, ghcr.secret) == ("octocat", "ghp-token")
    # the store has nothing for quay.io: anonymous, as the docker CLI does (auths is not read with a store)
    assert creds.get("quay.io") is None
    assert helpers.calls == [("docker-credential-ecr-login", "123.dkr.ecr.eu-west-1.amazonaws.com"),
                             ("docker-credential-desktop", "ghcr.io"), ("docker-credential-desktop", "quay.io")]


def test_each_host_is_looked_up_once(tmp_path: Path) -> None:
    helpers = Helpers({"desktop": {"ghcr.io": ("octocat", "t")}})
    creds = DockerCredentials(environ=config(tmp_path, {"credsStore": "desktop"}), run=helpers)
    for _ in range(5):
        creds.get("ghcr.io")
    assert helpers.calls == [("docker-credential-desktop", "ghcr.io")]


def test_docker_hub_credentials_are_filed_under_the_index_v1_key(tmp_path: Path) -> None:
    helpers = Helpers({"desktop": {"https://index.docker.io/v1/": ("hubuser", "hubtoken")}})
    creds = DockerCredentials(environ=config(tmp_path, {"credsStore": "desktop"}), run=helpers)
    hub = creds.get("docker.io")
    assert hub is not None and hub.username == "hubuser"
    assert helpers.calls == [("docker-credential-desktop", "https://index.docker.io/v1/")]
    (tmp_path / "plain").mkdir()
    plain = DockerCredentials(environ=config(tmp_path / "plain", {"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hubuser:pw")}}}))
    assert plain.get("docker.io") is not None


def test_auths_entries_auth_username_password_and_identity_token(tmp_path: Path) -> None:
    env = config(tmp_path, {"auths": {
        "https://localhost:5001": {"auth": b64(f"alice:{SECRET}")},  # matched by host, scheme dropped
        "old.example": {"username": "bob", "password": "pw"},
        "acr.example": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh-me"},
        "empty.example": {},  # what `docker login` leaves here when a credsStore holds the secret
    }})
    creds = DockerCredentials(environ=env)
    alice = creds.get("localhost:5001")
    assert alice is not None and (alice.username, alice.secret) == ("alice", SECRET)
    assert SECRET not in repr(alice) and "auths['https://localhost:5001']" in alice.source
    bob = creds.get("old.example")
    assert bob is not None and (bob.username, bob.secret) == ("bob", "pw")
    acr = creds.get("acr.example")
    assert acr is not None and acr.identity_token and acr.secret == "refresh-me"
    assert creds.get("empty.example") is None and creds.get("unknown.example") is None


def test_docker_config_is_honoured_and_no_config_is_anonymous(tmp_path: Path) -> None:
    assert DockerCredentials(environ={"DOCKER_CONFIG": str(tmp_path / "nowhere")}).get("ghcr.io") is None
    env = config(tmp_path, {"auths": {"ghcr.io": {"auth": b64("u:p")}}})
    assert DockerCredentials(environ=env).path == tmp_path / "config.json"


def test_broken_logins_are_clear_errors_without_the_secret(tmp_path: Path) -> None:
    def failing(program: str, server: str) -> tuple[int, str, str]:
        return 1, "error getting credentials - err: exit status 255, out: `AWS credentials are missing`", ""

    env = config(tmp_path, {"credHelpers": {"ecr.example": "ecr-login"}, "credsStore": "nope",
                            "auths": {"bad.example": {"auth": "not base64!"}}})
    with pytest.raises(CredentialsError, match="docker-credential-ecr-login failed .*AWS credentials are missing"):
        DockerCredentials(environ=env, run=failing).get("ecr.example")
    with pytest.raises(CredentialsError, match="docker-credential-nope .* is not on PATH"):
        DockerCredentials(environ=env, run=Helpers({})).get("ghcr.io")
    env = config(tmp_path, {"auths": {"bad.example": {"auth": b64("no-colon")}}})
    with pytest.raises(CredentialsError, match="not base64 of user:password") as exc:
        DockerCredentials(environ=env).get("bad.example")
    assert "no-colon" not in str(exc.value)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="cannot read the docker CLI's config"):
        DockerCredentials(environ={"DOCKER_CONFIG": str(tmp_path)}).get("ghcr.io")


# -- answering a registry's 401 --------------------------------------------------------------------------------


class BasicRegistry:
    """A registry that requires basic auth (as dev-services' on :5001), or a bearer token from a token server."""

    def __init__(self, *, user: str = "alice", password: str = SECRET, bearer: bool = False) -> None:
        self.good = "Basic " + b64(f"{user}:{password}")
        self.bearer = bearer
        self.requests: list[str] = []

    def send(self, method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        parts = urllib.parse.urlsplit(url)
        self.requests.append(f"{method} {parts.netloc}{parts.path} {headers.get('Authorization', '-')[:6]}")
        if parts.netloc == "auth.example":  # the token server
            if method == "POST":
                form = dict(urllib.parse.parse_qsl((data or b"").decode()))  # type: ignore[union-attr]
                ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "refresh-me"
            else:
                ok = headers.get("Authorization") == self.good
            if not ok:
                return Opened(401, {}, io.BytesIO(b""))
            return Opened(200, {}, io.BytesIO(json.dumps({"access_token": "t0k"}).encode()))
        want = "Bearer t0k" if self.bearer else self.good
        if headers.get("Authorization") != want:
            challenge = ('Bearer realm="https://auth.example/token",service="reg"' if self.bearer
                         else 'Basic realm="imgbuild-test"')
            return Opened(401, {"www-authenticate": challenge}, io.BytesIO(b""))
        return Opened(200, {"docker-content-digest": DIGEST}, io.BytesIO(b""))


def client_for(registry: BasicRegistry, tmp_path: Path, entry: dict[str, str]) -> RegistryClient:
    env = config(tmp_path, {"auths": {"localhost:5001": entry}})
    return RegistryClient(send=registry.send, auth=Authorizer(registry.send, credentials=DockerCredentials(environ=env)))


REF = Reference.parse("localhost:5001/team/api:v1")


def test_a_basic_challenge_is_answered_with_the_login_then_sent_up_front(tmp_path: Path) -> None:
    registry = BasicRegistry()
    client = client_for(registry, tmp_path, {"auth": b64(f"alice:{SECRET}")})
    assert client.tag_digest(REF) == DIGEST
    assert client.tag_digest(Reference.parse("localhost:5001/team/web:v1")) == DIGEST
    assert registry.requests == ["HEAD localhost:5001/v2/team/api/manifests/v1 -",
                                 "HEAD localhost:5001/v2/team/api/manifests/v1 Basic ",
                                 "HEAD localhost:5001/v2/team/web/manifests/v1 Basic "]


def test_a_wrong_password_is_one_clear_refusal_without_the_secret(tmp_path: Path) -> None:
    registry = BasicRegistry()
    client = client_for(registry, tmp_path, {"auth": b64("alice:wrong-password-123")})
    with pytest.raises(RegistryError) as exc:
        client.tag_digest(REF)
    message = str(exc.value)
    assert "refused the login of user 'alice'" in message and "docker login localhost:5001" in message
    assert "wrong-password-123" not in message and b64("alice:wrong-password-123") not in message
    assert exc.value.status == 401 and not exc.value.transient
    assert len(registry.requests) == 2  # asked, answered once, refused: no more


def test_no_login_for_a_registry_that_wants_one(tmp_path: Path) -> None:
    registry = BasicRegistry()
    client = RegistryClient(send=registry.send, auth=Authorizer(
        registry.send, credentials=DockerCredentials(environ={"DOCKER_CONFIG": str(tmp_path)})))
    with pytest.raises(RegistryError, match="wants a login and there is none for localhost:5001") as exc:
        client.tag_digest(REF)
    assert exc.value.status == 401 and not exc.value.transient


def test_bearer_tokens_with_a_password_or_an_identity_token(tmp_path: Path) -> None:
    registry = BasicRegistry(bearer=True)
    assert client_for(registry, tmp_path, {"auth": b64(f"alice:{SECRET}")}).tag_digest(REF) == DIGEST
    assert "GET auth.example/token Basic " in registry.requests
    registry = BasicRegistry(bearer=True)
    assert client_for(registry, tmp_path, {"identitytoken": "refresh-me"}).tag_digest(REF) == DIGEST
    assert "POST auth.example/token -" in registry.requests  # OAuth2 refresh_token grant, no basic auth
    registry = BasicRegistry(bearer=True)
    with pytest.raises(RegistryError, match="the token server auth.example refused the login of user 'alice'"):
        client_for(registry, tmp_path, {"auth": b64("alice:nope")}).tag_digest(REF)


def test_an_identity_token_for_a_registry_that_wants_a_password(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="asks for a password, and the login for it .* is an identity token"):
        client_for(BasicRegistry(), tmp_path, {"identitytoken": "refresh-me"}).tag_digest(REF)
