"""Benchmark imgbuild.fileset: cold hashing throughput and the warm no-op.

Run: python bench/bench_hashing.py [--mb 200] [--runs 5] [--dir DIR]

1. Cold. A generated tree of ~200 MB in files of mixed sizes (many of a few KB, some of
   hundreds of KB, a few of tens of MB). With an empty stat cache, `context_files` must read and
   hash everything. The reference is plain hashlib sha256 over the same files read the same way
   (one read for small files, 1 MiB readinto for large ones), in one thread, with the file list
   given: no walk, no stat, no pool. All run with the files in the page cache, best of --runs
   interleaved rounds, so this measures CPU cost, not the disk. Goal: ratio >= 0.70. Shown for
   one thread too: the pool (large files only) is what takes it past 1 on 2 cores.
2. Warm no-op. 500 contexts x 20 files (a .dockerignore each, an ignored node_modules, an
   executable, a symlink). After a first pass has filled the stat cache and the files are old
   enough not to be racy, time `load_rules` + `context_files` for all 500 contexts with the cache
   loaded from disk: in this process, and as a fresh `python -c` process (interpreter start
   included). Goal: well under 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from imgbuild.dockerignore import load_rules  # noqa: E402
from imgbuild.fileset import context_files  # noqa: E402
from imgbuild.statcache import StatCache  # noqa: E402

MB = 1 << 20


def gen_cold_tree(root: Path, total_mb: int, seed: int = 1) -> list[tuple[str, int]]:
    """Files of mixed sizes adding up to about ``total_mb``; returns (path, size) of each."""
    rng = random.Random(seed)
    budget = total_mb * MB
    # (share of the bytes, size range): most bytes in big files, most files small.
    classes = [(0.15, (512, 64 << 10)), (0.35, (64 << 10, 2 * MB)), (0.50, (8 * MB, 32 * MB))]
    files: list[tuple[str, int]] = []
    chunk = rng.randbytes(4 * MB)
    for ci, (share, (lo, hi)) in enumerate(classes):
        left = int(budget * share)
        i = 0
        while left > 0:
            size = min(rng.randint(lo, hi), left)
            left -= size
            d = root / f"c{ci}" / f"d{i % 37:02d}"
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"f{i:05d}.bin"
            with open(p, "wb") as f:
                f.write(i.to_bytes(8, "little"))  # unique content per file
                remaining = size - 8
                while remaining > 0:
                    f.write(chunk[: min(remaining, len(chunk))])
                    remaining -= len(chunk)
            files.append((str(p), size))
            i += 1
    return files


def plain_hashlib(files: list[tuple[str, int]]) -> None:
    for path, size in files:
        with open(path, "rb", buffering=0) as f:
            if size <= MB:
                hashlib.sha256(f.read()).hexdigest()
                continue
            h = hashlib.sha256()
            buf = bytearray(MB)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
            h.hexdigest()


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cold(base: Path, total_mb: int, runs: int) -> None:
    root = base / "cold"
    files = gen_cold_tree(root, total_mb)
    nbytes = sum(s for _, s in files)
    mb = nbytes / MB
    plain_hashlib(files)  # page cache
    print(f"cold hashing: {len(files)} files, {mb:.0f} MB, {os.cpu_count()} CPUs, files in page cache")
    rules = load_rules(root, root / "Dockerfile")
    cache_dir = base / "caches"

    def cold(workers: int | None) -> None:
        shutil.rmtree(cache_dir, ignore_errors=True)
        context_files(root, rules, StatCache(cache_dir / "statcache.json"), workers=workers)

    # Interleaved rounds, best of each: this VM's CPUs are shared and their speed drifts.
    variants = {
        "plain hashlib, 1 thread, file list given": lambda: plain_hashlib(files),
        "context_files, 1 thread": lambda: cold(1),
        "context_files, default (pool for big files)": lambda: cold(None),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(runs):
        for label, fn in variants.items():
            best[label] = min(best[label], best_of(1, fn))
    t_plain = best["plain hashlib, 1 thread, file list given"]
    for label, t in best.items():
        shown = "" if label.startswith("plain") else f"   ratio {t_plain / t:.2f}"
        print(f"  {label:<44} {mb / t:6.0f} MB/s  {t:6.3f} s{shown}")
    goal = t_plain / best["context_files, default (pool for big files)"]
    print(f"  goal: ratio >= 0.70 -> {'met' if goal >= 0.70 else 'NOT met'} ({goal:.2f})")


def gen_contexts(root: Path, contexts: int, files_per: int, seed: int = 2) -> list[Path]:
    rng = random.Random(seed)
    out = []
    for c in range(contexts):
        ctx = root / f"pkg{c // 10:03d}" / f"app{c % 10}"
        (ctx / "src" / "lib").mkdir(parents=True)
        (ctx / "node_modules" / "dep").mkdir(parents=True)
        (ctx / ".dockerignore").write_text("node_modules\n**/*.pyc\n*.log\n!keep.log\n")
        (ctx / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\n")
        (ctx / "run.sh").write_text("#!/bin/sh\nexec /app/main\n")
        (ctx / "run.sh").chmod(0o755)
        os.symlink("src/main.py", ctx / "main.py")
        for i in range(files_per - 4):  # + Dockerfile, .dockerignore, run.sh, main.py
            sub = "src" if i % 2 else "src/lib"
            (ctx / sub / f"m{i:02d}.py").write_bytes(rng.randbytes(rng.randint(200, 8000)))
        (ctx / "node_modules" / "dep" / "index.js").write_text("ignored\n")
        (ctx / "debug.log").write_text("ignored\n")
        out.append(ctx)
    return out


WARM_SCRIPT = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
from pathlib import Path
from imgbuild.dockerignore import load_rules
from imgbuild.fileset import context_files
from imgbuild.statcache import StatCache
cache = StatCache(Path({cache!r}))
n = 0
for line in Path({listing!r}).read_text().splitlines():
    ctx = Path(line)
    n += len(context_files(ctx, load_rules(ctx, ctx / "Dockerfile"), cache))
cache.save()
print(n, time.perf_counter() - t0)
"""


def bench_warm(base: Path, contexts: int, files_per: int, runs: int) -> None:
    root = base / "warm"
    ctxs = gen_contexts(root, contexts, files_per)
    cache_path = base / "warm-cache" / "statcache.json"
    created = time.time()

    def all_contexts(cache: StatCache) -> int:
        return sum(len(context_files(c, load_rules(c, c / "Dockerfile"), cache)) for c in ctxs)

    # Files written less than the racy margin ago are not cached: wait as a later build would.
    time.sleep(max(0.0, created + 2.2 - time.time()))
    cache = StatCache(cache_path)
    t0 = time.perf_counter()
    nfiles = all_contexts(cache)
    t_fill = time.perf_counter() - t0
    cache.save()
    size_kb = cache_path.stat().st_size / 1024
    print(f"warm no-op: {contexts} contexts x {files_per} files = {nfiles} files in the digests")
    print(f"  first pass (cold cache, hashing)      {t_fill:6.3f} s; cache file {size_kb:.0f} KB")

    def warm() -> None:
        c = StatCache(cache_path)  # loaded from disk, as a new build would
        assert all_contexts(c) == nfiles
        assert len(c) == nfiles - contexts  # every regular file cached (symlinks are not)

    t = best_of(runs, warm)
    print(f"  in-process, warm cache                {t:6.3f} s   {t / nfiles * 1e6:5.1f} us/file")
    listing = base / "contexts.txt"
    listing.write_text("".join(f"{c}\n" for c in ctxs))
    script = WARM_SCRIPT.format(
        repo=str(Path(__file__).resolve().parents[1]), cache=str(cache_path), listing=str(listing)
    )
    walls, inner = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - t0)
        inner.append(float(out.split()[1]))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    t_interp = time.perf_counter() - t0
    print(
        f"  fresh process, warm cache             {min(walls):6.3f} s wall (best of {runs}; "
        f"imports+work {min(inner):.3f} s, bare interpreter {t_interp:.3f} s)"
    )
    print(f"  goal: well under 1 s -> {'met' if min(walls) < 1.0 else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--contexts", type=int, default=500)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="where to generate the trees (default: a temp dir)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-hashing-", dir=args.dir))
    try:
        bench_cold(base, args.mb, args.runs)
        bench_warm(base, args.contexts, args.files, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
