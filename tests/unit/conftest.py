"""Unit tests never reach a daemon, a registry or S3: starting any process is an error here."""

from __future__ import annotations

import subprocess
from typing import Any, Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unit tests must not start processes: {args[:1]}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(autouse=True)
def _fresh_outages() -> Iterator[None]:
    """Each test is a run of its own: no S3 endpoint is down at its start."""
    from imgbuild.cache import outages

    outages.reset()
    yield
    outages.reset()


@pytest.fixture
def s3_stub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real botocore S3 client whose requests are answered by botocore's Stubber: no server, no network."""
    from botocore.config import Config
    from botocore.session import Session
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    client = Session().create_client("s3", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture(autouse=True)
def _no_docker_logins(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Registry fakes never see the developer's own logins (~/.docker/config.json) or proxy settings."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
