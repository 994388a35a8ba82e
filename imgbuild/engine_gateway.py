"""The way a run speaks to the engine, decided once: its local unix socket when it answers, else the docker CLI.

The image store (:class:`imgbuild.builds.images.Images`), the executor and, through the image store, the
target cache share one gateway per run (the build service creates it). The first question decides: the
socket (:mod:`imgbuild.engine_api`) when the engine's endpoint is a local unix socket and the engine answers
on it, else the CLI, which knows how to reach ``tcp://``, ``ssh://`` and docker contexts. Deciding once means
the answer is not re-derived per call, and a run never mixes the two: a socket call that fails later is the
engine failing (an error naming the call), not a reason to ask the same question through the CLI.
Building, loading and pushing go through the CLI whichever way was chosen (buildx and the CLI's login).
"""

from __future__ import annotations

import os
import threading
from typing import Mapping

from imgbuild import engine_api
from imgbuild.engine_api import EngineAPI, EngineAPIError
from imgbuild.errors import EngineUnavailable


class EngineGateway:
    """One per run (thread-safe): ``api`` is the engine's socket API, or None for the docker CLI."""

    def __init__(self, docker: str = "docker", *, environ: Mapping[str, str] | None = None) -> None:
        self.docker = docker
        self.environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._decided = False
        self._api: EngineAPI | None = None
        self._version: str | None = None

    @classmethod
    def decided(cls, api: EngineAPI | None, docker: str = "docker") -> EngineGateway:
        """A gateway whose way is given: over ``api``, or the CLI when it is None."""
        gateway = cls(docker)
        gateway._decided, gateway._api = True, api
        return gateway

    @property
    def api(self) -> EngineAPI | None:
        # Decided at the first question rather than at creation: commands that end up asking the engine
        # nothing (everything answered from the cache's files) never touch it.
        with self._lock:
            if not self._decided:
                self._api, self._version = _probe(self.docker, self.environ)
                self._decided = True
            return self._api

    @property
    def via(self) -> str:
        """``socket`` or ``cli``: how this run speaks to the engine."""
        return "cli" if self.api is None else "socket"

    @property
    def version(self) -> str | None:
        """The engine's version, when the socket answered it (the CLI asks separately)."""
        self.api  # noqa: B018 - decides
        return self._version


def _probe(docker: str, environ: dict[str, str]) -> tuple[EngineAPI | None, str | None]:
    if docker != "docker":
        return None, None  # another client binary: speak to the engine the way it does
    api = engine_api.connect(environ)
    if api is None:
        return None, None
    try:
        return api, api.version()
    except EngineAPIError:
        return None, None  # a socket file no engine answers on: the CLI says what is wrong


def failed(exc: EngineAPIError) -> EngineUnavailable:
    """A socket call that failed after the engine answered there: exit 3, saying which call."""
    return EngineUnavailable(f"the Docker engine failed: {exc}\n"
                             "  hint: check that the engine is still running (`docker version`)")
