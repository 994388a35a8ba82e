"""A TCP proxy that adds network latency, for benchmarks: a registry on loopback made to answer like one
across a network.

Every byte is delivered ``rtt / 2`` after it was sent, in each direction, and a new connection costs one
round trip before its first byte (the TCP handshake to a distant host). Bandwidth is not limited and
nothing is reordered: it models distance, not a slow link. Runs its own event loop in a thread:

    with LatencyProxy(("127.0.0.1", 5000), rtt=0.020) as port:
        ...  # talk to 127.0.0.1:port
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType


class LatencyProxy:
    def __init__(self, upstream: tuple[str, int], *, rtt: float) -> None:
        self.upstream = upstream
        self.rtt = rtt
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> int:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return self.port

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        """Stop listening and drop every connection (a client such as dockerd keeps idle ones open)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            await asyncio.sleep(self.rtt)  # the handshake with a distant server
            up_r, up_w = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_w)
            try:
                await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
            finally:
                up_w.close()
                self._writers.discard(up_w)
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away: so does the other
        finally:
            client_w.close()
            self._writers.discard(client_w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk delivered half a round trip after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + self.rtt / 2, data))
                if not data:
                    break
            await delivering
        finally:
            delivering.cancel()
