"""``imgbuild cache gc``: plans from fake listings, execution, and local stores end to end.

The S3 side (the same plans against a real bucket) is tests/integration/test_cache_gc_s3.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.statedir import for_workspace
from imgbuild.cache.gc import (GcPlan, LocalObjects, Rules, S3Objects, Source, StoredObject, execute, format_age,
                               parse_age, plan_layers, plan_mirror, plan_targets, run, snapshot_layer_dirs,
                               snapshot_layers, snapshot_targets, sources)
from imgbuild.cache.local import LocalStore
from imgbuild.cache.store import CacheUnavailable
from imgbuild.cli import main
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
RULES = Rules(now=NOW, older_than=30 * DAY, keep=1, grace=timedelta(hours=1))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexd(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeObjects:
    """An in-memory store: keys, bytes and times, as a listing shows them."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self.deleted: list[str] = []
        self.refuse: set[str] = set()  # keys whose deletion fails
        self.down_at: str | None = None  # the first key of a delete() call that raises CacheUnavailable

    def put(self, key: str, data: bytes, at: datetime) -> None:
        self.objects.setdefault(key, (data, at))  # content addressed: the first upload stays

    def listing(self, folder: str) -> list[StoredObject]:
        return [StoredObject(key=k, size=len(d), modified=t) for k, (d, t) in sorted(self.objects.items())
                if k.startswith(folder)]

    def read(self, key: str) -> bytes | None:
        found = self.objects.get(key)
        return found[0] if found else None

    def delete(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        if self.down_at is not None and self.down_at in keys:
            raise CacheUnavailable("cannot connect to http://127.0.0.1:9")
        failed = []
        for k in keys:
            if k in self.refuse:
                failed.append((k, "AccessDenied"))
            else:
                self.objects.pop(k, None)
                self.deleted.append(k)
        return failed


class TargetStore:
    """A fake target-cache store, filled the way a build fills one: blobs, then the entry, then its marker."""

    def __init__(self) -> None:
        self.objects = FakeObjects("fake-targets")
        self.entries: dict[str, CacheEntry] = {}

    def blob(self, data: bytes, *, at: datetime) -> str:
        self.objects.put(f"blobs/sha256/{hexd(data)}", data, at)
        return sha(data)

    def entry(self, name: str, *, label: str = "//apps/api:api", created: datetime, blobs: tuple[bytes, ...] = (),
              at: datetime | None = None, upload: bool = True) -> CacheEntry:
        written = at or created
        if upload:
            for b in blobs:
                self.blob(b, at=written)
        entry = CacheEntry(key=sha(name.encode()), label=label, created=stamp(created),
                           image_id=sha(b"img" + name.encode()), manifest_digest=None, config_digest=None,
                           blobs=tuple(Blob(digest=sha(b), size=len(b)) for b in blobs),
                           oci_index='{"schemaVersion":2}', inputs="{}")
        h = entry.key.split(":", 1)[1]
        self.objects.put(f"entries/{h}.json", entry.to_bytes(), written)
        self.objects.put(f"labels/{hexd(label.encode())}/{h}", b"", written)
        self.entries[name] = entry
        return entry

    def plan(self, rules: Rules = RULES) -> GcPlan:
        return plan_targets(snapshot_targets(self.objects), rules, store=self.objects.name)


def age_file(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def deleted(plan: GcPlan, kind: str) -> set[str]:
    return {d.key for d in plan.deletions if d.kind == kind}


def entry_key(entry: CacheEntry) -> str:
    return f"entries/{entry.key.split(':', 1)[1]}.json"


def blob_key(data: bytes) -> str:
    return f"blobs/sha256/{hexd(data)}"


# -- ages and rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, age", [("30d", 30 * DAY), ("12h", timedelta(hours=12)), ("2w", 14 * DAY),
                                       ("0d", timedelta(0))])
def test_ages(text: str, age: timedelta) -> None:
    assert parse_age(text) == age
    assert parse_age(format_age(age)) == age


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1.5d", "3m", "1000000d"])
def test_bad_ages_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="h, d or w"):
        parse_age(text)


def test_the_cutoff_is_never_inside_the_grace_period() -> None:
    rules = Rules(now=NOW, older_than=timedelta(0), keep=0, grace=timedelta(hours=1))
    assert rules.cutoff == rules.fresh_after == NOW - timedelta(hours=1)
    assert Rules(now=NOW, older_than=2 * DAY).cutoff == NOW - 2 * DAY
    with pytest.raises(ValueError):
        Rules(now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError):
        Rules(now=NOW, keep=-1)


# -- target-cache plans --------------------------------------------------------------------------------------


def test_old_entries_go_and_the_newest_per_label_stays() -> None:
    s = TargetStore()
    oldest = s.entry("api-1", created=NOW - 90 * DAY, blobs=(b"base", b"api-1"))
    older = s.entry("api-2", created=NOW - 60 * DAY, blobs=(b"base", b"api-2"))
    recent = s.entry("api-3", created=NOW - 2 * DAY, blobs=(b"base", b"api-3"))
    lone = s.entry("web-1", label="//apps/web:web", created=NOW - 200 * DAY, blobs=(b"base", b"web-1"))
    plan = s.plan()
    assert deleted(plan, "entry") == {entry_key(oldest), entry_key(older)}
    assert set(plan.kept) == {recent.key, lone.key}  # lone: the newest (only) entry of its label
    assert deleted(plan, "blob") == {blob_key(b"api-1"), blob_key(b"api-2")}  # "base" is named by kept entries
    assert deleted(plan, "marker") == {f"labels/{hexd(b'//apps/api:api')}/{e.key[7:]}" for e in (oldest, older)}
    assert plan.kept_blobs == 3 and plan.notes == ()  # base, api-3, web-1


@pytest.mark.parametrize("keep, kept", [(0, {"api-3"}), (1, {"api-3"}), (2, {"api-3", "api-2"}),
                                        (5, {"api-1", "api-2", "api-3"})])
def test_keep_per_scope(keep: int, kept: set[str]) -> None:
    s = TargetStore()
    s.entry("api-1", created=NOW - 90 * DAY, blobs=(b"a1",))
    s.entry("api-2", created=NOW - 60 * DAY, blobs=(b"a2",))
    s.entry("api-3", created=NOW - 40 * DAY, blobs=(b"a3",))
    plan = s.plan(Rules(now=NOW, older_than=30 * DAY, keep=keep))
    expected = kept if keep else set()
    assert set(plan.kept) == {s.entries[n].key for n in expected}
    assert deleted(plan, "blob") == {blob_key(f"a{n[-1]}".encode()) for n in {"api-1", "api-2", "api-3"} - expected}


def test_entries_newer_than_the_age_stay_whatever_keep_says() -> None:
    s = TargetStore()
    for n in range(5):
        s.entry(f"api-{n}", created=NOW - (n + 1) * DAY, blobs=(f"layer {n}".encode(),))
    plan = s.plan(Rules(now=NOW, older_than=30 * DAY, keep=0))
    assert plan.deletions == () and len(plan.kept) == 5


def test_a_blob_a_kept_entry_names_is_never_deleted_however_old() -> None:
    s = TargetStore()
    s.blob(b"ancient base", at=NOW - 400 * DAY)
    s.entry("old", created=NOW - 300 * DAY, blobs=(b"ancient base", b"old layer"))
    new = s.entry("new", created=NOW - DAY, blobs=(b"ancient base", b"new layer"))
    plan = s.plan()
    assert blob_key(b"ancient base") not in deleted(plan, "blob")
    assert deleted(plan, "blob") == {blob_key(b"old layer")}
    assert new.key in plan.kept


def test_fresh_unreferenced_blobs_are_kept_for_the_grace_period() -> None:
    """A build uploads blobs before it writes the entry: one uploaded just now may be named a moment later."""
    s = TargetStore()
    s.blob(b"uploading for an entry not written yet", at=NOW - timedelta(minutes=5))
    s.blob(b"left over 2 hours ago", at=NOW - timedelta(hours=2))
    plan = s.plan()
    assert deleted(plan, "blob") == {blob_key(b"left over 2 hours ago")}
    no_grace = s.plan(Rules(now=NOW, older_than=30 * DAY, keep=1, grace=timedelta(0)))
    assert len(deleted(no_grace, "blob")) == 2


def test_markers_follow_their_entries() -> None:
    s = TargetStore()
    kept = s.entry("kept", created=NOW - DAY)
    label_dir = f"labels/{hexd(b'//apps/api:api')}"
    s.objects.put(f"{label_dir}/{'a' * 64}", b"", NOW - 90 * DAY)  # its entry was deleted by hand
    s.objects.put(f"{label_dir}/{'b' * 64}", b"", NOW - timedelta(minutes=1))  # its entry: written after listing
    s.objects.put(f"labels/{'c' * 64}/{kept.key[7:]}", b"", NOW - 90 * DAY)  # the same key under another label
    # Created long ago (a machine with a wrong clock) but written just now: listed, so its marker goes with it.
    skewed = s.entry("skewed", label="//b:b", created=NOW - 90 * DAY, at=NOW - timedelta(minutes=1))
    s.entry("newer", label="//b:b", created=NOW - 80 * DAY)
    plan = s.plan()
    assert deleted(plan, "marker") == {f"{label_dir}/{'a' * 64}", f"labels/{hexd(b'//b:b')}/{skewed.key[7:]}"}
    assert {d.reason for d in plan.deletions if d.kind == "marker"} == {"names no entry", "its entry goes"}


def test_unusable_entries_go_once_past_the_grace_period_and_do_not_count_as_kept() -> None:
    s = TargetStore()
    usable = s.entry("usable", created=NOW - 90 * DAY, blobs=(b"u",))
    broken = s.entry("broken", created=NOW - 10 * DAY, blobs=(b"gone",), upload=False)
    fresh_broken = s.entry("fresh", created=NOW, blobs=(b"shared", b"gone too"), at=NOW, upload=False)
    s.blob(b"shared", at=NOW - 90 * DAY)
    s.objects.put(f"entries/{'d' * 64}.json", b'{"truncated', NOW - 5 * DAY)
    s.objects.put(f"entries/{'e' * 64}.json", b'{"truncated', NOW)
    plan = s.plan()
    reasons = {d.key: d.reason for d in plan.deletions if d.kind == "entry"}
    assert set(reasons) == {entry_key(broken), f"entries/{'d' * 64}.json"}
    assert "which the store lacks" in reasons[entry_key(broken)] and reasons[f"entries/{'d' * 64}.json"].startswith(
        "corrupt: not JSON")
    # The usable entry is the newest usable one of its label, so it stays although 90 days old.
    assert set(plan.kept) == {usable.key, fresh_broken.key, "sha256:" + "e" * 64}
    assert blob_key(b"shared") not in deleted(plan, "blob")  # a kept (fresh) entry names it


def test_entries_of_another_version_are_never_deleted_and_stop_blob_collection() -> None:
    s = TargetStore()
    s.entry("old", created=NOW - 90 * DAY, blobs=(b"old layer",))
    s.entry("new", created=NOW - DAY)
    doc = {"version": 2, "label": "//apps/api:api", "layers": ["sha256:" + "f" * 64]}
    s.objects.put(f"entries/{'f' * 63}0.json", json.dumps(doc).encode(), NOW - 90 * DAY)
    s.blob(b"orphan", at=NOW - 90 * DAY)
    plan = s.plan()
    assert deleted(plan, "entry") == {entry_key(s.entries["old"])}
    assert deleted(plan, "blob") == set()
    assert plan.notes and "another format version" in plan.notes[0]


def test_deletions_are_ordered_references_first() -> None:
    s = TargetStore()
    s.entry("old", created=NOW - 90 * DAY, blobs=(b"x",))
    s.entry("new", created=NOW - DAY)
    kinds = [d.kind for d in s.plan().deletions]
    assert kinds == ["marker", "entry", "blob"]


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(st.tuples(st.sampled_from(["//a:a", "//b:b", "//c:c"]), st.integers(0, 120),
                                  st.sets(st.integers(0, 7), max_size=4), st.booleans()), max_size=12),
       blob_ages=st.lists(st.integers(0, 24 * 200), min_size=8, max_size=8),
       keep=st.integers(0, 3), older_days=st.integers(0, 60), grace_minutes=st.integers(0, 120))
def test_property_no_kept_entry_ever_loses_a_blob(entries: list[tuple[str, int, set[int], bool]],
                                                  blob_ages: list[int], keep: int, older_days: int,
                                                  grace_minutes: int) -> None:
    s = TargetStore()
    pool = [f"blob {i}".encode() for i in range(8)]
    for i, data in enumerate(pool):
        s.blob(data, at=NOW - timedelta(hours=blob_ages[i]))
    for n, (label, age, blobs, complete) in enumerate(entries):
        names = tuple(pool[i] for i in sorted(blobs))
        if not complete and names:  # an entry naming a blob the store lacks
            names += (f"missing {n}".encode(),)
        s.entry(f"e{n}", label=label, created=NOW - timedelta(days=age), blobs=names, upload=False,
                at=NOW - timedelta(days=age))
    rules = Rules(now=NOW, older_than=timedelta(days=older_days), keep=keep, grace=timedelta(minutes=grace_minutes))
    before = dict(s.objects.objects)
    plan = s.plan(rules)
    result = execute(plan, s.objects)
    assert not result.failures and len(result.deleted) == len(plan.deletions)

    remaining = s.objects.objects
    for key, (_data, modified) in before.items():
        assert modified < rules.fresh_after or key in remaining, f"{key} is fresh: never deleted"

    def restorable(entry: CacheEntry, objects: dict[str, tuple[bytes, datetime]]) -> bool:
        return all(f"blobs/sha256/{b.digest[7:]}" in objects for b in entry.blobs)

    for label in {e.label for e in s.entries.values()}:
        mine = [e for e in s.entries.values() if e.label == label]
        usable_before = [e for e in mine if restorable(e, before)]
        kept = [e for e in usable_before if entry_key(e) in remaining]
        assert all(restorable(e, remaining) for e in kept), "a kept entry lost a blob"
        assert len(kept) >= min(keep, len(usable_before))
        for e in usable_before:
            if entry_key(e) not in remaining:
                assert datetime.fromisoformat(e.created.replace("Z", "+00:00")) < rules.cutoff


# -- execution -----------------------------------------------------------------------------------------------


def test_a_dry_run_deletes_nothing() -> None:
    s = TargetStore()
    s.entry("old", created=NOW - 90 * DAY, blobs=(b"x",))
    s.entry("new", created=NOW - DAY)
    before = dict(s.objects.objects)
    [report] = run([Source(cache="targets", policy="(default)", objects=s.objects)], RULES, dry_run=True)
    assert report.result is None and report.plan is not None and len(report.plan.deletions) == 3
    assert s.objects.objects == before and s.objects.deleted == []


def test_blobs_of_an_entry_that_could_not_be_deleted_are_held_back() -> None:
    s = TargetStore()
    stuck = s.entry("stuck", created=NOW - 90 * DAY, blobs=(b"stuck layer", b"shared old"))
    s.entry("gone", created=NOW - 80 * DAY, blobs=(b"gone layer", b"shared old"))
    s.entry("new", label="//apps/web:web", created=NOW - DAY)
    s.entry("newer", created=NOW - DAY)
    s.objects.refuse.add(entry_key(stuck))
    result = execute(s.plan(), s.objects)
    assert result.failures == (f"{entry_key(stuck)}: AccessDenied",)
    assert blob_key(b"gone layer") not in s.objects.objects
    assert blob_key(b"stuck layer") in s.objects.objects and blob_key(b"shared old") in s.objects.objects
    assert result.held_back == 2


def test_a_store_failing_mid_way_stops_before_any_blob() -> None:
    s = TargetStore()
    old = s.entry("old", created=NOW - 90 * DAY, blobs=(b"x",))
    s.entry("new", created=NOW - DAY)
    s.objects.down_at = entry_key(old)
    result = execute(s.plan(), s.objects)
    assert result.failures and "stopped deleting" in result.failures[0]
    assert blob_key(b"x") in s.objects.objects and entry_key(old) in s.objects.objects
    assert result.held_back == 1  # its blob, not attempted


def test_an_unreadable_store_is_reported_and_the_others_are_cleaned() -> None:
    class Down(FakeObjects):
        def listing(self, folder: str) -> list[StoredObject]:
            raise CacheUnavailable("cannot connect to http://127.0.0.1:9")

    s = TargetStore()
    s.entry("old", created=NOW - 90 * DAY, blobs=(b"x",))
    s.entry("new", created=NOW - DAY)
    down = Down("s3://bucket/targets")
    mirror = FakeObjects("local:mirror")
    reports = run([Source(cache="targets", policy="shared", objects=down),
                   Source(cache="mirror", policy="shared", objects=mirror, remote=down.name),
                   Source(cache="targets", policy="(default)", objects=s.objects)], RULES, dry_run=False)
    assert [r.error for r in reports][:2] == ["cannot connect to http://127.0.0.1:9",
                                              "not cleaned: its S3 store s3://bucket/targets could not be read"]
    assert reports[2].result is not None and len(reports[2].result.deleted) == 3


def test_the_mirror_drops_what_its_s3_store_does_not_keep() -> None:
    remote, mirror = TargetStore(), TargetStore()
    for store in (remote, mirror):
        store.entry("old", created=NOW - 90 * DAY, blobs=(b"x",))
        store.entry("new", created=NOW - DAY, blobs=(b"y",))
    mirror.objects.objects = {k: v for k, v in mirror.objects.objects.items() if not k.startswith("blobs/")}
    reports = run([Source(cache="targets", policy="shared", objects=remote.objects),
                   Source(cache="mirror", policy="shared", objects=mirror.objects, remote=remote.objects.name)],
                  RULES, dry_run=False)
    assert reports[1].plan is not None
    assert {d.kind for d in reports[1].plan.deletions} == {"entry", "marker"}
    assert sorted(k.split("/")[0] for k in mirror.objects.objects) == ["entries", "labels"]
    assert entry_key(remote.entries["new"]) in mirror.objects.objects
    # Written into the mirror after the S3 store was listed: stays.
    fresh = plan_mirror(snapshot_targets(mirror.objects), RULES, store="m", remote="r", remote_kept=frozenset())
    assert len(fresh.deletions) == 2
    mirror.entry("later", created=NOW, at=NOW)
    again = plan_mirror(snapshot_targets(mirror.objects), RULES, store="m", remote="r", remote_kept=frozenset())
    assert entry_key(mirror.entries["later"]) not in deleted(again, "entry")


# -- layer caches ----------------------------------------------------------------------------------------------

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"


def cache_export(layers: Sequence[bytes]) -> tuple[bytes, dict[str, bytes]]:
    """index.json and the blobs of a BuildKit cache export: index -> cache manifest -> layers and config."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes, media: str) -> dict[str, object]:
        blobs[hexd(data)] = data
        return {"mediaType": media, "digest": sha(data), "size": len(data)}

    children = [add(layer, LAYER) for layer in layers]
    config = b'{"layers":[],"records":[]}' + b"".join(layers)[:8]
    children.append(add(config, "application/vnd.buildkit.cacheconfig.v0"))
    manifest = add(json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": children}).encode(), INDEX)
    return json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode(), blobs


def s3_layers(caches: dict[tuple[str, str], tuple[Sequence[bytes], datetime]]) -> FakeObjects:
    objects = FakeObjects("s3://bucket/mono/layers")
    for (scope, target), (layers, at) in caches.items():
        index, blobs = cache_export(layers)
        for h, data in blobs.items():
            objects.put(f"blobs/sha256/{h}", data, at)
        objects.put(f"scopes/{scope}/{target}/index.json", index, at)
    return objects


def test_layer_caches_keep_the_newest_scope_of_each_target_and_what_it_reaches() -> None:
    objects = s3_layers({
        ("main", "apps-api-api"): ((b"deps", b"app v1"), NOW - 60 * DAY),
        ("feature-x", "apps-api-api"): ((b"deps", b"app v2"), NOW - 40 * DAY),
        ("main-7d-2930", "apps-api-api"): ((b"deps", b"app v3"), NOW - 2 * DAY),
        ("main", "apps-web-web"): ((b"web deps",), NOW - 100 * DAY),
    })
    objects.put(f"blobs/sha256/{hexd(b'stray')}", b"stray", NOW - 100 * DAY)
    plan = plan_layers(snapshot_layers(objects), RULES, store=objects.name)
    assert deleted(plan, "index") == {"scopes/main/apps-api-api/index.json", "scopes/feature-x/apps-api-api/index.json"}
    assert set(plan.kept) == {"main-7d-2930/apps-api-api", "main/apps-web-web"}
    gone = deleted(plan, "blob")
    assert {blob_key(b"app v1"), blob_key(b"app v2"), blob_key(b"stray")} <= gone
    assert blob_key(b"deps") not in gone and blob_key(b"web deps") not in gone and blob_key(b"app v3") not in gone
    execute(plan, objects)
    again = plan_layers(snapshot_layers(objects), RULES, store=objects.name)
    assert again.deletions == ()  # what stays is whole: every kept index reaches only blobs that are there
    assert all(ix.problem is None for ix in snapshot_layers(objects).indexes)


def test_a_broken_layer_cache_goes_and_a_fresh_one_with_unknown_references_stops_blob_collection() -> None:
    objects = s3_layers({("main", "t"): ((b"l1",), NOW - 2 * DAY), ("dev", "t"): ((b"l2",), NOW - 3 * DAY)})
    index, blobs = cache_export((b"l3",))
    manifest = json.loads(index)["manifests"][0]["digest"][7:]
    objects.put("scopes/old/t/index.json", index, NOW - 3 * DAY)  # its manifest was never uploaded
    plan = plan_layers(snapshot_layers(objects), RULES, store=objects.name)
    reasons = {d.key: d.reason for d in plan.deletions if d.kind == "index"}
    assert reasons == {"scopes/old/t/index.json": f"unusable: manifest sha256:{manifest} is missing"}

    objects.put("scopes/new/t/index.json", index, NOW - timedelta(minutes=1))
    objects.put(f"blobs/sha256/{hexd(b'stray')}", b"stray", NOW - 100 * DAY)
    plan = plan_layers(snapshot_layers(objects), RULES, store=objects.name)
    assert deleted(plan, "blob") == set() and "what it reaches is unknown" in plan.notes[0]


def test_local_layer_directories(tmp_path: Path) -> None:
    """BuildKit's local exporter adds blobs on every export and never removes one; a directory goes whole."""
    root = tmp_path / "layers"

    def export(scope: str, target: str, layers: Sequence[bytes], at: datetime) -> None:
        folder = root / scope / target
        index, blobs = cache_export(layers)
        for h, data in blobs.items():
            path = folder / "blobs" / "sha256" / h
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(data)
                age_file(path, at)
        for name, data in (("index.json", index), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')):
            (folder / name).write_bytes(data)
            age_file(folder / name, at)

    export("main", "api", (b"deps v1", b"app v1"), NOW - 50 * DAY)
    export("main", "api", (b"deps v1", b"app v2"), NOW - 5 * DAY)  # same directory: app v1 stays on disk
    export("old-branch", "api", (b"deps v0",), NOW - 90 * DAY)
    partial = root / "dev" / "api" / "blobs" / "sha256" / hexd(b"half")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")  # a pull still writing: left alone
    age_file(partial, NOW - timedelta(minutes=1))
    objects = LocalObjects(root, prune=True)
    plan = plan_layers(snapshot_layer_dirs(objects), RULES, store=objects.name)
    assert set(plan.kept) == {"main/api", "dev/api"}
    assert deleted(plan, "index") == {"old-branch/api/index.json"}
    assert deleted(plan, "file") == {"old-branch/api/oci-layout"}
    assert {k.rsplit("/", 1)[-1] for k in deleted(plan, "blob")} >= {hexd(b"app v1"), hexd(b"deps v0")}
    result = execute(plan, objects)
    assert not result.failures
    assert not (root / "old-branch").exists()  # emptied directories are removed
    assert not (root / "main" / "api" / "blobs" / "sha256" / hexd(b"app v1")).exists()
    assert (root / "main" / "api" / "blobs" / "sha256" / hexd(b"app v2")).exists() and partial.exists()


# -- local stores end to end ---------------------------------------------------------------------------------


def fill_local_store(root: Path, tmp_path: Path) -> dict[str, CacheEntry]:
    """A LocalStore filled through its own interface, as builds fill it, then aged by hand."""
    store = LocalStore(root)
    now = datetime.now(timezone.utc)
    made: dict[str, CacheEntry] = {}
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, label, days, layers in (("old", "//a:a", 90, (b"base", b"old")), ("new", "//a:a", 1, (b"base", b"new")),
                                      ("lone", "//b:b", 400, (b"lone",))):
        for data in layers:
            (src / hexd(data)).write_bytes(data)
            store.put_blob(sha(data), src / hexd(data))
        entry = CacheEntry(key=sha(name.encode()), label=label, created=stamp(now - days * DAY),
                           image_id=sha(name.encode()), manifest_digest=None, config_digest=None,
                           blobs=tuple(Blob(digest=sha(d), size=len(d)) for d in layers),
                           oci_index='{"schemaVersion":2}', inputs="{}")
        assert store.put(entry)
        made[name] = entry
    (src / "orphan").write_bytes(b"orphan")
    store.put_blob(sha(b"orphan"), src / "orphan")
    (src / "fresh").write_bytes(b"fresh orphan")
    store.put_blob(sha(b"fresh orphan"), src / "fresh")
    (root / "blobs" / "sha256" / ".tmp-crashed").write_bytes(b"partial")
    for path in root.rglob("*"):
        if path.is_file() and path.name != hexd(b"fresh orphan"):
            age_file(path, now - 2 * DAY)
    return made


def test_local_store_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    made = fill_local_store(root, tmp_path)
    objects = LocalObjects(root)
    rules = Rules(now=datetime.now(timezone.utc), older_than=30 * DAY, keep=1)
    [dry] = run([Source(cache="targets", policy="(default)", objects=objects)], rules, dry_run=True)
    assert dry.plan is not None and sum(1 for _ in root.rglob("*") if _.is_file()) == 13
    [report] = run([Source(cache="targets", policy="(default)", objects=objects)], rules, dry_run=False)
    assert report.plan == dry.plan and report.result is not None and not report.result.failures
    store = LocalStore(root)
    assert store.get(made["old"].key) is None
    for name in ("new", "lone"):
        entry = store.get(made[name].key)
        assert entry == made[name]
        for b in entry.blobs:
            store.get_blob(b.digest, tmp_path / "check" / b.digest[7:])  # verified download
    left = sorted(p.name for p in (root / "blobs" / "sha256").iterdir())
    assert left == sorted(hexd(d) for d in (b"base", b"new", b"lone", b"fresh orphan"))
    assert [e.key for e in store.entries_for("//a:a")] == [made["new"].key]
    assert (root / "labels").is_dir() and (root / "entries").is_dir()  # folders stay: a build may write there


def test_cli_gc(tmp_path: Path, make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_ws({"a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n"})
    made = fill_local_store(for_workspace(ws).target_cache, tmp_path)
    code = main(["cache", "gc", "-w", str(ws), "--dry-run", "--json"])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 0 and doc["dry_run"] is True and doc["older_than"] == "30d" and doc["keep_per_scope"] == 1
    [store] = doc["stores"]
    kinds = sorted(d["kind"] for d in store["deletions"])
    assert kinds == ["blob", "blob", "entry", "leftover", "marker"] and store["deleted"] == 0
    assert store["planned_bytes"] == sum(d["bytes"] for d in store["deletions"]) > 0
    assert LocalStore(for_workspace(ws).target_cache).get(made["old"].key) is not None

    code = main(["cache", "gc", "-w", str(ws), "--keep-per-scope", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "deleted 8 object(s)" in out and "//b:b" in out and "older than 30d" in out
    assert LocalStore(for_workspace(ws).target_cache).get(made["lone"].key) is None


@pytest.mark.parametrize("argv, message", [
    (["cache", "gc", "--older-than", "soon"], "--older-than: invalid age 'soon'"),
    (["cache", "gc", "--keep-per-scope", "-1"], "--keep-per-scope: -1 is negative"),
    (["cache", "stats", "--dry-run"], "--dry-run: only for `imgbuild cache gc`"),
])
def test_cli_usage_errors(argv: list[str], message: str, make_ws: WorkspaceFactory,
                          capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_ws({"a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n"})
    assert main([*argv, "-w", str(ws)]) == 2
    assert message in capsys.readouterr().err


def test_sources_of_a_workspace(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "imgbuild.yaml": """
            version: 1
            cache_policies:
              shared: {backend: s3, bucket: acme-cache, prefix: mono/, region: eu-west-1}
              again: {backend: s3, bucket: acme-cache, prefix: /mono}
              forks: {backend: s3, bucket: acme-cache, prefix: forks/, write: false}
              disk: {backend: local, path: .cache/imgbuild}
              reg: {backend: registry, ref: ghcr.io/acme/cache}
        """,
        "a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n",
    })
    state = for_workspace(root)
    (state.target_cache / "mirrors" / "shared").mkdir(parents=True)
    (state.layer_sync / "shared").mkdir(parents=True)
    (root / ".cache" / "imgbuild" / "layers").mkdir(parents=True)
    srcs, skipped = sources(load_workspace(root))
    # Policies in name order; "again" and "shared" name one bucket and prefix: its stores are cleaned once,
    # and each policy's mirror after them.
    assert [(s.cache, s.policy, s.name) for s in srcs] == [
        ("targets", "(default)", f"local:{state.target_cache}"),
        ("targets", "again", "s3://acme-cache/mono/targets"),
        ("layers", "again", "s3://acme-cache/mono/layers"),
        ("targets", "disk", f"local:{root / '.cache/imgbuild'}"),
        ("layers", "disk", f"local:{root / '.cache/imgbuild/layers'}"),
        ("mirror", "shared", f"local:{state.target_cache / 'mirrors/shared'}"),
        ("layers", "shared", f"local:{state.layer_sync / 'shared'}"),
    ]
    assert skipped == ["cache policy forks: write: false"]
    assert isinstance(srcs[1].objects, S3Objects) and srcs[5].remote == "s3://acme-cache/mono/targets"
