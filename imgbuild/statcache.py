"""A stat cache: content digests of files that have not changed since they were hashed.

A file counts as unchanged when its size, mtime_ns, ctime_ns and inode number are all the same as
when it was hashed. That alone is not safe: a file written again within the same timestamp tick as
the write before it keeps its size and mtime (git calls this "racy git", see git's
Documentation/technical/racy-git.txt). git guards against it by comparing each index entry's mtime
with the index file's own mtime and re-checking the content of entries that are not older.

The rule here is the same idea, decided once when a digest is recorded: an entry is *racy* when the
file's last change (the later of mtime and ctime) is not at least ``racy_margin_ns`` older than the
moment reading began. A write after the read began then may have landed in the same tick as the one
we saw, so the digest may be stale with a matching stat; racy entries are not kept, and the file is
hashed again next time (by then it is old enough to be cached). The margin (2 s by default) covers
coarse timestamps (FAT: 2 s, some network filesystems: 1 s), the kernel's coarse clock lagging
``time.time_ns()``, and small clock skew with a file server. ctime counts too because a write
followed by ``utime`` (``tar x``, ``cp -p``, ``rsync -t``) moves mtime back but not ctime.

The file is JSON, ``{"version": 1, "entries": {path: [size, mtime_ns, ctime_ns, ino, digest]}}``,
read on first use and replaced atomically (temp file + ``os.replace``) by :meth:`StatCache.save`. A
missing, unreadable or malformed file is an empty cache: the worst it can cost is rehashing.
Entries of deleted files stay until their path is recorded again; the file grows with the number of
distinct paths ever hashed, not with time.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FORMAT_VERSION = 1
DEFAULT_RACY_MARGIN_NS = 2_000_000_000

_Entry = tuple[int, int, int, int, str]


class StatCache:
    """Digests keyed by path, trusted only while the file's stat is unchanged and the entry not racy.

    ``clock`` (nanoseconds since the epoch) is for tests; readers of files should call :meth:`now`
    before they stat and read, and pass that as ``read_start_ns`` to :meth:`record`.
    """

    def __init__(
        self,
        path: Path,
        *,
        racy_margin_ns: int = DEFAULT_RACY_MARGIN_NS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self.racy_margin_ns = racy_margin_ns
        self._clock = clock
        # Before any read made through this cache: a safe default for record's read_start_ns.
        self._created_ns = clock()
        self._entries: dict[str, _Entry] | None = None
        self._dirty = False

    def now(self) -> int:
        return self._clock()

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        """The digest recorded for ``path`` if its stat still matches, else None."""
        sys.audit("imgbuild.statcache.lookup", path)  # the no-op journal (imgbuild.uptodate) watches it
        e = self._load().get(path)
        if (
            e is not None
            and e[0] == st.st_size
            and e[1] == st.st_mtime_ns
            and e[2] == st.st_ctime_ns
            and e[3] == st.st_ino
        ):
            return e[4]
        return None

    def record(self, path: str, st: os.stat_result, digest: str, *, read_start_ns: int | None = None) -> None:
        """Remember ``digest`` for ``path`` as stat'ed by ``st`` (taken before the content was read).

        ``read_start_ns`` is a clock reading from before ``st`` was taken; by default the time this
        cache was created, which is always early enough but makes more entries racy.
        """
        entries = self._load()
        start = self._created_ns if read_start_ns is None else read_start_ns
        if self.is_racy(st, start):
            if entries.pop(path, None) is not None:
                self._dirty = True
            return
        entry = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest)
        if entries.get(path) != entry:
            entries[path] = entry
            self._dirty = True

    def is_racy(self, st: os.stat_result, read_start_ns: int) -> bool:
        """Whether a digest of this file read from ``read_start_ns`` on could be stale with this stat."""
        return max(st.st_mtime_ns, st.st_ctime_ns) >= read_start_ns - self.racy_margin_ns

    def save(self) -> None:
        """Write the cache if anything changed: a temp file in the same directory, then os.replace.

        No fsync: after a crash the file is at worst corrupt, which reads as an empty cache.
        """
        if not self._dirty or self._entries is None:
            return
        data = json.dumps({"version": FORMAT_VERSION, "entries": self._entries}, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._dirty = False

    def __len__(self) -> int:
        return len(self._load())

    def _load(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = _read(self.path)
        return self._entries


def _read(path: Path) -> dict[str, _Entry]:
    try:
        raw = json.loads(path.read_bytes())
        if raw.get("version") != FORMAT_VERSION:
            return {}
        entries: dict[str, _Entry] = {}
        for p, (size, mtime, ctime, ino, digest) in raw["entries"].items():
            if not (
                type(size) is int and type(mtime) is int and type(ctime) is int and type(ino) is int
            ) or not isinstance(digest, str):
                return {}
            entries[p] = (size, mtime, ctime, ino, digest)
        return entries
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}
