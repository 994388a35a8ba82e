"""Small fakes behind imgbuild's own interfaces (no daemon, no network)."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Callable

from imgbuild.build.executor import BuildError, BuildInterrupted, BuildOutput
from imgbuild.build.request import BuildRequest


class FakeExecutor:
    """Builds instantly (or after ``durations[label]`` s); image ids derive from the request itself."""

    def __init__(self, *, fail: frozenset[str] = frozenset(), durations: dict[str, float] | None = None) -> None:
        self.fail = fail
        self.durations = durations or {}
        self.requests: list[BuildRequest] = []
        self.lock = threading.Lock()

    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput:
        with self.lock:
            self.requests.append(request)
        log(f"#1 building {request.label}")
        deadline = time.monotonic() + self.durations.get(request.label, 0.0)
        while time.monotonic() < deadline:
            if stop is not None and stop.wait(0.01):
                raise BuildInterrupted("interrupted", ("#1 CANCELED",))
        if request.label in self.fail:
            log("#2 ERROR: process did not complete successfully: exit code: 1")
            raise BuildError("docker buildx build failed: exit code: 1", ("#2 ERROR: exit code: 1",))
        digest = "sha256:" + hashlib.sha256(repr(request.argv()).encode()).hexdigest()
        return BuildOutput(image_id=digest, digest=digest, config_digest=None, metadata="{}")

    def request(self, label: str) -> BuildRequest:
        return next(r for r in self.requests if r.label == label)


class FakeImages:
    """The engine's image store in memory: tags -> image ids, saved layouts as dicts."""

    def __init__(self) -> None:
        self.refs: dict[str, str] = {}
        self.lock = threading.Lock()
        self.loaded: list[str] = []

    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]:
        with self.lock:
            out = {}
            for ref in refs:
                image_id = self.refs.get(ref, ref if ref in self.refs.values() else None)
                if image_id is not None:
                    out[ref] = frozenset(r for r, i in self.refs.items() if i == image_id)
            return out

    def tag(self, image_id: str, ref: str) -> None:
        with self.lock:
            self.refs[ref] = image_id

    def untag(self, ref: str) -> None:
        with self.lock:
            self.refs.pop(ref, None)
