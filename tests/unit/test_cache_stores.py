"""The target cache's storage layer: entries, LocalStore, GuardedStore, and S3Store's error translation.

No network: S3Store is exercised here through botocore's Stubber (canned responses, nothing sent);
tests/integration/test_s3_store.py runs it against a real S3 server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.local import LocalStore
from imgbuild.cache.store import (CacheStore, CacheUnavailable, CorruptBlob, CorruptEntry, GuardedStore, MissingBlob,
                                  StoreStats)

T = TypeVar("T")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def key(n: int) -> str:
    return sha(f"inputs {n}".encode())


def make_entry(k: str, *, label: str = "//apps/api:api", created: str = "2024-05-01T10:00:00Z",
               blobs: tuple[bytes, ...] = (b"layer", b"config"), image_id: str = "sha256:" + "1" * 64) -> CacheEntry:
    return CacheEntry(key=k, label=label, created=created, image_id=image_id, manifest_digest=sha(b"manifest"),
                      config_digest=sha(b"config"), blobs=tuple(Blob(digest=sha(b), size=len(b)) for b in blobs),
                      oci_index='{"schemaVersion":2}', inputs='{"label":"//apps/api:api"}')


def blob_file(tmp_path: Path, data: bytes) -> tuple[str, Path]:
    path = tmp_path / "src" / hashlib.sha256(data).hexdigest()
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return sha(data), path


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "cache")


# -- entries ---------------------------------------------------------------------------------------------


def test_entry_roundtrip_is_canonical_and_verified() -> None:
    entry = make_entry(key(1))
    data = entry.to_bytes()
    doc = json.loads(data)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    payload = {k: v for k, v in doc.items() if k != "entry_digest"}
    assert doc["entry_digest"] == sha(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    assert CacheEntry.from_bytes(data, expected_key=key(1)) == entry


def test_entry_blobs_and_refs_are_sorted_so_one_image_gives_one_record() -> None:
    a = make_entry(key(1), blobs=(b"x", b"y", b"z"))
    b = make_entry(key(1), blobs=(b"z", b"x", b"y"))
    assert a.to_bytes() == b.to_bytes()
    assert CacheEntry(**{**vars(a), "pushed": ("r/b@sha256:2", "r/a@sha256:1")}).pushed == ("r/a@sha256:1",
                                                                                            "r/b@sha256:2")


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(label="//evil:x"), "does not match"),
    (lambda d: d.pop("entry_digest"), "no entry_digest"),
    (lambda d: d["blobs"].append({"digest": "sha256:" + "0" * 64, "size": 1, "media_type": ""}), "does not match"),
])
def test_tampered_entry_is_corrupt(mutate: Callable[[dict[str, Any]], Any], reason: str) -> None:
    doc = json.loads(make_entry(key(1)).to_bytes())
    mutate(doc)
    with pytest.raises(CorruptEntry, match=reason):
        CacheEntry.from_bytes(json.dumps(doc).encode(), expected_key=key(1))


def _resealed(doc: dict[str, Any]) -> bytes:
    """A doc with a freshly computed entry_digest: intact, but maybe not a valid entry."""
    doc = {k: v for k, v in doc.items() if k != "entry_digest"}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**doc, "entry_digest": sha(canon)}).encode()


@pytest.mark.parametrize("data, reason", [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"label": "//a:b", "version": 1, "entry_digest": 3}', "no entry_digest"),
])
def test_malformed_entry_is_corrupt(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptEntry, match=reason):
        CacheEntry.from_bytes(data, expected_key=key(1))


@pytest.mark.parametrize("change, reason", [
    ({"extra": 1}, r"unexpected \['extra'\]"),
    ({"size": None}, r"unexpected \['size'\]"),
    ({"blobs": [{"digest": "sha256:../../etc/passwd", "size": 1, "media_type": ""}]}, "not a sha256 digest"),
    ({"blobs": [{"digest": "sha256:" + "a" * 64, "size": -1, "media_type": ""}]}, "non-negative"),
    ({"label": 7}, "label is int"),
    ({"key": key(2)}, "holds the entry of"),
])
def test_resealed_but_invalid_entry_is_corrupt(change: dict[str, Any], reason: str) -> None:
    doc = {**json.loads(make_entry(key(1)).to_bytes()), **change}
    with pytest.raises(CorruptEntry, match=reason) as info:
        CacheEntry.from_bytes(_resealed(doc), expected_key=key(1))
    assert info.value.key == key(1)


def test_entry_of_another_version_is_unusable_not_corrupt() -> None:
    doc = {**json.loads(make_entry(key(1)).to_bytes()), "version": 2, "entry_digest": "sealed another way"}
    with pytest.raises(CorruptEntry, match="is unusable: entry version 2, this imgbuild reads 1") as info:
        CacheEntry.from_bytes(json.dumps(doc).encode(), expected_key=key(1))
    assert info.value.repairable is False


def test_entry_refuses_bad_digests() -> None:
    with pytest.raises(ValueError, match="not a sha256 digest"):
        make_entry("sha256:ABC")
    with pytest.raises(ValueError, match="not a sha256 digest"):
        Blob(digest="md5:00", size=1)


# -- LocalStore -------------------------------------------------------------------------------------------


def test_local_roundtrip_and_layout(store: LocalStore, tmp_path: Path) -> None:
    entry = make_entry(key(1))
    assert store.get(key(1)) is None
    assert store.put(entry) is True
    assert store.get(key(1)) == entry
    hexkey = key(1).split(":")[1]
    assert (store.root / "entries" / f"{hexkey}.json").read_bytes() == entry.to_bytes()
    label_hash = hashlib.sha256(b"//apps/api:api").hexdigest()
    assert (store.root / "labels" / label_hash / hexkey).is_file()
    assert store.name == f"local:{tmp_path / 'cache'}"
    assert not [p for p in store.root.rglob("*") if p.name.startswith(".tmp-")]


def test_local_put_is_first_writer_wins(store: LocalStore) -> None:
    first = make_entry(key(1), created="2024-05-01T10:00:00Z")
    assert store.put(first) is True
    assert store.put(make_entry(key(1), created="2024-05-02T10:00:00Z")) is False
    assert store.get(key(1)) == first


def test_local_two_threads_racing_on_one_key(store: LocalStore) -> None:
    for round_ in range(20):
        k = key(100 + round_)
        barrier = threading.Barrier(2)
        results: dict[int, bool] = {}

        def write(n: int) -> None:
            barrier.wait()
            results[n] = store.put(make_entry(k, created=f"2024-05-0{n + 1}T00:00:00Z"))

        threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) == [False, True]
        winner = next(n for n, created in results.items() if created)
        stored = store.get(k)
        assert stored is not None and stored.created == f"2024-05-0{winner + 1}T00:00:00Z"


def test_local_tampered_entry_file_is_corrupt(store: LocalStore) -> None:
    store.put(make_entry(key(1)))
    path = store.root / "entries" / f"{key(1).split(':')[1]}.json"
    path.write_bytes(path.read_bytes().replace(b"//apps/api:api", b"//apps/api:evil"))
    with pytest.raises(CorruptEntry, match="entry_digest does not match") as info:
        store.get(key(1))
    assert info.value.label == "//apps/api:evil"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptEntry, match="not JSON"):
        store.get(key(1))


def test_local_entry_copied_to_another_key_is_corrupt(store: LocalStore) -> None:
    store.put(make_entry(key(1)))
    entries = store.root / "entries"
    os.link(entries / f"{key(1).split(':')[1]}.json", entries / f"{key(2).split(':')[1]}.json")
    with pytest.raises(CorruptEntry, match="holds the entry of"):
        store.get(key(2))


def test_local_blobs_dedup_and_verify(store: LocalStore, tmp_path: Path) -> None:
    digest, path = blob_file(tmp_path, b"layer bytes" * 1000)
    assert store.has_blob(digest) is False
    assert store.put_blob(digest, path) is True
    assert store.put_blob(digest, path) is False
    assert store.has_blob(digest) is True
    dest = tmp_path / "out" / "blob"
    store.get_blob(digest, dest)
    assert dest.read_bytes() == b"layer bytes" * 1000
    assert not [p for p in (tmp_path / "out").iterdir() if p != dest]


def test_local_put_blob_refuses_a_file_that_does_not_match(store: LocalStore, tmp_path: Path) -> None:
    digest, path = blob_file(tmp_path, b"expected")
    path.write_bytes(b"something else")
    with pytest.raises(CorruptBlob, match="does not hash to it"):
        store.put_blob(digest, path)
    assert store.has_blob(digest) is False
    with pytest.raises(FileNotFoundError):  # the caller's bug, not the cache's
        store.put_blob(digest, tmp_path / "missing")


def test_local_tampered_blob_is_corrupt_and_dest_removed(store: LocalStore, tmp_path: Path) -> None:
    digest, path = blob_file(tmp_path, b"good layer")
    store.put_blob(digest, path)
    (store.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(b"evil layer")
    dest = tmp_path / "out" / "blob"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    with pytest.raises(CorruptBlob, match="hashes to sha256:"):
        store.get_blob(digest, dest)
    assert list(dest.parent.iterdir()) == []


def test_local_missing_blob(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(MissingBlob, match="is not in local:"):
        store.get_blob(sha(b"nothing"), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_local_entries_for_newest_first(store: LocalStore) -> None:
    store.put(make_entry(key(1), created="2024-05-01T00:00:00Z"))
    store.put(make_entry(key(2), created="2024-05-03T00:00:00Z"))
    store.put(make_entry(key(3), created="2024-05-02T00:00:00Z"))
    store.put(make_entry(key(4), label="//other:x"))
    assert [e.key for e in store.entries_for("//apps/api:api")] == [key(2), key(3), key(1)]
    assert len(store.entries_for("//apps/api:api", limit=2)) == 2
    assert store.entries_for("//nothing:here") == []
    (store.root / "entries" / f"{key(2).split(':')[1]}.json").write_bytes(b"{}")  # damaged ones are left out
    assert [e.key for e in store.entries_for("//apps/api:api")] == [key(3), key(1)]


def test_local_stats(store: LocalStore, tmp_path: Path) -> None:
    assert store.stats() == StoreStats(entries=0, blobs=0, bytes=0)
    digest, path = blob_file(tmp_path, b"12345")
    store.put_blob(digest, path)
    store.put(make_entry(key(1)))
    stats = store.stats()
    assert (stats.entries, stats.blobs) == (1, 1)
    assert stats.bytes == 5 + len(make_entry(key(1)).to_bytes())


def test_local_replace_repairs(store: LocalStore, tmp_path: Path) -> None:
    store.put(make_entry(key(1)))
    (store.root / "entries" / f"{key(1).split(':')[1]}.json").write_bytes(b"garbage")
    assert store.put(make_entry(key(1)), replace=True) is True
    assert store.get(key(1)) == make_entry(key(1))


def test_local_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = LocalStore(tmp_path / "file" / "cache")
    with pytest.raises(CacheUnavailable, match="cannot write"):
        store.put(make_entry(key(1)))
    with pytest.raises(CacheUnavailable, match="cannot read"):
        store.get(key(1))


def test_local_store_is_a_cache_store(store: LocalStore) -> None:
    typed: CacheStore = store  # a structural check whenever mypy reads the tests
    assert typed.name.startswith("local:")


# -- GuardedStore -----------------------------------------------------------------------------------------


class FlakyStore:
    """A backend whose every call raises what ``fail`` says (or delegates); it counts the calls."""

    def __init__(self, inner: CacheStore, fail: Exception | None = None) -> None:
        self.inner = inner
        self.fail = fail
        self.calls: list[str] = []
        self.name = "fake://flaky"
        self.lock = threading.Lock()

    def _do(self, op: str, fn: Callable[[], T]) -> T:
        with self.lock:
            self.calls.append(op)
        if self.fail is not None:
            raise self.fail
        return fn()

    def get(self, key: str) -> CacheEntry | None:
        return self._do("get", lambda: self.inner.get(key))

    def put(self, entry: CacheEntry, *, replace: bool = False) -> bool:
        return self._do("put", lambda: self.inner.put(entry, replace=replace))

    def has_blob(self, digest: str) -> bool:
        return self._do("has_blob", lambda: self.inner.has_blob(digest))

    def put_blob(self, digest: str, path: Path, *, replace: bool = False) -> bool:
        return self._do("put_blob", lambda: self.inner.put_blob(digest, path, replace=replace))

    def get_blob(self, digest: str, dest: Path) -> None:
        self._do("get_blob", lambda: self.inner.get_blob(digest, dest))

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        return self._do("entries_for", lambda: self.inner.entries_for(label, limit=limit))

    def stats(self) -> StoreStats:
        return self._do("stats", self.inner.stats)


class Warnings(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def test_guard_passes_through(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    digest, path = blob_file(tmp_path, b"layer")
    _, cfg = blob_file(tmp_path, b"config")
    assert guard.put_blob(digest, path) is True
    assert guard.put_blob(sha(b"config"), cfg) is True
    assert guard.put_blob(digest, path) is False
    entry = make_entry(key(1))
    assert guard.put(entry) is True
    assert guard.put(entry) is False
    assert guard.get(key(1)) == entry
    assert guard.get_blob(digest, tmp_path / "out") is True
    assert [e.key for e in guard.entries_for("//apps/api:api")] == [key(1)]
    assert guard.stats().entries == 1
    assert warn == []


def test_guard_circuit_breaker_calls_a_down_backend_once(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    flaky = FlakyStore(store, CacheUnavailable("cannot connect to http://127.0.0.1:9"))
    guard = GuardedStore(flaky, warn=warn)
    digest, path = blob_file(tmp_path, b"layer")
    assert guard.get(key(1)) is None
    assert guard.get(key(2)) is None
    assert guard.put_blob(digest, path) is False
    assert guard.put(make_entry(key(1), blobs=())) is False
    assert guard.has_blob(digest) is False
    assert guard.get_blob(digest, tmp_path / "out") is False
    assert guard.entries_for("//apps/api:api") == []
    assert guard.stats() == StoreStats(entries=0, blobs=0, bytes=0)
    assert flaky.calls == ["get"]
    assert warn == ["cache fake://flaky unavailable: cannot connect to http://127.0.0.1:9; "
                    "continuing without it (targets are rebuilt)"]
    assert guard.available is False


def test_guard_warns_once_when_threads_fail_together(store: LocalStore) -> None:
    warn = Warnings()
    guard = GuardedStore(FlakyStore(store, CacheUnavailable("timed out")), warn=warn)
    threads = [threading.Thread(target=guard.get, args=(key(n),)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(warn) == 1


def test_guard_corrupt_entry_is_a_miss_with_a_warning_and_nothing_is_deleted(store: LocalStore) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    store.put(make_entry(key(1), blobs=()))
    path = store.root / "entries" / f"{key(1).split(':')[1]}.json"
    path.write_bytes(path.read_bytes().replace(b'"created":"2024', b'"created":"2025'))
    tampered = path.read_bytes()
    assert guard.get(key(1)) is None
    assert guard.get(key(1)) is None
    assert warn == [f"cache entry {key(1)} (//apps/api:api) in {store.name} is corrupt (entry_digest does not "
                    "match the content (modified or truncated)); not used, the target is rebuilt"]
    assert path.read_bytes() == tampered
    assert guard.available  # corruption does not open the circuit
    # This run rebuilt the target: recording it replaces the corrupt entry.
    assert guard.put(make_entry(key(1), blobs=())) is True
    assert store.get(key(1)) == make_entry(key(1), blobs=())
    assert warn[-1].endswith("was corrupt; replaced")


def test_guard_does_not_overwrite_an_entry_of_another_version(store: LocalStore) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    path = store.root / "entries" / f"{key(1).split(':')[1]}.json"
    path.parent.mkdir(parents=True)
    newer = json.dumps({"version": 2, "label": "//apps/api:api"}).encode()
    path.write_bytes(newer)
    assert guard.get(key(1)) is None
    assert "is unusable (entry version 2" in warn[0]
    assert guard.put(make_entry(key(1), blobs=())) is False
    assert path.read_bytes() == newer


def test_guard_corrupt_blob_is_a_miss_and_a_rebuild_repairs_it(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    digest, path = blob_file(tmp_path, b"layer")
    guard.put_blob(digest, path)
    stored = store.root / "blobs" / "sha256" / digest.split(":")[1]
    stored.write_bytes(b"evil")
    dest = tmp_path / "out"
    assert guard.get_blob(digest, dest) is False
    assert not dest.exists()
    assert len(warn) == 1 and "is corrupt" in warn[0] and "the target is rebuilt" in warn[0]
    assert stored.read_bytes() == b"evil"  # not deleted...
    assert guard.has_blob(digest) is False  # ...but not trusted either
    assert guard.put_blob(digest, path) is True  # and replaced by the rebuild's verified copy
    assert stored.read_bytes() == b"layer"
    assert guard.get_blob(digest, dest) is True


def test_guard_missing_blob(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    assert guard.get_blob(sha(b"x"), tmp_path / "out") is False
    assert "is not in" in warn[0]


def test_guard_records_no_entry_whose_blobs_are_missing(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    _, layer = blob_file(tmp_path, b"layer")
    assert guard.put_blob(sha(b"layer"), layer) is True
    assert guard.put(make_entry(key(1))) is False  # "config" was never stored
    assert store.get(key(1)) is None
    assert warn == [f"not recording //apps/api:api in cache {store.name}: blob {sha(b'config')} is not in it"]


def test_guard_read_only_writes_nothing(store: LocalStore, tmp_path: Path) -> None:
    flaky = FlakyStore(store)
    guard = GuardedStore(flaky, warn=Warnings(), read_only=True)
    digest, path = blob_file(tmp_path, b"layer")
    assert guard.put_blob(digest, path) is False
    assert guard.put(make_entry(key(1), blobs=())) is False
    assert guard.get(key(1)) is None
    assert flaky.calls == ["get"]
    assert store.stats() == StoreStats(entries=0, blobs=0, bytes=0)


def test_guard_bad_source_blob_is_a_warning(store: LocalStore, tmp_path: Path) -> None:
    warn = Warnings()
    guard = GuardedStore(store, warn=warn)
    digest, path = blob_file(tmp_path, b"layer")
    path.write_bytes(b"changed")
    assert guard.put_blob(digest, path) is False
    assert "does not hash to it" in warn[0]
    assert guard.available


# -- S3Store without a server: error translation ------------------------------------------------------------


def test_s3_missing_bucket_is_unavailable(s3_stub: Any) -> None:
    from imgbuild.cache.s3 import S3Store

    client, stubber = s3_stub
    stubber.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    with pytest.raises(CacheUnavailable, match="bucket 'b' does not exist"):
        S3Store("b", prefix="/p/", client=client).get(key(1))


def test_s3_access_denied_and_bad_credentials_say_so_without_secrets(s3_stub: Any) -> None:
    from imgbuild.cache.s3 import S3Store

    client, stubber = s3_stub
    store = S3Store("b", client=client)
    stubber.add_response("head_bucket", {})
    stubber.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403,
                             service_message="very-secret-value")
    stubber.add_client_error("get_object", service_error_code="SignatureDoesNotMatch", http_status_code=403)
    with pytest.raises(CacheUnavailable, match="access denied reading an entry in bucket 'b'") as denied:
        store.get(key(1))
    with pytest.raises(CacheUnavailable, match=r"rejected the credentials \(SignatureDoesNotMatch\)") as rejected:
        store.get(key(1))
    for exc in (denied.value, rejected.value):
        assert "very-secret-value" not in str(exc) and "AKIDEXAMPLE" not in str(exc)


def test_s3_put_is_conditional_and_412_means_taken(s3_stub: Any) -> None:
    from botocore.stub import ANY

    from imgbuild.cache.s3 import S3Store

    client, stubber = s3_stub
    store = S3Store("b", prefix="team", client=client)
    entry = make_entry(key(1))
    hexkey = key(1).split(":")[1]
    stubber.add_response("head_bucket", {})
    stubber.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412,
                             expected_params={"Bucket": "b", "Key": f"team/entries/{hexkey}.json",
                                              "Body": entry.to_bytes(), "ContentType": "application/json",
                                              "IfNoneMatch": "*"})
    assert store.put(entry) is False
    label_hash = hashlib.sha256(b"//apps/api:api").hexdigest()
    stubber.add_response("put_object", {}, {"Bucket": "b", "Key": f"team/entries/{hexkey}.json", "Body": ANY,
                                            "ContentType": "application/json", "IfNoneMatch": "*"})
    stubber.add_response("put_object", {}, {"Bucket": "b", "Key": f"team/labels/{label_hash}/{hexkey}", "Body": b""})
    assert store.put(entry) is True
    stubber.assert_no_pending_responses()
    assert store.name == "s3://b/team"


def test_s3_without_conditional_writes_falls_back_to_head_then_put(s3_stub: Any) -> None:
    from imgbuild.cache.s3 import S3Store

    client, stubber = s3_stub
    store = S3Store("b", client=client)
    stubber.add_response("head_bucket", {})
    stubber.add_client_error("put_object", service_error_code="NotImplemented", http_status_code=501)
    stubber.add_response("head_object", {})
    assert store.put(make_entry(key(1))) is False
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_response("put_object", {})  # the entry, unconditionally
    stubber.add_response("put_object", {})  # the marker
    assert store.put(make_entry(key(2))) is True
    stubber.assert_no_pending_responses()


def test_s3_missing_blob_and_object(s3_stub: Any, tmp_path: Path) -> None:
    from imgbuild.cache.s3 import S3Store

    client, stubber = s3_stub
    store = S3Store("b", client=client)
    stubber.add_response("head_bucket", {})
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    stubber.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    assert store.has_blob(sha(b"x")) is False
    assert store.get(key(1)) is None
    with pytest.raises(MissingBlob):
        store.get_blob(sha(b"x"), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_s3_store_construction_never_fails() -> None:
    from imgbuild.cache.s3 import S3Store

    store: CacheStore = S3Store("bucket", prefix="a/b/", endpoint_url="not a url", region=None)
    assert store.name == "s3://bucket/a/b"
