"""The history store interface, its errors, the query every backend answers, and the spooling guard.

A store is append-only: records are content addressed (:class:`~imgbuild.history.record.HistoryRecord`'s
``id``), so appending one that is there already does nothing, and nothing is ever rewritten or removed.
Backends: :class:`imgbuild.history.sqlite.SqliteHistory` (the default, a file in the workspace) and
:class:`imgbuild.history.s3.S3History` (one immutable object per record).

Stores raise. Builds append through :class:`GuardedHistory`, which does not: a record the store cannot take
is kept in a local spool directory and uploaded by a later append or :meth:`GuardedHistory.flush`, so a
history problem never fails a build and no record is lost.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Protocol, Sequence

from imgbuild.cache.local import _publish as publish_file  # fsynced create-if-absent; see the final report
from imgbuild.errors import ImgbuildError

if TYPE_CHECKING:  # record.py imports the errors below
    from imgbuild.history.record import HistoryRecord
    from imgbuild.model import HistoryConfig

MIN_ID_PREFIX = 4
_HEX = re.compile(r"[0-9a-f]+")


class HistoryError(ImgbuildError):
    """Root of the history's errors."""


class HistoryUnavailable(HistoryError):
    """The store cannot be used: unreachable, access denied, no such bucket, a database that stays locked.

    The message is short, meant for a user, and never holds a secret.
    """


class CorruptRecord(HistoryError):
    """A stored record that does not parse, does not match its id, or sits under another record's name."""

    def __init__(self, reason: str, *, where: str = "", record_id: str | None = None) -> None:
        self.reason = reason
        self.where = where
        self.record_id = record_id
        what = f"history record {record_id}" if record_id else "history record"
        super().__init__(f"{what}{f' in {where}' if where else ''} is corrupt: {reason}")


class AmbiguousId(HistoryError):
    """An id prefix that more than one record starts with."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        shown = ", ".join(c[len("sha256:"):][:12] for c in candidates[:5])
        super().__init__(f"id prefix {prefix!r} is ambiguous: it matches {shown}"
                         f"{', ...' if len(candidates) > 5 else ''}; give more characters")


class InvalidQuery(HistoryError):
    """A filter or an id that cannot be right (not hex, too short, an unknown kind)."""


class SpoolError(HistoryError):
    """The store failed and the record could not be kept in the spool either: it would be lost."""


def id_prefix(text: str) -> str:
    """The hex part of a full id or of a prefix (``sha256:9f86d0`` or ``9f86d0``), lowercase, >= 4 digits."""
    hexpart = text.strip().lower().removeprefix("sha256:")
    if not _HEX.fullmatch(hexpart) or len(hexpart) > 64:
        raise InvalidQuery(f"{text!r} is not a record id (sha256:<hex> or a prefix of its hex digits)")
    if len(hexpart) < MIN_ID_PREFIX:
        raise InvalidQuery(f"id prefix {text!r} is too short: give at least {MIN_ID_PREFIX} hex digits")
    return hexpart


@dataclass(frozen=True, kw_only=True)
class Query:
    """The filters of :meth:`HistoryStore.query`, checked once; :meth:`matches` is the authority.

    Backends narrow the search with whatever index they have, then keep what :meth:`matches` accepts.
    """

    labels: frozenset[str] | None = None  # exact labels
    since: str | None = None  # a record time (format_time): records at or after it
    commit: str | None = None  # lowercase hex prefix of git_commit
    tag: str | None = None  # a full reference, or just its tag part
    kind: str | None = None
    limit: int | None = None

    @classmethod
    def make(cls, *, labels: set[str] | frozenset[str] | None = None, since: datetime | None = None,
             commit: str | None = None, tag: str | None = None, kind: str | None = None,
             limit: int | None = None) -> Query:
        """Validate the arguments of ``query()`` (:class:`InvalidQuery` for bad ones)."""
        from imgbuild.history.record import KINDS, format_time

        if commit is not None:
            commit = commit.strip().lower()
            if not _HEX.fullmatch(commit) or len(commit) > 64:
                raise InvalidQuery(f"commit {commit!r} is not a (prefix of a) git commit id")
        if kind is not None and kind not in KINDS:
            raise InvalidQuery(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if limit is not None and limit < 0:
            raise InvalidQuery(f"limit must be 0 or more, not {limit}")
        if tag is not None and not tag.strip():
            raise InvalidQuery("the tag to look for is empty")
        return cls(labels=frozenset(labels) if labels is not None else None,
                   since=format_time(since) if since is not None else None, commit=commit,
                   tag=tag.strip() if tag is not None else None, kind=kind, limit=limit)

    def matches(self, record: HistoryRecord) -> bool:
        return ((self.labels is None or record.label in self.labels)
                and (self.since is None or record.time >= self.since)
                and (self.commit is None or (record.git_commit or "").startswith(self.commit))
                and (self.tag is None or record.has_tag(self.tag))
                and (self.kind is None or record.kind == self.kind))


def newest_first(records: list[HistoryRecord]) -> list[HistoryRecord]:
    """The order every store returns: time descending, then id descending (ties are rare but must be stable)."""
    return sorted(records, key=lambda r: (r.time, r.id), reverse=True)


class HistoryStore(Protocol):
    """What every backend offers. Methods raise :class:`HistoryError` subclasses (and ValueError for bugs)."""

    @property
    def name(self) -> str:
        """Where it is, for messages: ``sqlite:/path`` or ``s3://bucket/prefix``."""
        ...

    def append(self, record: HistoryRecord) -> None:
        """Store ``record``; a no-op if a record with its id is there (ids are content addresses)."""
        ...

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        """:meth:`append` each of ``records``, in one go where the backend can (one transaction, parallel
        writes); an error may leave some stored, which is harmless: appending again is a no-op."""
        ...

    def get(self, id_or_prefix: str) -> HistoryRecord | None:
        """The verified record whose id is or starts with ``id_or_prefix``; None if none.

        :class:`AmbiguousId` if several start with it; :class:`CorruptRecord` if the one found is damaged.
        """
        ...

    def query(self, *, labels: set[str] | None = None, since: datetime | None = None, commit: str | None = None,
              tag: str | None = None, kind: str | None = None, limit: int | None = None) -> list[HistoryRecord]:
        """Verified records matching every filter given, newest first, at most ``limit``."""
        ...


class GuardedHistory:
    """A history for builds: ``append`` never fails because of the store, and no record is ever dropped.

    * A record the store cannot take (unavailable, or any other error) is written to ``spool_dir`` (one
      file per record, fsynced, published atomically) and ``warn`` is called once for this guard.
    * Every later ``append`` that reaches the store, and every :meth:`flush`, first uploads what is
      spooled, removing each file once its record is stored.
    * After a failure the store is left alone for ``retry_after`` seconds (an unreachable S3 must not cost
      a timeout per target); records spool at once meanwhile. :meth:`flush` always tries.
    * If even the spool cannot be written, :class:`SpoolError` is raised: that record would be lost.

    Reads (``get``, ``query``) add the spooled records to the store's answer and do raise on a store error.
    Thread-safe: build threads share one instance.
    """

    def __init__(self, store: HistoryStore, spool_dir: Path, warn: Callable[[str], None], *,
                 retry_after: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.name = store.name
        self.spool_dir = Path(spool_dir)
        self._warn = warn
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.RLock()
        self._down_until: float | None = None
        self._warned = False
        self._bad_spool: set[str] = set()  # spool files found corrupt (warned about once, left in place)

    # -- writes -------------------------------------------------------------------------------------------

    def append(self, record: HistoryRecord) -> None:
        """Store ``record``, or spool it if the store fails. Raises only :class:`SpoolError`."""
        self.append_all([record])

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        """Store ``records`` in one go (a run's records: one SQLite transaction, parallel S3 writes), or
        spool every one of them if the store fails. Raises only :class:`SpoolError`."""
        with self._lock:
            if self._down_until is None or self._clock() >= self._down_until:
                try:
                    self._upload_spooled()
                    self.store.append_all(records)
                    self._down_until = None
                    return
                except _Partial as partial:
                    self._trip(partial.cause)
                except Exception as exc:  # any store failure spools (a bug too: the record matters more); warned
                    self._trip(exc)
            for record in records:
                self._spool(record)

    def flush(self) -> int:
        """Upload every spooled record (even while the store is considered down); how many were uploaded.

        Stops at the first store failure (warned about once) and leaves the rest spooled.
        """
        with self._lock:
            try:
                uploaded = self._upload_spooled()
            except _Partial as partial:
                self._trip(partial.cause)
                return partial.uploaded
            self._down_until = None
            return uploaded

    def spooled(self) -> list[HistoryRecord]:
        """The records waiting in the spool, newest first (corrupt spool files are warned about, not listed)."""
        return newest_first([record for _, record in self._read_spool()])

    # -- reads --------------------------------------------------------------------------------------------

    def get(self, id_or_prefix: str) -> HistoryRecord | None:
        hexpart = id_prefix(id_or_prefix)
        found = {r.id: r for r in self.spooled() if r.hex.startswith(hexpart)}
        try:
            stored = self.store.get(id_or_prefix)
        except AmbiguousId as exc:
            raise AmbiguousId(exc.prefix, sorted({*exc.candidates, *found})) from None
        if stored is not None:
            found[stored.id] = stored
        if len(found) > 1:
            raise AmbiguousId(id_or_prefix, sorted(found))
        return next(iter(found.values()), None)

    def query(self, *, labels: set[str] | None = None, since: datetime | None = None, commit: str | None = None,
              tag: str | None = None, kind: str | None = None, limit: int | None = None) -> list[HistoryRecord]:
        q = Query.make(labels=labels, since=since, commit=commit, tag=tag, kind=kind, limit=limit)
        stored = self.store.query(labels=labels, since=since, commit=commit, tag=tag, kind=kind, limit=limit)
        merged = {r.id: r for r in (*stored, *(r for r in self.spooled() if q.matches(r)))}
        return newest_first(list(merged.values()))[:limit]

    # -- internals ----------------------------------------------------------------------------------------

    def _trip(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._retry_after
        if self._warned:
            return
        self._warned = True
        reason = str(exc) if isinstance(exc, HistoryError) else f"unexpected {type(exc).__name__}: {exc}"
        self._warn(f"history {self.name} unavailable ({reason}); records are kept in {self.spool_dir} "
                   f"and uploaded when it can be reached again")

    def _spool(self, record: HistoryRecord) -> None:
        data = record.to_bytes()

        def write(f: BinaryIO) -> None:
            f.write(data)

        try:
            publish_file(self.spool_dir / f"{record.hex}.json", write, replace=False)
            _fsync_dir(self.spool_dir)  # the new name too must survive a crash: the store never saw it
        except OSError as exc:
            raise SpoolError(f"cannot record {record.kind} of {record.label} ({record.id}): the history store "
                             f"failed and the spool {self.spool_dir} cannot be written "
                             f"({exc.strerror or exc})") from exc

    def _read_spool(self) -> list[tuple[Path, HistoryRecord]]:
        from imgbuild.history.record import HistoryRecord

        try:
            paths = sorted(self.spool_dir.glob("*.json"))
        except OSError:
            return []
        found: list[tuple[Path, HistoryRecord]] = []
        for path in paths:
            try:
                record = HistoryRecord.from_bytes(path.read_bytes(), where=str(path))
                if f"{record.hex}.json" != path.name:
                    raise CorruptRecord(f"it holds record {record.id}", where=str(path))
            except FileNotFoundError:  # uploaded meanwhile by another process
                continue
            except (OSError, CorruptRecord) as exc:
                with self._lock:
                    first = path.name not in self._bad_spool
                    self._bad_spool.add(path.name)
                if first:  # left in place: never dropped silently, someone has to look at it
                    self._warn(f"spooled history record {path} is not uploaded: {exc}")
                continue
            found.append((path, record))
        return found

    def _upload_spooled(self) -> int:
        """Upload the spool oldest first; :class:`_Partial` (with the cause) at the first store failure."""
        uploaded = 0
        for path, record in sorted(self._read_spool(), key=lambda pr: (pr[1].time, pr[1].id)):
            try:
                self.store.append(record)
            except Exception as exc:  # as in append()
                raise _Partial(uploaded, exc) from exc
            path.unlink(missing_ok=True)
            uploaded += 1
        return uploaded


class _Partial(Exception):
    """The spool upload stopped at a store failure after ``uploaded`` records."""

    def __init__(self, uploaded: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.uploaded = uploaded
        self.cause = cause


def open_store(config: HistoryConfig, root: Path, *,
               on_corrupt: Callable[[CorruptRecord], None] | None = None) -> HistoryStore:
    """The store a workspace's ``history:`` names: S3 for ``backend: s3``, else SQLite (:func:`sqlite_path`).

    ``on_corrupt``: what a query does with a damaged record (see the backends); None: it raises.
    """
    if config.backend == "s3":
        if not config.bucket:  # the workspace schema requires it; a config made in code might not
            raise HistoryError("history: backend s3 needs a bucket")
        from imgbuild.history.s3 import S3History  # boto3 is a slow import: only when S3 is really used

        return S3History(config.bucket, prefix=config.prefix, region=config.region,
                         endpoint_url=config.endpoint_url, on_corrupt=on_corrupt)
    from imgbuild.history.sqlite import SqliteHistory

    return SqliteHistory(sqlite_path(config, root), on_corrupt=on_corrupt)


def sqlite_path(config: HistoryConfig, root: Path) -> Path:
    """The SQLite file of a ``backend: sqlite`` history: its ``path`` (relative to the workspace root), or by
    default ``history.sqlite`` in the workspace's state directory (:mod:`imgbuild.statedir`)."""
    if config.path:
        return root / config.path
    from imgbuild import statedir

    return statedir.for_workspace(root).history_db


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or removed file) durable; best effort where unsupported."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
