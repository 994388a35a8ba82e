"""A target-cache store in a local directory (the default, and the fixture for the cache's logic tests).

Layout under the root::

    entries/<hex>.json              the entry of key sha256:<hex>
    labels/<sha256 of label>/<hex>  empty markers: the keys recorded for a label
    blobs/sha256/<hex>              blobs

Every write goes to a temporary file in the destination's directory first, is fsynced (a torn entry after
a crash would otherwise block its key: entries are never overwritten), and is then published in one step:
``os.link`` for create-if-absent (it fails if the name exists, so the first writer wins), ``os.replace``
for a repair. Readers therefore see a whole file or none. Reads verify what they return.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from imgbuild.cache.entry import CacheEntry
from imgbuild.cache.store import (CacheUnavailable, CorruptBlob, MissingBlob, StoreStats, copy_hashing,
                                  digest_hex, download_verified, label_entries)

_TMP = ".tmp-"


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"local:{self.root}"

    def _entry_path(self, key: str) -> Path:
        return self.root / "entries" / f"{digest_hex(key)}.json"

    def _label_dir(self, label: str) -> Path:
        return self.root / "labels" / hashlib.sha256(label.encode()).hexdigest()

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest_hex(digest)

    @property
    def blob_dir(self) -> Path:
        """Where the blobs lie, as ``<hex>`` files (what an OCI layout's ``blobs/sha256`` holds)."""
        return self.root / "blobs" / "sha256"

    def get(self, key: str) -> CacheEntry | None:
        path = self._entry_path(key)
        with _unavailable(f"cannot read {path}"):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return None
        return CacheEntry.from_bytes(data, expected_key=key)

    def put(self, entry: CacheEntry, *, replace: bool = False) -> bool:
        path = self._entry_path(entry.key)
        data = entry.to_bytes()
        with _unavailable(f"cannot write {path}"):
            created = _publish(path, lambda f: f.write(data), replace=replace)
            if created:  # after the entry, so a marker never names an entry that was not written
                marker = self._label_dir(entry.label) / digest_hex(entry.key)
                _publish(marker, lambda f: None, replace=True)
        return created

    def has_blob(self, digest: str) -> bool:
        path = self._blob_path(digest)
        with _unavailable(f"cannot read {path.parent}"):
            return path.is_file()

    def put_blob(self, digest: str, path: Path, *, replace: bool = False) -> bool:
        target = self._blob_path(digest)
        with open(path, "rb") as src:  # outside the translation: a missing source is the caller's bug
            with _unavailable(f"cannot write {target}"):
                if not replace and target.is_file():
                    return False
                hexd = digest_hex(digest)

                def copy(dst: BinaryIO) -> None:
                    if copy_hashing(src, dst) != hexd:
                        raise CorruptBlob(f"{path} does not hash to it; not stored", digest=digest)

                return _publish(target, copy, replace=replace)

    def get_blob(self, digest: str, dest: Path) -> None:
        source = self._blob_path(digest)
        with _unavailable(f"cannot copy {source} to {dest}"):
            try:
                src = open(source, "rb")
            except FileNotFoundError:
                dest.unlink(missing_ok=True)
                raise MissingBlob(digest, store=self.name) from None
            with src:
                download_verified(src, dest, digest)

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        folder = self._label_dir(label)
        with _unavailable(f"cannot read {folder}"):
            try:
                markers = [m for m in os.scandir(folder) if not m.name.startswith(_TMP)]
            except FileNotFoundError:
                return []
            # The marker's time approximates the entry's; it picks which entries to read when limited.
            markers.sort(key=lambda m: m.stat().st_mtime, reverse=True)
        return label_entries(self.get, (f"sha256:{m.name}" for m in markers), label, limit)

    def stats(self) -> StoreStats:
        with _unavailable(f"cannot read {self.root}"):
            entries, entry_bytes = _count(self.root / "entries")
            blobs, blob_bytes = _count(self.root / "blobs" / "sha256")
        return StoreStats(entries=entries, blobs=blobs, bytes=entry_bytes + blob_bytes)


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise CacheUnavailable(f"{what}: {exc.strerror or exc}") from exc


def _publish(path: Path, write: Callable[[BinaryIO], object], *, replace: bool) -> bool:
    """Write a file through a fsynced temporary one; create-if-absent unless ``replace``. True if written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _count(folder: Path) -> tuple[int, int]:
    try:
        files = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(_TMP)]
    except FileNotFoundError:
        return 0, 0
    return len(files), sum(e.stat().st_size for e in files)
