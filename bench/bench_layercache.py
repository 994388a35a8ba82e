"""Benchmark of the S3 layer cache (issue #5) on a wiped engine, like a fresh single-use CI runner.

Run: python bench/bench_layercache.py [--runs 3] [--sleep 8]

An app whose Dockerfile installs dependencies in a slow step (``RUN sleep S``) before ``COPY . .``,
with an ``s3`` cache policy (synced through local exports: the engine here has no native S3 cache).
Each run, on a wiped engine (the app's image removed, ``docker buildx prune -af``, imgbuild's local caches
deleted):

* cold: a fresh bucket, so no cache at all;
* warm: the application file changed, the S3 layer cache warm from the previous build.

Prints both times and the ratio warm / cold (goal: at most 0.40, the slow step must not run), then
the bytes uploaded to S3 by a second export with no change (goal: only a small index, no blob).
Needs the services of scripts/dev-services (engine, S3 at $IMGBUILD_TEST_S3_ENDPOINT).
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

from imgbuild.statedir import for_workspace

S3 = os.environ.get("IMGBUILD_TEST_S3_ENDPOINT", "http://127.0.0.1:9000")
BUILD = [sys.executable, "-m", "imgbuild", "build", "//...", "--progress", "plain"]


def s3() -> object:
    import boto3

    return boto3.client("s3", endpoint_url=S3, region_name="us-east-1")


def bucket_bytes(client: object, bucket: str, prefix: str) -> tuple[int, int]:
    total, count = 0, 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):  # type: ignore[attr-defined]
        for obj in page.get("Contents", ()):
            total += obj["Size"]
            count += 1
    return total, count


def write(root: Path, image: str, bucket: str, sleep: int, marker: str) -> None:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "imgbuild.yaml").write_text(
        "version: 1\ndefaults: {cache: ci, tags: [dev]}\n"
        f"cache_policies:\n  ci: {{backend: s3, bucket: {bucket}, prefix: mono/, endpoint_url: '{S3}', "
        "use_path_style: true, mode: max, scope: main}\n")
    (root / "app/BUILD.yaml").write_text(f"apps:\n  app:\n    image: {image}\n")
    (root / "app/Dockerfile").write_text(
        "FROM busybox:1.36\nWORKDIR /app\nCOPY deps.txt .\n"
        f"RUN sleep {sleep} && head -c 2000000 /dev/urandom > /app/vendor.bin && echo {marker} > /app/deps.ok\n"
        "COPY . .\nRUN cat main.txt > /app/built.txt\n")
    (root / "app/deps.txt").write_text("left-pad==1.3.0\nrequests==2.32.3\n")


def wipe(root: Path, image: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", f"{image}:dev"], capture_output=True)
    subprocess.run(["docker", "buildx", "prune", "-af"], capture_output=True, check=True)
    shutil.rmtree(for_workspace(root).cache, ignore_errors=True)


def timed(root: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*BUILD, *extra], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: build failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sleep", type=int, default=8)
    args = ap.parse_args()
    client = s3()
    image = f"imgbench-{secrets.token_hex(3)}-app"
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for run in range(args.runs):
            bucket = f"imgbench-{secrets.token_hex(4)}"
            client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            write(root, image, bucket, args.sleep, f"run{run}-{secrets.token_hex(2)}")  # no BuildKit reuse across runs
            (root / "app/main.txt").write_text(f"v1 {run}\n")
            wipe(root, image)
            cold.append(timed(root))
            (root / "app/main.txt").write_text(f"v2 {run}\n")
            wipe(root, image)
            warm.append(timed(root))
        layers_before = bucket_bytes(client, bucket, "mono/layers/")
        timed(root, "--rebuild", "//app")  # the same inputs built again: a second export with no change
        layers_after = bucket_bytes(client, bucket, "mono/layers/")
        note = [ln for ln in (for_workspace(root).logs / "app/app.log").read_text().splitlines()
                if ln.startswith("# layer cache:")]
    subprocess.run(["docker", "image", "rm", "-f", f"{image}:dev"], capture_output=True)
    m_cold, m_warm = statistics.median(cold), statistics.median(warm)
    print(f"layer cache on a wiped engine, dependency step = sleep {args.sleep} s + 2 MB of vendor files")
    print(f"  cold build (no cache anywhere)         median {m_cold:.2f} s   runs {' '.join(f'{t:.2f}' for t in cold)}")
    print(f"  app changed, warm S3 layer cache       median {m_warm:.2f} s   runs {' '.join(f'{t:.2f}' for t in warm)}")
    print(f"  warm / cold = {m_warm / m_cold:.2f}  (goal <= 0.40)")
    print(f"  second export with no change: {note[0][2:] if note else '(no upload line in the log)'}; "
          f"bucket growth {layers_after[0] - layers_before[0]} bytes in {layers_after[1] - layers_before[1]} "
          f"new objects (layers total {layers_after[0]} bytes)")


if __name__ == "__main__":
    main()
