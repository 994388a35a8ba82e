"""`imgbuild build --push` to a registry that requires a login (dev-services' second registry, basic auth on
localhost:5001), with the login where users keep it: a credential helper named by `credHelpers`, a
`credsStore`, or `auths` in `$DOCKER_CONFIG/config.json`. Both ways a push goes authenticate: over HTTP from
the target cache's blobs, and `docker push` (`--push-as-ready`), which reads the same config itself."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import digest_of, imgbuild

pytestmark = pytest.mark.usefixtures("engine")

REGISTRY = os.environ.get("IMGBUILD_TEST_AUTH_REGISTRY", "localhost:5001")
USER = os.environ.get("IMGBUILD_TEST_AUTH_REGISTRY_USER", "imgbuild")
PASSWORD = os.environ.get("IMGBUILD_TEST_AUTH_REGISTRY_PASSWORD", "imgbuild-test-secret-5001")
HELPER = "imgbuildtest"  # docker-credential-imgbuildtest, written by the test
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def auth_registry() -> str:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
        problem = f"the registry at {REGISTRY} answers without asking for a login"
    except urllib.error.HTTPError as exc:
        problem = "" if exc.code == 401 else f"{REGISTRY} answers HTTP {exc.code}"
    except OSError as exc:
        problem = f"no registry answers at {REGISTRY}: {exc}"
    if problem:
        if os.environ.get("IMGBUILD_SERVICES"):
            pytest.fail(f"IMGBUILD_SERVICES is set but {problem}", pytrace=False)
        pytest.skip(f"{problem} (start services: eval \"$(scripts/dev-services up)\")")
    return REGISTRY


def registry_digest(repo: str, tag: str) -> str | None:
    return digest_of(f"{REGISTRY}/{repo}", tag, authorization=f"Basic {BASIC}")


def helper_on_path(bin_dir: Path, store: dict[str, tuple[str, str]]) -> Path:
    """A credential helper of the test's own that speaks the protocol; it logs each call (never a secret)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "store.json").write_text(json.dumps(store))
    log = bin_dir / "calls.log"
    script = bin_dir / f"docker-credential-{HELPER}"
    script.write_text(f"""#!{sys.executable}
import json, sys
action = sys.argv[1] if len(sys.argv) > 1 else ""
server = sys.stdin.read().strip() if action in ("get", "erase") else ""
with open({str(log)!r}, "a") as f:
    f.write(f"{{action}} {{server}}\\n")
store = json.load(open({str(bin_dir / "store.json")!r}))
if action == "get":
    if server not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = store[server]
    print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
elif action == "list":
    print(json.dumps({{k: v[0] for k, v in store.items()}}))
""")
    script.chmod(0o755)
    return log


def workspace(root: Path, prefix: str) -> Path:
    return write_files(root, {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: private, tags: [v1], push: true}}
            registries:
              private: {{url: {REGISTRY}/{prefix}, insecure: true}}
        """,
        "web/BUILD.yaml": "apps:\n  web: {}\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY index.html /srv/\n",
        "web/index.html": f"{prefix}\n",
    })


def push(root: Path, config: dict[str, object], *, docker_push: bool, path: str = "") -> tuple[int, str, dict[str, object]]:
    """`imgbuild build //web --push` with ``config`` as the docker CLI's config; exit code, output, web's report."""
    docker_config = root.parent / "docker-config"
    docker_config.mkdir(exist_ok=True)
    (docker_config / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(docker_config)}
    if path:
        env["PATH"] = f"{path}{os.pathsep}{os.environ['PATH']}"
    mode = ["--push-as-ready"] if docker_push else ["--push"]
    r = imgbuild("build", "//web", *mode, "--allow-dirty", "--progress", "plain", "--json", "report.json",
                 cwd=root, env=env)
    web = next(t for t in json.loads((root / "report.json").read_text())["targets"] if t["label"] == "//web:web")
    return r.code, r.out + r.err, web


def secret_free(root: Path, output: str, secrets: tuple[str, ...]) -> None:
    """No secret in what imgbuild printed, nor in anything it wrote (report, logs, history, cache)."""
    for secret in secrets:
        assert secret not in output
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(s.encode() in data for s in secrets), f"a secret in {f}"


SOURCES: dict[str, dict[str, object]] = {
    "credHelpers": {"credHelpers": {REGISTRY: HELPER}, "auths": {REGISTRY: {}}},
    "credsStore": {"credsStore": HELPER},
    "auths": {"auths": {REGISTRY: {"auth": BASIC}}},
}


@pytest.mark.parametrize("docker_push", [False, True], ids=["http", "docker-push"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_push_with_the_login_from(tmp_path: Path, prefix: str, auth_registry: str, source: str,
                                  docker_push: bool) -> None:
    root = workspace(tmp_path / "ws", prefix)
    log = helper_on_path(tmp_path / "bin", {REGISTRY: (USER, PASSWORD)})
    code, output, web = push(root, SOURCES[source], docker_push=docker_push, path=str(tmp_path / "bin"))
    assert code == 0, output
    assert web["pushed"] == [f"{REGISTRY}/{prefix}/web@{web['image_id']}"]
    assert registry_digest(f"{prefix}/web", "v1") == web["image_id"]
    if source != "auths":
        assert f"get {REGISTRY}" in log.read_text().splitlines()  # the helper was asked, for this registry
    secret_free(root, output, (PASSWORD, BASIC))


def test_a_wrong_password_is_one_clear_refusal(tmp_path: Path, prefix: str, auth_registry: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    wrong = "not-the-password-0451"
    basic = base64.b64encode(f"{USER}:{wrong}".encode()).decode()
    code, output, web = push(root, {"auths": {REGISTRY: {"auth": basic}}}, docker_push=False)
    assert code == 1 and web["status"] == "failed" and web["pushed"] == []
    assert f"the registry refused the login of user '{USER}'" in str(web["error"])
    assert f"docker login {REGISTRY}" in str(web["error"])
    assert "failed after 1 attempt(s)" in str(web["error"])  # no retries: asking again will not help
    assert registry_digest(f"{prefix}/web", "v1") is None
    secret_free(root, output, (wrong, basic))

    code, output, web = push(root, {}, docker_push=False)  # logged in nowhere
    assert code == 1 and f"wants a login and there is none for {REGISTRY}" in str(web["error"])
