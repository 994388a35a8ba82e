"""A TCP proxy in front of a real server that drops connections the way a flaky network or load balancer
does: the request goes through, the answer does not, and the connection is closed under the client.

``drops`` connections are cut, each the first to have carried at least ``after`` bytes of requests, at the
moment the server starts answering (so the server may have acted on the request: a retry must cope with
that); after that everything passes. Runs on threads of the test process:

    with DroppingProxy(("127.0.0.1", 5000), drops=1) as proxy:
        ...  # talk to 127.0.0.1:proxy.port; proxy.dropped says how many connections were cut
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType


class DroppingProxy:
    def __init__(self, upstream: tuple[str, int], *, drops: int = 1, after: int = 0) -> None:
        self.upstream = upstream
        self.after = after
        self.port = 0
        self.dropped = 0
        self._to_drop = drops
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DroppingProxy:
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._listener.close()
        for t in self._threads:
            t.join(timeout=10)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if ready:
                    client, _ = self._listener.accept()
                    self._spawn(self._pipe, client)
            except OSError:
                return

    def _drop_now(self) -> bool:
        with self._lock:
            if self._to_drop == 0:
                return False
            self._to_drop -= 1
            self.dropped += 1
            return True

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        sent = 0
        try:
            while not self._stopping.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        sent += len(data)
                    elif sent >= self.after and self._drop_now():
                        return  # the answer is never passed on; both ends are closed below
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
