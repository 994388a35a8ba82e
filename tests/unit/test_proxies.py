"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY: which requests go through a proxy (Go's rules, as the engine's), and
the registry client going through a small forwarding proxy in this process that records what it forwarded."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from imgbuild.connections import Connections, RegistryError
from imgbuild.proxies import ProxyError, ProxySettings
from imgbuild.registry import Reference, RegistryClient
from tests.conftest import serving

DATA = Path(__file__).parent / "data"  # a self-signed certificate for registry.example, for the TLS fake only
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), [
    ("", "https://ghcr.io", True),
    ("", "https://localhost:5000", False),  # loopback is never proxied (Go, and so the engine)
    ("", "http://127.0.0.1:5000", False),
    ("", "http://[::1]:5000", False),
    ("*", "https://ghcr.io", False),
    ("ghcr.io", "https://ghcr.io", False),
    ("ghcr.io", "https://eu.ghcr.io", False),  # a name covers its subdomains
    ("ghcr.io", "https://notghcr.io", True),
    (".ghcr.io", "https://ghcr.io", True),  # a leading dot: subdomains only
    (".ghcr.io", "https://eu.ghcr.io", False),
    (" quay.io , GHCR.IO ", "https://ghcr.io", False),  # spaces and case
    ("ghcr.io:443", "https://ghcr.io", False),  # the port has to match when given
    ("ghcr.io:5000", "https://ghcr.io", True),
    ("reg.corp:5000", "https://reg.corp:5000", False),
    ("10.0.0.0/8", "https://10.1.2.3:5000", False),  # CIDR
    ("10.0.0.0/8", "https://11.1.2.3", True),
    ("10.1.2.3", "https://10.1.2.3", False),
    ("fd00::/8", "https://[fd00::5]:443", False),
])
def test_no_proxy_rules(no_proxy: str, url: str, proxied: bool) -> None:
    settings = ProxySettings.from_environ({"HTTPS_PROXY": "proxy.corp:3128", "HTTP_PROXY": "http://proxy.corp:3128",
                                           "NO_PROXY": no_proxy})
    scheme, _, netloc = url.partition("://")
    assert (settings.for_url(scheme, netloc) is not None) is proxied


def test_each_scheme_has_its_own_variable_and_upper_case_wins() -> None:
    settings = ProxySettings.from_environ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"})
    assert settings.https is not None and settings.https.netloc == "upper:2"
    assert settings.for_url("http", "registry.example") is None  # no HTTP_PROXY: plain HTTP goes direct
    assert ProxySettings.from_environ({"http_proxy": "proxy:8080"}).for_url("http", "r.example") is not None


def test_a_proxy_password_stays_out_of_reprs_and_errors() -> None:
    settings = ProxySettings.from_environ({"HTTPS_PROXY": "http://alice:pr0xy-s3cret@proxy.corp:3128"})
    assert "pr0xy-s3cret" not in repr(settings)
    with pytest.raises(ProxyError, match="HTTPS_PROXY") as exc:
        ProxySettings.from_environ({"HTTPS_PROXY": "socks5://alice:pr0xy-s3cret@proxy.corp:1080"})
    assert "pr0xy-s3cret" not in str(exc.value)


# -- through a real (in-process) proxy ----------------------------------------------------------------------


class Registry(ThreadingHTTPServer):
    """A registry fake answering a manifest HEAD; over TLS with registry.example's certificate when asked."""

    daemon_threads = True

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), RegistryHandler)
        self.seen: list[str] = []
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(DATA / "registry.example.pem", DATA / "registry.example.key")

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        if self.tls is None:
            return sock, addr
        try:
            return self.tls.wrap_socket(sock, server_side=True), addr
        except OSError:  # a client that does not trust us hangs up during the handshake
            sock.close()
            raise


class RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Registry

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.server.seen.append(f"{self.command} {self.path} Host={self.headers['Host']} "
                                f"Proxy-Authorization={self.headers.get('Proxy-Authorization')}")
        self.send_response(200)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Proxy(ThreadingHTTPServer):
    """A forwarding proxy: CONNECT tunnels and absolute-URI requests, to the addresses in ``routes``."""

    daemon_threads = True

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.routes = routes  # "host:port" the client asked for -> where that really is
        self.forwarded: list[str] = []  # each request line, with the Proxy-Authorization it carried

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, *args: object) -> None:
        pass

    def _record(self) -> None:
        self.server.forwarded.append(f"{self.command} {self.path} {self.headers.get('Proxy-Authorization')}")

    def do_CONNECT(self) -> None:
        self._record()
        if self.path not in self.server.routes:
            self.send_error(403, "Forbidden")  # the proxy's policy: not this host
            return
        self.close_connection = True
        with socket.create_connection(self.server.routes[self.path], timeout=5) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            pair = {self.connection: upstream, upstream: self.connection}
            try:
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 5)
                    data = ready[0].recv(65536) if ready else b""
                    if not data:
                        return
                    pair[ready[0]].sendall(data)
            except OSError:
                return  # either end hung up

    def do_HEAD(self) -> None:
        self._record()
        netloc = self.path.split("/")[2]
        conn = http.client.HTTPConnection(*self.server.routes[netloc], timeout=5)
        conn.request(self.command, self.path.split(netloc, 1)[1],
                     headers={k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"})
        resp = conn.getresponse()
        resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            self.send_header(k, v)
        self.end_headers()
        conn.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with serving(Proxy({})) as p:
        yield p


def test_plain_http_registry_requests_go_through_http_proxy_by_absolute_uri(proxy: Proxy) -> None:
    with serving(Registry()) as registry:
        proxy.routes["registry.example:5000"] = registry.server_address  # type: ignore[assignment]
        pool = Connections(timeout=5, environ={"HTTP_PROXY": f"http://bob:pa%40ss@{proxy.url[7:]}"})
        client = RegistryClient(insecure_hosts=frozenset({"registry.example:5000"}), send=pool.send)
        for tag in ("v1", "v2"):
            assert client.tag_digest(Reference.parse(f"registry.example:5000/team/api:{tag}")) == DIGEST
        pool.close()
    auth = "Basic Ym9iOnBhQHNz"  # bob:pa@ss, the URL's escapes undone
    assert proxy.forwarded == [f"HEAD http://registry.example:5000/v2/team/api/manifests/{t} {auth}" for t in ("v1", "v2")]
    # the registry sees an ordinary request; the proxy's credentials stop at the proxy
    assert registry.seen[0] == "HEAD /v2/team/api/manifests/v1 Host=registry.example:5000 Proxy-Authorization=None"


def test_tls_registry_requests_are_tunnelled_with_connect(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(DATA / "registry.example.pem"))  # trust the fake's certificate
    with serving(Registry(tls=True)) as registry:
        proxy.routes["registry.example:443"] = registry.server_address  # type: ignore[assignment]
        pool = Connections(timeout=5, environ={"HTTPS_PROXY": f"http://bob:pw@{proxy.url[7:]}"})
        client = RegistryClient(send=pool.send)
        for tag in ("v1", "v2"):
            assert client.tag_digest(Reference.parse(f"registry.example/team/api:{tag}")) == DIGEST
        pool.close()
    # one tunnel, kept alive for both requests; TLS end to end (the registry saw both, the proxy only CONNECT)
    assert proxy.forwarded == ["CONNECT registry.example:443 Basic Ym9iOnB3"]
    assert registry.seen == [f"HEAD /v2/team/api/manifests/{t} Host=registry.example Proxy-Authorization=None"
                             for t in ("v1", "v2")]


def test_no_proxy_and_loopback_registries_are_reached_directly(proxy: Proxy) -> None:
    with serving(Registry()) as registry:
        host = f"localhost:{registry.server_address[1]}"
        pool = Connections(timeout=5, environ={"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url})
        assert RegistryClient(send=pool.send).tag_digest(Reference.parse(f"{host}/team/api:v1")) == DIGEST
        pool.close()
    assert proxy.forwarded == [] and len(registry.seen) == 1


def test_a_proxy_that_refuses_the_tunnel_is_a_final_error_without_its_password(proxy: Proxy) -> None:
    pool = Connections(timeout=5, environ={"HTTPS_PROXY": f"http://bob:pr0xy-s3cret@{proxy.url[7:]}"})
    # the proxy does not route registry.example: it refuses the tunnel (403)
    with pytest.raises(RegistryError) as exc:
        RegistryClient(send=pool.send).tag_digest(Reference.parse("registry.example/team/api:v1"))
    assert "registry.example" in str(exc.value) and "pr0xy-s3cret" not in str(exc.value)
    assert exc.value.transient is False
    pool.close()


def test_a_certificate_that_does_not_verify_is_a_final_error(proxy: Proxy, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))  # the fake's certificate is not trusted
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with serving(Registry(tls=True)) as registry:
        proxy.routes["registry.example:443"] = registry.server_address  # type: ignore[assignment]
        pool = Connections(timeout=5, environ={"HTTPS_PROXY": proxy.url})
        with pytest.raises(RegistryError, match="certificate verify failed") as exc:
            RegistryClient(send=pool.send).tag_digest(Reference.parse("registry.example/team/api:v1"))
        pool.close()
    assert exc.value.transient is False
