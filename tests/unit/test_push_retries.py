"""What a push tries again, and what it does not: decided by the kind of failure (a dropped connection, HTTP
408/429/5xx, a `docker push` line that says so), never by the text around it, so a refusal from
``localhost:5000`` is not taken for a server error. Waits are a fake ``sleep``, recorded."""

from __future__ import annotations

import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Iterator

import pytest

from imgbuild.connections import Connections, Opened
from imgbuild.push import PushError, Pusher, PushPlan, docker_push_transient
from imgbuild.regcopy import Copier
from imgbuild.registry import Reference, RegistryClient
from tests.conftest import serving
from tests.unit.fakes import FakeRegistries
from tests.unit.test_push import MANIFEST, REFS, FakeEngine, FakeRegistry, _index_on_disk


class Scripted:
    """The in-memory registries, with the next answers to ``localhost:5000`` scripted: (status, headers)."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.regs = FakeRegistries()
        self.answers = list(answers)
        self.requests: list[str] = []

    def send(self, method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        self.requests.append(f"{method} {url}")
        if self.answers:
            status, extra = self.answers.pop(0)
            return Opened(status, extra, io.BytesIO(b'{"errors":[{"code":"X","message":"scripted"}]}'))
        return self.regs.send(method, url, headers, data)


def pusher(send: Scripted, sleeps: list[float]) -> Pusher:
    return Pusher(FakeEngine(FakeRegistry(), MANIFEST), RegistryClient(send=send.send), sleep=sleeps.append,
                  copier=Copier(send=send.send))


def push(tmp_path: Path, fake: Scripted, sleeps: list[float]) -> tuple[str, str | None]:
    digest = _index_on_disk(tmp_path)
    result = pusher(fake, sleeps).push(PushPlan(label="//api:api", image_id=digest, refs=REFS, blob_dir=tmp_path))
    return digest, result.error


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_from_localhost_5000_is_not_retried(tmp_path: Path, status: int) -> None:
    """The host name holds "500": before issue #14 the message matched a 5xx pattern and was sent 4 times."""
    fake = Scripted((status, {"www-authenticate": 'Basic realm="r"'} if status == 401 else {}))
    sleeps: list[float] = []
    _, error = push(tmp_path, fake, sleeps)
    assert error is not None and "failed after 1 attempt(s)" in error and sleeps == []
    assert len(fake.requests) == 1


def test_a_503_is_retried_with_backoff_and_the_push_lands(tmp_path: Path) -> None:
    fake = Scripted((503, {}), (503, {}))
    sleeps: list[float] = []
    digest, error = push(tmp_path, fake, sleeps)
    assert error is None and sleeps == [0.5, 1.0]
    assert fake.regs.manifests[("localhost:5000", "team/api", "v1")][1] == (tmp_path / digest[7:]).read_bytes()


def test_a_429_waits_as_long_as_retry_after_says_capped(tmp_path: Path) -> None:
    fake = Scripted((429, {"retry-after": "7"}), (429, {"retry-after": "86400"}))
    sleeps: list[float] = []
    _, error = push(tmp_path, fake, sleeps)
    assert error is None and sleeps == [7.0, 60.0]


def test_a_501_is_final(tmp_path: Path) -> None:
    sleeps: list[float] = []
    _, error = push(tmp_path, Scripted((501, {})), sleeps)
    assert error is not None and "HTTP 501" in error and sleeps == []


@pytest.mark.parametrize("replayed", [True, False])
def test_an_upload_refused_once_replayed_after_a_dropped_connection_starts_over(tmp_path: Path,
                                                                                replayed: bool) -> None:
    """A kept-alive connection dropped after the registry had taken an upload: sent again, the upload's
    session is gone (404). That is the dropped connection speaking, not a wrong request: the push starts
    over. The same 404 to a request sent once is final."""
    fake = Scripted()
    refused: list[str] = []

    def send(method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        answer = fake.send(method, url, headers, data)
        if method == "PUT" and "/blobs/uploads/" in url and not refused:
            refused.append(url)
            return Opened(404, {}, io.BytesIO(b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}'), replayed=replayed)
        return answer

    sleeps: list[float] = []
    digest = _index_on_disk(tmp_path)
    result = Pusher(FakeEngine(FakeRegistry(), MANIFEST), RegistryClient(send=send), sleep=sleeps.append,
                    copier=Copier(send=send)).push(PushPlan(label="//api:api", image_id=digest, refs=REFS,
                                                            blob_dir=tmp_path))
    if replayed:
        assert result.error is None and sleeps == [0.5] and len(refused) == 1
        assert fake.regs.manifests[("localhost:5000", "team/api", "v1")][1] == (tmp_path / digest[7:]).read_bytes()
    else:
        assert result.error is not None and "HTTP 404 (BLOB_UPLOAD_UNKNOWN" in result.error and sleeps == []


@pytest.mark.parametrize(("line", "transient"), [
    ('Head "http://localhost:5000/v2/team/api/manifests/v1": EOF', True),
    ("read tcp 127.0.0.1:41234->127.0.0.1:5000: read: connection reset by peer", True),
    ('Get "http://localhost:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused', True),
    ("received unexpected HTTP status: 503 Service Unavailable", True),
    ("toomanyrequests: You have reached your pull rate limit.", True),
    ("net/http: TLS handshake timeout", True),
    ("read tcp 127.0.0.1:41234->127.0.0.1:5000: i/o timeout", True),
    ('Get "https://r.example/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)', True),
    ("unauthorized: authentication required", False),
    ("denied: requested access to the resource is denied", False),
    # places are not words: a host, a port, a digest or a repository holding 500, 503, EOF or timeout
    ("unknown: repository localhost:5000/team/api not found", False),
    ("unauthorized: access to registry500.example.com/eof/timeout denied", False),
    ("manifest invalid: sha256:5030000000000000000000000000000000000000000000000000000000000000", False),
])
def test_docker_push_lines_are_classified_by_their_words_not_their_places(line: str, transient: bool) -> None:
    assert docker_push_transient(line) is transient


def test_a_docker_push_that_failed_transiently_is_pushed_again() -> None:
    class Flaky(FakeEngine):
        def push(self, ref: str) -> str | None:
            if not self.pushed:
                self.pushed.append("(failed)")
                line = f'Put "http://{ref.split("/")[0]}/v2/team/api/blobs/uploads/x": EOF'
                raise PushError(line, transient=docker_push_transient(line))
            return super().push(ref)

    registry = FakeRegistry()
    sleeps: list[float] = []
    result = Pusher(Flaky(registry, MANIFEST), registry, sleep=sleeps.append).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id="sha256:" + "c" * 64, refs=REFS[:1]))
    assert result.error is None and sleeps == [0.5] and registry.tags[str(REFS[0])] == MANIFEST


# -- dropped connections, over real sockets -----------------------------------------------------------------


class HTTPRegistry(ThreadingHTTPServer):
    """The in-memory registries behind a real HTTP server on loopback, with connection faults on demand."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RegistryHandler)
        self.regs = FakeRegistries()
        self.drop_next = 0  # connections to drop after reading their first request, before answering
        self.close_kept_alive = False  # close each connection after its first answer (no Connection: close)
        self.lock = threading.Lock()
        self.dropped = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPRegistry

    def log_message(self, *args: object) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            drop = self.server.drop_next > 0
            if drop:
                self.server.drop_next -= 1
                self.server.dropped += 1
        if drop:
            self.connection.shutdown(socket.SHUT_RDWR)  # the request was read: no answer, ever
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items()}
        answer = self.server.regs.send(self.command, f"http://{self.server.host}{self.path}", headers, body or None)
        data = answer.read()
        self.send_response(answer.status)
        for k, v in answer.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = self.server.close_kept_alive

    do_GET = do_HEAD = do_PUT = do_POST = _any


@pytest.fixture
def registry() -> Iterator[HTTPRegistry]:
    with serving(HTTPRegistry()) as srv:
        yield srv


def _push_over_http(tmp_path: Path, registry: HTTPRegistry, sleeps: list[float]) -> tuple[str, str | None]:
    digest = _index_on_disk(tmp_path)
    pool = Connections(timeout=5)
    pusher = Pusher(FakeEngine(FakeRegistry(), MANIFEST), RegistryClient(send=pool.send), sleep=sleeps.append,
                    copier=Copier(send=pool.send, workers=1))
    refs = tuple(Reference.parse(f"{registry.host}/team/api:{tag}") for tag in ("v1", "latest"))
    result = pusher.push(PushPlan(label="//api:api", image_id=digest, refs=refs, blob_dir=tmp_path))
    pool.close()
    return digest, result.error


def test_a_dropped_connection_is_retried_and_the_push_lands(tmp_path: Path, registry: HTTPRegistry) -> None:
    """The fault of issue #14: "failed after 1 attempt(s): Remote end closed connection without response"."""
    registry.drop_next = 1
    sleeps: list[float] = []
    digest, error = _push_over_http(tmp_path, registry, sleeps)
    assert error is None and registry.dropped == 1 and sleeps == [0.5]
    assert registry.regs.manifests[(registry.host, "team/api", "v1")][1] == (tmp_path / digest[7:]).read_bytes()


def test_kept_alive_connections_the_registry_closes_are_reopened(tmp_path: Path, registry: HTTPRegistry) -> None:
    registry.close_kept_alive = True  # every connection serves one request and is closed without warning
    sleeps: list[float] = []
    digest, error = _push_over_http(tmp_path, registry, sleeps)
    assert error is None and sleeps == []  # reopened at once: not even a retry with a wait
    assert registry.regs.manifests[(registry.host, "team/api", "latest")][1] == (tmp_path / digest[7:]).read_bytes()


def test_retry_after_in_seconds_or_as_a_date_capped() -> None:
    from email.utils import formatdate

    from imgbuild.connections import retry_after

    now = 1_700_000_000.0
    assert retry_after({"retry-after": "12"}, now=now) == 12.0
    assert retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == 30.0
    assert retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert retry_after({"retry-after": "3600"}, now=now) == 60.0
    assert retry_after({"retry-after": "soon"}, now=now) is None and retry_after({}, now=now) is None
