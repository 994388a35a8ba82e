"""Build context file sets and the stat cache: what changes the result, what is read again."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from imgbuild import fileset
from imgbuild.dockerignore import IgnoreRules
from imgbuild.fileset import FileEntry, FilesetError, context_files, sha256_file
from imgbuild.statcache import StatCache

LATER_NS = 10_000_000_000  # a scan this long after the files were written finds none of them racy


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = write(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox\n",
            "src/app.py": "print('hi')\n",
            "src/run.sh": "#!/bin/sh\n",
            "node_modules/dep/index.js": "ignored\n",
            "debug.log": "ignored\n",
        },
    )
    (root / "src" / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    return root


RULES = IgnoreRules.parse("node_modules\n*.log\n")


class CountingHash:
    """A hash function that counts the files it reads; optionally a different digest per call."""

    def __init__(self, *, fresh_each_call: bool = False) -> None:
        self.paths: list[str] = []
        self.fresh = fresh_each_call

    def __call__(self, path: str, size: int) -> str:
        self.paths.append(path)
        return f"read-{len(self.paths)}" if self.fresh else sha256_file(path, size)


def cache_at(path: Path, offset_ns: int) -> StatCache:
    """A stat cache whose clock runs ``offset_ns`` ahead of the real one."""
    return StatCache(path, clock=lambda: time.time_ns() + offset_ns)


def test_entries_modes_digests_sorted(ctx: Path) -> None:
    assert context_files(ctx, RULES, None) == (
        FileEntry(path="Dockerfile", mode=0o100644, digest=sha(b"FROM busybox\n")),
        FileEntry(path="src/app.py", mode=0o100644, digest=sha(b"print('hi')\n")),
        FileEntry(path="src/run.sh", mode=0o100755, digest=sha(b"#!/bin/sh\n")),
    )


def test_ignored_changes_do_not_count(ctx: Path) -> None:
    before = context_files(ctx, RULES, None)
    (ctx / "debug.log").write_text("more noise\n")
    write(ctx, {"node_modules/other/x.js": "new", "node_modules/dep/index.js": "changed"})
    (ctx / "another-empty-dir").mkdir()
    (ctx / "src" / "app.py").chmod(0o600)  # only the executable bit is recorded
    assert context_files(ctx, RULES, None) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda c: (c / "src" / "app.py").write_text("print('bye')\n"),
        lambda c: (c / "src" / "app.py").chmod(0o744),
        lambda c: (c / "src" / "run.sh").chmod(0o644),
        lambda c: (c / "src" / "app.py").rename(c / "src" / "main.py"),
        lambda c: (c / "new.txt").write_text(""),
    ],
    ids=["content", "exec-bit-on", "exec-bit-off", "rename", "new-empty-file"],
)
def test_changes_that_count(ctx: Path, change: object) -> None:
    before = context_files(ctx, RULES, None)
    assert callable(change)
    change(ctx)
    assert context_files(ctx, RULES, None) != before


def test_symlinks_are_recorded_not_followed(ctx: Path) -> None:
    os.symlink("src/app.py", ctx / "app")
    os.symlink("../../outside/nowhere", ctx / "dangling")
    os.symlink("src", ctx / "srclink")  # a link to a directory is not walked into
    got = {e.path: e for e in context_files(ctx, RULES, None)}
    assert got["app"] == FileEntry(path="app", mode=0o120000, digest=sha(b"src/app.py"))
    assert got["dangling"].digest == sha(b"../../outside/nowhere")
    assert got["srclink"].mode == 0o120000
    assert not any(p.startswith("srclink/") for p in got)


def test_reincluded_file_under_excluded_dir(ctx: Path) -> None:
    rules = IgnoreRules.parse("node_modules\n!node_modules/dep/index.js\n")
    paths = [e.path for e in context_files(ctx, rules, None)]
    assert "node_modules/dep/index.js" in paths


def test_walk_agrees_with_excluded(tmp_path: Path) -> None:
    names = ["a", "b", "ab", "x.md", "README.md"]
    files = [f"{d1}/{d2}/{f}" for d1 in names[:3] for d2 in names[:3] for f in names] + names[3:]
    root = write(tmp_path / "c", {f: f for f in files})
    for text in ["a\n", "*\n!b/**\n", "**/*.md\n!a/**/README.md\n", "a/b\n!a\n", "*/a\n!*/a/x.md\n", ""]:
        rules = IgnoreRules.parse(text)
        walked = [e.path for e in context_files(root, rules, None)]
        assert walked == sorted(f for f in files if not rules.excluded(f)), text


def test_excluded_dir_is_not_listed(ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        listed.append(path)
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    context_files(ctx, RULES, None)
    assert not any("node_modules" in p for p in listed)
    listed.clear()
    context_files(ctx, IgnoreRules.parse("node_modules\n!**/index.js\n"), None)
    assert any(p.endswith("node_modules") for p in listed)


def test_warm_stat_cache_reads_nothing(ctx: Path, tmp_path: Path) -> None:
    hash_file = CountingHash()
    cache = cache_at(tmp_path / "c.json", LATER_NS)
    first = context_files(ctx, RULES, cache, hash_file=hash_file)
    assert len(hash_file.paths) == 3
    cache.save()
    again = context_files(ctx, RULES, cache_at(tmp_path / "c.json", LATER_NS), hash_file=hash_file)
    assert again == first and len(hash_file.paths) == 3
    (ctx / "src" / "app.py").write_text("changed\n")
    context_files(ctx, RULES, cache, hash_file=hash_file)
    assert hash_file.paths[3:] == [str(ctx / "src" / "app.py")]


def test_cached_digest_is_trusted_only_when_not_racy(ctx: Path, tmp_path: Path) -> None:
    # Each read gives a new digest, as if the content had changed without changing the stat
    # (a rewrite within the same timestamp tick). A trusted entry returns the old digest unread;
    # a racy one (file changed within the margin before the scan) is read again.
    hash_file = CountingHash(fresh_each_call=True)
    app = str(ctx / "src" / "app.py")

    safe = cache_at(tmp_path / "safe.json", LATER_NS)
    first = {e.path: e.digest for e in context_files(ctx, RULES, safe, hash_file=hash_file)}
    second = {e.path: e.digest for e in context_files(ctx, RULES, safe, hash_file=hash_file)}
    assert second == first and hash_file.paths.count(app) == 1

    racy = cache_at(tmp_path / "racy.json", 0)  # scanning right after the files were written
    a = {e.path: e.digest for e in context_files(ctx, RULES, racy, hash_file=hash_file)}
    b = {e.path: e.digest for e in context_files(ctx, RULES, racy, hash_file=hash_file)}
    assert a["src/app.py"] != b["src/app.py"] and hash_file.paths.count(app) == 3
    assert len(racy) == 0


def fake_stat(*, size: int = 5, mtime: int, ctime: int | None = None, ino: int = 7) -> os.stat_result:
    c = mtime if ctime is None else ctime
    return os.stat_result((0o100644, ino, 1, 1, 0, 0, size, 0, 0, 0, 0.0, 0.0, 0.0, 0, mtime, c))


def test_stat_cache_rules(tmp_path: Path) -> None:
    now = 1_000_000_000_000_000_000
    cache = StatCache(tmp_path / "c.json", clock=lambda: now)
    old = now - 5_000_000_000
    cache.record("/f", fake_stat(mtime=old), "d1", read_start_ns=now)
    assert cache.lookup("/f", fake_stat(mtime=old)) == "d1"
    for other in (fake_stat(mtime=old, size=6), fake_stat(mtime=old + 1), fake_stat(mtime=old, ctime=old + 1),
                  fake_stat(mtime=old, ino=8)):
        assert cache.lookup("/f", other) is None
    assert cache.lookup("/g", fake_stat(mtime=old)) is None
    # Changed within the margin before the read: not kept, and the older entry is dropped.
    cache.record("/f", fake_stat(mtime=now - 1_000_000_000), "d2", read_start_ns=now)
    assert cache.lookup("/f", fake_stat(mtime=now - 1_000_000_000)) is None and len(cache) == 0
    # ctime counts: mtime set back by utime after a recent write is still racy.
    assert cache.is_racy(fake_stat(mtime=old, ctime=now), now)
    # Without read_start_ns, the cache's creation time is used.
    cache.record("/h", fake_stat(mtime=now - 3_000_000_000), "d3")
    assert len(cache) == 1


def test_stat_cache_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "statcache.json"
    cache = StatCache(path)
    st = fake_stat(mtime=1)
    cache.record("/x/ünï\udcff", st, "d", read_start_ns=10**19)
    cache.save()
    assert os.listdir(path.parent) == ["statcache.json"]  # no temp file left behind
    assert StatCache(path).lookup("/x/ünï\udcff", st) == "d"
    mtime = path.stat().st_mtime_ns
    StatCache(path).save()  # nothing changed: not rewritten
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"version": 2, "entries": {}}', b'{"version": 1}',
     b'{"version": 1, "entries": {"/f": [1, 2, 3]}}', b'{"version": 1, "entries": {"/f": [1, 2, 3, "4", "d"]}}',
     b'{"version": 1, "entries": []}', b"\xff\xfe"],
)
def test_corrupt_cache_is_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "statcache.json"
    path.write_bytes(content)
    cache = StatCache(path)
    assert cache.lookup("/f", fake_stat(mtime=1)) is None and len(cache) == 0
    cache.record("/f", fake_stat(mtime=1), "d", read_start_ns=10**19)
    cache.save()
    assert json.loads(path.read_text())["entries"] == {"/f": [5, 1, 1, 7, "d"]}


def test_unreadable_cache_path_is_empty(tmp_path: Path) -> None:
    (tmp_path / "statcache.json").mkdir()
    assert len(StatCache(tmp_path / "statcache.json")) == 0


def test_unreadable_file_is_a_clear_error(ctx: Path) -> None:
    def denied(path: str, size: int) -> str:
        raise PermissionError(13, "Permission denied", path)

    with pytest.raises(FilesetError) as exc:
        context_files(ctx, RULES, None, hash_file=denied)
    assert exc.value.reason == "cannot read: Permission denied"
    assert exc.value.path.startswith(str(ctx))


def test_fifo_is_an_error_unless_ignored(ctx: Path) -> None:
    os.mkfifo(ctx / "pipe")
    with pytest.raises(FilesetError, match="FIFO"):
        context_files(ctx, RULES, None)
    assert len(context_files(ctx, IgnoreRules.parse("node_modules\n*.log\npipe\n"), None)) == 3


def test_missing_context_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FilesetError, match="cannot list directory"):
        context_files(tmp_path / "nope", RULES, None)


def test_parallel_hashing_gives_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "big", {f"f{i}": os.urandom(300_000 + i) for i in range(20)})
    (root / "large").write_bytes(os.urandom(3 << 20))  # past the single-read size
    monkeypatch.setattr(fileset, "PARALLEL_MIN_BYTES", 0)
    serial = context_files(root, IgnoreRules(), None, workers=1)
    assert context_files(root, IgnoreRules(), None, workers=4) == serial
    assert dict((e.path, e.digest) for e in serial)["large"] == sha((root / "large").read_bytes())


def test_cache_keys_are_absolute(ctx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ctx.parent)
    cache = cache_at(tmp_path / "c.json", LATER_NS)
    context_files(Path(ctx.name), RULES, cache)
    cache.save()
    assert sorted(json.loads((tmp_path / "c.json").read_text())["entries"]) == sorted(
        str(ctx / p) for p in ("Dockerfile", "src/app.py", "src/run.sh")
    )
