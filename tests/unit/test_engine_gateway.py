"""One way to the engine per run (imgbuild.engine_gateway): decided once, shared, never mixed per call."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from imgbuild.builds.executor import BuildxExecutor
from imgbuild.builds.images import Images
from imgbuild.engine_gateway import EngineGateway
from imgbuild.errors import EngineUnavailable
from tests.conftest import serving
from tests.unit.test_engine_api import IMAGE, FakeEngine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    with serving(FakeEngine(str(tmp_path / "docker.sock"))) as srv:
        yield srv


def test_a_local_socket_that_answers_is_used_and_asked_once(engine: FakeEngine) -> None:
    gateway = EngineGateway(environ={"DOCKER_HOST": f"unix://{engine.server_address}"})
    assert engine.requests == []  # nothing is asked before the first question
    images, executor = Images(gateway), BuildxExecutor(engine=gateway)
    # (4 at once: the fake engine's listen backlog is 5)
    threads = [threading.Thread(target=lambda: images.tag(IMAGE, "app:latest")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gateway.via == "socket" and executor.engine.via == "socket"
    assert executor._engine_version() == "26.1.5"  # what the decision learnt: no second question, no process
    assert engine.requests.count("GET /version") == 1
    assert engine.names["app:latest"] == IMAGE


@pytest.mark.parametrize("host", ["tcp://10.0.0.1:2376", "ssh://builder@ci", "unix:///nonexistent/docker.sock"])
def test_an_engine_elsewhere_is_spoken_to_through_the_cli(host: str) -> None:
    assert EngineGateway(environ={"DOCKER_HOST": host}).via == "cli"


def test_a_socket_nothing_answers_on_means_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    FakeEngine(str(path)).server_close()  # the file stays, nothing listens
    assert EngineGateway(environ={"DOCKER_HOST": f"unix://{path}"}).via == "cli"


def test_a_socket_that_fails_later_is_an_error_not_a_switch_to_the_cli(engine: FakeEngine) -> None:
    gateway = EngineGateway(environ={"DOCKER_HOST": f"unix://{engine.server_address}"})
    images = Images(gateway)
    images.tag(IMAGE, "app:before")
    engine.shutdown()
    engine.server_close()
    Path(str(engine.server_address)).unlink()
    # (unit tests refuse to start processes: a fallback to the CLI would fail with that instead)
    with pytest.raises(EngineUnavailable, match="the Docker engine failed: .*docker.sock"):
        images.tag(IMAGE, "app:after")
    with pytest.raises(EngineUnavailable):
        images.history("app:before")
    images.untag("app:before")  # best effort, as ever: a leftover name is harmless
    assert images.known_digests(IMAGE) == frozenset()
    assert gateway.via == "socket"
