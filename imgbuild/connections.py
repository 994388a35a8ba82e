"""HTTP for the Registry v2 API: kept-alive connections, shared by the threads of a push.

A push of many images is hundreds of small requests (HEADs, upload sessions, manifests) to one registry.
``urllib`` opens a TCP (and TLS) connection for each; here a connection is returned to a pool once its
response has been read, and the next request to the same scheme and host takes it. A connection is
used by one request at a time, so a thread that streams a download from a registry into an upload to
the same registry simply holds two.

A request on a kept-alive connection that the server closed in the meantime (its idle timeout) fails
before any answer; it is sent again once on a new connection, if its body can be sent again.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from typing import IO, Callable


class RegistryError(Exception):
    """A registry refused, failed or could not be reached (the message says which and why)."""


_Key = tuple[str, str]  # (scheme, host[:port])
_MAX_IDLE = 32  # per scheme and host: as many as a push keeps busy (images at once, their blobs)
_DRAIN = 1 << 20  # an unread rest of a response up to this size is read to keep the connection
_BLOCK = 1 << 20  # request bodies are sent in blocks of this size (http.client's default: 8 KiB)


class Opened:
    """An HTTP response being read: status, lower-case headers, the body as a stream (an error status too)."""

    def __init__(self, status: int, headers: dict[str, str], stream: IO[bytes] | None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.status = status
        self.headers = headers
        self.stream = stream
        self._on_close = on_close

    def read(self) -> bytes:
        return self.stream.read() if self.stream is not None else b""

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        elif self.stream is not None:
            self.stream.close()


# (method, url, headers, data) -> the response; an HTTP error status is a response too, never raised.
Send = Callable[[str, str, dict[str, str], "bytes | IO[bytes] | None"], Opened]


class Connections:
    """A pool of kept-alive connections; :meth:`send` is a :data:`Send`. Redirects are not followed."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def send(self, method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        start = data.tell() if _rewindable(data) else None  # type: ignore[union-attr]
        while True:
            conn, reused = self._take(key)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and (data is None or isinstance(data, bytes) or start is not None):
                    if start is not None:
                        data.seek(start)  # type: ignore[union-attr]
                    continue  # the server had closed this idle connection: once more on a new one
                raise RegistryError(f"{parts.netloc}: {exc or type(exc).__name__}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise RegistryError(f"{parts.netloc}: {exc or type(exc).__name__}") from None
            return Opened(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp,
                          on_close=lambda: self._give_back(key, conn, resp))

    def close(self) -> None:
        """Close the idle connections (the pool stays usable: the next request opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    __del__ = close  # a pool dropped by its owner closes its connections rather than leaving them to the GC

    def _take(self, key: _Key) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        scheme, host = key
        if scheme == "https":
            import ssl  # only for TLS registries: ~10 ms

            return http.client.HTTPSConnection(host, timeout=self.timeout, blocksize=_BLOCK,
                                               context=ssl.create_default_context()), False
        return http.client.HTTPConnection(host, timeout=self.timeout, blocksize=_BLOCK), False

    def _give_back(self, key: _Key, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        """Keep ``conn`` for the next request once ``resp`` is read to its end; close it otherwise."""
        try:
            if not resp.isclosed() and (resp.length is None or resp.length > _DRAIN):
                raise OSError("too much left unread")  # e.g. a download abandoned half-way
            resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            return
        if resp.will_close:
            conn.close()
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _MAX_IDLE:
                idle.append(conn)
                return
        conn.close()


def _rewindable(data: bytes | IO[bytes] | None) -> bool:
    try:
        return data is not None and not isinstance(data, bytes) and data.seekable()
    except (OSError, ValueError):
        return False
