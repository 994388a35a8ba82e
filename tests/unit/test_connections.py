"""The kept-alive connection pool, against a small HTTP server in this process (loopback, no process)."""

from __future__ import annotations

import io
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from imgbuild.connections import Connections, RegistryError
from tests.conftest import serving


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.peers: list[tuple[str, int]] = []  # the client address of each request: one per connection
        self.bodies: list[bytes] = []
        self.close_after: set[int] = set()  # request numbers after which the server drops the connection

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes) -> None:
        self.server.peers.append(self.client_address)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Content-Digest", "sha256:abc")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if len(self.server.peers) in self.server.close_after:
            self.close_connection = True

    def do_GET(self) -> None:
        if self.path.startswith("/big"):
            self._answer(200, b"x" * (4 << 20))
        else:
            self._answer(404 if self.path.startswith("/missing") else 200, b"hello " + self.path.encode())

    def do_HEAD(self) -> None:
        self._answer(200, b"")

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(body)
        self._answer(201, b"")


@pytest.fixture
def server() -> Iterator[Server]:
    with serving(Server()) as srv:
        yield srv


def test_requests_share_one_kept_alive_connection(server: Server) -> None:
    pool = Connections(timeout=5)
    for i in range(5):
        resp = pool.send("GET", f"{server.url}/v2/x/{i}", {}, None)
        assert (resp.status, resp.read()) == (200, f"hello /v2/x/{i}".encode())
        resp.close()
    head = pool.send("HEAD", f"{server.url}/v2/x/manifests/t", {}, None)
    head.close()
    assert head.headers["docker-content-digest"] == "sha256:abc"
    assert len(server.peers) == 6 and len(set(server.peers)) == 1
    pool.close()


def test_an_error_status_is_a_response_and_the_connection_is_kept(server: Server) -> None:
    pool = Connections(timeout=5)
    resp = pool.send("GET", f"{server.url}/missing", {}, None)
    assert resp.status == 404
    resp.close()  # unread: the small rest is drained, so the connection can be reused
    pool.send("GET", f"{server.url}/again", {}, None).close()
    assert len(set(server.peers)) == 1
    pool.close()


def test_two_open_responses_use_two_connections(server: Server) -> None:
    """A download streamed into an upload to the same registry holds two connections at once."""
    pool = Connections(timeout=5)
    first = pool.send("GET", f"{server.url}/a", {}, None)
    second = pool.send("GET", f"{server.url}/b", {}, None)
    assert (first.read(), second.read()) == (b"hello /a", b"hello /b")
    first.close()
    second.close()
    assert len(set(server.peers)) == 2
    pool.close()


def test_a_response_abandoned_half_way_closes_its_connection(server: Server) -> None:
    pool = Connections(timeout=5)
    big = pool.send("GET", f"{server.url}/big", {}, None)
    assert big.stream is not None and big.stream.read(10) == b"x" * 10
    big.close()  # 4 MiB left unread: not worth draining, the connection is dropped
    small = pool.send("GET", f"{server.url}/after", {}, None)
    assert small.read() == b"hello /after"
    small.close()
    assert len(set(server.peers)) == 2
    pool.close()


@pytest.mark.parametrize("body", [b"payload", "file"])
def test_a_connection_the_server_closed_is_replaced_and_the_request_sent_again(server: Server, body: object) -> None:
    pool = Connections(timeout=5)
    server.close_after = {1}  # the server drops the kept-alive connection after the first answer
    pool.send("GET", f"{server.url}/first", {}, None).close()
    data = io.BytesIO(b"payload") if body == "file" else body
    resp = pool.send("PUT", f"{server.url}/upload", {"Content-Length": "7"}, data)  # type: ignore[arg-type]
    resp.close()
    assert resp.status == 201
    assert server.bodies == [b"payload"]
    assert len(set(server.peers)) == 2
    pool.close()


def test_an_unreachable_host_is_a_registry_error() -> None:
    with Server() as srv:  # bound, then closed: nothing listens on the port any more
        url = srv.url
    with pytest.raises(RegistryError, match="127.0.0.1"):
        Connections(timeout=2).send("GET", f"{url}/v2/", {}, None)
