"""S3 endpoints that stopped answering in this run, shared by every S3 store of the process.

The target cache, the synced layer cache and the history each have a store, and a store gives up on
its own backend after its first failure (:class:`~imgbuild.cache.store.GuardedStore`,
:class:`~imgbuild.history.store.GuardedHistory`). An endpoint that accepts connections and never answers
would still cost each of them its own timeouts (15 s a try, issue #14). So the first request that times
out or cannot connect marks its endpoint down here and is not tried again; from then on every request
of every store to that endpoint fails at once, with the first failure's reason and "; not asked again in
this run". The reason up to ``;`` being the first store's own, the build's warnings about unavailable
caches (one per reason) say it once.

A process runs one command, so "this run" is the process; :func:`reset` is for tests.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

SKIPPED = "not asked again in this run"


class Outages:
    """Endpoints (``scheme://host:port``) that failed in this run, and why. Thread-safe."""

    def __init__(self) -> None:
        self._down: dict[str, str] = {}
        self._lock = threading.Lock()

    def trip(self, endpoint: str, reason: str) -> None:
        """``endpoint`` failed: ``reason`` (the first one given is kept)."""
        with self._lock:
            self._down.setdefault(endpoint, reason)

    def skipped(self, endpoint: str) -> str | None:
        """Why a request to ``endpoint`` is not sent, or None while the endpoint has not failed."""
        with self._lock:
            reason = self._down.get(endpoint)
        return None if reason is None else f"{reason}; {SKIPPED}"

    def reset(self) -> None:
        with self._lock:
            self._down.clear()


OUTAGES = Outages()


def endpoint_name(url: str) -> str:
    """``scheme://host:port`` of an endpoint URL: the key of :data:`OUTAGES`, and how messages name it
    (never with ``user:password@``)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def reset() -> None:
    OUTAGES.reset()
