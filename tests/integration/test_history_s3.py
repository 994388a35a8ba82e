"""S3History against the real S3-compatible server of ``scripts/dev-services`` ($IMGBUILD_TEST_S3_ENDPOINT).

Each test makes its own bucket (the ``bucket`` fixture). With ``IMGBUILD_SERVICES`` set (CI) a server that
does not answer fails the tests; otherwise they are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from imgbuild.commands import history as command
from imgbuild.history import CorruptRecord, GuardedHistory, HistoryRecord, HistoryUnavailable
from imgbuild.history.s3 import S3History
from tests.conftest import WorkspaceFactory, at_once

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Every test here talks to the S3 server with the test credentials."""


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def make_record(time_: str = "2024-05-01T10:00:00Z", **changes: Any) -> HistoryRecord:
    fields: dict[str, Any] = dict(kind="build", time=time_, label="//apps/api:api", input_digest=sha("inputs"),
                                  image_id=sha("image"), manifest_digest=sha("manifest"), git_commit=COMMIT,
                                  git_branch="main", tags=("localhost:5000/api:v1",), secret_ids=("npm",),
                                  cache="built", duration_s=3.5)
    fields.update(changes)
    return HistoryRecord(**fields)


def keys_in(admin: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", ())]
    return sorted(keys)


@pytest.fixture
def store(s3_endpoint: str, bucket: str) -> S3History:
    return S3History(bucket, prefix="audit/", endpoint_url=s3_endpoint, use_path_style=True)


class Calls:
    """Counts the S3 operations a client makes."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1


def counted_store(s3_endpoint: str, bucket: str) -> tuple[S3History, Calls]:
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    return S3History(bucket, prefix="audit/", client=client), Calls(client)


def test_append_get_and_query(store: S3History, admin: Any, bucket: str) -> None:
    api = make_record("2024-05-01T10:00:00.250Z")
    web = make_record("2024-05-02T09:00:00Z", label="//apps/web:web", tags=())
    push = make_record("2024-05-02T11:00:00Z", kind="push", pushed=("localhost:5000/api@" + sha("manifest"),))
    for r in (api, web, push):
        store.append(r)
    store.append(api)  # already there: nothing happens, no error
    assert keys_in(admin, bucket) == sorted([
        f"audit/records/2024/05/01/20240501T100000.250Z-{api.hex}.json",
        f"audit/records/2024/05/02/20240502T090000.000Z-{web.hex}.json",
        f"audit/records/2024/05/02/20240502T110000.000Z-{push.hex}.json",
        f"audit/ids/{api.hex}@20240501T100000.250Z",
        f"audit/ids/{web.hex}@20240502T090000.000Z",
        f"audit/ids/{push.hex}@20240502T110000.000Z",
    ])
    stored = admin.get_object(Bucket=bucket, Key=store.record_key(api))["Body"].read()
    assert stored == api.to_bytes()

    assert store.get(api.id) == api and store.get(web.hex[:8]) == web
    assert store.get("sha256:" + "0" * 64) is None
    assert store.query() == [push, web, api]
    assert store.query(limit=1) == [push]
    assert store.query(labels={"//apps/api:api"}) == [push, api]
    assert store.query(kind="push") == [push]
    assert store.query(tag="v1", kind="build") == [api]
    assert store.query(commit=COMMIT[:10]) == [push, web, api]
    assert store.query(since=datetime(2024, 5, 2, 9, tzinfo=timezone.utc)) == [push, web]


def test_queries_read_only_what_they_need(s3_endpoint: str, bucket: str) -> None:
    store, calls = counted_store(s3_endpoint, bucket)
    times = ["2022-12-31T23:00:00Z", "2023-06-15T08:00:00Z", "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z",
             *(f"2024-03-{d:02d}T10:00:00Z" for d in range(1, 21))]
    records = [make_record(t, ci_run_id=str(n)) for n, t in enumerate(times)]
    for r in records:
        store.append(r)
    newest_first = list(reversed(records))

    calls.counts.clear()
    assert store.query(limit=3) == newest_first[:3]
    assert calls.counts["GetObject"] == 3

    calls.counts.clear()
    since = datetime(2024, 3, 18, 12, tzinfo=timezone.utc)
    assert store.query(since=since) == newest_first[:2]  # 03-20 and 03-19; 03-18 10:00 is before
    assert calls.counts["GetObject"] == 2  # the older records are not even read
    assert calls.counts["ListObjectsV2"] == 6  # years, months of 2024, days of March, then 20, 19 and 18

    # Across year and month boundaries, the walk keeps what is newer than `since` and prunes the rest.
    assert store.query(since=datetime(2024, 1, 31, 12, tzinfo=timezone.utc)) == newest_first[:22]
    assert store.query(since=datetime(2023, 1, 1, tzinfo=timezone.utc)) == newest_first[:23]
    assert store.query() == newest_first


def test_since_is_inclusive_and_exact(store: S3History) -> None:
    records = [make_record(f"2024-03-{d:02d}T10:00:00Z") for d in (17, 18, 19)]
    for r in records:
        store.append(r)
    assert store.query(since=datetime(2024, 3, 18, 10, tzinfo=timezone.utc)) == [records[2], records[1]]
    assert store.query(since=datetime(2024, 3, 18, 10, 0, 0, 1000, tzinfo=timezone.utc)) == [records[2]]


def test_two_writers_of_one_record_make_one_object(s3_endpoint: str, bucket: str, admin: Any) -> None:
    # A store (so a client and a connection pool) per writer, as on two CI runners; warmed up, so that the
    # two writes leave together.
    writers = [S3History(bucket, prefix="audit/", endpoint_url=s3_endpoint) for _ in range(2)]
    for w in writers:
        w.get("0000")
    for round_ in range(15):
        record = make_record(ci_run_id=str(round_))
        at_once(lambda n: writers[n].append(record), 2)
        assert writers[1].get(record.id) == record
    assert len(keys_in(admin, bucket, "audit/records/")) == 15 and len(keys_in(admin, bucket, "audit/ids/")) == 15


def test_tampered_object_is_detected(store: S3History, admin: Any, bucket: str, s3_endpoint: str) -> None:
    good, victim = make_record("2024-05-01T10:00:00Z"), make_record("2024-05-02T10:00:00Z")
    store.append(good)
    store.append(victim)
    doc = json.loads(admin.get_object(Bucket=bucket, Key=store.record_key(victim))["Body"].read())
    doc["manifest_digest"] = sha("evil")
    admin.put_object(Bucket=bucket, Key=store.record_key(victim), Body=json.dumps(doc).encode())

    with pytest.raises(CorruptRecord, match=f"s3://{bucket}/audit/records/2024/05/02/.*does not match its content"):
        store.get(victim.id)
    with pytest.raises(CorruptRecord):
        store.query()
    reported: list[CorruptRecord] = []
    lenient = S3History(bucket, prefix="audit/", endpoint_url=s3_endpoint, on_corrupt=reported.append)
    assert lenient.query() == [good] and len(reported) == 1
    assert store.get(good.id) == good

    # An intact record copied over another's key is not that record.
    admin.put_object(Bucket=bucket, Key=store.record_key(victim), Body=good.to_bytes())
    with pytest.raises(CorruptRecord, match="stored under another record's key"):
        store.get(victim.id)
    # And appending again does not repair it: records are never rewritten.
    store.append(victim)
    assert admin.get_object(Bucket=bucket, Key=store.record_key(victim))["Body"].read() == good.to_bytes()


def test_a_marker_without_its_record_is_not_found(store: S3History, admin: Any, bucket: str) -> None:
    record = make_record()
    admin.put_object(Bucket=bucket, Key=f"audit/ids/{record.hex}@20240501T100000.000Z", Body=b"")
    assert store.get(record.hex[:10]) is None and store.query() == []
    store.append(record)  # the writer's retry (from its spool) completes it
    assert store.get(record.hex[:10]) == record


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_store_spools_then_flushes_into_a_reachable_one(tmp_path: Path, store: S3History,
                                                                     admin: Any, bucket: str) -> None:
    spool = tmp_path / "history-spool"
    warnings: list[str] = []
    down = GuardedHistory(S3History(bucket, endpoint_url=f"http://127.0.0.1:{_closed_port()}"), spool,
                          warnings.append)
    records = [make_record(f"2024-05-0{d}T10:00:00Z") for d in range(1, 6)]
    started = time.monotonic()
    for r in records:
        down.append(r)  # never raises
    assert time.monotonic() - started < 10  # one failed attempt, then straight to the spool
    assert len(warnings) == 1 and "cannot connect to http://127.0.0.1:" in warnings[0]
    assert sorted(p.name for p in spool.iterdir()) == sorted(f"{r.hex}.json" for r in records)

    # The next run reaches the store: its first append uploads the spool first.
    up = GuardedHistory(store, spool, warnings.append)
    extra = make_record("2024-05-09T10:00:00Z")
    up.append(extra)
    assert store.query() == [extra, *reversed(records)]
    assert list(spool.iterdir()) == [] and len(warnings) == 1
    assert up.flush() == 0


def test_missing_bucket_is_unavailable(s3_endpoint: str, admin: Any) -> None:
    name = f"imgbuild-missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(HistoryUnavailable, match=f"bucket '{name}' does not exist"):
        S3History(name, endpoint_url=s3_endpoint).append(make_record())
    assert name not in [b["Name"] for b in admin.list_buckets()["Buckets"]]


def test_history_command_on_an_s3_workspace(make_ws: WorkspaceFactory, s3_endpoint: str, bucket: str,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_ws({"imgbuild.yaml": f"version: 1\nhistory:\n  backend: s3\n  bucket: {bucket}\n"
                                     f"  prefix: mono/\n  endpoint_url: {s3_endpoint}\n"})
    monkeypatch.chdir(root)
    from imgbuild.specfiles.packages import load

    ws, _ = load(root, root)
    history = command.open_history(ws, lambda w: None)
    older, newer = make_record("2024-05-01T10:00:00Z"), make_record("2024-05-03T10:00:00Z", kind="push")
    history.append(older)
    history.append(newer)

    def main(*argv: str) -> str:
        ns = argparse.Namespace(workspace=root, patterns=list(argv), since=None, commit=None, tag=None, kind=None,
                                limit=None, format="json")
        assert command.main(ns) == 0
        return capsys.readouterr().out

    assert [d["id"] for d in json.loads(main())] == [newer.id, older.id]
    assert json.loads(main("show", older.hex[:8]))["id"] == older.id
