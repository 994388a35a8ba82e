"""The history in a SQLite file: the default, ``history.sqlite`` in the workspace's state directory
(:mod:`imgbuild.statedir`).

One table, ``records``: the record's canonical JSON and, beside it, the fields the queries select on
(id, time, label, git commit, kind), indexed. Append-only: rows are added with ``INSERT OR IGNORE``
(an id that is there already is the same record), and this module has no statement that changes or
removes a row; triggers make the database itself refuse both (and turn a replacing insert into a no-op:
``REPLACE`` deletes without firing delete triggers), so another tool cannot rewrite history by accident.

Several imgbuild processes (parallel CI jobs on one machine, a build and a ``history`` listing) share the
file safely: WAL mode lets readers and a writer work at once, and a busy timeout makes writers wait for
each other rather than fail. A connection is opened per operation, so threads share nothing.
Every row read is verified (its JSON against its id, its columns against its JSON).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Sequence

from imgbuild.history.record import HistoryRecord
from imgbuild.history.store import AmbiguousId, CorruptRecord, HistoryUnavailable, Query, id_prefix

BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY NOT NULL,
    time TEXT NOT NULL,
    label TEXT NOT NULL,
    git_commit TEXT,
    kind TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_time ON records (time, id);
CREATE INDEX IF NOT EXISTS records_by_label ON records (label, time);
CREATE INDEX IF NOT EXISTS records_by_commit ON records (git_commit);
CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, time);
CREATE TRIGGER IF NOT EXISTS records_are_not_changed BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'the imgbuild history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_are_not_removed BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'the imgbuild history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_are_not_replaced BEFORE INSERT ON records
    WHEN EXISTS (SELECT 1 FROM records WHERE id = NEW.id)
    BEGIN SELECT RAISE(IGNORE); END;
"""


class SqliteHistory:
    def __init__(self, path: Path, *, on_corrupt: Callable[[CorruptRecord], None] | None = None) -> None:
        """``on_corrupt``: called for each damaged row a query meets, which is then left out; without it,
        the query raises :class:`CorruptRecord`.
        """
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        self._on_corrupt = on_corrupt
        self._ready = False
        self._lock = threading.Lock()

    # -- the interface ------------------------------------------------------------------------------------

    def append(self, record: HistoryRecord) -> None:
        self.append_all([record])

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        """One transaction (one fsync) for all of them."""
        what = "a record" if len(records) == 1 else f"{len(records)} records"
        with self._connect(f"writing {what}") as db, db:
            db.executemany("INSERT OR IGNORE INTO records (id, time, label, git_commit, kind, record) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.id, r.time, r.label, r.git_commit, r.kind, r.to_bytes().decode()) for r in records])

    def get(self, id_or_prefix: str) -> HistoryRecord | None:
        hexpart = id_prefix(id_or_prefix)
        with self._connect("reading a record") as db:
            # A range rather than LIKE: it uses the primary key ('g' sorts after every hex digit).
            rows = db.execute("SELECT id, time, label, git_commit, kind, record FROM records "
                              "WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                              (f"sha256:{hexpart}", f"sha256:{hexpart}g")).fetchall()
        if len(rows) > 1:
            raise AmbiguousId(id_or_prefix, [row[0] for row in rows])
        return self._verified(rows[0]) if rows else None

    def query(self, *, labels: set[str] | None = None, since: datetime | None = None, commit: str | None = None,
              tag: str | None = None, kind: str | None = None, limit: int | None = None) -> list[HistoryRecord]:
        q = Query.make(labels=labels, since=since, commit=commit, tag=tag, kind=kind, limit=limit)
        where, params = _where(q)
        sql = ("SELECT id, time, label, git_commit, kind, record FROM records"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY time DESC, id DESC")
        found: list[HistoryRecord] = []
        if q.limit == 0:
            return found
        with self._connect("querying records") as db:
            # Rows are verified and matched one at a time, so a limit reads no more than it needs.
            for row in db.execute(sql, params):
                try:
                    record = self._verified(row)
                except CorruptRecord as exc:
                    if self._on_corrupt is None:
                        raise
                    self._on_corrupt(exc)
                    continue
                if q.matches(record):
                    found.append(record)
                    if q.limit is not None and len(found) >= q.limit:
                        break
        return found

    def absorb(self, old: Path) -> None:
        """Copy every row of another history file into this one, then delete that file (and its WAL).

        Rows are copied as they are, damaged ones too (a query still reports those): moving a history
        never drops a record. The old file is opened read-only (a file removed meanwhile, by another
        process absorbing it, is an error here, never an empty database created in its place) and removed
        only once every one of its ids is found here.
        """
        try:
            src = sqlite3.connect(f"{Path(old).absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"reading {old}: {exc}") from exc
        try:
            with self._connect(f"copying the records of {old}") as db:
                rows = src.execute("SELECT id, time, label, git_commit, kind, record FROM records")
                while batch := rows.fetchmany(1000):
                    with db:
                        db.executemany("INSERT OR IGNORE INTO records (id, time, label, git_commit, kind, record) "
                                       "VALUES (?, ?, ?, ?, ?, ?)", batch)
                ids = src.execute("SELECT id FROM records")
                missing = 0
                while found := [row[0] for row in ids.fetchmany(500)]:
                    marks = ", ".join("?" * len(found))
                    have = db.execute(f"SELECT count(*) FROM records WHERE id IN ({marks})", found).fetchone()[0]
                    missing += len(found) - have
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"reading {old}: {exc}") from exc
        finally:
            src.close()
        if missing:
            raise HistoryUnavailable(f"{missing} record(s) of {old} were not copied to {self.path}")
        for suffix in ("-wal", "-shm", ""):
            Path(f"{old}{suffix}").unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------------------------------

    def _verified(self, row: tuple[str, str, str, str | None, str, str]) -> HistoryRecord:
        row_id, time, label, commit, kind, text = row
        where = f"{self.path} (row {row_id})"
        record = HistoryRecord.from_bytes(text.encode(), where=where)
        if (record.id, record.time, record.label, record.git_commit, record.kind) != (row_id, time, label, commit,
                                                                                        kind):
            raise CorruptRecord("its indexed columns differ from its content", where=where, record_id=record.id)
        return record

    @contextlib.contextmanager
    def _connect(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A connection with the schema in place; every sqlite or file error becomes :class:`HistoryUnavailable`."""
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            if not self._ready:
                self._create_schema(db)
            yield db
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"{doing} in {self.path}: {exc}") from exc
        except OSError as exc:
            raise HistoryUnavailable(f"{doing} in {self.path}: {exc.strerror or exc}") from exc
        finally:
            if db is not None:
                db.close()

    def _create_schema(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if self._ready:
                return
            # WAL is a property of the file: set once, it holds for every process that opens it.
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryUnavailable(f"{self.path} was written by a newer imgbuild (schema {version}; "
                                         f"this one knows {SCHEMA_VERSION})")
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            self._ready = True


def _where(q: Query) -> tuple[list[str], list[object]]:
    """SQL conditions that narrow the rows to read using the indexes; :meth:`Query.matches` decides."""
    where: list[str] = []
    params: list[object] = []
    if q.labels is not None:
        where.append("label IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(q.labels)))
    if q.since is not None:
        where.append("time >= ?")
        params.append(q.since)
    if q.commit is not None:
        where.append("git_commit >= ? AND git_commit < ?")
        params += [q.commit, q.commit + "g"]
    if q.kind is not None:
        where.append("kind = ?")
        params.append(q.kind)
    if q.tag is not None:
        # The full reference, or one that ends in ":<tag>"; has_tag() then checks that it is the tag part.
        where.append("EXISTS (SELECT 1 FROM json_each(records.record, '$.tags') t "
                     "WHERE t.value = ? OR substr(t.value, -?) = ?)")
        params += [q.tag, len(q.tag) + 1, f":{q.tag}"]
    return where, params
