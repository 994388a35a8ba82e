"""Integration tests: the real Docker engine with BuildKit, the local registry and the S3 server.

Started by ``scripts/dev-services up`` (scripts/test does it). With ``IMGBUILD_SERVICES=1`` set, as in
CI, a service that does not answer fails the tests; without it they are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
