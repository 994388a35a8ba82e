"""The Docker engine's event log (``GET /events``), read over its unix socket with the standard library only.

Used to trust what an earlier run verified: the images it found are still there, and still carry the
tags it saw, unless an event since then says otherwise. The daemon keeps its most recent 256 events
in memory (moby ``daemon/events``); events before a restart, or pushed out of that buffer, are gone.
An *anchor* (the newest event seen at some moment) detects both: if the anchor is still returned by
a query from its own time on, the log is complete since then.

Deliberately free of imports beyond the standard library's socket and json: the no-op fast path
(:mod:`imgbuild.uptodate`) runs it before anything else is loaded.
"""

from __future__ import annotations

import json
import os
import socket
import time
TYPE_CHECKING = False  # not typing's: the no-op fast path avoids importing typing (~4 ms)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Event: TypeAlias = dict[str, Any]

TIMEOUT_S = 2.0


class EventsUnavailable(Exception):
    """The engine could not be asked (no socket, not a unix socket, an HTTP error, a malformed answer)."""


def socket_path(environ: dict[str, str]) -> str | None:
    """The engine's unix socket as the docker CLI would pick it, or None when it is not a local socket.

    ``DOCKER_HOST`` wins; else a docker context other than ``default`` (``currentContext`` in the CLI's
    config.json) means an endpoint we do not resolve here.
    """
    host = environ.get("DOCKER_HOST", "")
    if host:
        return host[len("unix://"):] if host.startswith("unix://") else None
    if environ.get("DOCKER_CONTEXT", "default") != "default":
        return None
    try:
        with open(config_path(environ), "rb") as f:
            context = json.load(f).get("currentContext") or "default"
    except FileNotFoundError:
        context = "default"
    except (OSError, ValueError, AttributeError):
        return None
    return "/var/run/docker.sock" if context == "default" else None


def config_path(environ: dict[str, str]) -> str:
    """The docker CLI's config.json (its ``currentContext`` selects the engine)."""
    base = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def events(sock: str, *, since_ns: int, until_ns: int | None = None) -> list[Event]:
    """Every event the engine still holds from ``since_ns`` to ``until_ns`` (default: now), oldest first."""
    until = time.time_ns() if until_ns is None else until_ns
    path = f"/events?since={_stamp(since_ns)}&until={_stamp(until)}"
    body = _get(sock, path)
    out: list[Event] = []
    decoder = json.JSONDecoder()
    text = body.decode("utf-8", "replace")
    i = 0
    try:
        while True:
            while i < len(text) and text[i] in " \r\n\t":
                i += 1
            if i >= len(text):
                break
            value, i = decoder.raw_decode(text, i)
            if isinstance(value, dict):
                out.append(value)
    except ValueError as exc:
        raise EventsUnavailable(f"malformed event stream: {exc}") from None
    return out


def anchor(sock: str) -> Event | None:
    """The newest event the engine holds now (None when its log is empty)."""
    found = events(sock, since_ns=1)
    return found[-1] if found else None


def since_anchor(sock: str, mark: Event) -> list[Event] | None:
    """The events after ``mark``; None when ``mark`` is no longer in the engine's log (restart, overflow)."""
    found = events(sock, since_ns=int(mark.get("timeNano", 0)))
    for i, event in enumerate(found):
        if same_event(event, mark):
            return found[i + 1:]
    return None


def untrusted(events: list[Event], images: dict[str, str]) -> set[str]:
    """The image ids among ``images`` (ref -> image id) that ``events`` may have removed, untagged or whose
    tags they may have moved; pulls, loads and imports count for every image of their repository."""
    ids = set(images.values())
    by_repo: dict[str, set[str]] = {}
    for ref, image_id in images.items():
        by_repo.setdefault(_repo(ref), set()).add(image_id)
    out: set[str] = set()
    for event in events:
        if event.get("Type") != "image":
            continue
        actor = event.get("Actor") or {}
        image_id = str(actor.get("ID", ""))
        name = normal_ref(str((actor.get("Attributes") or {}).get("name", "")))
        action = event.get("Action", "")
        if action in ("save", "inspect"):
            continue
        if action == "untag":  # one name removed: only ours matter (a claim tag going is not a loss)
            if name:
                if name in images:
                    out.add(images[name])
            elif image_id in ids:
                out.add(image_id)
        elif action == "delete":
            if image_id in ids:
                out.add(image_id)
        elif action == "tag":
            if name in images and images[name] != image_id:
                out.add(images[name])
        else:  # pull, load, import, and anything newer: by repository
            for ref in (name, normal_ref(image_id)):
                if ref:
                    out |= by_repo.get(_repo(ref), set())
    return out


def normal_ref(ref: str) -> str:
    """A reference as engine events name it: Docker Hub's implicit prefixes dropped."""
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _repo(ref: str) -> str:
    bare = ref.partition("@")[0]
    name, sep, tag = bare.rpartition(":")
    return name if sep and "/" not in tag else bare


def same_event(a: Event, b: Event) -> bool:
    return (a.get("timeNano"), a.get("Type"), a.get("Action"), (a.get("Actor") or {}).get("ID")) == \
        (b.get("timeNano"), b.get("Type"), b.get("Action"), (b.get("Actor") or {}).get("ID"))


def _stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _get(sock: str, path: str) -> bytes:
    """One HTTP/1.0 GET over the unix socket; the body (the engine closes the connection after it)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT_S)
            s.connect(sock)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError as exc:
        raise EventsUnavailable(f"{sock}: {exc}") from None
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or status[1] != b"200":
        raise EventsUnavailable(f"{sock}: GET /events answered {head[:80]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            raise EventsUnavailable("truncated chunked answer")
        size = int(body[i:j].split(b";")[0] or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[j + 2:j + 2 + size])
        i = j + 2 + size + 2
