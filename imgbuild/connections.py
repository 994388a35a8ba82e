"""HTTP for the Registry v2 API: kept-alive connections, shared by the threads of a push.

A push of many images is hundreds of small requests (HEADs, upload sessions, manifests) to one registry.
``urllib`` opens a TCP (and TLS) connection for each; here a connection is returned to a pool once its
response has been read, and the next request to the same scheme and host takes it. A connection is
used by one request at a time, so a thread that streams a download from a registry into an upload to
the same registry simply holds two.

A request on a kept-alive connection that the server closed in the meantime (its idle timeout) fails
before any answer; it is sent again once on a new connection, if its body can be sent again.

Requests go through the proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name, unless ``NO_PROXY`` exempts the host
(:mod:`imgbuild.proxies`): ``CONNECT`` tunnels for TLS registries, absolute URIs for plain-HTTP ones.

Errors are :class:`RegistryError` with what a retry decision needs (whether trying again can help, the
status, the server's ``Retry-After``), so nothing downstream has to read the message text.
"""

from __future__ import annotations

import email.utils
import http.client
import threading
import time
import urllib.parse
from typing import IO, Callable, Mapping

from imgbuild.proxies import Proxy, ProxyError, ProxySettings

RETRY_AFTER_CAP = 60.0  # seconds: a registry asking for longer is not waited for that long


class RegistryError(Exception):
    """A registry refused, failed or could not be reached (the message says which and why).

    ``transient``: trying again later can succeed (the connection failed or dropped; HTTP 408, 429 or a
    5xx other than 501/505). ``status`` is the HTTP status when there was one; ``retry_after`` the seconds
    the server asked to wait (capped at :data:`RETRY_AFTER_CAP`).
    """

    def __init__(self, message: str, *, status: int | None = None, transient: bool | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient_status(status) if transient is None else transient
        self.retry_after = retry_after


def transient_status(status: int | None) -> bool:
    """Whether an HTTP status can turn into success by asking again later."""
    return status is not None and (status in (408, 429) or (500 <= status < 600 and status not in (501, 505)))


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), capped; None without one."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


_Key = tuple[str, str]  # (scheme, host[:port])
_MAX_IDLE = 32  # per scheme and host: as many as a push keeps busy (images at once, their blobs)
_DRAIN = 1 << 20  # an unread rest of a response up to this size is read to keep the connection
_BLOCK = 1 << 20  # request bodies are sent in blocks of this size (http.client's default: 8 KiB)


class Opened:
    """An HTTP response being read: status, lower-case headers, the body as a stream (an error status too)."""

    def __init__(self, status: int, headers: dict[str, str], stream: IO[bytes] | None,
                 on_close: Callable[[], None] | None = None, *, replayed: bool = False) -> None:
        self.status = status
        self.headers = headers
        self.stream = stream
        self._on_close = on_close
        # Sent a second time after its kept-alive connection dropped. The server may have acted on the first
        # one (a proxy that drops answers, not idle connections): a refusal now, such as an upload session
        # already used up, says the connection dropped rather than that the request was wrong.
        self.replayed = replayed

    def read(self) -> bytes:
        try:
            return self.stream.read() if self.stream is not None else b""
        except (OSError, http.client.HTTPException) as exc:  # the connection dropped half-way
            raise RegistryError(f"reading a response: {exc or type(exc).__name__}", transient=True) from None

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

    def __init__(self, timeout: float = 60.0, *, environ: Mapping[str, str] | None = None) -> None:
        self.timeout = timeout
        try:
            self.proxies = ProxySettings.from_environ(environ)
            self._proxy_problem = ""
        except ProxyError as exc:  # said on the first request, where it can fail a push with a clear message
            self.proxies, self._proxy_problem = ProxySettings(), str(exc)
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def send(self, method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        if self._proxy_problem:
            raise RegistryError(self._proxy_problem)
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = self.proxies.for_url(parts.scheme, parts.netloc)
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # through a proxy, a plain-HTTP request names its URL
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        via = f" (through the proxy {proxy.netloc})" if proxy else ""
        start = data.tell() if _rewindable(data) else None  # type: ignore[union-attr]
        replayed = False
        while True:
            conn, reused = self._take(key, proxy)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and (data is None or isinstance(data, bytes) or start is not None):
                    if start is not None:
                        data.seek(start)  # type: ignore[union-attr]
                    replayed = True
                    continue  # the server had closed this idle connection: once more on a new one
                raise RegistryError(f"{parts.netloc}{via}: {exc or type(exc).__name__}", transient=True) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise RegistryError(f"{parts.netloc}{via}: {exc or type(exc).__name__}",
                                    transient=_may_pass(exc)) from None
            return Opened(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp,
                          on_close=lambda: self._give_back(key, conn, resp), replayed=replayed)

    def close(self) -> None:
        """Close the idle connections (the pool stays usable: the next request opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    __del__ = close  # a pool dropped by its owner closes its connections rather than leaving them to the GC

    def _take(self, key: _Key, proxy: Proxy | None) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        scheme, host = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            import ssl  # only for TLS registries: ~10 ms

            conn = http.client.HTTPSConnection(proxy.netloc if proxy else host, timeout=self.timeout,
                                               blocksize=_BLOCK, context=ssl.create_default_context())
            if proxy is not None:
                tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(host, headers=tunnel)  # CONNECT host:port, then TLS with the registry itself
            return conn, False
        return http.client.HTTPConnection(proxy.netloc if proxy else host, timeout=self.timeout,
                                          blocksize=_BLOCK), False

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


def _may_pass(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` (no HTTP answer) can succeed when tried again: a connection
    refused, reset, timed out or not resolved can; a certificate the registry's name does not verify cannot,
    nor a proxy that refused the tunnel (http.client raises a bare OSError, without errno, for that)."""
    if type(exc) is OSError and exc.errno is None:
        return False
    import ssl  # already loaded when TLS was tried

    return not isinstance(exc, ssl.SSLCertVerificationError)


def _rewindable(data: bytes | IO[bytes] | None) -> bool:
    try:
        return data is not None and not isinstance(data, bytes) and data.seekable()
    except (OSError, ValueError):
        return False
