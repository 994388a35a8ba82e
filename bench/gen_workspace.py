"""Generate a large synthetic workspace for benchmarks: N packages with K apps each, random deps."""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def generate(root: Path, *, packages: int = 1000, apps_per_package: int = 5, files_per_app: int = 0,
             seed: int = 7) -> list[str]:
    """Write the workspace; returns the labels. Each app depends on up to two apps of earlier packages."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "imgbuild.yaml").write_text(
        "version: 1\ndefaults:\n  cache: local\n  tags: ['{git.short_sha}']\n"
        "cache_policies:\n  local: {backend: local}\nconcurrency: 4\n")
    labels: list[str] = []
    for p in range(packages):
        pkg = f"group{p % 20:02d}/pkg{p:04d}"
        d = root / pkg
        d.mkdir(parents=True, exist_ok=True)
        lines = ["apps:"]
        dockerfile = ["ARG DEP0", "ARG DEP1", "FROM busybox:1.36 AS base"]
        for a in range(apps_per_package):
            name = f"app{a}"
            lines.append(f"  {name}:")
            lines.append(f"    build_args: {{N: '{a}'}}")
            deps = rng.sample(labels, k=min(len(labels), rng.randint(0, 2))) if labels else []
            if deps:
                lines.append("    deps:")
                for i, dep in enumerate(deps):
                    lines.append(f"      DEP{i}: '{dep}'")
            for f in range(files_per_app):
                (d / f"{name}-{f}.txt").write_text(f"{pkg} {name} {f}\n" * 20)
        for lb in (f"//{pkg}:app{a}" for a in range(apps_per_package)):
            labels.append(lb)
        (d / "BUILD.yaml").write_text("\n".join(lines) + "\n")
        (d / "Dockerfile").write_text("\n".join(dockerfile + ["RUN echo built > /x"]) + "\n")
    return labels


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--packages", type=int, default=1000)
    ap.add_argument("--apps", type=int, default=5)
    args = ap.parse_args()
    n = len(generate(args.root, packages=args.packages, apps_per_package=args.apps))
    print(f"wrote {n} targets in {args.packages} packages under {args.root}")
