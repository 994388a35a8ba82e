"""Moving images in and out of the engine: listing, ``docker save`` to an OCI layout, ``docker load``.

Saved images are OCI layouts (``index.json`` + ``blobs/sha256/*``); their blobs are what the target
cache stores content-addressed, so layers shared between images are stored once.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgbuild import proc
from imgbuild.engine_api import EngineAPIError
from imgbuild.engine_gateway import EngineGateway, failed
from imgbuild.errors import EngineUnavailable


@dataclass(frozen=True, kw_only=True)
class SavedImage:
    index_json: str  # the layout's index.json, its image name annotation removed
    blobs: tuple[tuple[str, int, str], ...]  # (digest, size, media type) of every blob in the layout
    blob_dir: Path


class Images:
    """The engine's image store (one narrow interface): through the docker CLI, and for the small calls made
    after every build (tag, untag, history, save) over the engine's unix socket when the run's gateway speaks
    to it there (:mod:`imgbuild.engine_gateway`: decided once per run, never mixed per call)."""

    def __init__(self, engine: EngineGateway | None = None) -> None:
        self.engine = engine if engine is not None else EngineGateway()
        self.docker = self.engine.docker
        # Loads run one at a time: parallel loads of images sharing a layer make containerd answer
        # "ref ... locked" and back off, and 8 parallel restores took 20 s instead of 2 s (bench_cache.py).
        self._load_lock = threading.Lock()

    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]:
        """For each of ``refs`` (image ids or names) the engine has: its tags, in a few engine calls.

        Listing every image instead is slow on the containerd store (it sizes them all), and one call
        per image costs a process each: a no-op build of 500 targets needs neither.
        """
        if not refs:
            return {}
        unique = sorted(set(refs))
        # The engine answers one image at a time per request (~10-20 ms each on the containerd store):
        # a few CLI processes on slices of the list keep it busy on every core.
        slices = [unique[i::4] for i in range(min(4, len(unique)))]
        with ThreadPoolExecutor(max_workers=len(slices)) as pool:
            answers = list(pool.map(self._inspect_slice, slices))
        found: dict[str, frozenset[str]] = {}
        for part in answers:
            found.update(part)
        # Answer by the refs asked for: ids map to themselves, names to the id they carry.
        out_map: dict[str, frozenset[str]] = {}
        for ref in unique:
            if ref in found:
                out_map[ref] = found[ref]
            else:
                for tags in found.values():
                    if ref in tags:
                        out_map[ref] = tags
        return out_map

    def history(self, ref: str) -> list[dict[str, object]]:
        """``docker image history`` of ``ref``, newest step first: CreatedBy, Size (bytes), Comment..."""
        api = self.engine.api
        if api is not None:
            try:
                return api.history(ref)
            except EngineAPIError as exc:
                raise failed(exc) from None
        out = proc.run([self.docker, "image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def _inspect_slice(self, refs: list[str]) -> dict[str, frozenset[str]]:
        code, out, err = proc.run_unchecked(
            [self.docker, "image", "inspect", "--format", "{{json .Id}} {{json .RepoTags}}", *refs])
        found: dict[str, frozenset[str]] = {}
        for line in out.splitlines():
            if not line.strip():
                continue  # docker prints an empty line for each image it does not have
            image_id, _, tag_list = line.partition(" ")
            found[json.loads(image_id)] = frozenset(json.loads(tag_list or "null") or [])
        if code != 0 and not found and "no such image" not in err.lower():
            last = err.strip().splitlines()[-1] if err.strip() else f"exit status {code}"
            raise EngineUnavailable(
                f"cannot inspect images in the engine: {last}\n"
                "  hint: start an engine (in this repository: `eval \"$(scripts/dev-services up)\"`), "
                "or point DOCKER_HOST at one")
        return found

    def tag(self, image_id: str, ref: str) -> None:
        api = self.engine.api
        if api is not None:
            try:
                return api.tag(image_id, ref)
            except EngineAPIError as exc:
                raise failed(exc) from None
        proc.run([self.docker, "image", "tag", image_id, ref])

    def untag(self, ref: str) -> None:
        """Remove one name (the image stays while it has another); best effort: a leftover name is harmless."""
        api = self.engine.api
        if api is not None:
            try:
                api.untag(ref)
            except EngineAPIError:
                pass
            return
        proc.run_unchecked([self.docker, "image", "rm", "--no-prune", ref])

    def push(self, ref: str) -> str | None:
        """``docker push ref``: the manifest digest it reports (``<tag>: digest: sha256:... size: N``), if any;
        on failure the engine's last error line, classified for the retry decision.

        The docker CLI logs in itself (``$DOCKER_CONFIG``: helpers, ``credsStore``, ``auths``), so it runs
        with imgbuild's own environment."""
        from imgbuild.push import PushError, docker_push_transient

        code, out, err = proc.run_unchecked([self.docker, "push", ref], timeout=900)
        if code != 0:
            said = (err.strip() or out.strip()).splitlines()[-1] if (err or out).strip() else f"exit {code}"
            raise PushError(said, transient=docker_push_transient(said))
        found = re.findall(r"digest: (sha256:[0-9a-f]{64})", out)
        return found[-1] if found else None

    def known_digests(self, image_id: str) -> frozenset[str]:
        """The manifest digests the engine says ``image_id`` has in registries (its RepoDigests: what its
        pushes and pulls produced). On the classic image store the id is the config's digest and a push
        makes a manifest of its own: this is how an image already in a registry is recognised there."""
        api = self.engine.api
        if api is not None:
            try:
                image = api.inspect(image_id)
            except EngineAPIError:
                return frozenset()  # as when the CLI cannot say: nothing known
            return _digests(None if image is None else image.get("RepoDigests"))
        code, out, _ = proc.run_unchecked([self.docker, "image", "inspect", "--format", "{{json .RepoDigests}}",
                                           image_id])
        try:
            return _digests(json.loads(out) if code == 0 and out.strip() else None)
        except ValueError:
            return frozenset()

    def save(self, ref: str, workdir: Path) -> SavedImage:
        """``docker save`` ``ref`` into ``workdir`` as an OCI layout."""
        layout = workdir / "layout"
        api = self.engine.api
        if api is not None:
            try:
                api.save(ref, layout)  # streamed and unpacked at once: no process, no tar file
            except EngineAPIError as exc:
                shutil.rmtree(layout, ignore_errors=True)
                raise failed(exc) from None
        else:
            tar_path = workdir / "image.tar"
            proc.run([self.docker, "image", "save", "-o", str(tar_path), ref], timeout=600)
            with tarfile.open(tar_path) as tf:
                tf.extractall(layout, filter="data")
            tar_path.unlink()
        return read_layout(layout)

    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None:
        """``docker load`` an OCI layout assembled from ``index_json`` and the blobs, named ``name``."""
        index = json.loads(index_json)
        repo, _, tag = name.rpartition(":")
        for m in index.get("manifests", []):
            m["annotations"] = {"io.containerd.image.name": qualified_name(name), "org.opencontainers.image.ref.name": tag}
        tar_path = workdir / "restore.tar"
        with tarfile.open(tar_path, "w") as tf:
            _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tf, "index.json", json.dumps(index).encode())
            for blob in sorted(blob_dir.iterdir()):
                tf.add(blob, arcname=f"blobs/sha256/{blob.name}")
        with self._load_lock:
            proc.run([self.docker, "image", "load", "-q", "-i", str(tar_path)], timeout=600)
        tar_path.unlink()


def read_layout(layout: Path) -> SavedImage:
    """An OCI layout directory (``docker save``'s, or BuildKit's ``type=oci`` output) as a :class:`SavedImage`."""
    index = json.loads((layout / "index.json").read_text())
    for m in index.get("manifests", []):
        # The name is ours to give at load time; the rest of the layout is content-addressed.
        m.pop("annotations", None)
    blobs = []
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        blobs.append((f"sha256:{blob.name}", blob.stat().st_size, ""))
    return SavedImage(index_json=json.dumps(index, sort_keys=True, separators=(",", ":")),
                      blobs=tuple(blobs), blob_dir=layout / "blobs" / "sha256")


def _digests(repo_digests: object) -> frozenset[str]:
    """``sha256:...`` of each ``repo@sha256:...`` in a RepoDigests list."""
    refs = repo_digests if isinstance(repo_digests, list) else []
    return frozenset(str(r).rpartition("@")[2] for r in refs if "@sha256:" in str(r))


def qualified_name(name: str) -> str:
    """containerd wants a fully qualified name: busybox:1 -> docker.io/library/busybox:1."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
