"""Small fakes behind imgbuild's own interfaces (no daemon, no network)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import IO, Callable

from imgbuild.builds.executor import BuildError, BuildInterrupted, BuildOutput
from imgbuild.builds.images import SavedImage, qualified_name
from imgbuild.builds.request import BuildRequest
from imgbuild.connections import Opened


class FakeExecutor:
    """Builds instantly (or after ``durations[label]`` s); image ids derive from the request itself."""

    def __init__(self, *, fail: frozenset[str] = frozenset(), durations: dict[str, float] | None = None,
                 build_refs: bool = False) -> None:
        self.fail = fail
        self.build_refs = build_refs  # metadata with a buildx.build.ref per build, as buildx writes it
        self.durations = durations or {}
        self.requests: list[BuildRequest] = []
        self.lock = threading.Lock()

    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput:
        with self.lock:
            self.requests.append(request)
        log(f"#1 building {request.label}")
        deadline = time.monotonic() + self.durations.get(request.label, 0.0)
        while time.monotonic() < deadline:
            if stop is not None and stop.wait(0.01):
                raise BuildInterrupted("interrupted", ("#1 CANCELED",))
        if request.label in self.fail:
            log("#2 ERROR: process did not complete successfully: exit code: 1")
            raise BuildError("docker buildx build failed: exit code: 1", ("#2 ERROR: exit code: 1",))
        digest = "sha256:" + hashlib.sha256(repr(request.argv()).encode()).hexdigest()
        meta = {"buildx.build.ref": f"default/default/{len(self.requests)}", "containerimage.digest": digest,
                "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json",
                                              "digest": digest, "size": 855},
                "image.name": ",".join(qualified_name(t) for t in request.tags)} if self.build_refs else {}
        for output in request.outputs:  # BuildKit's type=oci,tar=false exporter: a layout in dest
            fields = dict(f.split("=", 1) for f in output.split(","))
            if fields.get("type") == "oci":
                dest = Path(fields["dest"])
                (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
                (dest / "blobs" / "sha256" / digest[7:]).write_text("{}")
                (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 2}]}))
        return BuildOutput(image_id=digest, digest=digest, config_digest=None, metadata=json.dumps(meta))

    def request(self, label: str) -> BuildRequest:
        return next(r for r in self.requests if r.label == label)


class FakeImages:
    """The engine's image store in memory: tags -> image ids, saved layouts as dicts."""

    def __init__(self) -> None:
        self.refs: dict[str, str] = {}
        self.lock = threading.Lock()
        self.loaded: list[str] = []

    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]:
        with self.lock:
            out = {}
            for ref in refs:
                image_id = self.refs.get(ref, ref if ref in self.refs.values() else None)
                if image_id is not None:
                    out[ref] = frozenset(r for r, i in self.refs.items() if i == image_id)
            return out

    def tag(self, image_id: str, ref: str) -> None:
        with self.lock:
            self.refs[ref] = image_id

    def untag(self, ref: str) -> None:
        with self.lock:
            self.refs.pop(ref, None)

    def save(self, ref: str, workdir: Path) -> SavedImage:
        """A layout of two blobs: a layer every image shares, and one of the image's own; its index names the
        image id as its manifest (as the containerd image store's ids are)."""
        with self.lock:
            image_id = self.refs[ref]
        blob_dir = workdir / "blobs"
        blob_dir.mkdir()
        blobs = []
        for data in (b"shared layer", image_id.encode()):
            hexd = hashlib.sha256(data).hexdigest()
            (blob_dir / hexd).write_bytes(data)
            blobs.append((f"sha256:{hexd}", len(data), ""))
        index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                                    "digest": image_id, "size": 855}]}
        return SavedImage(index_json=json.dumps(index, sort_keys=True), blobs=tuple(blobs), blob_dir=blob_dir)

    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None:
        with self.lock:
            manifests = json.loads(index_json).get("manifests") or ()
            if manifests:
                self.refs[name] = manifests[0]["digest"]
            self.loaded.append(name)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistries:
    """Registry v2 servers in memory, keyed by host: manifests, blobs, uploads, mounts, one bearer token."""

    def __init__(self, *, token_host: str = "") -> None:
        self.manifests: dict[tuple[str, str, str], tuple[str, bytes]] = {}
        self.blobs: dict[tuple[str, str, str], bytes] = {}
        self.requests: list[str] = []
        self.token_host = token_host

    def send(self, method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        parts = urllib.parse.urlsplit(url)
        host, path, query = parts.netloc, parts.path, dict(urllib.parse.parse_qsl(parts.query))
        self.requests.append(f"{method} {host}{path}")
        if host == "auth.example.com":
            return Opened(200, {}, io.BytesIO(json.dumps({"token": "t0k"}).encode()))
        if host == self.token_host and headers.get("Authorization") != "Bearer t0k":
            return Opened(401, {"www-authenticate": 'Bearer realm="https://auth.example.com/token",service="reg"'},
                          io.BytesIO(b""))
        path = path.removeprefix("/v2/")
        if "/manifests/" in path:
            repo, ref = path.split("/manifests/")
            found = self.manifests.get((host, repo, ref))
            if method in ("GET", "HEAD"):
                if found is None:
                    return Opened(404, {}, io.BytesIO(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}'))
                return Opened(200, {"content-type": found[0], "docker-content-digest": sha(found[1])},
                              io.BytesIO(found[1] if method == "GET" else b""))
            assert isinstance(data, bytes)
            self.manifests[(host, repo, ref)] = (headers["Content-Type"], data)
            self.manifests[(host, repo, sha(data))] = (headers["Content-Type"], data)
            return Opened(201, {"docker-content-digest": sha(data)}, None)
        if path.endswith("/blobs/uploads/"):
            repo = path.removesuffix("/blobs/uploads/")
            if "mount" in query and (host, query["from"], query["mount"]) in self.blobs:
                self.blobs[(host, repo, query["mount"])] = self.blobs[(host, query["from"], query["mount"])]
                return Opened(201, {}, None)
            return Opened(202, {"location": f"/v2/{repo}/blobs/uploads/u1?_state=s"}, None)
        if "/blobs/uploads/" in path:
            repo = path.split("/blobs/uploads/")[0]
            body = data if isinstance(data, bytes) or data is None else data.read()
            assert isinstance(body, bytes) and sha(body) == query["digest"]
            assert int(headers["Content-Length"]) == len(body)
            self.blobs[(host, repo, query["digest"])] = body
            return Opened(201, {}, None)
        repo, digest = path.split("/blobs/")
        blob = self.blobs.get((host, repo, digest))
        if blob is None:
            return Opened(404, {}, io.BytesIO(b""))
        return Opened(200, {"content-length": str(len(blob))}, io.BytesIO(blob if method == "GET" else b""))

    def image(self, host: str, repo: str) -> str:
        """Push an index with one image (config + two layers) and an attestation manifest; the index digest."""
        children = []
        for name in ("image", "attestation"):
            config, layer1, layer2 = f"{name}-config".encode(), f"{name}-l1".encode(), b"shared-layer"
            for blob in (config, layer1, layer2):
                self.blobs[(host, repo, sha(blob))] = blob
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": {"digest": sha(config), "size": len(config)},
                                   "layers": [{"digest": sha(layer1), "size": len(layer1)},
                                              {"digest": sha(layer2), "size": len(layer2)},
                                              {"digest": sha(b"foreign"), "size": 7, "urls": ["https://x"]}]}).encode()
            self.manifests[(host, repo, sha(manifest))] = ("application/vnd.oci.image.manifest.v1+json", manifest)
            children.append({"digest": sha(manifest), "size": len(manifest)})
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": children}).encode()
        self.manifests[(host, repo, sha(index))] = ("application/vnd.oci.image.index.v1+json", index)
        return sha(index)
