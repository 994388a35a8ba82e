"""Shared test helpers: tiny workspaces written from a dict of files."""

from __future__ import annotations

import socketserver
import textwrap
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

WorkspaceFactory = Callable[[dict[str, str]], Path]


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """imgbuild's state directories (imgbuild.statedir) in a fresh directory per test: nothing written to the
    machine's ~/.cache or ~/.local/state, nothing shared between tests. Subprocesses inherit it."""
    home = tmp_path_factory.mktemp("state-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.delenv("IMGBUILD_STATE_DIR", raising=False)
    return home


@pytest.fixture
def make_ws(tmp_path: Path) -> WorkspaceFactory:
    """Write a workspace; ``imgbuild.yaml`` defaults to ``version: 1`` when not given."""

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / "ws"
        files = {"imgbuild.yaml": "version: 1\n", **files}
        return write_files(root, files)

    return make


T = TypeVar("T")


def at_once(work: Callable[[int], T], n: int) -> list[T]:
    """``work(0) .. work(n - 1)``, each in its own thread, released together (a race on purpose); their
    results in order. An exception in any of them is raised here, after all have finished."""
    barrier = threading.Barrier(n)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[i] for i in range(n)]


S = TypeVar("S", bound=socketserver.BaseServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """``server`` answering on a thread of this process for the length of the block (fakes of HTTP peers)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
