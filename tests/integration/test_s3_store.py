"""S3Store against the real S3-compatible server of ``scripts/dev-services`` ($IMGBUILD_TEST_S3_ENDPOINT).

Each test makes its own bucket (the server keeps data in memory and is shared). As with the engine: with
``IMGBUILD_SERVICES`` set (CI) a server that does not answer fails the tests; otherwise they are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.s3 import S3Store
from imgbuild.cache.store import CacheUnavailable, CorruptBlob, CorruptEntry, GuardedStore, StoreStats
from tests.conftest import at_once


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Every test here talks to the S3 server with the test credentials."""


@pytest.fixture
def store(s3_endpoint: str, bucket: str) -> S3Store:
    return S3Store(bucket, prefix="ci/targets/", endpoint_url=s3_endpoint, use_path_style=True)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_entry(key: str, *, blobs: tuple[bytes, ...] = (), created: str = "2024-05-01T10:00:00Z",
               label: str = "//apps/api:api") -> CacheEntry:
    return CacheEntry(key=key, label=label, created=created, image_id=sha(b"image"), manifest_digest=sha(b"m"),
                      config_digest=None, blobs=tuple(Blob(digest=sha(b), size=len(b)) for b in blobs),
                      oci_index='{"schemaVersion":2}', inputs='{"label":"//apps/api:api"}')


def blob_file(tmp_path: Path, data: bytes) -> tuple[str, Path]:
    path = tmp_path / hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    return sha(data), path


def keys_in(admin: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in admin.list_objects_v2(Bucket=bucket).get("Contents", ()))


def test_roundtrip(store: S3Store, admin: Any, bucket: str, tmp_path: Path) -> None:
    layer = os.urandom(256 << 10)
    digest, path = blob_file(tmp_path, layer)
    key = sha(b"inputs 1")
    entry = make_entry(key, blobs=(layer,))

    assert store.get(key) is None
    assert store.put_blob(digest, path) is True
    assert store.put(entry) is True
    assert store.get(key) == entry
    dest = tmp_path / "restored" / "layer"
    store.get_blob(digest, dest)
    assert dest.read_bytes() == layer
    assert store.entries_for("//apps/api:api") == [entry]
    assert store.stats() == StoreStats(entries=1, blobs=1, bytes=len(layer) + len(entry.to_bytes()))
    hexkey, label_hash = key.split(":")[1], hashlib.sha256(b"//apps/api:api").hexdigest()
    assert keys_in(admin, bucket) == sorted([f"ci/targets/entries/{hexkey}.json",
                                             f"ci/targets/labels/{label_hash}/{hexkey}",
                                             f"ci/targets/blobs/sha256/{digest.split(':')[1]}"])


def test_entries_for_newest_first(store: S3Store) -> None:
    for n, created in enumerate(["2024-05-01T00:00:00Z", "2024-05-03T00:00:00Z", "2024-05-02T00:00:00Z"]):
        store.put(make_entry(sha(f"k{n}".encode()), created=created))
    store.put(make_entry(sha(b"other"), label="//other:x"))
    assert [e.created[:10] for e in store.entries_for("//apps/api:api")] == ["2024-05-03", "2024-05-02",
                                                                             "2024-05-01"]


def test_blob_dedup(store: S3Store, tmp_path: Path) -> None:
    digest, path = blob_file(tmp_path, b"shared base layer")
    assert store.has_blob(digest) is False
    assert store.put_blob(digest, path) is True
    assert store.put_blob(digest, path) is False  # the second upload does nothing
    assert store.has_blob(digest) is True


def test_big_blob_goes_multipart(store: S3Store, admin: Any, bucket: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import imgbuild.cache.s3 as s3

    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 << 20)  # S3's smallest part size
    data = os.urandom(11 << 20)
    digest, path = blob_file(tmp_path, data)
    assert store.put_blob(digest, path) is True
    head = admin.head_object(Bucket=bucket, Key=f"ci/targets/blobs/sha256/{digest.split(':')[1]}")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    store.get_blob(digest, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data


def test_concurrent_put_of_one_key(s3_endpoint: str, bucket: str) -> None:
    # A store (so a client and a connection pool) per writer, as on two machines; warmed up, so that the
    # two writes leave together.
    writers = [S3Store(bucket, endpoint_url=s3_endpoint) for _ in range(2)]
    for writer in writers:
        writer.has_blob(sha(b"warm up"))
    for round_ in range(20):
        key = sha(f"race {round_}".encode())
        entries = [make_entry(key, created=f"2024-05-0{n + 1}T00:00:00Z") for n in range(2)]
        created = at_once(lambda n: writers[n].put(entries[n]), 2)
        assert sorted(created) == [False, True]
        winner = created.index(True)
        stored = writers[0].get(key)
        assert stored is not None and stored.created == f"2024-05-0{winner + 1}T00:00:00Z"


def test_entry_tampered_in_the_bucket(store: S3Store, admin: Any, bucket: str) -> None:
    key = sha(b"inputs 1")
    store.put(make_entry(key))
    object_key = f"ci/targets/entries/{key.split(':')[1]}.json"
    doc = json.loads(admin.get_object(Bucket=bucket, Key=object_key)["Body"].read())
    doc["image_id"] = sha(b"evil")
    admin.put_object(Bucket=bucket, Key=object_key, Body=json.dumps(doc).encode())

    with pytest.raises(CorruptEntry, match="entry_digest does not match"):
        store.get(key)
    warnings: list[str] = []
    guard = GuardedStore(store, warn=warnings.append)
    assert guard.get(key) is None
    assert len(warnings) == 1 and "is corrupt" in warnings[0] and "//apps/api:api" in warnings[0]
    assert object_key in keys_in(admin, bucket)  # the guard deletes nothing
    assert guard.put(make_entry(key)) is True  # but a rebuild in this run replaces it with a sound entry
    assert store.get(key) == make_entry(key)


def test_blob_tampered_in_the_bucket(store: S3Store, admin: Any, bucket: str, tmp_path: Path) -> None:
    digest, path = blob_file(tmp_path, b"good layer")
    store.put_blob(digest, path)
    admin.put_object(Bucket=bucket, Key=f"ci/targets/blobs/sha256/{digest.split(':')[1]}", Body=b"evil layer")
    dest = tmp_path / "out" / "layer"
    with pytest.raises(CorruptBlob):
        store.get_blob(digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temporary file left either


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    store = S3Store("any-bucket", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(CacheUnavailable, match="cannot connect to http://127.0.0.1:"):
        store.get(sha(b"k"))
    warnings: list[str] = []
    guard = GuardedStore(store, warn=warnings.append)
    assert guard.get(sha(b"k")) is None
    assert guard.get_blob(sha(b"b"), tmp_path / "b") is False
    assert len(warnings) == 1 and "unavailable" in warnings[0]


def test_missing_bucket_is_unavailable(s3_endpoint: str, admin: Any, tmp_path: Path) -> None:
    name = f"imgbuild-missing-{uuid.uuid4().hex[:12]}"
    store = S3Store(name, endpoint_url=s3_endpoint)
    with pytest.raises(CacheUnavailable, match=f"bucket '{name}' does not exist"):
        store.get(sha(b"k"))
    digest, path = blob_file(tmp_path, b"x")
    with pytest.raises(CacheUnavailable, match="does not exist"):
        store.put_blob(digest, path)
    assert name not in [b["Name"] for b in admin.list_buckets()["Buckets"]]  # and it made none
