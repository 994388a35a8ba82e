"""Benchmark imgbuild.scheduler: schedule quality on random DAGs, and per-job overhead.

Run: python bench/bench_scheduler.py [--quick]

1. Quality. Seeded random DAGs whose jobs sleep 5-50 ms (cost = the true
   duration). For each graph and parallelism j it prints the measured makespan,
   the lower bound max(critical path, total work / j) that no schedule can
   beat, and their ratio (target <= 1.05). "sim" is the same critical-path
   policy replayed in zero time, so sim/LB is the policy's own quality and
   measured/sim is what threads, sleep overshoot and the scheduler add.
2. Overhead. 5,000 jobs whose run returns at once; wall time / jobs, for three
   shapes (independent, random DAG, a single chain where every job waits on the
   previous one's completion). Target < 5 ms per job, aim < 0.2 ms.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from imgbuild.scheduler import Job, Status, critical_paths, run_jobs  # noqa: E402


def random_dag(*, seed: int, n: int, window: int, min_ms: float = 5, max_ms: float = 50) -> list[Job]:
    """Jobs in a random topological order; each takes 0-3 deps among the `window` jobs before it.

    A small window makes long chains (critical path dominates); a large one
    makes wide, shallow graphs (total work / j dominates).
    """
    rng = random.Random(seed)
    jobs: list[Job] = []
    for i in range(n):
        earlier = [f"t{k:04d}" for k in range(max(0, i - window), i)]
        k = min(len(earlier), rng.choice((0, 1, 1, 2, 2, 3)))
        deps = tuple(sorted(rng.sample(earlier, k)))
        jobs.append(Job(key=f"t{i:04d}", deps=deps, cost=rng.uniform(min_ms, max_ms) / 1000))
    return jobs


def simulate(jobs: list[Job], parallelism: int) -> float:
    """Makespan of the scheduler's policy (critical path first, ties by key) with zero overhead."""
    rank = critical_paths(jobs)
    dependants: dict[str, list[str]] = {job.key: [] for job in jobs}
    waiting = {job.key: len(set(job.deps)) for job in jobs}
    cost = {job.key: job.cost for job in jobs}
    for job in jobs:
        for dep in set(job.deps):
            dependants[dep].append(job.key)
    ready = [(-rank[k], k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < parallelism:
            _, key = heapq.heappop(ready)
            heapq.heappush(running, (now + cost[key], key))
        now, key = heapq.heappop(running)
        for child in dependants[key]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-rank[child], child))
    return now


def sleep_for_cost(job: Job) -> None:
    time.sleep(job.cost)


def quality(quick: bool) -> list[float]:
    graphs = [  # (seed, jobs, window)
        (1, 60, 4),
        (2, 100, 12),
        (3, 150, 30),
        (4, 200, 8),
    ]
    if quick:
        graphs = graphs[:2]
    print("1. Schedule quality (jobs sleep 5-50 ms; LB = max(critical path, work/j))")
    header = (f"{'graph':>16} {'edges':>5} {'j':>2} {'work s':>7} {'cp s':>6} {'LB s':>6} "
              f"{'sim s':>6} {'meas s':>7} {'sim/LB':>7} {'meas/LB':>7} {'meas/sim':>8}")
    print(header)
    print("-" * len(header))
    ratios: list[float] = []
    for seed, n, window in graphs:
        jobs = random_dag(seed=seed, n=n, window=window)
        edges = sum(len(job.deps) for job in jobs)
        work = sum(job.cost for job in jobs)
        cp = max(critical_paths(jobs).values())
        for j in (2, 4, 8):
            lower = max(cp, work / j)
            sim = simulate(jobs, j)
            start = time.monotonic()
            results = run_jobs(jobs, sleep_for_cost, parallelism=j)
            makespan = time.monotonic() - start
            assert all(r.status is Status.SUCCEEDED for r in results)
            ratios.append(makespan / lower)
            name = f"s{seed} n={n} w={window}"
            print(f"{name:>16} {edges:>5} {j:>2} {work:>7.3f} {cp:>6.3f} {lower:>6.3f} "
                  f"{sim:>6.3f} {makespan:>7.3f} {sim / lower:>7.3f} {makespan / lower:>7.3f} "
                  f"{makespan / sim:>8.3f}")
    print(f"meas/LB: median {statistics.median(ratios):.3f}, worst {max(ratios):.3f} (target <= 1.05)")
    return ratios


def return_at_once(job: Job) -> None:
    return None


def overhead(quick: bool) -> None:
    n = 5000
    shapes = {
        "independent": [Job(key=f"t{i:04d}") for i in range(n)],
        "random DAG": random_dag(seed=5, n=n, window=50),
        "chain": [Job(key=f"t{i:04d}", deps=(f"t{i - 1:04d}",) if i else ()) for i in range(n)],
    }
    repeats = 1 if quick else 3
    print()
    print(f"2. Per-job scheduler overhead ({n} jobs, run returns at once, median of {repeats})")
    header = f"{'shape':>12} {'j':>2} {'total s':>8} {'ms/job':>7}"
    print(header)
    print("-" * len(header))
    for name, jobs in shapes.items():
        for j in (1, 8):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                results = run_jobs(jobs, return_at_once, parallelism=j)
                times.append(time.perf_counter() - start)
                assert len(results) == n
            total = statistics.median(times)
            print(f"{name:>12} {j:>2} {total:>8.3f} {total / n * 1000:>7.3f}")
    print("target < 5 ms/job, aim < 0.2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer graphs and repeats")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    quality(args.quick)
    overhead(args.quick)


if __name__ == "__main__":
    main()
