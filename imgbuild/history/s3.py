"""The history in an S3 bucket (or any S3-compatible server): one immutable object per record.

Layout under ``prefix``::

    records/<YYYY>/<MM>/<DD>/<YYYYMMDDTHHMMSS.mmmZ>-<id hex>.json   the record (its canonical JSON)
    ids/<id hex>@<YYYYMMDDTHHMMSS.mmmZ>                             empty: finds a record by id prefix

* Dated keys sort by time, so a listing walks years, months and days newest first and stops as soon as
  it has ``limit`` records or reaches ``since``: the common queries read a handful of objects, however
  long the history.
* The id marker names the record's key, so ``get`` by a prefix is one listing of ``ids/<prefix>`` (S3
  lists by prefix natively) and one read. It is written before the record: every stored record has
  one, and a marker whose record is missing (a writer stopped between the two) is simply not found.
* Both are created with ``If-None-Match: *`` (412: already there, which for a content-addressed record
  means done), so concurrent CI jobs never overwrite each other's objects.
* Everything read is verified: its id against its content, and its key against its id and time.

The S3 plumbing (client settings, the bucket check, conditional creation with the fallback for servers
without it, error translation into short messages without secrets) is :class:`imgbuild.cache.s3.S3Store`'s,
used through :class:`_Bucket`.
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence


from imgbuild.cache.s3 import S3Store, read_object
from imgbuild.cache.store import CacheUnavailable
from imgbuild.history.record import HistoryRecord
from imgbuild.history.store import AmbiguousId, CorruptRecord, HistoryUnavailable, Query, id_prefix

READ_AHEAD = 16  # records fetched at once while a query scans

_RECORD_KEY = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{8}T\d{6}\.\d{3}Z)-([0-9a-f]{64})\.json")
_ID_KEY = re.compile(r"([0-9a-f]{64})@(\d{8}T\d{6}\.\d{3}Z)")
_DATE_PARTS = (re.compile(r"\d{4}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"))


def compact_time(time: str) -> str:
    """``2024-05-01T10:00:00.123Z`` -> ``20240501T100000.123Z``: the record time as a key part."""
    return time.replace("-", "").replace(":", "")


class S3History:
    def __init__(self, bucket: str, *, prefix: str = "", region: str | None = None, endpoint_url: str | None = None,
                 use_path_style: bool = False, client: Any = None,
                 on_corrupt: Callable[[CorruptRecord], None] | None = None) -> None:
        """``on_corrupt``: called for each damaged record a query meets, which is then left out; without
        it, the query raises :class:`CorruptRecord`.
        """
        self._bucket = _Bucket(S3Store(bucket, prefix=prefix, region=region, endpoint_url=endpoint_url,
                                       use_path_style=use_path_style, client=client))
        self.bucket = bucket
        self.prefix = self._bucket.store.prefix
        self.name = self._bucket.store.name
        self._on_corrupt = on_corrupt

    # -- keys ---------------------------------------------------------------------------------------------

    def record_key(self, record: HistoryRecord) -> str:
        t = compact_time(record.time)
        return f"{self.prefix}records/{t[0:4]}/{t[4:6]}/{t[6:8]}/{t}-{record.hex}.json"

    def _id_key(self, record: HistoryRecord) -> str:
        return f"{self.prefix}ids/{record.hex}@{compact_time(record.time)}"

    # -- the interface ------------------------------------------------------------------------------------

    def append(self, record: HistoryRecord) -> None:
        with self._bucket.errors("writing a record"):
            client = self._bucket.client()
            self._bucket.create(client, self._id_key(record), b"")  # first: see the module's docstring
            self._bucket.create(client, self.record_key(record), record.to_bytes())

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        """The records' objects written 8 at a time (each a couple of round trips to S3)."""
        if len(records) < 2:
            for record in records:
                self.append(record)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self.append, records))  # the first error, once every write has ended

    def get(self, id_or_prefix: str) -> HistoryRecord | None:
        hexpart = id_prefix(id_or_prefix)
        with self._bucket.errors("looking up a record"):
            client = self._bucket.client()
            markers = {m.group(1): m.group(2) for key in self._keys(client, f"{self.prefix}ids/{hexpart}")
                       if (m := _ID_KEY.fullmatch(key[len(f"{self.prefix}ids/"):]))}
            if len(markers) > 1:
                raise AmbiguousId(id_or_prefix, sorted(f"sha256:{h}" for h in markers))
            for hexid, t in markers.items():
                return self._read(client, f"{self.prefix}records/{t[0:4]}/{t[4:6]}/{t[6:8]}/{t}-{hexid}.json")
        return None

    def query(self, *, labels: set[str] | None = None, since: datetime | None = None, commit: str | None = None,
              tag: str | None = None, kind: str | None = None, limit: int | None = None) -> list[HistoryRecord]:
        q = Query.make(labels=labels, since=since, commit=commit, tag=tag, kind=kind, limit=limit)
        found: list[HistoryRecord] = []
        if q.limit == 0:
            return found
        with self._bucket.errors("listing records"), ThreadPoolExecutor(READ_AHEAD) as pool:
            client = self._bucket.client()
            keys = self._newest_first(client, compact_time(q.since) if q.since else None)
            while batch := [key for _, key in zip(range(self._read_ahead(q, len(found))), keys)]:
                for record in pool.map(lambda key: self._read_for_query(client, key), batch):
                    if record is not None and q.matches(record):
                        found.append(record)
                        if q.limit is not None and len(found) >= q.limit:
                            return found
        return found

    # -- internals ----------------------------------------------------------------------------------------

    @staticmethod
    def _read_ahead(q: Query, found: int) -> int:
        """Records to read at once: in parallel, but no more than the limit needs if every one matched."""
        return READ_AHEAD if q.limit is None else min(READ_AHEAD, q.limit - found)

    def _read_for_query(self, client: Any, key: str) -> HistoryRecord | None:
        try:
            return self._read(client, key)
        except CorruptRecord as exc:
            if self._on_corrupt is None:
                raise
            self._on_corrupt(exc)
            return None

    def _read(self, client: Any, key: str) -> HistoryRecord | None:
        """The verified record at ``key``; None if there is no such object."""
        data = read_object(client, self.bucket, key)
        if data is None:
            return None
        where = f"s3://{self.bucket}/{key}"
        record = HistoryRecord.from_bytes(data, where=where)
        if self.record_key(record) != key:
            raise CorruptRecord("it is stored under another record's key", where=where, record_id=record.id)
        return record

    def _newest_first(self, client: Any, since: str | None) -> Iterator[str]:
        """Record keys, newest first, down to ``since`` (a compact time): years, months, days, then keys."""
        base = f"{self.prefix}records/"
        floor = (since[0:4], since[4:6], since[6:8]) if since else None

        def walk(prefix: str, path: tuple[str, ...]) -> Iterator[str]:
            depth = len(path)
            if depth == 3:
                for key in sorted(self._keys(client, prefix), reverse=True):
                    m = _RECORD_KEY.fullmatch(key[len(base):])
                    if m is None:
                        continue  # not ours; left alone
                    if since is not None and m.group(4) < since:
                        return
                    yield key
                return
            parts = [p[len(prefix):-1] for p in self._folders(client, prefix)]
            for part in sorted((p for p in parts if _DATE_PARTS[depth].fullmatch(p)), reverse=True):
                if floor is not None and (*path, part) < floor[:depth + 1]:
                    return  # this folder and every older one end before `since`
                yield from walk(f"{prefix}{part}/", (*path, part))

        return walk(base, ())

    def _keys(self, client: Any, prefix: str) -> Iterator[str]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                yield str(obj["Key"])

    def _folders(self, client: Any, prefix: str) -> Iterator[str]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                      Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                yield str(common["Prefix"])


class _Bucket:
    """The target cache's S3 plumbing, for records: :class:`S3Store` keeps the client, checks the bucket,
    creates objects conditionally and translates errors; this turns its :class:`CacheUnavailable` into
    :class:`HistoryUnavailable`.
    """

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def client(self) -> Any:
        return self.store._ready()

    def create(self, client: Any, key: str, body: bytes) -> bool:
        """Create ``key`` unless it exists (If-None-Match); True if this call wrote it."""
        return self.store._create(client, key, body, replace=False)

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        try:
            with self.store._errors(doing):
                yield
        except CacheUnavailable as exc:
            raise HistoryUnavailable(str(exc)) from exc
