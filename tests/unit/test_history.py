"""The manifest history: records, the SQLite store, GuardedHistory's spool, S3History's requests, the command.

No network and no process: S3History is checked here through botocore's Stubber (canned responses);
tests/integration/test_history_s3.py runs it against the real S3 server.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sqlite3
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import pytest

import imgbuild.history.sqlite as sqlite_module
from imgbuild.cli import _protect_exclusions
from imgbuild.statedir import for_workspace
from imgbuild.commands import history as command
from imgbuild.errors import ImgbuildError
from imgbuild.history import (AmbiguousId, CorruptRecord, GuardedHistory, HistoryRecord, HistoryStore,
                              HistoryUnavailable, InvalidQuery, SpoolError, format_time)
from imgbuild.history.s3 import S3History
from imgbuild.history.sqlite import SqliteHistory
from imgbuild.history.store import Query, newest_first
from imgbuild.model import Secret
from imgbuild.specfiles.packages import load
from imgbuild.specfiles.schemas import schema_dir
from imgbuild.stepwhy import StepFlag, StepReport
from tests.conftest import WorkspaceFactory, at_once

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def sha_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_record(**changes: Any) -> HistoryRecord:
    fields: dict[str, Any] = dict(
        kind="build", time="2024-05-01T10:00:00Z", label="//apps/api:api", input_digest=sha("inputs"),
        image_id=sha("image"), config_digest=sha("config"), manifest_digest=sha("manifest"),
        platforms=(("linux/amd64", sha("amd64")), ("linux/arm64", sha("arm64"))),
        pushed=("ghcr.io/acme/api@" + sha("manifest"),), tags=("ghcr.io/acme/api:v1.2.3", "ghcr.io/acme/api:latest"),
        git_commit=COMMIT, git_branch="main", git_dirty=False, build_args=(("PORT", "8080"),),
        secret_ids=("npm_token",), builder="default", cache="built", duration_s=12.5, layer_count=7,
        layer_bytes=123456, ci_provider="github-actions", ci_run_id="42",
        ci_run_url="https://github.com/acme/mono/actions/runs/42", workspace="mono")
    fields.update(changes)
    return HistoryRecord(**fields)


def at(day: int, hour: int = 10, **changes: Any) -> HistoryRecord:
    return make_record(time=f"2024-05-{day:02d}T{hour:02d}:00:00Z", **changes)


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schema_dir() / "history-record.schema.json").read_text())
    return loaded


# -- records ----------------------------------------------------------------------------------------------


def test_bytes_are_canonical_json_and_roundtrip() -> None:
    record = make_record()
    data = record.to_bytes()
    doc = json.loads(data)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["id"] == record.id == sha_bytes(json.dumps({k: v for k, v in doc.items() if k != "id"},
                                                          sort_keys=True, separators=(",", ":")).encode())
    assert HistoryRecord.from_bytes(data) == record
    assert doc["version"] == 1 and doc["platforms"] == {"linux/amd64": sha("amd64"), "linux/arm64": sha("arm64")}


def test_the_same_facts_give_the_same_bytes_whatever_the_order() -> None:
    a = make_record(tags=("r:b", "r:a", "r:a"), pushed=("r@" + sha("2"), "r@" + sha("1")), secret_ids=("b", "a"),
                    build_args=(("Z", "1"), ("A", "2")),
                    platforms=(("linux/arm64", sha("arm64")), ("linux/amd64", sha("amd64"))))
    b = make_record(tags=("r:a", "r:b"), pushed=("r@" + sha("1"), "r@" + sha("2")), secret_ids=("a", "b"),
                    build_args=(("A", "2"), ("Z", "1")),
                    platforms=(("linux/amd64", sha("amd64")), ("linux/arm64", sha("arm64"))))
    assert a.to_bytes() == b.to_bytes() and a.id == b.id
    assert a.tags == ("r:a", "r:b")
    # Times are one fixed-width UTC form, whatever offset they were given in.
    c = make_record(time="2024-05-01T12:00:00.000+02:00")
    assert c.time == "2024-05-01T10:00:00.000Z" and c.id == make_record().id


# Golden values: if they change, every stored id changes. Bump the record version instead.
GOLDEN_BYTES = (
    b'{"build_args":{},"builder":null,"cache":null,"ci_provider":null,"ci_run_id":null,'
    b'"ci_run_url":null,"config_digest":null,"duration_s":null,"git_branch":null,'
    b'"git_commit":null,"git_dirty":false,'
    b'"id":"sha256:e612d1b6fc3a07310d3d3843e5c8fe115c7cd7b1af546e70ffd0c4524b1a9257",'
    b'"image_id":null,"input_digest":null,"kind":"build","label":"//apps/api:api",'
    b'"layer_bytes":null,"layer_count":null,"manifest_digest":null,"platforms":{},"pushed":[],'
    b'"release_version":null,"secret_ids":[],"tags":[],"time":"2024-05-01T10:00:00.000Z",'
    b'"version":1,"workspace":null}'
)


def test_the_bytes_and_id_are_stable_across_versions_of_imgbuild() -> None:
    record = HistoryRecord(kind="build", time="2024-05-01T10:00:00Z", label="//apps/api:api")
    assert record.to_bytes() == GOLDEN_BYTES
    assert record.id == "sha256:e612d1b6fc3a07310d3d3843e5c8fe115c7cd7b1af546e70ffd0c4524b1a9257"


def test_every_fact_is_in_the_id() -> None:
    base = make_record()
    changes: dict[str, Any] = dict(
        kind="push", time="2024-05-01T10:00:00.001Z", label="//apps/api:other", input_digest=sha("x"),
        image_id=None, config_digest=None, manifest_digest=None, platforms=(), pushed=(), tags=(),
        git_commit=OTHER_COMMIT, git_branch="dev", git_dirty=True, build_args=(), secret_ids=(), builder=None,
        cache="cached", duration_s=1.0, layer_count=1, layer_bytes=1, ci_provider=None, ci_run_id="43",
        ci_run_url=None, release_version="1.2.3", workspace=None)
    ids = {replace(base, **{name: value}).id for name, value in changes.items()}
    assert len(ids) == len(changes) and base.id not in ids


def test_secret_values_are_never_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    # The way a build makes a record from a target: secrets by id, whatever their source holds.
    monkeypatch.setenv("NPM_TOKEN", "s3cr3t-npm-t0ken-value")
    secrets = (Secret(id="npm_token", env="NPM_TOKEN"), Secret(id="pip.conf", src="~/.pip/pip.conf"))
    record = make_record(secret_ids=tuple(s.id for s in secrets))
    data = record.to_bytes()
    assert b"s3cr3t-npm-t0ken-value" not in data and b"NPM_TOKEN" not in data and b"pip/pip.conf" not in data
    assert json.loads(data)["secret_ids"] == ["npm_token", "pip.conf"]
    # What is not an id is refused, so that a value cannot be passed where an id goes ...
    with pytest.raises(ValueError, match="not an id"):
        make_record(secret_ids=("npm_token=s3cr3t-npm-t0ken-value",))
    # ... and a build arg named like a secret (the likeliest leak) is refused.
    with pytest.raises(ValueError, match="share a secret's id"):
        make_record(build_args=(("npm_token", "s3cr3t-npm-t0ken-value"),))


def test_records_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(schema())
    minimal = HistoryRecord(kind="release", time="2024-05-01T10:00:00Z", label="//:root", release_version="2.0")
    for record in (make_record(), minimal, make_record(kind="push", cache=None, duration_s=None)):
        errors = [e.message for e in validator.iter_errors(json.loads(record.to_bytes()))]
        assert errors == [], record
    assert set(schema()["required"]) == set(schema()["properties"]) - {"steps"} == set(make_record().to_dict())


def test_the_schema_refuses_what_the_record_refuses() -> None:
    validator = jsonschema.Draft202012Validator(schema())
    doc = make_record().to_dict()
    for bad in ({"kind": "deploy"}, {"time": "2024-05-01T10:00:00Z"}, {"secret_ids": ["a b"]},
                {"extra": 1}, {"cache": "hit"}, {"manifest_digest": "sha256:short"}):
        assert list(validator.iter_errors({**doc, **bad})), bad


@pytest.mark.parametrize("change, message", [
    ({"kind": "deploy"}, "kind must be"),
    ({"time": "yesterday"}, "RFC 3339"),
    ({"time": "2024-05-01T10:00:00"}, "RFC 3339"),  # no offset: ambiguous
    ({"label": "apps/api"}, "must start with //"),
    ({"label": "//apps/api"}, "canonical form"),
    ({"image_id": "sha256:abc"}, "image_id must be"),
    ({"platforms": (("linux/amd64", "latest"),)}, "manifest digest"),
    ({"git_commit": "abc123"}, "full lowercase commit"),
    ({"cache": "hit"}, "cache must be"),
    ({"duration_s": -1}, "non-negative"),
    ({"duration_s": float("nan")}, "non-negative"),
    ({"layer_count": True}, "non-negative integer"),
    ({"tags": "r:a"}, "not a string"),
    ({"tags": ("",)}, "non-empty"),
    ({"build_args": (("A", "1"), ("A", "2"))}, "more than once"),
    ({"build_args": (("A", 1),)}, "pair"),
    ({"version": 2}, "record version"),
])
def test_invalid_records_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_record(**change)


def reseal(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "id"}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**body, "id": sha_bytes(data)}, sort_keys=True, separators=(",", ":")).encode()


def test_corrupt_records_are_detected() -> None:
    data = make_record().to_bytes()
    doc = json.loads(data)
    cases: dict[str, bytes] = {
        "not JSON": data[:-10],
        "not a JSON object": b"[]",
        "no id": json.dumps({k: v for k, v in doc.items() if k != "id"}).encode(),
        "does not match its content": json.dumps({**doc, "image_id": sha("evil")}).encode(),
        "record version 2": json.dumps({**doc, "version": 2}).encode(),
        "fields differ": reseal({**doc, "extra": "x"}),
        "not in canonical form": reseal({**doc, "tags": list(reversed(doc["tags"]))}),
        "kind must be": reseal({**doc, "kind": "deploy"}),
        "git_dirty is str": reseal({**doc, "git_dirty": "no"}),
    }
    for reason, bad in cases.items():
        with pytest.raises(CorruptRecord, match=reason):
            HistoryRecord.from_bytes(bad, where="somewhere")
    with pytest.raises(CorruptRecord, match="in somewhere is corrupt"):
        HistoryRecord.from_bytes(cases["does not match its content"], where="somewhere")


def test_has_tag_matches_the_full_ref_or_its_tag() -> None:
    record = make_record(tags=("localhost:5000/acme/api:v1", "ghcr.io/acme/api:latest"))
    assert record.has_tag("v1") and record.has_tag("localhost:5000/acme/api:v1") and record.has_tag("latest")
    assert not record.has_tag("api:v1") and not record.has_tag("v") and not record.has_tag("5000")


# -- the query ----------------------------------------------------------------------------------------------


def test_query_arguments_are_checked() -> None:
    with pytest.raises(InvalidQuery, match="not a .*git commit"):
        Query.make(commit="xyz")
    with pytest.raises(InvalidQuery, match="kind must be"):
        Query.make(kind="deploy")
    with pytest.raises(InvalidQuery, match="limit"):
        Query.make(limit=-1)
    q = Query.make(since=datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))), commit="0123ABC")
    assert q.since == "2024-05-01T10:00:00.000Z" and q.commit == "0123abc"


# -- SqliteHistory --------------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> SqliteHistory:
    return SqliteHistory(tmp_path / "ws" / ".imgbuild" / "history.sqlite")


def test_sqlite_is_a_history_store(db: SqliteHistory) -> None:
    typed: HistoryStore = db  # a structural check whenever mypy reads the tests
    assert typed.name.startswith("sqlite:")


def test_sqlite_takes_a_run_of_records_in_one_go(db: SqliteHistory) -> None:
    records = [at(d) for d in range(1, 8)]
    db.append_all(records[:4])
    db.append_all(records)  # the first four again: no-ops, ids are content addresses
    assert db.query() == newest_first(records)
    assert db.get(records[5].id) == records[5]


def test_sqlite_append_get_and_idempotence(db: SqliteHistory) -> None:
    record = make_record()
    assert db.get(record.id) is None
    db.append(record)
    db.append(record)  # the same id: nothing happens
    db.append(HistoryRecord.from_bytes(record.to_bytes()))
    assert db.get(record.id) == record
    assert db.get(record.hex[:6]) == record and db.get("sha256:" + record.hex[:10].upper()) == record
    assert db.query() == [record]
    with sqlite3.connect(db.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_id_prefixes_like_git(db: SqliteHistory) -> None:
    records = [at(d) for d in range(1, 30)]
    for r in records:
        db.append(r)
    first = records[0]
    assert db.get(first.hex[:12]) == first and db.get(first.id) == first
    with pytest.raises(InvalidQuery, match="too short"):
        db.get(first.hex[:3])
    with pytest.raises(InvalidQuery, match="not a record id"):
        db.get("v1.2.3")
    absent = next(p for p in ("0000", "ffff", "7777") if not any(r.hex.startswith(p) for r in records))
    assert db.get(absent) is None


def test_sqlite_ambiguous_prefix(db: SqliteHistory) -> None:
    # Find two records whose ids share 4 hex digits (a few hundred tries at most).
    seen: dict[str, HistoryRecord] = {}
    for n in range(5000):
        r = make_record(ci_run_id=str(n))
        if r.hex[:4] in seen:
            db.append(seen[r.hex[:4]])
            db.append(r)
            with pytest.raises(AmbiguousId, match=f"'{r.hex[:4]}' is ambiguous") as exc:
                db.get(r.hex[:4])
            assert sorted(exc.value.candidates) == sorted([r.id, seen[r.hex[:4]].id])
            assert db.get(r.hex) == r
            return
        seen[r.hex[:4]] = r
    raise AssertionError("no collision found")


def test_sqlite_queries(db: SqliteHistory) -> None:
    api1 = at(1, label="//apps/api:api", tags=("ghcr.io/acme/api:v1",))
    api2 = at(3, label="//apps/api:api", git_commit=OTHER_COMMIT, kind="push", tags=("ghcr.io/acme/api:v2",))
    web = at(2, label="//apps/web:web", tags=("localhost:5000/web:v1",))
    base = at(4, label="//base:base", kind="release", release_version="1.0", tags=())
    for r in (api1, api2, web, base):
        db.append(r)
    assert db.query() == [base, api2, web, api1]  # newest first
    assert db.query(limit=2) == [base, api2]
    assert db.query(limit=0) == []
    assert db.query(labels={"//apps/api:api"}) == [api2, api1]
    assert db.query(labels={"//apps/api:api", "//base:base"}, limit=2) == [base, api2]
    assert db.query(labels=set()) == []
    assert db.query(since=datetime(2024, 5, 2, 10, tzinfo=timezone.utc)) == [base, api2, web]  # inclusive
    assert db.query(since=datetime(2024, 5, 2, 10, 0, 1, tzinfo=timezone.utc)) == [base, api2]
    assert db.query(commit=COMMIT[:7]) == [base, web, api1]
    assert db.query(commit=OTHER_COMMIT) == [api2]
    assert db.query(commit="ffff") == []
    assert db.query(tag="v1") == [web, api1]
    assert db.query(tag="ghcr.io/acme/api:v1") == [api1]
    assert db.query(tag="api:v1") == []  # a tail of the reference that is not its tag
    assert db.query(kind="release") == [base]
    assert db.query(kind="build", labels={"//apps/api:api"}, tag="v1", commit=COMMIT) == [api1]


def test_sqlite_same_time_orders_by_id(db: SqliteHistory) -> None:
    records = [make_record(ci_run_id=str(n)) for n in range(5)]
    for r in records:
        db.append(r)
    assert db.query() == newest_first(records) == sorted(records, key=lambda r: r.id, reverse=True)


def test_sqlite_code_never_changes_or_removes_a_row() -> None:
    source = Path(sqlite_module.__file__).read_text()
    statements = re.findall(r"\b(UPDATE\s+\w+\s+SET|DELETE\s+FROM|INSERT\s+OR\s+REPLACE|REPLACE\s+INTO|DROP\s+)",
                            source, re.IGNORECASE)
    assert statements == []


def test_sqlite_database_refuses_changes_made_behind_its_back(db: SqliteHistory) -> None:
    db.append(make_record())
    with sqlite3.connect(db.path) as raw:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE records SET label = '//x:x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM records")
        # REPLACE deletes without delete triggers; the insert trigger makes it a no-op instead.
        raw.execute("INSERT OR REPLACE INTO records (id, time, label, git_commit, kind, record) "
                    "SELECT id, time, '//x:x', git_commit, kind, 'forged' FROM records")
    assert db.query() == [make_record()]


def test_sqlite_concurrent_appends_from_threads(tmp_path: Path) -> None:
    # A store per thread, as separate processes would have, on a database none of them has created yet.
    path = tmp_path / "history.sqlite"
    records = [make_record(ci_run_id=f"{t}-{n}") for t in range(8) for n in range(25)]
    def work(t: int) -> None:
        store = SqliteHistory(path)
        for r in records[t * 25:(t + 1) * 25]:
            store.append(r)
            store.append(records[0])  # and everyone races on one record too

    at_once(work, 8)
    assert {r.id for r in SqliteHistory(path).query()} == {r.id for r in records}
    assert len(SqliteHistory(path).query()) == len(records)


def test_sqlite_tampered_row_is_detected(db: SqliteHistory) -> None:
    good = make_record()
    db.append(good)
    forged = json.loads(good.to_bytes())
    forged["image_id"] = sha("evil")
    fake = at(2)
    # Rows cannot be changed; a forged row can still be inserted by hand under a made-up id.
    with sqlite3.connect(db.path) as raw:
        raw.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (fake.id, fake.time, fake.label, fake.git_commit, fake.kind, json.dumps(forged)))
    with pytest.raises(CorruptRecord, match="does not match its content"):
        db.get(fake.id)
    with pytest.raises(CorruptRecord):
        db.query()
    reported: list[CorruptRecord] = []
    lenient = SqliteHistory(db.path, on_corrupt=reported.append)
    assert lenient.query() == [good]
    assert len(reported) == 1 and fake.hex in str(reported[0])


def test_sqlite_row_whose_columns_disagree_is_detected(db: SqliteHistory) -> None:
    record = make_record()
    db.query()  # creates the schema
    with sqlite3.connect(db.path) as raw:
        raw.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, record.time, "//other:other", record.git_commit, record.kind,
                     record.to_bytes().decode()))
    with pytest.raises(CorruptRecord, match="indexed columns differ"):
        db.get(record.id)


def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SqliteHistory(tmp_path / "file" / "history.sqlite")
    with pytest.raises(HistoryUnavailable, match="writing a record"):
        store.append(make_record())
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryUnavailable, match="not a database"):
        SqliteHistory(tmp_path / "garbage.sqlite").query()


# -- GuardedHistory -------------------------------------------------------------------------------------------


class FlakyHistory:
    """An in-memory store that fails while ``down`` (with ``error``), counting every call."""

    def __init__(self) -> None:
        self.records: dict[str, HistoryRecord] = {}
        self.down = False
        self.error: Exception = HistoryUnavailable("cannot connect to http://s3.invalid")
        self.calls = 0
        self.name = "memory://flaky"
        self.lock = threading.Lock()

    def _call(self) -> None:
        with self.lock:
            self.calls += 1
        if self.down:
            raise self.error

    def append(self, record: HistoryRecord) -> None:
        self._call()
        self.records.setdefault(record.id, record)

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        for record in records:
            self.append(record)

    def get(self, id_or_prefix: str) -> HistoryRecord | None:
        self._call()
        hexpart = id_or_prefix.removeprefix("sha256:")
        found = [r for r in self.records.values() if r.hex.startswith(hexpart)]
        if len(found) > 1:
            raise AmbiguousId(id_or_prefix, sorted(r.id for r in found))
        return found[0] if found else None

    def query(self, *, labels: set[str] | None = None, since: datetime | None = None, commit: str | None = None,
              tag: str | None = None, kind: str | None = None, limit: int | None = None) -> list[HistoryRecord]:
        self._call()
        q = Query.make(labels=labels, since=since, commit=commit, tag=tag, kind=kind, limit=limit)
        return newest_first([r for r in self.records.values() if q.matches(r)])[:limit]


class Warnings(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_guard_passes_through_when_the_store_works(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    typed: HistoryStore = guard
    typed.append(at(1))
    assert list(store.records) == [at(1).id] and warn == [] and not (tmp_path / "spool").exists()


def test_guard_spools_while_the_store_is_down_then_flushes_and_loses_nothing(tmp_path: Path) -> None:
    store, warn, clock = FlakyHistory(), Warnings(), Clock()
    spool = tmp_path / "spool"
    guard = GuardedHistory(store, spool, warn, retry_after=30, clock=clock)
    store.down = True
    records = [at(d) for d in range(1, 6)]
    for r in records[:3]:
        guard.append(r)  # never raises
    assert store.records == {}
    assert sorted(p.name for p in spool.iterdir()) == sorted(f"{r.hex}.json" for r in records[:3])
    assert all(HistoryRecord.from_bytes((spool / f"{r.hex}.json").read_bytes()) == r for r in records[:3])
    assert len(warn) == 1
    assert "memory://flaky unavailable (cannot connect to http://s3.invalid)" in warn[0] and str(spool) in warn[0]
    assert store.calls == 1  # the breaker: the store is not asked again for retry_after seconds
    assert guard.spooled() == newest_first(records[:3])

    assert guard.flush() == 0  # flush always tries, and fails quietly
    assert store.calls == 2 and len(warn) == 1

    store.down = False
    guard.append(records[3])  # still within retry_after: spooled without asking
    assert store.calls == 2
    clock.now += 31
    guard.append(records[4])  # the spool goes first, then this one
    assert set(store.records) == {r.id for r in records}
    assert list(spool.iterdir()) == [] and len(warn) == 1
    assert guard.flush() == 0


def test_guard_spools_a_whole_run_when_the_store_fails_and_uploads_it_later(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    store.down = True
    records = [at(d) for d in range(1, 6)]
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    guard.append_all(records)
    assert store.records == {} and guard.spooled() == newest_first(records) and len(warn) == 1
    store.down = False
    assert guard.flush() == 5
    assert set(store.records) == {r.id for r in records} and guard.spooled() == []


def test_guard_flush_uploads_the_spool_of_an_earlier_run(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    store.down = True
    GuardedHistory(store, tmp_path / "spool", warn).append(at(1))
    GuardedHistory(store, tmp_path / "spool", warn).append(at(2))
    store.down = False
    later = GuardedHistory(store, tmp_path / "spool", warn)
    assert later.spooled() == [at(2), at(1)]
    assert later.flush() == 2
    assert set(store.records) == {at(1).id, at(2).id} and later.spooled() == []


def test_guard_flush_stops_at_a_failure_and_keeps_the_rest(tmp_path: Path) -> None:
    class FailsAfterOne(FlakyHistory):
        def append(self, record: HistoryRecord) -> None:
            if self.records:
                raise HistoryUnavailable("throttled")
            super().append(record)

    store, warn = FailsAfterOne(), Warnings()
    store.down = True
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    for d in (1, 2, 3):
        guard.append(at(d))
    store.down = False
    assert guard.flush() == 1  # oldest first
    assert list(store.records) == [at(1).id] and guard.spooled() == [at(3), at(2)]
    assert len(warn) == 1


def test_guard_spools_on_any_store_error(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    store.down, store.error = True, RuntimeError("boom")
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    guard.append(at(1))
    assert guard.spooled() == [at(1)] and "unexpected RuntimeError: boom" in warn[0]


def test_guard_raises_when_even_the_spool_cannot_be_written(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    store.down = True
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    with pytest.raises(SpoolError, match=r"cannot record build of //apps/api:api .*spool .* cannot be written"):
        guard.append(at(1))


def test_guard_threads_failing_together_warn_once(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    store.down = True
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    records = [make_record(ci_run_id=str(n)) for n in range(40)]
    threads = [threading.Thread(target=guard.append, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(warn) == 1 and len(guard.spooled()) == 40
    store.down = False
    assert guard.flush() == 40 and len(store.records) == 40


def test_guard_leaves_a_corrupt_spool_file_in_place_and_says_so(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "deadbeef.json").write_bytes(b"{truncated")
    (spool / f"{at(2).hex}.json").write_bytes(at(1).to_bytes())  # a record under another's name
    guard = GuardedHistory(store, spool, warn)
    guard.append(at(3))
    guard.flush()
    assert list(store.records) == [at(3).id]
    assert sorted(p.name for p in spool.iterdir()) == sorted(["deadbeef.json", f"{at(2).hex}.json"])
    assert len(warn) == 2 and all("is not uploaded" in w for w in warn)


def test_guard_reads_include_the_spooled_records(tmp_path: Path) -> None:
    store, warn = FlakyHistory(), Warnings()
    guard = GuardedHistory(store, tmp_path / "spool", warn)
    guard.append(at(1))
    store.down = True
    guard.append(at(2, kind="push"))
    store.down = False
    assert guard.query() == [at(2, kind="push"), at(1)]
    assert guard.query(kind="build") == [at(1)]
    assert guard.query(limit=1) == [at(2, kind="push")]
    assert guard.get(at(2, kind="push").hex[:8]) == at(2, kind="push")
    assert guard.get(at(1).id) == at(1)
    store.down = True
    with pytest.raises(HistoryUnavailable):  # reads are not guarded: a listing must not look complete
        guard.query()


# -- S3History's requests (no server: botocore's Stubber) --------------------------------------------------


def test_s3_append_creates_the_marker_then_the_record_conditionally(s3_stub: Any) -> None:
    client, stubber = s3_stub
    store = S3History("b", prefix="/audit/", client=client)
    record = make_record(time="2024-05-01T10:00:00.250Z")
    marker = f"audit/ids/{record.hex}@20240501T100000.250Z"
    key = f"audit/records/2024/05/01/20240501T100000.250Z-{record.hex}.json"
    assert store.record_key(record) == key and store.name == "s3://b/audit"
    stubber.add_response("head_bucket", {})
    stubber.add_response("put_object", {}, {"Bucket": "b", "Key": marker, "Body": b"",
                                            "ContentType": "application/json", "IfNoneMatch": "*"})
    stubber.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412,
                             expected_params={"Bucket": "b", "Key": key, "Body": record.to_bytes(),
                                              "ContentType": "application/json", "IfNoneMatch": "*"})
    store.append(record)  # 412: already there, which is success
    stubber.assert_no_pending_responses()


def test_s3_errors_are_history_unavailable_without_secrets(s3_stub: Any) -> None:
    client, stubber = s3_stub
    stubber.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    with pytest.raises(HistoryUnavailable, match="bucket 'b' does not exist"):
        S3History("b", client=client).append(make_record())
    stubber.add_response("head_bucket", {})
    stubber.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403,
                             service_message="very-secret-value")
    with pytest.raises(HistoryUnavailable, match="access denied listing records") as denied:
        S3History("b", client=client).query()
    assert "very-secret-value" not in str(denied.value)


def test_s3_store_construction_never_fails() -> None:
    S3History("b", endpoint_url="not a url", region="nowhere")


# -- the command ------------------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="imgbuild")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", "-w", type=Path)
    sub = p.add_subparsers(dest="command")
    command.add_arguments(sub, common)
    return p.parse_args(_protect_exclusions(["history", *argv]))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """As imgbuild.cli.main does: an ImgbuildError is its message and exit code, never a traceback."""
    try:
        code = command.main(parse(*argv))
    except ImgbuildError as exc:
        print(exc.render(), file=sys.stderr)
        code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err


NOW = datetime.now(timezone.utc)


def ago(**delta: float) -> str:
    return format_time(NOW - timedelta(**delta))


@pytest.fixture
def ws(make_ws: WorkspaceFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_ws({"imgbuild.yaml": "version: 1\nhistory:\n  backend: sqlite\n  path: .imgbuild/h.sqlite\n",
                    "apps/api/BUILD.yaml": "apps: {}\n"})
    monkeypatch.chdir(root)
    return root


RECORDS = {
    "api_old": make_record(time=ago(days=10), label="//apps/api:api", tags=("ghcr.io/acme/api:v1",)),
    "api_new": make_record(time=ago(hours=2), label="//apps/api:api", kind="push", git_commit=OTHER_COMMIT,
                           git_dirty=True, tags=("ghcr.io/acme/api:v2",)),
    "web": make_record(time=ago(days=3), label="//apps/web:web", tags=(), manifest_digest=None),
    "legacy": make_record(time=ago(days=1), label="//apps/legacy/old:old", tags=("ghcr.io/acme/old:v1",)),
    "gone": make_record(time=ago(minutes=5), label="//tools/removed:removed", kind="release",
                        release_version="3.1.0"),
}


@pytest.fixture
def filled(ws: Path) -> Path:
    store = SqliteHistory(ws / ".imgbuild" / "h.sqlite")
    for r in RECORDS.values():
        store.append(r)
    return ws


def labels_in(out: str) -> list[str]:
    return re.findall(r"//[\w/.-]+:[\w.-]+", out)


def test_history_table_newest_first(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "LABEL", "ID", "DIGEST", "COMMIT", "TAGS"]
    assert labels_in(out) == ["//tools/removed:removed", "//apps/api:api", "//apps/legacy/old:old",
                              "//apps/web:web", "//apps/api:api"]
    new, web = RECORDS["api_new"], RECORDS["web"]
    assert new.manifest_digest is not None and web.image_id is not None
    row = lines[2].split()
    assert row[2:] == ["push", "//apps/api:api", new.hex[:12], new.manifest_digest[7:19],
                       OTHER_COMMIT[:12] + "+dirty", "ghcr.io/acme/api:v2"]
    web_row = lines[4].split()
    assert web_row[5] == web.image_id[7:19] and web_row[-1] == "-"  # no manifest: the image id


def test_history_patterns_as_on_the_command_line(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "//apps/...", "-//apps/legacy/...")
    assert labels_in(out) == ["//apps/api:api", "//apps/web:web", "//apps/api:api"]
    _, out, _ = run(capsys, "//apps/api", "--limit", "1")
    assert labels_in(out) == ["//apps/api:api"] and RECORDS["api_new"].hex[:12] in out
    _, out, _ = run(capsys, "//...", "--limit", "2")
    assert labels_in(out) == ["//tools/removed:removed", "//apps/api:api"]  # a target no longer in the workspace


def test_history_relative_patterns_use_the_current_package(filled: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(filled / "apps" / "api")
    _, out, _ = run(capsys, ":api")
    assert labels_in(out) == ["//apps/api:api", "//apps/api:api"]


def test_history_filters(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--since", "2d")
    assert labels_in(out) == ["//tools/removed:removed", "//apps/api:api", "//apps/legacy/old:old"]
    _, out, _ = run(capsys, "--since", "3h")
    assert labels_in(out) == ["//tools/removed:removed", "//apps/api:api"]
    _, out, _ = run(capsys, "--since", (NOW - timedelta(days=5)).date().isoformat(), "--kind", "build")
    assert labels_in(out) == ["//apps/legacy/old:old", "//apps/web:web"]
    _, out, _ = run(capsys, "--commit", OTHER_COMMIT[:8])
    assert labels_in(out) == ["//apps/api:api"] and "push" in out
    _, out, _ = run(capsys, "--tag", "v1")
    assert labels_in(out) == ["//apps/legacy/old:old", "//apps/api:api"]
    _, out, err = run(capsys, "--tag", "nope")
    assert out == "" and "no history records match" in err


def test_history_json_and_csv(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "//apps/api", "--json")
    docs = json.loads(out)
    assert code == 0 and [d["id"] for d in docs] == [RECORDS["api_new"].id, RECORDS["api_old"].id]
    assert [HistoryRecord.from_bytes(json.dumps(d).encode()) for d in docs] == [RECORDS["api_new"],
                                                                                 RECORDS["api_old"]]
    validator = jsonschema.Draft202012Validator(schema())
    assert all(not list(validator.iter_errors(d)) for d in docs)
    _, out, _ = run(capsys, "--format", "json", "--kind", "release")
    assert [d["release_version"] for d in json.loads(out)] == ["3.1.0"]

    _, out, _ = run(capsys, "--format", "csv", "//apps/api")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == [RECORDS["api_new"].id, RECORDS["api_old"].id]
    assert rows[0]["git_dirty"] == "true" and rows[0]["tags"] == "ghcr.io/acme/api:v2"
    assert rows[0]["build_args"] == "PORT=8080" and rows[0]["release_version"] == ""
    assert rows[0]["platforms"] == f"linux/amd64={sha('amd64')} linux/arm64={sha('arm64')}"
    _, out, _ = run(capsys, "--format", "csv", "--tag", "nope")
    assert out.splitlines()[0].startswith("id,version,kind,time,label,") and len(out.splitlines()) == 1


def test_history_show(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = RECORDS["gone"]
    code, out, _ = run(capsys, "show", record.hex[:8])
    assert code == 0
    doc = json.loads(out)
    assert list(doc)[0] == "id" and doc == record.to_dict()
    assert out.startswith("{\n  \"id\": ")  # pretty, for people
    code, out, err = run(capsys, "show", "sha256:" + record.hex)
    assert code == 0 and json.loads(out)["id"] == record.id


def test_history_bad_input_is_a_clear_error(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        ("--since", "last tuesday"): "--since 'last tuesday': give a date",
        ("--commit", "main"): "not a (prefix of a) git commit",
        ("show",): "usage: imgbuild history show ID",
        ("show", "abc"): "too short",
        ("show", "zzzzzz"): "not a record id",
        ("show", "abcdef0123"): "no history record 'abcdef0123'",
        ("show", RECORDS["web"].hex[:6], "--kind", "build"): "takes an id only, not --kind",
        ("//apps:x:y",): "not a valid",
        ("-//apps/...",): "only exclusions",
    }
    for argv, message in cases.items():
        code, out, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, argv
    with pytest.raises(SystemExit) as exit_:
        parse("--limit", "-1")
    assert exit_.value.code == 2


def test_history_ambiguous_show(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteHistory(ws / ".imgbuild" / "h.sqlite")
    seen: dict[str, HistoryRecord] = {}
    for n in range(5000):
        r = make_record(ci_run_id=str(n))
        if r.hex[:4] in seen:
            store.append(r)
            store.append(seen[r.hex[:4]])
            code, _, err = run(capsys, "show", r.hex[:4])
            assert code == 2 and "is ambiguous" in err and r.hex[:12] in err
            return
        seen[r.hex[:4]] = r
    raise AssertionError("no collision found")


def test_history_lists_spooled_records_and_says_so(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded, _ = load(ws, ws)
    store = FlakyHistory()
    store.down = True
    GuardedHistory(store, ws / ".imgbuild" / "history-spool", Warnings()).append(at(1))
    code, out, err = run(capsys)
    assert code == 0 and labels_in(out) == ["//apps/api:api"]
    assert "1 record(s) wait in" in err and "history-spool" in err
    # The build's way in: the same spool, so the next append uploads it into the workspace's store.
    history = command.open_history(loaded, Warnings())
    history.append(at(2))
    assert [r.id for r in SqliteHistory(ws / ".imgbuild" / "h.sqlite").query()] == [at(2).id, at(1).id]
    assert history.spooled() == []


def test_history_corrupt_record_is_a_warning(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = at(9)
    forged = {**json.loads(fake.to_bytes()), "image_id": sha("evil")}
    with sqlite3.connect(filled / ".imgbuild" / "h.sqlite") as raw:
        raw.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (fake.id, fake.time, fake.label, fake.git_commit, fake.kind, json.dumps(forged)))
    code, out, err = run(capsys)
    assert code == 0 and len(labels_in(out)) == len(RECORDS)
    assert f"warning: history record {fake.id}" in err and "is corrupt" in err and "left out" in err


def test_open_history_follows_the_workspace_config(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\nhistory:\n  backend: s3\n  bucket: audit\n  prefix: mono/\n"
                                     "  endpoint_url: http://127.0.0.1:1\n"})
    loaded, _ = load(root, root)
    history = command.open_history(loaded, Warnings())
    assert isinstance(history.store, S3History) and history.name == "s3://audit/mono"
    assert history.spool_dir == for_workspace(root).history_spool
    default_root = make_ws({"imgbuild.yaml": "version: 1\n"})
    default, _ = load(default_root, default_root)
    store = command.open_history(default, Warnings()).store
    assert isinstance(store, SqliteHistory) and store.path == for_workspace(default_root).history_db


@pytest.mark.parametrize("text, expected", [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)),
    ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
    ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
])
def test_parse_since(text: str, expected: datetime) -> None:
    assert command.parse_since(text, now=NOW) == expected


def test_the_guard_never_swallows_a_record_silently(tmp_path: Path) -> None:
    """The whole promise in one place: whatever the store does, each record ends up stored or spooled."""
    store, warn = FlakyHistory(), Warnings()
    guard = GuardedHistory(store, tmp_path / "spool", warn, retry_after=0)
    records = [make_record(ci_run_id=str(n)) for n in range(30)]
    for n, r in enumerate(records):
        store.down = n % 3 == 1
        guard.append(r)
    stored, spooled = set(store.records), {r.id for r in guard.spooled()}
    assert stored | spooled == {r.id for r in records}
    store.down = False
    guard.flush()
    assert set(store.records) == {r.id for r in records} and guard.spooled() == []


STEPS = StepReport(total=2, cached=1, first_ran="[3/3]", cause="files", reason="src/main.py changed",
                   files=("src/main.py",), bases=("docker.io/library/busybox:1.36@" + "sha256:" + "1" * 64,),
                   steps=(StepFlag(name="[2/3]", instruction="RUN pip install -r requirements.txt", line=4,
                                   status="cached"),
                          StepFlag(name="[3/3]", instruction="COPY src/ /app/src/", line=5, status="ran")))


def test_a_build_record_keeps_its_step_report_and_older_records_stay_readable() -> None:
    record = make_record(steps=STEPS)
    data = record.to_bytes()
    assert HistoryRecord.from_bytes(data) == record and HistoryRecord.from_bytes(data).steps == STEPS
    assert [e.message for e in jsonschema.Draft202012Validator(schema()).iter_errors(json.loads(data))] == []
    # A record without one (all records written before #16) has no "steps" key: same bytes, same id as then.
    old = make_record()
    assert "steps" not in old.to_dict() and old.id != record.id
    assert HistoryRecord.from_bytes(old.to_bytes()).steps is None
    # Damaged step reports are corrupt records, not tracebacks.
    for bad in ("text", {"total": 1}, {**STEPS.to_dict(), "steps": [{"name": "[1/2]"}]}):
        doc = record.to_dict()
        doc.pop("id")
        with pytest.raises(CorruptRecord, match="steps"):
            HistoryRecord.from_bytes(reseal({**doc, "steps": bad}))
