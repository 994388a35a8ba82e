"""The target cache across runs (imgbuild.cache.targets): restores, and repairs of what could not be restored."""

from __future__ import annotations

from imgbuild.cache.local import LocalStore
from imgbuild.cache.targets import TargetCache
from imgbuild.labels import Label
from imgbuild.model import Workspace
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeImages, sha

KEY = "sha256:" + "a" * 64


def record(cache: TargetCache, ws: Workspace, images: FakeImages, image_id: str) -> None:
    """A build of //a:a that gave ``image_id`` (its index blob: see FakeImages.save)."""
    images.tag(image_id, "a:new")
    cache.record(ws.targets[Label("a", "a")], key=KEY, ref="a:new", image_id=image_id, manifest_digest=None,
                 config_digest=None, inputs="{}")


def test_an_entry_that_could_not_be_restored_is_replaced_by_the_rebuild(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n"})
    ws = load_workspace(root)
    target = ws.targets[Label("a", "a")]
    images = FakeImages()
    warnings: list[str] = []
    first, second = sha(b"build 1"), sha(b"build 2")
    record(TargetCache(ws, images, warn=warnings.append), ws, images, first)

    # The index blob of the first build is damaged in the store.
    store = LocalStore(ws.state.target_cache)
    (store.blob_dir / sha(first.encode()).split(":")[1]).write_bytes(b"garbage")

    # Next run: the restore fails, the target is rebuilt (a new creation time: another index).
    cache = TargetCache(ws, images, warn=warnings.append)
    entry = cache.lookup(target, KEY)
    assert entry is not None and entry.image_id == first
    assert cache.restore(target, entry, "a:restored") is False
    assert len(warnings) == 1 and "is corrupt" in warnings[0]
    record(cache, ws, images, second)
    assert warnings[1:] == [f"cache entry {KEY} (//a:a) in {store.name} was corrupt; replaced"]

    # The run after: the rebuild's entry, restored without a warning.
    cache = TargetCache(ws, images, warn=warnings.append)
    entry = cache.lookup(target, KEY)
    assert entry is not None and entry.image_id == second
    assert cache.restore(target, entry, "a:restored") is True
    assert images.loaded == ["a:restored"] and len(warnings) == 2
