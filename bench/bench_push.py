"""Benchmark: pushing 20 images that share their base layers, imgbuild versus `docker push` one by one.

Run: python bench/bench_push.py [--runs 3] [--images 20] [-j 8]

A generated workspace holds a base image and ``--images`` apps built on it (each adds a small layer),
all built once with imgbuild. Then, per run, into fresh repositories of the local registry
(localhost:5000, from scripts/dev-services): ``docker push`` of every image, one after another (tagged
first, not timed), versus ``imgbuild build //... --push -j J`` (the targets are cached, so this is the
push plus imgbuild's no-op overhead). Both send the same images; the shared base layers travel once per
repository either way. Prints each run, the medians and the ratio (goal: imgbuild at least 3x faster).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sh(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:4])} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def write(root: Path, prefix: str, n: int, registry_path: str, jobs: int) -> None:
    (root / "imgbuild.yaml").write_text(
        f"version: 1\nconcurrency: {jobs}\n"
        f"defaults: {{registry: bench, tags: [v1], push: true}}\n"
        f"registries:\n  bench: {{url: 'localhost:5000/{registry_path}', insecure: true}}\n")
    (root / "base").mkdir(exist_ok=True)
    (root / "base/BUILD.yaml").write_text(f"apps:\n  base: {{image: {prefix}-base, push: false}}\n")
    (root / "base/Dockerfile").write_text("FROM busybox:1.36\nRUN head -c 3000000 /dev/urandom > /blob\n")
    for i in range(n):
        d = root / f"apps/a{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "BUILD.yaml").write_text(f"apps:\n  a{i:02d}:\n    image: {prefix}-a{i:02d}\n    deps: {{BASE: //base}}\n")
        (d / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\nRUN head -c 200000 /dev/urandom > /app{i}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("-j", type=int, default=8)
    args = ap.parse_args()
    prefix = f"imgbench-{secrets.token_hex(3)}"
    imgbuild = [sys.executable, "-m", "imgbuild", "build", "//apps/...", "--progress", "plain", "--allow-dirty"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, prefix, args.images, f"{prefix}/warm", args.j)
        sh(*imgbuild, cwd=root)  # build once; the timed runs only push
        names = [f"{prefix}-a{i:02d}" for i in range(args.images)]
        dp, ib = [], []
        for run in range(args.runs):
            refs = [f"localhost:5000/{prefix}/dp{run}/{n}:v1" for n in names]
            for name, ref in zip(names, refs):
                sh("docker", "tag", f"{name}:v1", ref)
            t0 = time.perf_counter()
            for ref in refs:
                sh("docker", "push", ref)
            dp.append(time.perf_counter() - t0)

            write(root, prefix, args.images, f"{prefix}/ib{run}", args.j)
            t0 = time.perf_counter()
            sh(*imgbuild, "--push", "-j", str(args.j), cwd=root)
            ib.append(time.perf_counter() - t0)
        m_dp, m_ib = statistics.median(dp), statistics.median(ib)
        print(f"push {args.images} images sharing a base layer (~3 MB base, ~200 kB each), fresh repositories")
        print(f"  docker push, one by one       median {m_dp:.2f} s   runs {' '.join(f'{t:.2f}' for t in dp)}")
        print(f"  imgbuild build --push -j {args.j:<3}  median {m_ib:.2f} s   runs {' '.join(f'{t:.2f}' for t in ib)}")
        print(f"  docker push / imgbuild = {m_dp / m_ib:.1f}x  (goal >= 3x)")
        ids = sh("docker", "image", "ls", "-q", "--filter", f"reference=*{prefix}*").split()
        ids += sh("docker", "image", "ls", "-q", "--filter", f"reference=localhost:5000/{prefix}/*/*").split()
        if ids:
            subprocess.run(["docker", "image", "rm", "-f", *sorted(set(ids))], capture_output=True)


if __name__ == "__main__":
    main()
