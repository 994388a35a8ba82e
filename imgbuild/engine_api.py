"""The Docker engine's HTTP API over its local unix socket, for the small questions asked after every build.

After each build imgbuild asks the engine for the image's id, adds the tag dependants use, removes the
run's claim tag, exports the image for the target cache, and (for the history) reads the layers. Through the docker CLI each is a process: ~30 ms
on an idle machine, several times that while other builds run, and on the way from one target to the
next. Over the socket each is one request of a few milliseconds.

Only a local unix socket is spoken to directly (``DOCKER_HOST=unix://...``, or the CLI's default when no
other context is selected): :func:`connect` returns None for ``tcp://``, ``ssh://`` or a docker context,
and callers then use the CLI, which knows how to reach those.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

from imgbuild.engine_events import socket_path


class EngineAPIError(Exception):
    """The engine could not be asked, or answered with an unexpected status (the message says which)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineAPI:
    def __init__(self, sock: str, *, timeout: float = 120.0) -> None:
        self.sock = sock
        self.timeout = timeout

    def version(self) -> str:
        """The engine's version (answering at all means it is up)."""
        status, body = self._call("GET", "/version")
        return str(self._json(status, body, "version").get("Version") or "?")

    def image_id(self, ref: str) -> str | None:
        """The id of the image ``ref`` (a name or an id) names; None if the engine has no such image."""
        found = self.inspect(ref)
        return None if found is None else str(found["Id"])

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect ref``: Id, RepoTags, RepoDigests...; None if the engine has no such image."""
        status, body = self._call("GET", f"/images/{_quote(ref)}/json")
        if status == 404:
            return None
        found = self._json(status, body, f"inspect {ref}")
        if not isinstance(found, dict) or "Id" not in found:
            raise EngineAPIError(f"inspect {ref}: no image id in the answer")
        return found

    def tag(self, image: str, ref: str) -> None:
        repo, tag = split_ref(ref)
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        status, body = self._call("POST", f"/images/{_quote(image)}/tag?{query}")
        if status not in (200, 201):
            raise EngineAPIError(f"tag {image} as {ref}: HTTP {status}: {_message(body)}")

    def untag(self, ref: str) -> None:
        """Remove the name ``ref`` (the image stays while another name or a container holds it)."""
        status, body = self._call("DELETE", f"/images/{_quote(ref)}?noprune=1")
        if status not in (200, 404):
            raise EngineAPIError(f"untag {ref}: HTTP {status}: {_message(body)}")

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The image's history, newest step first (``CreatedBy``, ``Size`` in bytes, ``Comment``...)."""
        status, body = self._call("GET", f"/images/{_quote(ref)}/history")
        steps = self._json(status, body, f"history of {ref}")
        if not isinstance(steps, list):
            raise EngineAPIError(f"history of {ref}: not a list")
        return steps

    def save(self, ref: str, dest: Path) -> None:
        """The image ``ref`` as ``docker save`` writes it, unpacked into ``dest`` as it streams in."""
        conn = _UnixConnection(self.sock, self.timeout)
        try:
            conn.request("GET", f"/images/get?{urllib.parse.urlencode({'names': ref})}", headers={"Host": "docker"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise EngineAPIError(f"save {ref}: HTTP {resp.status}: {_message(resp.read())}")
            with tarfile.open(fileobj=resp, mode="r|") as tf:
                tf.extractall(dest, filter="data")
        except (OSError, http.client.HTTPException, tarfile.TarError) as exc:
            raise EngineAPIError(f"save {ref}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    def _call(self, method: str, path: str) -> tuple[int, bytes]:
        conn = _UnixConnection(self.sock, self.timeout)
        try:
            conn.request(method, path, headers={"Host": "docker"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineAPIError(f"{self.sock}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    @staticmethod
    def _json(status: int, body: bytes, what: str) -> Any:
        if status != 200:
            raise EngineAPIError(f"{what}: HTTP {status}: {_message(body)}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineAPIError(f"{what}: not JSON ({exc})") from None


def connect(environ: dict[str, str] | None = None) -> EngineAPI | None:
    """The engine's API if it is on a local unix socket that exists; None: ask through the docker CLI."""
    sock = socket_path(dict(os.environ) if environ is None else environ)
    return EngineAPI(sock) if sock and os.path.exists(sock) else None


def split_ref(ref: str) -> tuple[str, str]:
    """``host:port/repo/name:tag`` -> (``host:port/repo/name``, ``tag``); no tag means ``latest``."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="/:@")


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or body[:200])
    except (ValueError, AttributeError):
        return repr(body[:200])
