"""The target-cache store interface, its errors, and the guard that keeps a cache from failing a build.

A store keeps three kinds of object, all content addressed: entries (one per input digest, written once),
blobs (the OCI layout's files, by their sha256) and per-label markers (so that the previous entries of a
target can be listed to explain a rebuild). Backends: :class:`imgbuild.cache.local.LocalStore` (a
directory) and :class:`imgbuild.cache.s3.S3Store`.

Stores raise; the build uses :class:`GuardedStore`, which never does: an unavailable backend is a miss and
one warning, a corrupt object is a miss and a warning, and the build goes on building.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Protocol, TypeVar

from imgbuild.errors import ImgbuildError

if TYPE_CHECKING:  # entry.py imports the errors below
    from imgbuild.cache.entry import CacheEntry

T = TypeVar("T")

CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class CacheError(ImgbuildError):
    """Root of the target cache's errors."""


class CacheUnavailable(CacheError):
    """The backend cannot be used: unreachable, timed out, access denied, no such bucket or directory.

    The message is short, meant for a user, and never holds a secret.
    """


class CorruptEntry(CacheError):
    """An entry that does not parse, does not match its ``entry_digest``, or sits under another key.

    ``repairable`` is False for an intact entry of another format version (a newer imgbuild wrote it):
    that one is not overwritten, so that mixed versions sharing a cache do not take turns replacing it.
    """

    def __init__(self, reason: str, *, key: str, label: str | None = None, repairable: bool = True) -> None:
        self.reason = reason
        self.key = key
        self.label = label
        self.repairable = repairable
        target = f" ({label})" if label else ""
        super().__init__(f"cache entry {key}{target} is {'corrupt' if repairable else 'unusable'}: {reason}")


class CorruptBlob(CacheError):
    """A blob whose bytes do not hash to its digest (the partial download is removed)."""

    def __init__(self, reason: str, *, digest: str) -> None:
        self.reason = reason
        self.digest = digest
        super().__init__(f"cache blob {digest} is corrupt: {reason}")


class MissingBlob(CacheError):
    """An entry names a blob the store does not have."""

    def __init__(self, digest: str, *, store: str) -> None:
        self.digest = digest
        super().__init__(f"cache blob {digest} is not in {store}")


@dataclass(frozen=True, kw_only=True)
class StoreStats:
    entries: int
    blobs: int
    bytes: int  # everything the store holds: entries and blobs


class CacheStore(Protocol):
    """What every backend offers. Methods raise :class:`CacheError` subclasses and nothing else.

    Keys and digests are ``sha256:<64 hex>``; anything else is a caller's bug (``ValueError``).
    """

    @property
    def name(self) -> str:
        """Where it is, for messages: ``local:/path`` or ``s3://bucket/prefix``."""
        ...

    def get(self, key: str) -> CacheEntry | None:
        """The verified entry of ``key``; None if there is none; :class:`CorruptEntry` if it is damaged."""
        ...

    def put(self, entry: CacheEntry, *, replace: bool = False) -> bool:
        """Create the entry if its key has none; True if this call wrote it.

        Concurrent writers of one key never corrupt it: the first wins, the others get False.
        ``replace=True`` overwrites (used only to repair an entry found corrupt).
        """
        ...

    def has_blob(self, digest: str) -> bool: ...

    def put_blob(self, digest: str, path: Path, *, replace: bool = False) -> bool:
        """Store the file as blob ``digest`` unless the store has it; True if this call uploaded it.

        The file is checked against ``digest`` first (:class:`CorruptBlob` if it does not match), so a
        store only ever holds correct blobs. ``replace=True`` uploads even if it exists (repair).
        """
        ...

    def get_blob(self, digest: str, dest: Path) -> None:
        """Download blob ``digest`` to ``dest``, verifying sha256 while streaming.

        ``dest`` exists afterwards only if this succeeded: :class:`MissingBlob`, :class:`CorruptBlob` or
        :class:`CacheUnavailable` leave no file at ``dest``.
        """
        ...

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        """Entries recorded for ``label``, newest first (at most ``limit``); damaged ones are left out."""
        ...

    def stats(self) -> StoreStats: ...


class GuardedStore:
    """A store that never raises, for builds: a cache problem costs a rebuild, never a failed build.

    * :class:`CacheUnavailable` -> a miss or a no-op, one warning per store, and the backend is not called
      again in this run (a circuit breaker: an unreachable S3 must not cost a timeout per target).
    * A corrupt entry or blob -> a miss and a warning naming it. Nothing is deleted; if this run builds
      the target again, the fresh entry or blob replaces the corrupt one (content checked first). So does
      the fresh entry of a key whose entry could not be restored (:meth:`mark_unrestorable`): its blobs
      were damaged or gone, and a rebuild rarely gives the same blobs (the image's creation time differs),
      so only a new entry stops every later run from failing the same restore.
    * ``put`` records an entry only if every blob it names is in the store (confirmed by this run's
      ``put_blob`` calls, else by ``has_blob``), so no entry points at a blob that is not there.
    * ``read_only=True`` turns writes into no-ops returning False (untrusted builds must not write).

    Thread-safe: build threads share one instance.
    """

    def __init__(self, store: CacheStore, *, warn: Callable[[str], None], read_only: bool = False) -> None:
        self.store = store
        self.name = store.name
        self.read_only = read_only
        self._warn = warn
        self._lock = threading.Lock()
        self._down: str | None = None
        self._warned: set[str] = set()
        self._present: set[str] = set()  # blob digests known to be in the store
        self._corrupt: set[str] = set()  # keys and digests found corrupt in this run: a write may replace them

    @property
    def available(self) -> bool:
        """False once the backend failed in this run."""
        return self._down is None

    def get(self, key: str, *, label: str | None = None) -> CacheEntry | None:
        """The entry of ``key`` or None (missing, unavailable or corrupt). ``label`` names it in warnings."""
        try:
            return self._call(lambda: self.store.get(key), None)
        except CorruptEntry as exc:
            if exc.repairable:
                self._mark_corrupt(key)
            state = "corrupt" if exc.repairable else "unusable"
            self._warn_once(key, f"cache entry {key} ({label or exc.label or 'unknown target'}) in {self.name} "
                                 f"is {state} ({exc.reason}); not used, the target is rebuilt")
            return None
        except CacheError as exc:
            self._warn_once(key, f"cache {self.name}: {exc}; not used, the target is rebuilt")
            return None

    def put(self, entry: CacheEntry, *, supersede: bool = False) -> bool:
        """Record ``entry``; True if this call wrote it. False if read-only, unavailable, or already there.

        ``supersede``: the user forced this rebuild (``--rebuild``/``--no-cache``), so its image replaces
        the entry of the same key, and the next run uses the fresh image rather than the old one.
        """
        if self.read_only or not self.available:
            return False
        for blob in entry.blobs:
            if not self._blob_present(blob.digest):
                if self.available:
                    self._warn_once(f"put:{entry.key}", f"not recording {entry.label} in cache {self.name}: "
                                                         f"blob {blob.digest} is not in it")
                return False
        corrupt = self._is_corrupt(entry.key)
        replace = corrupt or supersede
        try:
            created = self._call(lambda: self.store.put(entry, replace=replace), False)
        except CacheError as exc:
            self._warn_once(f"put:{entry.key}", f"not recording {entry.label} in cache {self.name}: {exc}")
            return False
        if created and corrupt:
            self._warn(f"cache entry {entry.key} ({entry.label}) in {self.name} was corrupt; replaced")
        return created

    def mark_unrestorable(self, key: str) -> None:
        """The entry of ``key`` was found but its image could not be restored (a blob corrupt or missing,
        the layout refused): the entry this run records for the key replaces it."""
        if self.available:  # an unreachable store says nothing about the entry
            self._mark_corrupt(key)

    def has_blob(self, digest: str) -> bool:
        return self._blob_present(digest)

    def put_blob(self, digest: str, path: Path) -> bool:
        """Upload the blob if the store lacks it; True if this call uploaded it."""
        if self.read_only or not self.available:
            return False
        replace = self._is_corrupt(digest)
        try:
            uploaded = self._call(lambda: self.store.put_blob(digest, path, replace=replace), None)
        except CacheError as exc:
            self._warn_once(f"put:{digest}", f"not storing blob in cache {self.name}: {exc}")
            return False
        if uploaded is None:
            return False
        with self._lock:
            self._present.add(digest)
            self._corrupt.discard(digest)
        return uploaded

    def get_blob(self, digest: str, dest: Path) -> bool:
        """Download the blob to ``dest`` (verified); True on success, else False with no file at ``dest``.

        Unlike :meth:`CacheStore.get_blob` this returns a bool: a guard cannot raise to say it failed.
        """
        if not self.available:
            return False
        def fetch() -> bool:
            self.store.get_blob(digest, dest)
            return True

        try:
            if self._call(fetch, False):
                return True
        except CorruptBlob as exc:
            self._mark_corrupt(digest)
            self._warn_once(digest, f"{exc} (in {self.name}); not used, the target is rebuilt")
        except CacheError as exc:
            self._warn_once(digest, f"{exc}; not used, the target is rebuilt")
        dest.unlink(missing_ok=True)
        return False

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        try:
            return self._call(lambda: self.store.entries_for(label, limit=limit), [])
        except CacheError as exc:
            self._warn_once(f"entries:{label}", f"cache {self.name}: {exc}")
            return []

    def stats(self) -> StoreStats:
        """The backend's stats; all zero when it is unavailable (and that was warned about)."""
        try:
            return self._call(self.store.stats, StoreStats(entries=0, blobs=0, bytes=0))
        except CacheError as exc:
            self._warn_once("stats", f"cache {self.name}: {exc}")
            return StoreStats(entries=0, blobs=0, bytes=0)

    # -- internals ---------------------------------------------------------------------------------------

    def _call(self, op: Callable[[], T], default: T) -> T:
        """Run ``op`` against the backend unless the circuit is open; unavailability opens it."""
        if self._down is not None:
            return default
        try:
            return op()
        except CacheUnavailable as exc:
            self._trip(str(exc))
            return default

    def _trip(self, reason: str) -> None:
        with self._lock:
            first = self._down is None
            if first:
                self._down = reason
        if first:  # warn outside the lock: the callback may take its own locks
            self._warn(f"cache {self.name} unavailable: {reason}; continuing without it (targets are rebuilt)")

    def _warn_once(self, subject: str, message: str) -> None:
        with self._lock:
            if subject in self._warned:
                return
            self._warned.add(subject)
        self._warn(message)

    def _blob_present(self, digest: str) -> bool:
        with self._lock:
            if digest in self._present:
                return True
            if digest in self._corrupt:  # there, but damaged: only a re-upload in this run makes it count
                return False
        try:
            present = self._call(lambda: self.store.has_blob(digest), False)
        except CacheError:
            present = False
        if present:
            with self._lock:
                self._present.add(digest)
        return present

    def _mark_corrupt(self, subject: str) -> None:
        with self._lock:
            self._corrupt.add(subject)
            self._present.discard(subject)

    def _is_corrupt(self, subject: str) -> bool:
        with self._lock:
            return subject in self._corrupt


def digest_hex(digest: str) -> str:
    """The hex part of ``sha256:<64 lowercase hex>``; ValueError for anything else (it becomes a path)."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[len("sha256:"):]


# -- helpers for backends: the get_blob/put_blob contract, implemented once ---------------------------------


def copy_hashing(src: BinaryIO, dst: BinaryIO | None = None) -> str:
    """Hex sha256 of what ``src`` yields, copying it to ``dst`` on the way."""
    h = hashlib.sha256()
    while chunk := src.read(CHUNK):
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
    return h.hexdigest()


def download_verified(src: BinaryIO, dest: Path, digest: str) -> None:
    """Stream ``src`` to ``dest`` through a temporary file; publish it only if it hashes to ``digest``.

    On any failure (:class:`CorruptBlob`, a read or write error) there is no file at ``dest`` afterwards.
    """
    expected = digest_hex(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            actual = copy_hashing(src, f)
        if actual != expected:
            raise CorruptBlob(f"its content hashes to sha256:{actual}", digest=digest)
        os.replace(tmp, dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def label_entries(get: Callable[[str], CacheEntry | None], keys: Iterable[str], label: str,
                  limit: int | None) -> list[CacheEntry]:
    """The entries of ``label`` among ``keys`` (most recent marker first), newest first, at most ``limit``.

    Damaged entries and entries of another label (a reused marker) are left out.
    """
    entries: list[CacheEntry] = []
    for key in keys:
        if limit is not None and len(entries) >= limit:
            break
        try:
            entry = get(key)
        except (CorruptEntry, ValueError):
            continue
        if entry is not None and entry.label == label:
            entries.append(entry)
    return sorted(entries, key=lambda e: (e.created, e.key), reverse=True)
