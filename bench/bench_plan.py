"""Benchmark: `imgbuild plan //...` on a generated workspace of 5,000 targets in 1,000 packages.

Runs it as a fresh process (what a user pays), several times, and prints the median and best.
The goal in issue #2 is under 1.5 s on a 2-core machine.

    python bench/bench_plan.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_workspace import generate  # noqa: E402


def time_command(cmd: list[str], cwd: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        labels = generate(root, packages=1000, apps_per_package=5)
        base = [sys.executable, "-c", "pass"]
        interp = time_command(base, root, args.runs)
        plan = time_command([sys.executable, "-m", "imgbuild", "plan", "//..."], root, args.runs)
        print(f"workspace: {len(labels)} targets in 1000 packages")
        print(f"{'command':<40} {'median s':>9} {'best s':>9}")
        print(f"{'python -c pass (interpreter start)':<40} {statistics.median(interp):>9.3f} {min(interp):>9.3f}")
        print(f"{'imgbuild plan //...':<40} {statistics.median(plan):>9.3f} {min(plan):>9.3f}")
        print(f"goal: < 1.5 s -> {'OK' if statistics.median(plan) < 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
