"""BuildKit layer caches through S3 on the real engine (``docker`` driver) and the real S3 server.

The engine's embedded BuildKit has no ``type=s3`` cache, so the cache goes through local directories
that :mod:`imgbuild.layercache.s3sync` pushes to and pulls from the bucket. The test plays two CI runs
on single-use hosts: ``main`` builds and uploads; the engine's build cache and every local file are
wiped; a feature branch changes application code, pulls ``main``'s cache and reuses the dependency step.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from imgbuild.git import GitInfo
from imgbuild.layercache.args import cache_args, detect_driver, needs_sync, scope_dir
from imgbuild.layercache.scope import layer_scope
from imgbuild.layercache.s3sync import GuardedLayerStore, S3LayerStore, open_store, pull_scope, pull_scopes, push_scope
from imgbuild.model import CachePolicy
from tests.integration.conftest import docker, list_keys, read_object

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
TARGET = "apps-api-api"

DOCKERFILE = """\
FROM busybox:1.36
WORKDIR /app
COPY deps.txt .
RUN sleep 3 && cat deps.txt > installed.txt
COPY . .
RUN cat app.txt > built.txt
"""


def make_policy(bucket: str, endpoint: str) -> CachePolicy:
    return CachePolicy(name="shared", backend="s3", bucket=bucket, region="us-east-1", prefix="mono/",
                       endpoint_url=endpoint, use_path_style=True, scope="{git.branch}", fallback_scopes=("main",),
                       mode="max")


def buildx(context: Path, tag: str, cache_from: tuple[str, ...], cache_to: tuple[str, ...]) -> tuple[str, float]:
    argv = ["docker", "buildx", "build", "--progress", "plain", "--tag", tag]
    for c in cache_from:
        argv += ["--cache-from", c]
    for c in cache_to:
        argv += ["--cache-to", c]
    start = time.monotonic()
    proc = subprocess.run([*argv, str(context)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr, time.monotonic() - start


def steps(log: str) -> dict[str, str]:
    """Dockerfile instruction -> ``CACHED`` or ``RAN``, from a plain-progress build log."""
    names: dict[str, str] = {}
    for m in re.finditer(r"^#(\d+) \[\s*\d+/\d+\] (.+)$", log, re.M):
        names.setdefault(m.group(1), m.group(2).strip())
    cached = set(re.findall(r"^#(\d+) CACHED$", log, re.M))
    return {text: ("CACHED" if n in cached else "RAN") for n, text in names.items()}


def remove_images(prefix: str) -> None:
    ids = docker("image", "ls", "-q", "--filter", f"reference={prefix}*").split()
    if ids:
        docker("image", "rm", "-f", *sorted(set(ids)))


@pytest.mark.usefixtures("engine", "aws_env")
def test_a_fresh_runner_reuses_the_dependency_layers_from_s3(tmp_path: Path, s3_endpoint: str, bucket: str,
                                                             prefix: str) -> None:
    driver = detect_driver(None)
    policy = make_policy(bucket, s3_endpoint)
    assert driver == "docker" and needs_sync(policy, driver)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    # A unique dependency file: no other test's layers can satisfy this build.
    (context / "deps.txt").write_text(f"left-pad@1.3.0 {uuid.uuid4()}\n")
    (context / "app.txt").write_text("v1\n")
    warnings: list[str] = []

    # -- CI run 1, on main: cold build, export, upload ------------------------------------------------------
    local1 = tmp_path / "runner1" / "layers"
    main = layer_scope(policy, git=GitInfo(branch="main"), now=NOW, read_only=False)
    store = open_store(policy, warn=warnings.append)
    assert pull_scopes(store, local1, main.read_scopes, TARGET) is None  # nothing yet: one note
    assert len(warnings) == 1 and "no layer cache" in warnings[0]
    cache_from, cache_to = cache_args(policy, TARGET, main, driver=driver, local_dir=local1, available=())
    assert cache_from == ()
    log, cold = buildx(context, f"{prefix}-api:1", cache_from, cache_to)
    assert steps(log)["RUN sleep 3 && cat deps.txt > installed.txt"] == "RAN"
    first = push_scope(store, local1, "main", TARGET)
    assert first.pushed and first.blobs_uploaded == first.blobs > 0
    index_key = "mono/layers/scopes/main/apps-api-api/index.json"
    index = read_object(bucket, index_key)
    assert json.loads(index)["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    blob_keys = [k for k in list_keys(bucket, "mono/layers/") if k != index_key]
    assert blob_keys and all(re.fullmatch(r"mono/layers/blobs/sha256/[0-9a-f]{64}", k) for k in blob_keys)

    # The same build exported again, nothing changed: no layer goes up again. Normally index.json alone
    # (the cache manifest is the same bytes); on this shared engine another test's build can refresh the
    # base layer's record time, which changes the cache manifest and config (~2 KB each) but no layer.
    log, _ = buildx(context, f"{prefix}-api:1", cache_from, cache_to)
    again = push_scope(open_store(policy, warn=warnings.append), local1, "main", TARGET)
    index_size = len((scope_dir(local1, "main", TARGET) / "index.json").read_bytes())
    assert again.pushed and again.blobs == first.blobs
    assert again.layers_uploaded == 0
    assert again.bytes_uploaded == index_size or (again.blobs_uploaded <= 2 and again.bytes_uploaded < 16384)
    print(f"\nfirst upload: {first.blobs_uploaded} blobs, {first.bytes_uploaded} bytes; unchanged re-export: "
          f"{again.blobs_uploaded} blobs, {again.bytes_uploaded} bytes (index.json {index_size} bytes)")

    # -- wipe: a new single-use runner has no images, no build cache, no files ------------------------------
    remove_images(prefix)
    docker("buildx", "prune", "-af")
    shutil.rmtree(tmp_path / "runner1")

    # -- CI run 2, on a feature branch: only application code changed ---------------------------------------
    (context / "app.txt").write_text("v2\n")
    local2 = tmp_path / "runner2" / "layers"
    feature = layer_scope(policy, git=GitInfo(branch="feat/login"), now=NOW, read_only=False)
    assert feature.read_scopes == ("feat-login", "main")
    store2 = open_store(policy, warn=warnings.append)
    pulled = pull_scopes(store2, local2, feature.read_scopes, TARGET)
    assert pulled == "main"
    cache_from, cache_to = cache_args(policy, TARGET, feature, driver=driver, local_dir=local2, available={pulled})
    assert cache_from == (f"type=local,src={local2}/main/{TARGET}",)
    log, warm = buildx(context, f"{prefix}-api:2", cache_from, cache_to)
    ran = steps(log)
    assert ran["RUN sleep 3 && cat deps.txt > installed.txt"] == "CACHED", log
    assert ran["COPY deps.txt ."] == "CACHED"
    assert ran["COPY . ."] == "RAN"
    assert ran["RUN cat app.txt > built.txt"] == "RAN"
    assert docker("run", "--rm", f"{prefix}-api:2", "cat", "/app/built.txt") == "v2\n"
    print(f"cold build {cold:.1f} s; build on the wiped runner from the pulled cache {warm:.1f} s")

    # The branch's own cache: layers shared with main are not uploaded again.
    branch = push_scope(store2, local2, "feat-login", TARGET)
    assert branch.pushed and 0 < branch.blobs_uploaded < branch.blobs
    assert len(warnings) == 1, warnings
    remove_images(prefix)


# -- the sync against S3 alone, with hand-made OCI layouts --------------------------------------------------


def write_layout(folder: Path, blobs: list[bytes]) -> dict[str, Any]:
    """A cache export as BuildKit writes it: index.json -> an OCI index naming the layer blobs."""
    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (folder / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(b)} for b in blobs]
    config = {"mediaType": "application/vnd.buildkit.cacheconfig.v0", **put(b'{"layers":[]}')}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [*layers, config]}).encode()
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", **put(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return index


def store_for(bucket: str, endpoint: str, warnings: list[str], **kw: Any) -> GuardedLayerStore:
    return GuardedLayerStore(S3LayerStore(bucket, prefix="p", endpoint_url=endpoint, use_path_style=True),
                             warn=warnings.append, **kw)


@pytest.mark.usefixtures("aws_env")
def test_blobs_shared_between_targets_are_stored_once(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    warnings: list[str] = []
    store = store_for(bucket, s3_endpoint, warnings)
    shared = b"node_modules " * 1000
    write_layout(scope_dir(tmp_path, "main", "a"), [shared, b"app a"])
    write_layout(scope_dir(tmp_path, "main", "b"), [shared, b"app b"])
    a = push_scope(store, tmp_path, "main", "a")
    b = push_scope(store_for(bucket, s3_endpoint, warnings), tmp_path, "main", "b")
    assert (a.blobs, a.blobs_uploaded, a.layers_uploaded) == (4, 4, 2)  # cache manifest, config, 2 layers
    assert (b.blobs, b.blobs_uploaded, b.layers_uploaded) == (4, 2, 1)  # the shared layer and config were there
    assert b.bytes_uploaded < len(shared) < a.bytes_uploaded
    # Pushed again unchanged: index.json only.
    again = push_scope(store_for(bucket, s3_endpoint, warnings), tmp_path, "main", "a")
    index = scope_dir(tmp_path, "main", "a") / "index.json"
    assert (again.pushed, again.blobs_uploaded, again.bytes_uploaded) == (True, 0, len(index.read_bytes()))
    keys = list_keys(bucket, "p/layers/")
    assert sorted(k for k in keys if "/scopes/" in k) == ["p/layers/scopes/main/a/index.json",
                                                          "p/layers/scopes/main/b/index.json"]
    assert len([k for k in keys if "/blobs/" in k]) == 6
    assert warnings == []


@pytest.mark.usefixtures("aws_env")
def test_pull_verifies_blobs_and_leaves_a_consistent_directory(tmp_path: Path, s3_endpoint: str, bucket: str,
                                                               admin: Any) -> None:
    warnings: list[str] = []
    index = write_layout(scope_dir(tmp_path / "src", "main", "a"), [b"layer one", b"layer two"])
    assert push_scope(store_for(bucket, s3_endpoint, warnings), tmp_path / "src", "main", "a").pushed

    dest = tmp_path / "dest"
    assert pull_scope(store_for(bucket, s3_endpoint, warnings), dest, "main", "a")
    got = scope_dir(dest, "main", "a")
    assert json.loads((got / "index.json").read_bytes()) == index
    assert sorted(p.name for p in (got / "blobs" / "sha256").iterdir()) == \
        sorted(p.name for p in (scope_dir(tmp_path / "src", "main", "a") / "blobs" / "sha256").iterdir())

    # A blob damaged in the bucket: not used, one warning, no index.json in a fresh directory.
    layer = hashlib.sha256(b"layer two").hexdigest()
    admin.put_object(Bucket=bucket, Key=f"p/layers/blobs/sha256/{layer}", Body=b"layer 2wo")
    fresh = tmp_path / "fresh"
    assert not pull_scope(store_for(bucket, s3_endpoint, warnings), fresh, "main", "a")
    assert not (scope_dir(fresh, "main", "a") / "index.json").exists()
    assert not (scope_dir(fresh, "main", "a") / "blobs" / "sha256" / layer).exists()
    assert len(warnings) == 1 and "corrupt" in warnings[0]

    # A scope nobody wrote: no cache, and no warning for it alone.
    assert not pull_scope(store_for(bucket, s3_endpoint, warnings), fresh, "feat-x", "a")
    assert len(warnings) == 1


@pytest.mark.usefixtures("aws_env")
def test_an_incomplete_export_is_not_pushed(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    warnings: list[str] = []
    folder = scope_dir(tmp_path, "main", "a")
    index = write_layout(folder, [b"layer"])
    (folder / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).unlink()
    result = push_scope(store_for(bucket, s3_endpoint, warnings), tmp_path, "main", "a")
    assert not result.pushed and result.bytes_uploaded == 0
    assert list_keys(bucket, "p/") == []
    assert len(warnings) == 1 and "not uploaded" in warnings[0]


@pytest.mark.usefixtures("aws_env")
def test_read_only_stores_write_nothing(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    write_layout(scope_dir(tmp_path, "main", "a"), [b"layer"])
    result = push_scope(store_for(bucket, s3_endpoint, [], read_only=True), tmp_path, "main", "a")
    assert not result.pushed
    assert list_keys(bucket, "p/") == []


@pytest.mark.usefixtures("aws_env")
def test_unreachable_s3_costs_one_warning_and_never_raises(tmp_path: Path) -> None:
    warnings: list[str] = []
    write_layout(scope_dir(tmp_path / "out", "main", "a"), [b"layer"])
    store = GuardedLayerStore(S3LayerStore("b", endpoint_url="http://127.0.0.1:9", use_path_style=True,
                                           region="us-east-1"), warn=warnings.append)
    start = time.monotonic()
    assert pull_scopes(store, tmp_path / "in", ["feat-x", "main"], "a") is None
    assert not push_scope(store, tmp_path / "out", "main", "a").pushed
    assert not pull_scope(store, tmp_path / "in", "main", "b")
    assert time.monotonic() - start < 30
    assert len(warnings) == 1 and "unavailable" in warnings[0] and "cannot connect" in warnings[0]
