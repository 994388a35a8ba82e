"""The content-addressed target cache: a built image recorded under its input digest, so that no machine
builds the same inputs twice.

* :mod:`~imgbuild.cache.entry` — what is recorded (:class:`CacheEntry`, verified canonical JSON);
* :mod:`~imgbuild.cache.store` — the store interface, its errors, and :class:`GuardedStore`, which turns
  every cache problem into a miss and a warning so that the cache never fails a build;
* :mod:`~imgbuild.cache.local` and :mod:`~imgbuild.cache.s3` — the backends (a directory, an S3 bucket).
"""

from __future__ import annotations

from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.store import (CacheError, CacheStore, CacheUnavailable, CorruptBlob, CorruptEntry, GuardedStore,
                                  MissingBlob, StoreStats)

__all__ = [
    "Blob",
    "CacheEntry",
    "CacheError",
    "CacheStore",
    "CacheUnavailable",
    "CorruptBlob",
    "CorruptEntry",
    "GuardedStore",
    "MissingBlob",
    "StoreStats",
]
