"""``imgbuild cache gc`` against the real S3 server: stores filled through their own interfaces (S3Store,
s3sync's push_scope), cleaned, then checked object by object: what remains is exactly the kept set, and
every kept entry still verifies and restores, every kept layer cache still pulls.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import pytest

from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.statedir import for_workspace
from imgbuild.cache.gc import Rules, S3Objects, Source, run
from imgbuild.cache.local import LocalStore
from imgbuild.cache.s3 import S3Store
from imgbuild.layercache.s3sync import GuardedLayerStore, S3LayerStore, pull_scope, push_scope
from tests.integration.conftest import REPO, imgbuild, list_keys

DAY = timedelta(days=1)
PREFIX = "mono/"


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Every test here talks to the S3 server with the test credentials."""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexd(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def targets_store(bucket: str, endpoint: str) -> S3Store:
    return S3Store(bucket, prefix=f"{PREFIX}targets/", endpoint_url=endpoint, use_path_style=True)


def objects(bucket: str, endpoint: str, part: str) -> S3Objects:
    return S3Objects(bucket, prefix=f"{PREFIX}{part}", endpoint_url=endpoint, use_path_style=True)


def record(store: S3Store, tmp_path: Path, name: str, *, label: str, created: datetime,
           layers: Sequence[bytes]) -> CacheEntry:
    """As a build records an image: the blobs the store lacks, then the entry (and its marker)."""
    for data in layers:
        path = tmp_path / "src" / hexd(data)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        store.put_blob(sha(data), path)
    entry = CacheEntry(key=sha(name.encode()), label=label, created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       image_id=sha(b"image " + name.encode()), manifest_digest=None, config_digest=None,
                       blobs=tuple(Blob(digest=sha(d), size=len(d)) for d in layers),
                       oci_index='{"schemaVersion":2}', inputs="{}")
    assert store.put(entry)
    return entry


def fill(store: S3Store, tmp_path: Path, now: datetime) -> dict[str, CacheEntry]:
    base = b"base layer " * 1000
    made = {
        "api-old": record(store, tmp_path, "api-old", label="//apps/api:api", created=now - 90 * DAY,
                          layers=(base, b"api v1")),
        "api-mid": record(store, tmp_path, "api-mid", label="//apps/api:api", created=now - 45 * DAY,
                          layers=(base, b"api v2")),
        "api-new": record(store, tmp_path, "api-new", label="//apps/api:api", created=now - 2 * DAY,
                          layers=(base, b"api v3")),
        "web-only": record(store, tmp_path, "web-only", label="//apps/web:web", created=now - 300 * DAY,
                           layers=(base, b"web v1")),
    }
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"uploaded by a build that never wrote its entry")
    store.put_blob(sha(orphan.read_bytes()), orphan)
    return made


def expected_keys(store: S3Store, entries: Sequence[CacheEntry]) -> set[str]:
    keys = set()
    for e in entries:
        h = e.key[7:]
        keys |= {f"{store.prefix}entries/{h}.json",
                 f"{store.prefix}labels/{hashlib.sha256(e.label.encode()).hexdigest()}/{h}"}
        keys |= {f"{store.prefix}blobs/sha256/{b.digest[7:]}" for b in e.blobs}
    return keys


def assert_restorable(store: S3Store, entry: CacheEntry, tmp_path: Path) -> None:
    assert store.get(entry.key) == entry  # still verifies
    for b in entry.blobs:
        store.get_blob(b.digest, tmp_path / "restore" / b.digest[7:])  # present, and its sha256 checked


def test_gc_keeps_exactly_the_kept_entries_and_their_blobs(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = targets_store(bucket, s3_endpoint)
    now = datetime.now(timezone.utc)
    made = fill(store, tmp_path, now)
    rules = Rules(now=now + timedelta(seconds=5), older_than=30 * DAY, keep=1, grace=timedelta(0))
    source = Source(cache="targets", policy="shared", objects=objects(bucket, s3_endpoint, "targets/"))
    before = set(list_keys(bucket, PREFIX))

    [dry] = run([source], rules, dry_run=True)
    assert dry.plan is not None and dry.result is None and set(list_keys(bucket, PREFIX)) == before

    [report] = run([source], rules, dry_run=False)
    assert report.error is None and report.plan == dry.plan
    assert report.result is not None and report.result.failures == () and report.result.held_back == 0
    kept = [made["api-new"], made["web-only"]]  # the newest of //apps/api, the only one of //apps/web
    assert set(list_keys(bucket, PREFIX)) == expected_keys(store, kept)
    assert set(report.plan.kept) == {e.key for e in kept}
    for entry in kept:
        assert_restorable(store, entry, tmp_path)
    assert [e.key for e in store.entries_for("//apps/api:api")] == [made["api-new"].key]
    assert len(report.result.deleted) == len(before) - len(expected_keys(store, kept))
    assert report.result.bytes == dry.plan.bytes > 0


def test_fresh_unreferenced_blobs_survive_the_grace_period(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    """Just uploaded, so within the default hour: the old entries go, every blob stays."""
    store = targets_store(bucket, s3_endpoint)
    now = datetime.now(timezone.utc)
    made = fill(store, tmp_path, now)
    [report] = run([Source(cache="targets", policy="shared", objects=objects(bucket, s3_endpoint, "targets/"))],
                   Rules(now=now, older_than=30 * DAY, keep=1), dry_run=False)
    assert report.plan is not None and {d.kind for d in report.plan.deletions} == {"entry", "marker"}
    left = set(list_keys(bucket, f"{PREFIX}targets/blobs/"))
    assert len(left) == 6  # base, api v1-v3, web v1, the orphan: none deleted
    for name in ("api-new", "web-only"):
        assert_restorable(store, made[name], tmp_path)
    assert store.get(made["api-old"].key) is None and store.get(made["api-mid"].key) is None


# -- layer caches ------------------------------------------------------------------------------------------


def export(folder: Path, layers: Sequence[bytes]) -> None:
    """A BuildKit cache export in a local directory: index.json -> cache manifest -> layers and config."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def add(data: bytes, media: str) -> dict[str, Any]:
        (blobs / hexd(data)).write_bytes(data)
        return {"mediaType": media, "digest": sha(data), "size": len(data)}

    children = [add(layer, "application/vnd.oci.image.layer.v1.tar+gzip") for layer in layers]
    children.append(add(json.dumps({"layers": len(layers)}).encode(), "application/vnd.buildkit.cacheconfig.v0"))
    manifest = add(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": children}).encode(), "application/vnd.oci.image.index.v1+json")
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))


def test_layer_cache_gc_keeps_the_newest_scope_and_everything_it_reaches(s3_endpoint: str, bucket: str,
                                                                        tmp_path: Path) -> None:
    layers = GuardedLayerStore(S3LayerStore(bucket, prefix=PREFIX, endpoint_url=s3_endpoint, use_path_style=True),
                               warn=pytest.fail)
    exports = tmp_path / "exports"
    for scope, target, content in (("main", "apps-api-api", (b"deps", b"app v1")),
                                   ("feature-x", "apps-api-api", (b"deps", b"app v2")),
                                   ("main", "apps-web-web", (b"web deps",))):
        export(exports / scope / target, content)
        assert push_scope(layers, exports, scope, target).pushed
        time.sleep(1.1)  # LastModified has a one-second resolution: feature-x is the newer cache of apps-api-api
    source = Source(cache="layers", policy="shared", objects=objects(bucket, s3_endpoint, "layers/"))
    rules = Rules(now=datetime.now(timezone.utc), older_than=timedelta(0), keep=1, grace=timedelta(0))
    [report] = run([source], rules, dry_run=False)
    assert report.plan is not None and report.result is not None and not report.result.failures
    assert set(report.plan.kept) == {"feature-x/apps-api-api", "main/apps-web-web"}
    left = set(list_keys(bucket, f"{PREFIX}layers/"))
    assert f"{PREFIX}layers/scopes/main/apps-api-api/index.json" not in left
    blobs = {k.rsplit("/", 1)[-1] for k in left if "/blobs/sha256/" in k}
    assert hexd(b"app v1") not in blobs and {hexd(b"deps"), hexd(b"app v2"), hexd(b"web deps")} <= blobs
    assert len(blobs) == 2 * 2 + 3  # per kept cache: its manifest and config; deps, app v2, web deps

    for scope, target in (("feature-x", "apps-api-api"), ("main", "apps-web-web")):  # each still pulls whole
        assert pull_scope(layers, tmp_path / "pulled", scope, target)
    assert not pull_scope(layers, tmp_path / "pulled", "main", "apps-api-api")


# -- the command -------------------------------------------------------------------------------------------


def test_the_command_cleans_the_s3_store_and_this_machines_mirror(s3_endpoint: str, bucket: str,
                                                                    tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "a").mkdir(parents=True)
    (root / "imgbuild.yaml").write_text(
        "version: 1\ncache_policies:\n"
        f"  shared: {{backend: s3, bucket: {bucket}, prefix: {PREFIX}, region: us-east-1, "
        f"endpoint_url: '{s3_endpoint}', use_path_style: true}}\n")
    (root / "a" / "BUILD.yaml").write_text("apps: {a: {cache: shared}}\n")
    (root / "a" / "Dockerfile").write_text("FROM busybox:1.36\n")
    store = targets_store(bucket, s3_endpoint)
    now = datetime.now(timezone.utc)
    made = fill(store, tmp_path, now)
    mirror = LocalStore(for_workspace(root).target_cache / "mirrors" / "shared")
    for entry in made.values():  # as lookups on this machine copied them
        mirror.put(entry)
    yesterday = (now - DAY).timestamp()
    for path in mirror.root.rglob("*"):
        if path.is_file():  # copied yesterday
            os.utime(path, (yesterday, yesterday))

    dry = imgbuild("cache", "gc", "--dry-run", "--json", cwd=root)
    assert dry.code == 0, dry.err
    doc = json.loads(dry.out)
    by_cache = {s["cache"]: s for s in doc["stores"]}
    assert {d["subject"] for d in by_cache["targets"]["deletions"] if d["kind"] == "entry"} == {"//apps/api:api"}
    assert len([d for d in by_cache["mirror"]["deletions"] if d["kind"] == "entry"]) == 2
    assert store.get(made["api-old"].key) is not None and mirror.get(made["api-old"].key) is not None

    done = imgbuild("cache", "gc", cwd=root)
    assert done.code == 0, done.err
    # In each: two entries and their markers. The entries' blobs are fresh (grace period): they stay.
    assert done.out.count("deleted 4 object(s)") == 2, done.out
    for name in ("api-old", "api-mid"):
        assert store.get(made[name].key) is None and mirror.get(made[name].key) is None
    for name in ("api-new", "web-only"):
        assert_restorable(store, made[name], tmp_path)
        assert mirror.get(made[name].key) == made[name]


def test_the_documented_lifecycle_rule_is_accepted_by_s3(admin: Any, bucket: str) -> None:
    text = (REPO / "specs" / "README.md").read_text()
    section = text[text.index("### S3 lifecycle rules"):]
    rule = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rule)
    got = admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {r["ID"] for r in got} == {r["ID"] for r in rule["Rules"]}
    for r in got:  # nothing that expires the current version of an entry or a blob
        assert "Days" not in r.get("Expiration", {}) and "Date" not in r.get("Expiration", {})
