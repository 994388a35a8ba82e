"""Benchmarks of the target cache (issue #4), each printed side by side with what it is compared to.

Run: python bench/bench_cache.py [--runs 5] [--skip-scale]

1. No-op: with everything built and cached, ``imgbuild build //...`` versus ``docker buildx bake``
   confirming the same fully cached targets (one base + 8 apps, the workspace and bake file of
   bench_build.py). Goal: imgbuild at least 20x faster. Both as fresh processes, alternating.
2. Ephemeral restore: a fresh CI runner (the bench's images removed, BuildKit's cache pruned,
   imgbuild's local caches deleted) with a warm S3 target cache: ``imgbuild build //...`` restores all 9 targets,
   versus building them cold (same wiped state, ``--no-cache``). Goal: restore at least 3x faster.
3. Scale: a generated workspace of 500 targets with 20 files each, all built once; then a no-op
   build as a fresh process with a warm stat cache. Goal: under 1 s.

Needs the services of ``scripts/dev-services up`` (engine, S3 on $IMGBUILD_TEST_S3_ENDPOINT).
Touches only images named ``imgbench-<random>-...`` and BuildKit's cache (``docker buildx prune -af``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_build import docker, load, remove_images, write_run_files, write_workspace  # noqa: E402
from imgbuild.statedir import for_workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
S3 = os.environ.get("IMGBUILD_TEST_S3_ENDPOINT", "http://127.0.0.1:9000")


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:5])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


IMGBUILD = [sys.executable, "-m", "imgbuild", "build", "//...", "--progress", "plain", "-j", "9"]
BAKE = ["docker", "buildx", "bake", "--file", "docker-bake.hcl", "--progress", "plain"]


NO_JOURNAL = {**os.environ, "IMGBUILD_NO_JOURNAL": "1"}


def warm(argv: list[str], root: Path) -> None:
    """After a build, the files it wrote are "racy" for 2 s: the no-op journal is written by a run after that."""
    time.sleep(2.1)
    timed(argv, root)
    timed(argv, root)


def noop(root: Path, runs: int) -> None:
    timed(IMGBUILD, root)  # the first build
    warm(IMGBUILD, root)
    timed(BAKE, root)
    ib, full, bake = [], [], []
    for _ in range(runs):
        ib.append(timed(IMGBUILD, root))
        full.append(timed(IMGBUILD, root, env=NO_JOURNAL))
        bake.append(timed(BAKE, root))
    m_ib, m_full, m_bake = statistics.median(ib), statistics.median(full), statistics.median(bake)
    print("\n1. no-op, everything cached (base + 8 apps), fresh processes")
    print(f"   imgbuild build //...   median {m_ib:.3f} s   runs {' '.join(f'{t:.3f}' for t in ib)}  (no-op journal)")
    print(f"   same, IMGBUILD_NO_JOURNAL=1  median {m_full:.3f} s   runs {' '.join(f'{t:.3f}' for t in full)}"
          "  (full check: load, hash, cache, engine)")
    print(f"   docker buildx bake     median {m_bake:.3f} s   runs {' '.join(f'{t:.3f}' for t in bake)}")
    print(f"   bake / imgbuild = {m_bake / m_ib:.1f}x  (goal >= 20x); without the journal {m_bake / m_full:.1f}x")


def wipe(root: Path, prefix: str) -> None:
    remove_images(prefix)
    docker("buildx", "prune", "-af")
    shutil.rmtree(for_workspace(root).cache, ignore_errors=True)  # imgbuild's local caches (outside the tree)


def restore(root: Path, prefix: str, runs: int) -> None:
    import boto3

    bucket = f"imgbench-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=S3, region_name="us-east-1").create_bucket(Bucket=bucket)
    ws = (root / "imgbuild.yaml").read_text()
    (root / "imgbuild.yaml").write_text(
        ws.replace("defaults:\n", "defaults:\n  cache: ci\n", 1)
        + f"cache_policies:\n  ci: {{backend: s3, bucket: {bucket}, endpoint_url: '{S3}', use_path_style: true}}\n")
    timed(IMGBUILD, root)  # fills the S3 target cache (the changed imgbuild.yaml voids the no-op journal)
    cold, warm = [], []
    for _ in range(runs):
        wipe(root, prefix)
        cold.append(timed([*IMGBUILD, "--no-cache"], root))
        wipe(root, prefix)
        warm.append(timed(IMGBUILD, root))
    subprocess.run([*IMGBUILD, "--json", str(root / "after.json")], cwd=root, capture_output=True, text=True)
    out = (root / "after.json").read_text()
    m_cold, m_warm = statistics.median(cold), statistics.median(warm)
    after = "all cached" if out.count('"status": "cached"') == 9 else "NOT all cached"
    print("\n2. fresh host (images, build cache and imgbuild's local caches wiped), warm S3 target cache, 9 targets")
    print(f"   cold build (--no-cache)   median {m_cold:.3f} s   runs {' '.join(f'{t:.3f}' for t in cold)}")
    print(f"   restore from S3           median {m_warm:.3f} s   runs {' '.join(f'{t:.3f}' for t in warm)}")
    print(f"   cold / restore = {m_cold / m_warm:.1f}x  (goal >= 3x); next run after restore: "
          f"{after}")


def scale(tmp: Path, prefix: str, runs: int) -> None:
    root = tmp / "scale"
    root.mkdir()
    (root / "imgbuild.yaml").write_text("version: 1\nconcurrency: 8\ndefaults: {tags: [latest]}\n")
    for i in range(500):
        d = root / f"pkg{i // 10:02d}" / f"t{i:03d}"
        d.mkdir(parents=True)
        (d / "BUILD.yaml").write_text(f"apps:\n  t{i:03d}:\n    image: {prefix}-scale-{i:03d}\n")
        (d / "Dockerfile").write_text(f"FROM busybox:1.36\nCOPY . /ctx/\nLABEL n={i}\n")
        for f in range(19):  # + the Dockerfile + BUILD.yaml = 21 files in the context
            (d / f"f{f:02d}.txt").write_text(f"target {i} file {f}\n" * 50)
    argv = [*IMGBUILD[:-2], "-j", "8"]
    t0 = time.perf_counter()
    timed(argv, root)
    first = time.perf_counter() - t0
    warm(argv, root)
    times = [timed(argv, root) for _ in range(runs)]
    full = [timed(argv, root, env=NO_JOURNAL) for _ in range(runs)]
    print(f"\n3. scale: 500 targets x 20 files (first build {first:.0f} s), no-op as a fresh process, warm stat cache")
    print(f"   imgbuild build //...   median {statistics.median(times):.3f} s   runs "
          f"{' '.join(f'{t:.3f}' for t in times)}  (goal < 1 s; no-op journal)")
    print(f"   same, IMGBUILD_NO_JOURNAL=1  median {statistics.median(full):.3f} s   runs "
          f"{' '.join(f'{t:.3f}' for t in full)}  (full check)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-scale", action="store_true", help="skip the 500-target bench (its setup builds 500 images)")
    args = ap.parse_args()
    prefix = f"imgbench-{secrets.token_hex(3)}"
    print(f"imgbuild target-cache benchmarks ({load()})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        bench = write_workspace(root, prefix=prefix, n_apps=8, sleep=2, src=REPO)
        write_run_files(bench, secrets.token_hex(4))
        try:
            noop(root, args.runs)
            restore(root, prefix, max(2, args.runs // 2))
            if not args.skip_scale:
                scale(Path(tmp), prefix, args.runs)
        finally:
            remove_images(prefix)


if __name__ == "__main__":
    main()
