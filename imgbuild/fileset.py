"""The files of a build context after .dockerignore: path, mode and content digest of each.

This is one input of a target's digest ("Content-addressed target cache"), so it records what can
change a build and nothing that cannot:

* Regular files get mode ``0o100755`` if the owner may execute them, else ``0o100644``: only the
  executable bit, as git records it. Other permission bits depend on the umask and the checkout
  tool, so the same commit would get different digests on different machines; a build that relies
  on, say, a 0600 file in the context is not told apart from 0644.
* Symlinks get mode ``0o120000`` and the digest of their target string; they are never followed
  (BuildKit sends them as links too).
* Directories are not entries: an empty directory, or a directory's mode, does not count.
* Sockets, FIFOs and devices are an error: they cannot be hashed, and reading a FIFO would block.

Content digests are sha256 hex. With a :class:`~imgbuild.statcache.StatCache` an unchanged file is
not read again; files that must be read are hashed in a small thread pool when there are enough
bytes to pay for it (hashlib and file reads release the GIL, so two cores hash about twice as fast).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgbuild.dockerignore import IgnoreRules
from imgbuild.errors import ImgbuildError
from imgbuild.statcache import StatCache

MODE_FILE = 0o100644
MODE_EXECUTABLE = 0o100755
MODE_SYMLINK = 0o120000

# Files from this size on are hashed in a thread pool, when they add up to enough bytes to pay for
# starting it (measured on 2 cores, see bench/bench_hashing.py).
POOL_MIN_FILE = 256 << 10
PARALLEL_MIN_BYTES = 8 << 20
_SMALL_FILE = 1 << 20
_CHUNK = 1 << 20

HashFile = Callable[[str, int], str]


@dataclass(frozen=True, kw_only=True, slots=True)
class FileEntry:
    path: str  # posix, relative to the context root
    mode: int
    digest: str


class FilesetError(ImgbuildError):
    """A file of a build context that cannot be read or hashed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def sha256_file(path: str, size: int) -> str:
    """sha256 hex of a file's content; ``size`` (from stat) picks one read or a buffered loop."""
    with open(path, "rb", buffering=0) as f:
        if size <= _SMALL_FILE:
            return hashlib.sha256(f.read()).hexdigest()
        h = hashlib.sha256()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
        return h.hexdigest()


def context_files(
    context: Path,
    rules: IgnoreRules,
    stat_cache: StatCache | None,
    *,
    hash_file: HashFile = sha256_file,
    workers: int | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[FileEntry, ...]:
    """Every file Docker would send for ``context`` under ``rules``, sorted by path.

    Reads only files the stat cache does not vouch for, and records their digests in it (the caller
    saves the cache). ``workers`` caps the hashing threads (default: the CPU count, at most 4; 1
    hashes in this thread). ``skip``: real paths of directories never entered, whatever the rules say
    (imgbuild's own state directory when ``IMGBUILD_STATE_DIR`` puts it in the work tree: what imgbuild
    writes there must not change a digest). Raises :class:`FilesetError` for an unreadable file or directory.
    """
    root = os.path.abspath(context)  # stat cache keys must not depend on the working directory
    read_start = stat_cache.now() if stat_cache is not None else 0
    done: list[FileEntry] = []
    todo: list[tuple[str, str, os.stat_result, int]] = []  # rel, abs, stat, mode
    filtered = bool(rules.patterns)
    skip_names = {os.path.basename(p) for p in skip}
    stack: list[tuple[str, str, tuple[bool, ...], bool]] = [(root, "", (), False)]
    while stack:
        dirpath, prefix, dir_info, dir_excluded = stack.pop()
        try:
            it = os.scandir(dirpath)
        except OSError as e:
            # BuildKit too ignores an unreadable directory that is excluded.
            if dir_excluded and isinstance(e, PermissionError):
                continue
            if dirpath != root and isinstance(e, FileNotFoundError):
                continue  # removed while we walked
            raise FilesetError(dirpath, f"cannot list directory: {e.strerror or e}") from None
        with it:
            for de in it:
                rel = prefix + de.name
                if filtered:
                    excluded, info = rules.match(rel, dir_info)
                else:
                    excluded, info = False, dir_info
                try:
                    if de.is_dir(follow_symlinks=False):
                        if de.name in skip_names and os.path.realpath(de.path) in skip:
                            continue
                        if not excluded or rules.may_reinclude_under(rel):
                            stack.append((de.path, rel + "/", info, excluded))
                        continue
                    if excluded:
                        continue
                    st = de.stat(follow_symlinks=False)
                    fmt = stat.S_IFMT(st.st_mode)
                    if fmt == stat.S_IFREG:
                        mode = MODE_EXECUTABLE if st.st_mode & stat.S_IXUSR else MODE_FILE
                        digest = stat_cache.lookup(de.path, st) if stat_cache is not None else None
                        if digest is None:
                            todo.append((rel, de.path, st, mode))
                        else:
                            done.append(FileEntry(path=rel, mode=mode, digest=digest))
                    elif fmt == stat.S_IFLNK:
                        target = os.fsencode(os.readlink(de.path))
                        digest = hashlib.sha256(target).hexdigest()
                        done.append(FileEntry(path=rel, mode=MODE_SYMLINK, digest=digest))
                    else:
                        raise FilesetError(
                            de.path,
                            "not a regular file, directory or symlink (a socket, FIFO or device); "
                            "add it to .dockerignore",
                        )
                except FileNotFoundError:
                    continue  # removed while we walked: it is not in the context any more
                except OSError as e:
                    raise FilesetError(de.path, f"cannot read: {e.strerror or e}") from None

    for (rel, abspath, st, mode), digest in zip(todo, _hash_all(todo, hash_file, workers)):
        if digest is None:
            continue
        done.append(FileEntry(path=rel, mode=mode, digest=digest))
        if stat_cache is not None:
            stat_cache.record(abspath, st, digest, read_start_ns=read_start)
    done.sort(key=lambda e: e.path)
    return tuple(done)


def _hash_all(
    todo: list[tuple[str, str, os.stat_result, int]], hash_file: HashFile, workers: int | None
) -> list[str | None]:
    """Digests in the order of ``todo``, None for a file removed since the walk.

    Large files go to a thread pool while this thread hashes the small ones: a pool task costs
    about as much as hashing a 20 KB file, so small files are cheaper here.
    """

    def one(item: tuple[str, str, os.stat_result, int]) -> str | None:
        _, abspath, st, _ = item
        try:
            return hash_file(abspath, st.st_size)
        except FileNotFoundError:
            return None  # removed since the walk
        except OSError as e:
            raise FilesetError(abspath, f"cannot read: {e.strerror or e}") from None

    n = min(workers or os.cpu_count() or 1, 4)
    big = [i for i, item in enumerate(todo) if item[2].st_size >= POOL_MIN_FILE]
    if n < 2 or len(big) < 2 or sum(todo[i][2].st_size for i in big) < PARALLEL_MIN_BYTES:
        return [one(item) for item in todo]
    out: list[str | None] = [None] * len(todo)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="imgbuild-hash") as pool:
        futures = {i: pool.submit(one, todo[i]) for i in big}
        try:
            for i, item in enumerate(todo):
                if i not in futures:
                    out[i] = one(item)
            for i, f in futures.items():
                out[i] = f.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return out
