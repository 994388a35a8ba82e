"""The engine API client against a small fake engine on a unix socket in this process (no daemon)."""

from __future__ import annotations

import hashlib
import io
import json
import socketserver
import tarfile
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

from imgbuild.builds.images import Images
from imgbuild.engine_gateway import EngineGateway
from imgbuild.engine_api import EngineAPI, EngineAPIError, connect, split_ref
from tests.conftest import serving

IMAGE = "sha256:" + "a" * 64


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Images by id with their names; the handful of endpoints imgbuild calls."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, Handler)
        self.names: dict[str, str] = {"app:v1": IMAGE}  # name -> image id
        self.requests: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: FakeEngine

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _image(self, name: str) -> str | None:
        return name if name in self.server.names.values() else self.server.names.get(name)

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/version":
            return self._send(200, {"Version": "26.1.5"})
        if path == "/images/get":
            name = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))["names"]
            if self._image(name) is None:
                return self._send(404, {"message": f"No such image: {name}"})
            body = _layout_tar()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()  # no length: the engine streams, the end of the answer is the end of the tar
            self.wfile.write(body)
            self.close_connection = True
            return None
        name, _, what = path.removeprefix("/images/").rpartition("/")
        image = self._image(name)
        if image is None:
            return self._send(404, {"message": f"No such image: {name}"})
        if what == "json":
            return self._send(200, {"Id": image, "RepoTags": sorted(n for n, i in self.server.names.items() if i == image)})
        return self._send(200, [{"CreatedBy": "RUN make", "Size": 2048, "Comment": "buildkit.dockerfile.v0"},
                                {"CreatedBy": "", "Size": 4096, "Comment": "base"}])

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        parts = urllib.parse.urlsplit(self.path)
        name = urllib.parse.unquote(parts.path).removeprefix("/images/").removesuffix("/tag")
        query = dict(urllib.parse.parse_qsl(parts.query))
        image = self._image(name)
        if image is None:
            return self._send(404, {"message": f"No such image: {name}"})
        self.server.names[f"{query['repo']}:{query['tag']}"] = image
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:
        self.server.requests.append(f"DELETE {self.path}")
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).removeprefix("/images/")
        if self.server.names.pop(name, None) is None:
            return self._send(404, {"message": f"No such image: {name}"})
        self._send(200, [{"Untagged": name}])


LAYER = b"layer bytes" * 100


def _layout_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps({"manifests": [{"digest": IMAGE,
                                                      "annotations": {"io.containerd.image.name": "app:v1"}}]}).encode()),
                           (f"blobs/sha256/{hashlib.sha256(LAYER).hexdigest()}", LAYER)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    with serving(FakeEngine(str(tmp_path / "docker.sock"))) as srv:
        yield srv


def test_tag_inspect_untag_and_history_over_the_socket(engine: FakeEngine) -> None:
    api = EngineAPI(engine.server_address)  # type: ignore[arg-type]
    assert api.version() == "26.1.5"
    assert api.image_id("app:v1") == IMAGE and api.image_id("nothing:here") is None
    api.tag(IMAGE, "localhost:5000/team/app:imgbuild-1234")
    assert engine.names["localhost:5000/team/app:imgbuild-1234"] == IMAGE
    assert api.image_id("localhost:5000/team/app:imgbuild-1234") == IMAGE
    api.untag("localhost:5000/team/app:imgbuild-1234")
    api.untag("localhost:5000/team/app:imgbuild-1234")  # already gone: fine, a leftover name is harmless
    assert "localhost:5000/team/app:imgbuild-1234" not in engine.names and engine.names["app:v1"] == IMAGE
    assert [s["Size"] for s in api.history("app:v1")] == [2048, 4096]
    with pytest.raises(EngineAPIError, match="No such image"):
        api.tag("missing:v1", "other:v1")


def test_images_use_the_socket_and_no_process(engine: FakeEngine) -> None:
    """Unit tests refuse to start processes: these calls can only have gone over the socket."""
    images = Images(EngineGateway.decided(EngineAPI(engine.server_address)))  # type: ignore[arg-type]
    images.tag(IMAGE, "app:latest")
    images.untag("app:v1")
    assert engine.names == {"app:latest": IMAGE}
    assert images.history("app:latest")[0]["CreatedBy"] == "RUN make"


def test_save_streams_the_layout_into_a_directory(engine: FakeEngine, tmp_path: Path) -> None:
    saved = Images(EngineGateway.decided(EngineAPI(engine.server_address))).save("app:v1", tmp_path)  # type: ignore[arg-type]
    assert saved.blobs == ((f"sha256:{hashlib.sha256(LAYER).hexdigest()}", len(LAYER), ""),)
    assert (saved.blob_dir / hashlib.sha256(LAYER).hexdigest()).read_bytes() == LAYER
    assert json.loads(saved.index_json) == {"manifests": [{"digest": IMAGE}]}  # the name is ours to give
    with pytest.raises(EngineAPIError, match="No such image"):
        EngineAPI(engine.server_address).save("missing:v1", tmp_path / "x")  # type: ignore[arg-type]


def test_connect_only_to_a_local_socket_that_exists(engine: FakeEngine, tmp_path: Path) -> None:
    assert connect({"DOCKER_HOST": f"unix://{engine.server_address}"}) is not None
    assert connect({"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}) is None
    assert connect({"DOCKER_HOST": "tcp://10.0.0.1:2376"}) is None  # the CLI knows how to get there
    assert connect({"DOCKER_HOST": "ssh://builder@ci"}) is None


def test_a_dead_socket_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    srv = FakeEngine(str(path))
    srv.server_close()  # the file stays, nothing listens
    with pytest.raises(EngineAPIError, match="stale.sock"):
        EngineAPI(str(path), timeout=2).version()


@pytest.mark.parametrize(("ref", "split"), [
    ("app:v1", ("app", "v1")),
    ("localhost:5000/team/app:imgbuild-12", ("localhost:5000/team/app", "imgbuild-12")),
    ("localhost:5000/team/app", ("localhost:5000/team/app", "latest")),
    ("app", ("app", "latest")),
])
def test_split_ref(ref: str, split: tuple[str, str]) -> None:
    assert split_ref(ref) == split
