"""A minimal Registry v2 client: what digest a tag points at, whether a manifest exists; and how every
registry request of imgbuild authenticates (:class:`Authorizer`).

Used to check immutable tags before pushing and to verify pushes by digest. Logins are the docker CLI's
(:mod:`imgbuild.credentials`: credential helpers, ``credsStore``, ``auths``), asked for only when a registry
answers 401; anonymous bearer tokens otherwise. Plain HTTP is used for ``insecure`` registries and for
localhost.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import IO

from imgbuild.connections import Connections, Opened, Send, retry_after
from imgbuild.connections import RegistryError as RegistryError  # where the rest of imgbuild imports it from
from imgbuild.credentials import Credentials, DockerCredentials

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


@dataclass(frozen=True)
class Reference:
    """``host[:port]/path/name:tag`` split into the registry host, the repository and the tag."""

    host: str
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    def by_digest(self, digest: str) -> str:
        return f"{self.host}/{self.repository}@{digest}"

    @classmethod
    def parse(cls, ref: str) -> Reference:
        name, _, tag = ref.rpartition(":")
        if "/" in tag or not name:
            name, tag = ref, "latest"
        host, _, repo = name.partition("/")
        if not repo or not ("." in host or ":" in host or host == "localhost"):
            host, repo = "docker.io", name if "/" in name else f"library/{name}"
        return cls(host, repo, tag)


def _is_local(host: str) -> bool:
    return host.split(":")[0] in ("localhost", "127.0.0.1", "::1")


def base_url(host: str, insecure: frozenset[str]) -> str:
    """``scheme://host/v2/`` of the Registry v2 API on ``host`` (Docker Hub's API host for ``docker.io``)."""
    scheme = "http" if host in insecure or _is_local(host) else "https"
    api_host = "registry-1.docker.io" if host == "docker.io" else host
    return f"{scheme}://{api_host}/v2/"


class Authorizer:
    """The ``Authorization`` of each request to a registry, learnt from the registry's 401 challenges.

    ``Basic``: the login for the host, sent with every later request to it. ``Bearer``: a token from the
    challenge's realm for each (host, scope), asked for with the login (basic auth, or an identity token as
    an OAuth2 refresh token) or anonymously. A request refused again once answered is final (HTTP 401, not
    retried): the error names the user and where the login came from, never the secret.
    """

    def __init__(self, send: Send, *, credentials: DockerCredentials | None = None) -> None:
        self._send = send
        self.credentials = credentials or DockerCredentials()
        self._basic: dict[str, str] = {}  # host -> its Basic value, once the host asked for basic auth
        self._tokens: dict[tuple[str, str], str] = {}  # (host, scope) -> Bearer value

    def send(self, method: str, url: str, *, host: str, scope: str, headers: dict[str, str] | None = None,
             data: bytes | IO[bytes] | None = None) -> Opened:
        """One request authenticated for ``scope``; any status but 401 is the caller's (a response, not raised).

        A 401 is answered (a token, or the login) and the request sent once more, its body rewound if it is
        a file; a body that cannot be sent twice is refused instead, so uploads start with a POST.
        """
        start = _tell(data)
        for attempt in range(2):
            sent = dict(headers or {})
            auth = self._tokens.get((host, scope)) or self._basic.get(host)
            if auth:
                sent["Authorization"] = auth
            resp = self._send(method, url, sent, data)
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("www-authenticate", "")
            resp.close()
            if attempt == 1 or (start is None and not (data is None or isinstance(data, bytes))):
                break
            self._answer(challenge, host, scope)
            if start is not None:
                data.seek(start)  # type: ignore[union-attr]
        raise self._refused(host, scope, self.credentials.get(host))

    def _answer(self, challenge: str, host: str, scope: str) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        login = self.credentials.get(host)
        if scheme == "basic":
            if login is not None and login.identity_token:
                raise RegistryError(f"{host}: the registry asks for a password, and the login for it ({login.source}) "
                                    f"is an identity token; log in with a password: `docker login {host}`", status=401)
            if login is None:
                raise self._refused(host, scope, login)
            self._basic[host] = login.basic()
        elif scheme == "bearer":
            self._tokens[(host, scope)] = self._token(challenge, host, scope, login)
        else:
            raise RegistryError(f"{host}: unauthorized, and its challenge ({scheme or 'none'}) is not Basic or "
                                "Bearer", status=401)

    def _token(self, challenge: str, host: str, scope: str, login: Credentials | None) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{host}: unauthorized, and its Bearer challenge names no token server", status=401)
        scopes = scope.split(" ") if scope else [params["scope"]] if "scope" in params else []
        service = [("service", params["service"])] if "service" in params else []
        if login is not None and login.identity_token:  # OAuth2: the identity token is a refresh token
            form = [("grant_type", "refresh_token"), ("refresh_token", login.secret), ("client_id", "imgbuild"),
                    *service, ("scope", " ".join(scopes))]
            resp = self._send("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                              urllib.parse.urlencode(form).encode())
        else:
            query = urllib.parse.urlencode(service + [("scope", s) for s in scopes])
            resp = self._send("GET", f"{realm}{'&' if '?' in realm else '?'}{query}",
                              {"Authorization": login.basic()} if login else {}, None)
        try:
            if resp.status in (401, 403):
                raise self._refused(host, scope, login, status=resp.status, by=urllib.parse.urlsplit(realm).netloc)
            if resp.status != 200:
                raise RegistryError(f"{host}: cannot get a token from {realm}: HTTP {resp.status}",
                                    status=resp.status, retry_after=retry_after(resp.headers))
            data = json.loads(resp.read())
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            raise RegistryError(f"{host}: the token server {realm} did not answer a JSON token") from None
        finally:
            resp.close()
        if not token:
            raise RegistryError(f"{host}: the token server {realm} answered no token")
        return f"Bearer {token}"

    def _refused(self, host: str, scope: str, login: Credentials | None, *, status: int = 401,
                 by: str = "") -> RegistryError:
        what = f" ({scope})" if scope else ""
        where = f"the token server {by}" if by else "the registry"
        if login is None:
            return RegistryError(f"{host}: unauthorized{what}: {where} wants a login and there is none for "
                                 f"{host} in {self.credentials.path} (log in with `docker login {host}`)",
                                 status=status)
        return RegistryError(f"{host}: {where} refused the login of user {login.username!r} from {login.source} "
                             f"(HTTP {status}){what}; log in again with `docker login {host}`", status=status)


def _tell(data: bytes | IO[bytes] | None) -> int | None:
    """Where a file body starts, to send it again; None for bytes, nothing, or a stream that cannot seek."""
    try:
        if data is not None and not isinstance(data, bytes) and data.seekable():
            return data.tell()
    except (OSError, ValueError):
        pass
    return None


class RegistryClient:
    def __init__(self, *, insecure_hosts: frozenset[str] = frozenset(), timeout: float = 10.0,
                 send: Send | None = None, auth: Authorizer | None = None) -> None:
        self.insecure = insecure_hosts
        self._send = send or Connections(timeout).send
        self.auth = auth or Authorizer(self._send)

    def tag_digest(self, ref: Reference) -> str | None:
        """The digest ``ref``'s tag points at, or None when the tag (or repository) does not exist."""
        return self._head(ref.host, ref.repository, f"manifests/{ref.tag}")

    def has_manifest(self, ref: Reference, digest: str) -> bool:
        return self._head(ref.host, ref.repository, f"manifests/{digest}") is not None

    def _head(self, host: str, repository: str, path: str) -> str | None:
        resp = self.auth.send("HEAD", f"{base_url(host, self.insecure)}{repository}/{path}", host=host,
                              scope=f"repository:{repository}:pull", headers={"Accept": MANIFEST_TYPES})
        resp.close()
        if resp.status == 200:
            return resp.headers.get("docker-content-digest") or None
        if resp.status == 404:
            return None
        raise RegistryError(f"{host}: HTTP {resp.status} for {repository}/{path}", status=resp.status,
                            retry_after=retry_after(resp.headers))
