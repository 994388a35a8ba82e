"""The target cache across runs (imgbuild.cache.targets): restores, and repairs of what could not be restored."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imgbuild.build.images import SavedImage
from imgbuild.cache.local import LocalStore
from imgbuild.cache.targets import TargetCache
from imgbuild.labels import Label
from imgbuild.model import Workspace
from imgbuild.spec.packages import load_workspace
from tests.conftest import WorkspaceFactory

KEY = "sha256:" + "a" * 64


class SavingImages:
    """The engine's save and load: each image is a layer shared by all and an index of its own."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}  # ref -> index blob
        self.loaded: list[str] = []

    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]:
        return {}

    def tag(self, image_id: str, ref: str) -> None: ...

    def untag(self, ref: str) -> None: ...

    def save(self, ref: str, workdir: Path) -> SavedImage:
        blob_dir = workdir / "blobs"
        blob_dir.mkdir()
        blobs = []
        for data in (b"shared layer", self.images[ref]):
            hexd = hashlib.sha256(data).hexdigest()
            (blob_dir / hexd).write_bytes(data)
            blobs.append((f"sha256:{hexd}", len(data), ""))
        return SavedImage(index_json='{"schemaVersion":2}', blobs=tuple(blobs), blob_dir=blob_dir)

    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None:
        self.loaded.append(name)


def record(cache: TargetCache, ws: Workspace, images: SavingImages, index: bytes) -> str:
    """A build of //a:a whose image's index is ``index``; its image id."""
    image_id = "sha256:" + hashlib.sha256(index).hexdigest()
    images.images["a:new"] = index
    cache.record(ws.targets[Label("a", "a")], key=KEY, ref="a:new", image_id=image_id, manifest_digest=None,
                 config_digest=None, inputs="{}")
    return image_id


def test_an_entry_that_could_not_be_restored_is_replaced_by_the_rebuild(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n"})
    ws = load_workspace(root)
    target = ws.targets[Label("a", "a")]
    images = SavingImages()
    warnings: list[str] = []
    first = record(TargetCache(ws, images, warn=warnings.append), ws, images, b"index of build 1")

    # The index blob of the first build is damaged in the store.
    store = LocalStore(root / ".imgbuild/cache")
    (store.blob_dir / first.split(":")[1]).write_bytes(b"garbage")

    # Next run: the restore fails, the target is rebuilt (a new creation time: another index).
    cache = TargetCache(ws, images, warn=warnings.append)
    entry = cache.lookup(target, KEY)
    assert entry is not None and entry.image_id == first
    assert cache.restore(target, entry, "a:restored") is False
    assert len(warnings) == 1 and "is corrupt" in warnings[0]
    second = record(cache, ws, images, b"index of build 2")
    assert warnings[1:] == [f"cache entry {KEY} (//a:a) in {store.name} was corrupt; replaced"]

    # The run after: the rebuild's entry, restored without a warning.
    cache = TargetCache(ws, images, warn=warnings.append)
    entry = cache.lookup(target, KEY)
    assert entry is not None and entry.image_id == second
    assert cache.restore(target, entry, "a:restored") is True
    assert images.loaded == ["a:restored"] and len(warnings) == 2
