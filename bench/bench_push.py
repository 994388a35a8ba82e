"""Benchmark: pushing 20 images that share their base layers, imgbuild versus `docker push` one by one.

Run: python bench/bench_push.py [--runs 3] [--images 20] [--rtt-ms 0,20]

A generated workspace holds a base image and ``--images`` apps built on it (each adds a small layer),
all built once with imgbuild. Then, per run, into fresh repositories of the local registry
(localhost:5000, from scripts/dev-services): ``docker push`` of every image, one after another (tagged
first, not timed), versus ``imgbuild build //... --push`` (the targets are cached, so this is the
push plus imgbuild's no-op overhead). Both send the same images (an index, the image and its
attestation manifest, as buildx makes them); the shared base layers travel once either way. Prints
each run, the medians and the ratio (goal: imgbuild at least 3x faster).

Each ``--rtt-ms`` value is one scenario. 0: straight to the registry on loopback, where a request costs
only the registry's own CPU (on a 2-core machine that is the floor for both tools: the registry does the
same work for either). Above 0: both tools reach the same registry through ``latency_proxy``, which
delivers every byte half that round trip later in each direction, as a registry across a network does
(20 ms: a cloud registry in another region, or a public one, from a CI runner).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latency_proxy import LatencyProxy


def sh(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:4])} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def write(root: Path, prefix: str, n: int, registry_path: str, registry: str = "localhost:5000") -> None:
    (root / "imgbuild.yaml").write_text(
        f"version: 1\nconcurrency: 8\n"
        f"defaults: {{registry: bench, tags: [v1], push: true}}\n"
        f"registries:\n  bench: {{url: '{registry}/{registry_path}', insecure: true}}\n")
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
    ap.add_argument("--rtt-ms", default="0,20", help="comma-separated round-trip times to the registry")
    args = ap.parse_args()
    prefix = f"imgbench-{secrets.token_hex(3)}"
    imgbuild = [sys.executable, "-m", "imgbuild", "build", "//apps/...", "--progress", "plain", "--allow-dirty"]
    names = [f"{prefix}-a{i:02d}" for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, prefix, args.images, f"{prefix}/warm")
        sh(*imgbuild, cwd=root)  # build once; the timed runs only push
        try:
            for rtt_ms in (float(x) for x in args.rtt_ms.split(",")):
                with contextlib.ExitStack() as stack:
                    port = stack.enter_context(LatencyProxy(("127.0.0.1", 5000), rtt=rtt_ms / 1000)) if rtt_ms else 5000
                    scenario(root, prefix, names, imgbuild, args, f"localhost:{port}", rtt_ms)
        finally:
            ids = sh("docker", "image", "ls", "-q", "--filter", f"reference=*{prefix}*").split()
            ids += sh("docker", "image", "ls", "-q", "--filter", f"reference=localhost:*/{prefix}/*/*").split()
            if ids:
                subprocess.run(["docker", "image", "rm", "-f", *sorted(set(ids))], capture_output=True)


def scenario(root: Path, prefix: str, names: list[str], imgbuild: list[str], args: argparse.Namespace,
             registry: str, rtt_ms: float) -> None:
    dp, ib = [], []
    for run in range(args.runs):
        tag = f"r{int(rtt_ms)}-{run}"
        refs = [f"{registry}/{prefix}/dp{tag}/{n}:v1" for n in names]
        for name, ref in zip(names, refs):
            sh("docker", "tag", f"{name}:v1", ref)
        t0 = time.perf_counter()
        for ref in refs:
            sh("docker", "push", ref)
        dp.append(time.perf_counter() - t0)

        write(root, prefix, args.images, f"{prefix}/ib{tag}", registry)
        t0 = time.perf_counter()
        sh(*imgbuild, "--push", cwd=root)
        ib.append(time.perf_counter() - t0)
    m_dp, m_ib = statistics.median(dp), statistics.median(ib)
    where = "loopback, no added latency" if not rtt_ms else f"{rtt_ms:g} ms round trip to the registry"
    print(f"push {args.images} images sharing a base layer (~3 MB base, ~200 kB each), fresh repositories, {where}")
    print(f"  docker push, one by one       median {m_dp:.2f} s   runs {' '.join(f'{t:.2f}' for t in dp)}")
    print(f"  imgbuild build --push         median {m_ib:.2f} s   runs {' '.join(f'{t:.2f}' for t in ib)}")
    print(f"  docker push / imgbuild = {m_dp / m_ib:.1f}x  (goal >= 3x)", flush=True)


if __name__ == "__main__":
    main()
