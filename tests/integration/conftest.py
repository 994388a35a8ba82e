"""Integration tests: the real Docker engine with BuildKit, the local registry and the S3 server.

Started by ``scripts/dev-services up`` (scripts/test does it). With ``IMGBUILD_SERVICES=1`` set, as in
CI, a service that does not answer fails the tests; without it they are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def _engine_problem() -> str | None:
    try:
        out = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            return f"docker buildx unavailable: {out.stderr.strip()}"
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30)
        if info.returncode != 0:
            return f"no Docker engine: {info.stderr.strip()}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker not usable: {exc}"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    problem = _engine_problem()
    if problem:
        if os.environ.get("IMGBUILD_SERVICES"):
            pytest.fail(f"IMGBUILD_SERVICES is set but {problem}", pytrace=False)
        pytest.skip(f"{problem} (start services: eval \"$(scripts/dev-services up)\")")


# The buildx builders every building test runs on: the engine's own (`docker` driver) and the two that
# scripts/dev-services starts (`docker-container`, `remote`), which do not see the engine's images.
BUILDERS = tuple(n for n in os.environ.get("IMGBUILD_TEST_BUILDERS",
                                          "default,imgbuild-container,imgbuild-remote").split(",") if n)


def _builder_problem(name: str) -> str | None:
    out = subprocess.run(["docker", "buildx", "inspect", "--bootstrap", name], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0 or "running" not in out.stdout:
        return f"buildx builder {name!r} is not usable: {(out.stderr or out.stdout).strip()[:300]}"
    return None


@pytest.fixture(params=BUILDERS)
def builder(request: pytest.FixtureRequest, engine: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each building test once per builder: ``BUILDX_BUILDER`` selects it for imgbuild and the docker CLI."""
    return _use_builder(str(request.param), monkeypatch)


@pytest.fixture(params=[b for b in BUILDERS if b != "default"])
def outside_builder(request: pytest.FixtureRequest, engine: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each builder that does not see the engine's images (not the `docker` driver)."""
    return _use_builder(str(request.param), monkeypatch)


def _use_builder(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    problem = _builder_problem(name)
    if problem:
        if os.environ.get("IMGBUILD_SERVICES"):
            pytest.fail(f"IMGBUILD_SERVICES is set but {problem}", pytrace=False)
        pytest.skip(f"{problem} (start services: eval \"$(scripts/dev-services up)\")")
    if name != "default":
        monkeypatch.setenv("BUILDX_BUILDER", name)
    else:
        monkeypatch.delenv("BUILDX_BUILDER", raising=False)
    return name


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def imgbuild(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run the real CLI in a fresh process, as users do."""
    proc = subprocess.run([sys.executable, "-m", "imgbuild", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return Run(proc.returncode, proc.stdout, proc.stderr)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=120).stdout


def run_in_image(image: str, *cmd: str) -> str:
    return docker("run", "--rm", image, *cmd)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique image-name prefix; the test's images are removed afterwards."""
    p = f"it{uuid.uuid4().hex[:8]}"
    yield p
    ids = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={p}*"], capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "image", "rm", "-f", *sorted(set(ids))], capture_output=True)


ENDPOINT = os.environ.get("IMGBUILD_TEST_S3_ENDPOINT", "http://127.0.0.1:9000")


def _s3_problem() -> str | None:
    try:
        urllib.request.urlopen(ENDPOINT, timeout=5).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except OSError as exc:
        return f"no S3 server answers at {ENDPOINT}: {exc}"
    return None


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    problem = _s3_problem()
    if problem:
        if os.environ.get("IMGBUILD_SERVICES"):
            pytest.fail(f"IMGBUILD_SERVICES is set but {problem}", pytrace=False)
        pytest.skip(f"{problem} (start services: eval \"$(scripts/dev-services up)\")")
    return ENDPOINT


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials, as dev-services exports them, when the shell has none."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        if not os.environ.get(name):
            monkeypatch.setenv(name, value)


@pytest.fixture
def admin(s3_endpoint: str, aws_env: None) -> Any:
    """A plain boto3 client, for what the store must not do itself: make buckets, tamper, look."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(admin: Any) -> Iterator[str]:
    name = f"imgbuild-test-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    yield name
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", ()):
            admin.delete_object(Bucket=name, Key=obj["Key"])
    admin.delete_bucket(Bucket=name)


def _admin_client() -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "s3", endpoint_url=ENDPOINT, region_name="us-east-1")


def list_keys(bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in _admin_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", ())]
    return keys


def read_object(bucket: str, key: str) -> bytes:
    body: bytes = _admin_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def digest_of(repo: str, tag: str, *, authorization: str | None = None) -> str | None:
    """What ``host/repo:tag`` points at, by a Registry v2 HEAD (plain HTTP: the local test registries)."""
    host, _, path = repo.partition("/")
    headers = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
                         "application/vnd.docker.distribution.manifest.v2+json"}
    if authorization:
        headers["Authorization"] = authorization
    req = urllib.request.Request(f"http://{host}/v2/{path}/manifests/{tag}", method="HEAD", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
