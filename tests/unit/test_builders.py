"""Which builder a run uses (no process for the engine's own), and the OCI layouts dependants read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imgbuild.builds.builders import Builder, resolve, selected_name
from imgbuild.builds.handoff import OciLayouts, link_or_copy, top_digest


def _current(config: Path, name: str, key: str = "unix:///var/run/docker.sock") -> dict[str, str]:
    (config / "buildx").mkdir(parents=True)
    (config / "buildx" / "current").write_text(json.dumps({"Key": key, "Name": name, "Global": False}))
    return {"DOCKER_CONFIG": str(config)}


def test_engine_builder_needs_no_process(tmp_path: Path) -> None:
    # A docker CLI that does not exist: resolving must not run it.
    assert resolve(None, {"DOCKER_CONFIG": str(tmp_path)}, docker="/nonexistent/docker") == \
        Builder(name=None, driver="docker")
    assert resolve(None, _current(tmp_path / "c", ""), docker="/nonexistent/docker").driver == "docker"
    assert resolve("default", {}, docker="/nonexistent/docker").driver == "docker"


def test_selected_builder_order(tmp_path: Path) -> None:
    env = _current(tmp_path, "ci-builder")
    assert selected_name(None, env) == "ci-builder"  # docker buildx use ci-builder
    assert selected_name(None, {**env, "BUILDX_BUILDER": "env-builder"}) == "env-builder"
    assert selected_name("flag-builder", {**env, "BUILDX_BUILDER": "env-builder"}) == "flag-builder"
    # buildx keys its choice by engine: chosen for another engine, it does not apply to this one.
    assert selected_name(None, {**env, "DOCKER_HOST": "tcp://elsewhere:2375"}) is None


def _blob(root: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / digest[7:]).write_bytes(data)
    return digest


def test_layouts_assemble_from_a_store_and_adopt_a_build(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    layer, manifest = _blob(store, b"layer"), _blob(store, b'{"manifest":1}')
    index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": manifest, "size": 14}]})
    layouts = OciLayouts(tmp_path / "oci")
    got = layouts.assemble(index, [layer, manifest], lambda d, dest: link_or_copy(store / d[7:], dest))
    assert got == manifest == top_digest(index)
    path = layouts.get(manifest)
    assert path is not None and (path / "blobs" / "sha256" / layer[7:]).read_bytes() == b"layer"
    assert (path / "oci-layout").is_file() and json.loads((path / "index.json").read_text())
    assert layouts.context(manifest) == f"oci-layout://{path}@{manifest}"
    assert {d for d, _, _ in layouts.saved(manifest).blobs} == {layer, manifest}

    # A blob that cannot be had: no layout, nothing half-written left behind.
    missing = json.dumps({"manifests": [{"digest": "sha256:" + "0" * 64}]})
    assert layouts.assemble(missing, ["sha256:" + "1" * 64], lambda d, dest: False) is None
    assert layouts.get("sha256:" + "0" * 64) is None
    assert sorted(p.name for p in layouts.root.iterdir()) == [manifest[7:]]

    # A build's output directory is moved into place under its digest; a twin is dropped.
    for _ in range(2):
        out = layouts.scratch()
        (out / "blobs" / "sha256").mkdir(parents=True)
        (out / "ingest").mkdir()
        (out / "index.json").write_text(index)
        assert layouts.adopt(out) == manifest
        assert not out.exists()
    assert sorted(p.name for p in layouts.root.iterdir()) == [manifest[7:]]
