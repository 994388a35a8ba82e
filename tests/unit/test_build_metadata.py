"""The ``--metadata-file`` output: every key buildx wrote, also for targets found in the target cache."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

from imgbuild.builds import metadata
from imgbuild.builds.progress import PlainProgress
from imgbuild.builds.results import RunResult, TargetResult, write_metadata
from imgbuild.builds.run import BuildOptions, execute
from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.targets import TargetCache
from imgbuild.canonical import canonical_json
from imgbuild.builds.service import compute_inputs
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.labels import parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages, sha

FILES = {
    "imgbuild.yaml": "version: 1\ndefaults: {tags: [dev]}\n",
    "base/BUILD.yaml": "apps: {base: {}}\n",
    "base/Dockerfile": "FROM busybox:1.36\n",
    "api/BUILD.yaml": "apps: {api: {deps: {BASE: //base}, image: acme/api}}\n",
    "api/Dockerfile": "ARG BASE\nFROM ${BASE}\n",
}
RUN_KEYS = ("imgbuild.status", "imgbuild.rebuilt", "imgbuild.duration_s", "imgbuild.log")


def build(root: Path, images: FakeImages, executor: FakeExecutor) -> RunResult:
    ws = load_workspace(root)
    graph = TargetGraph.build(ws)
    plan = make_plan(graph, parse_patterns(["//..."]))
    return execute(plan, ws, executor, images=images, options=BuildOptions(parallelism=2, logs_dir=root / "logs"),
                   git=GitInfo(sha="f" * 40, branch="main"), environ={}, stop=threading.Event(),
                   progress=PlainProgress(io.StringIO()), inputs=compute_inputs(graph, plan, {}),
                   cache=TargetCache(ws, images, warn=print))


def read(path: Path) -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return doc


def test_cached_and_restored_targets_carry_the_keys_of_their_build(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    images = FakeImages()
    built = build(root, images, FakeExecutor(build_refs=True))
    cached = build(root, images, FakeExecutor())
    restored = build(root, FakeImages(), FakeExecutor())  # a fresh engine: the image comes from the cache's blobs
    assert [t.status for t in built.targets] == ["built"] * 2
    assert [t.status for t in cached.targets] == ["cached"] * 2
    assert [t.status for t in restored.targets] == ["restored"] * 2
    for name, result in (("built", built), ("cached", cached), ("restored", restored)):
        write_metadata(result, root / "out" / f"{name}.json")
    first, again, fetched = (read(root / "out" / f"{n}.json") for n in ("built", "cached", "restored"))

    api = first["//api:api"]
    # everything buildx wrote, imgbuild's run-only claim tag taken out of the names
    assert api["buildx.build.ref"] == "default/default/2"
    assert api["containerimage.descriptor"]["digest"] == api["containerimage.digest"] == api["imgbuild.image_id"]
    assert api["image.name"] == "docker.io/acme/api:dev"
    for later in (again, fetched):
        for label, entry in first.items():
            assert {k: v for k, v in later[label].items() if k not in RUN_KEYS} == \
                {k: v for k, v in entry.items() if k not in RUN_KEYS}
    assert again["//base:base"]["imgbuild.status"] == "cached" and fetched["//base:base"]["imgbuild.rebuilt"] is False
    assert not [p.name for p in (root / "out").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_entry_without_build_metadata_is_valid_and_reports_what_it_knows() -> None:
    """Entries recorded before the build's metadata was kept: still hits, the digest and descriptor derived."""
    digest = sha(b"manifest")
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": 855,
         "annotations": {"io.containerd.image.name": "docker.io/library/api:x"}}]})
    entry = CacheEntry(key=sha(b"k"), label="//api:api", created="2026-12-04T00:00:00Z", image_id=digest,
                       manifest_digest=digest, config_digest=sha(b"config"), blobs=(Blob(digest=sha(b"b"), size=1),),
                       oci_index=index, inputs="{}")
    stored = json.loads(entry.to_bytes())
    assert "build_metadata" not in stored  # byte for byte what such entries hold
    old = CacheEntry.from_bytes(entry.to_bytes(), expected_key=entry.key)
    assert json.loads(metadata.from_entry(old)) == {
        "containerimage.digest": digest, "containerimage.config.digest": sha(b"config"),
        "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                                      "size": 855}}
    # and an entry that keeps it gives it back as recorded, names left out
    recorded = metadata.for_entry(json.dumps({"buildx.build.ref": "b/b/1", "image.name": "docker.io/library/api:x",
                                              "buildx.build.provenance": {"buildType": "x"}}))
    kept = CacheEntry.from_bytes(CacheEntry(**{**vars(entry), "build_metadata": recorded}).to_bytes(),
                                 expected_key=entry.key)
    assert json.loads(metadata.from_entry(kept))["buildx.build.provenance"] == {"buildType": "x"}
    assert "image.name" not in metadata.from_entry(kept)
    assert recorded == canonical_json(json.loads(recorded)).decode()


def test_metadata_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    t = TargetResult(label="//a:a", status="built", image_id="sha256:1", digest="sha256:1", tags=("a:dev",),
                     metadata=json.dumps({"buildx.build.ref": "r", "buildx.build.warnings": [{"vertex": "x"}]}))
    write_metadata(RunResult(targets=(t,), interrupted=False, started="", duration=1.0), path)
    doc = read(path)["//a:a"]
    assert doc["buildx.build.warnings"] == [{"vertex": "x"}] and doc["image.name"] == "docker.io/library/a:dev"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes
