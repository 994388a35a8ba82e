"""The manifest history: an append-only record of what was built, pushed and released, for compliance
("what exactly did we ship, from which commit, when, with which inputs").

* :mod:`~imgbuild.history.record` — one record (:class:`HistoryRecord`, content-addressed canonical JSON,
  ``specs/history-record.schema.json``);
* :mod:`~imgbuild.history.store` — the store interface, its errors, the query, and :class:`GuardedHistory`,
  which spools records locally when the store fails, so that no build fails and no record is lost;
* :mod:`~imgbuild.history.sqlite` and :mod:`~imgbuild.history.s3` — the backends (a SQLite file, an S3
  bucket).
"""

from __future__ import annotations

from imgbuild.history.record import HistoryRecord, format_time, utc_now
from imgbuild.history.store import (AmbiguousId, CorruptRecord, GuardedHistory, HistoryError, HistoryStore,
                                    HistoryUnavailable, InvalidQuery, SpoolError, open_store)

__all__ = [
    "AmbiguousId",
    "CorruptRecord",
    "GuardedHistory",
    "HistoryError",
    "HistoryRecord",
    "HistoryStore",
    "HistoryUnavailable",
    "InvalidQuery",
    "SpoolError",
    "format_time",
    "open_store",
    "utc_now",
]
