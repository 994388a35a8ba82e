"""Dependency-aware parallel scheduler: run a DAG of jobs on a thread pool.

Generic on purpose: a job is a key, its dependencies and a cost estimate; what
running it means is the caller's ``run`` callable. The build command passes a
``run`` that builds one image; tests pass a fake that sleeps.

Modelled on nox's ``nox/_parallel.py`` (futures plus ``wait(FIRST_COMPLETED)``,
dependants of a failure not run, results in a fixed order), with two changes:
ready jobs sit in a heap ordered by critical path instead of being rescanned
on every step, and start/finish events are delivered on the scheduler thread so
a progress display needs no locks.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Event", "Job", "JobResult", "Status", "critical_paths", "run_jobs"]

# Only bounds how late a `stop` set while nothing finishes is noticed; the
# wait returns at once whenever a job completes, so it costs nothing per job.
_STOP_POLL_SECONDS = 0.05


@dataclass(frozen=True, kw_only=True)
class Job:
    key: str
    """Unique within one ``run_jobs`` call, e.g. a target label ``//apps/api:api``."""
    deps: tuple[str, ...] = ()
    """Keys of jobs that must succeed before this one starts; all in the same job list."""
    cost: float = 1.0
    """Estimated duration in any unit; only used to order ready jobs."""


class Status(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run because a (transitive) dependency failed."""
    CANCELLED = "cancelled"
    """Never started because of fail-fast or ``stop``."""


@dataclass(frozen=True, kw_only=True)
class JobResult:
    key: str
    status: Status
    value: object | None
    """What ``run`` returned, for SUCCEEDED; else None."""
    error: str | None
    """``str(exc)`` for FAILED, ``"dependency failed: <key>"`` for SKIPPED, the reason for CANCELLED."""
    started: float | None
    """``time.monotonic()`` when ``run`` was entered; None if it never was."""
    finished: float | None
    exception: BaseException | None = field(default=None, compare=False)
    """The exception ``run`` raised, for FAILED, so the caller can re-raise or inspect it."""

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: str
    """``"started"`` or ``"finished"``."""
    key: str
    result: JobResult | None
    """None for ``"started"``."""


@dataclass(frozen=True)
class _Outcome:
    value: object | None
    exception: Exception | None
    started: float
    finished: float


@dataclass(frozen=True)
class _Graph:
    deps: dict[str, tuple[str, ...]]
    dependants: dict[str, list[str]]
    topo: list[str]


def _build_graph(jobs: Sequence[Job]) -> _Graph:
    """Validate keys, deps and costs, and find a topological order (Kahn's algorithm, O(V+E))."""
    deps: dict[str, tuple[str, ...]] = {}
    for job in jobs:
        if job.key in deps:
            raise ValueError(f"duplicate job key {job.key!r}")
        if not job.cost >= 0:  # also rejects NaN, which would make heap order arbitrary
            raise ValueError(f"job {job.key!r}: cost must be a non-negative number, got {job.cost!r}")
        # A dep listed twice must count once, or its job would wait for a second success.
        deps[job.key] = tuple(dict.fromkeys(job.deps))
    dependants: dict[str, list[str]] = {key: [] for key in deps}
    for key, key_deps in deps.items():
        for dep in key_deps:
            if dep not in dependants:
                raise ValueError(f"job {key!r} depends on unknown job {dep!r}")
            dependants[dep].append(key)

    waiting = {key: len(key_deps) for key, key_deps in deps.items()}
    topo = [key for key, n in waiting.items() if n == 0]
    for key in topo:  # topo grows while we iterate: a queue without the deque
        for child in dependants[key]:
            waiting[child] -= 1
            if waiting[child] == 0:
                topo.append(child)
    if len(topo) != len(deps):
        raise ValueError(f"dependency cycle: {' -> '.join(_find_cycle(deps, waiting))}")
    return _Graph(deps=deps, dependants=dependants, topo=topo)


def _find_cycle(deps: dict[str, tuple[str, ...]], waiting: dict[str, int]) -> list[str]:
    # Every job Kahn could not order has a dep it could not order either, so
    # following such deps must revisit a job; the revisited stretch is a cycle.
    stuck = {key for key, n in waiting.items() if n > 0}
    path: list[str] = []
    seen: dict[str, int] = {}
    key = min(stuck)
    while key not in seen:
        seen[key] = len(path)
        path.append(key)
        key = min(dep for dep in deps[key] if dep in stuck)
    cycle = path[seen[key]:] + [key]
    return list(reversed(cycle))  # dep -> dependant, the way builds flow


def critical_paths(jobs: Sequence[Job]) -> dict[str, float]:
    """Return each job's priority: the longest cost-weighted path from it to any sink.

    ``priority(j) = j.cost + max(priority(d) for d in dependants(j))`` (0 for
    no dependants), computed in one pass over the reverse topological order.
    Starting the ready job with the largest value first is the classic
    critical-path list-scheduling heuristic (Hu's algorithm for unit costs):
    work that gates the longest remaining chain is never left waiting behind
    work that could be done later at no cost to the makespan. The maximum over
    all jobs is the critical path, a lower bound on any schedule's makespan.

    Raises ValueError on duplicate keys, unknown deps, negative costs or a cycle.
    """
    graph = _build_graph(jobs)
    return _priorities(jobs, graph)


def _priorities(jobs: Sequence[Job], graph: _Graph) -> dict[str, float]:
    cost = {job.key: job.cost for job in jobs}
    rank: dict[str, float] = {}
    for key in reversed(graph.topo):
        rank[key] = cost[key] + max((rank[d] for d in graph.dependants[key]), default=0.0)
    return rank


def _call(run: Callable[[Job], object], job: Job) -> _Outcome:
    # Runs on a worker thread. Timestamps are taken here, not at submit, so they
    # measure the job itself; only Exception is a job failure, anything else
    # (SystemExit, KeyboardInterrupt) propagates out of run_jobs as a bug would.
    started = time.monotonic()
    try:
        value = run(job)
    except Exception as exc:
        return _Outcome(None, exc, started, time.monotonic())
    return _Outcome(value, None, started, time.monotonic())


def run_jobs(
    jobs: Sequence[Job],
    run: Callable[[Job], object],
    *,
    parallelism: int,
    keep_going: bool = False,
    stop: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> tuple[JobResult, ...]:
    """Run every job once, each after all its deps succeeded, at most ``parallelism`` at a time.

    Algorithm: each job keeps a count of deps not yet succeeded; jobs at zero
    sit in a heap keyed by ``(-critical_paths()[key], key)``. The calling
    thread is the scheduler: it fills free slots from the heap, then waits for
    the first future to complete, records it, decrements its dependants'
    counters and pushes those reaching zero, so a job starts as soon as its last
    dependency succeeds. Each step is O(log n) per job plus O(parallelism) for
    ``wait``, so overhead stays flat for thousands of jobs.

    A job whose ``run`` raises is FAILED and its transitive dependants are
    SKIPPED (``"dependency failed: <failed key>"``). Unless ``keep_going``, the
    first failure also stops new starts. Setting ``stop`` (from a signal
    handler, say) stops new starts too; it is polled every 50 ms even while
    nothing finishes. Either way running jobs are waited for and recorded (``run``
    must watch ``stop`` itself to end early), and jobs never started are
    CANCELLED with the reason in ``error``.

    ``on_event`` is called on the calling thread: ``"started"`` when a job is
    handed to the pool, and exactly one ``"finished"`` per job, including SKIPPED
    and CANCELLED jobs, which get no ``"started"``. It runs between scheduling
    steps, so keep it quick.

    Returns one result per job, in the order of ``jobs``.
    Raises ValueError for duplicate keys, unknown deps, negative costs, a cycle
    or ``parallelism < 1``, before anything runs.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, got {parallelism}")
    graph = _build_graph(jobs)
    rank = _priorities(jobs, graph)
    by_key = {job.key: job for job in jobs}
    waiting = {key: len(key_deps) for key, key_deps in graph.deps.items()}
    ready: list[tuple[float, str]] = [(-rank[key], key) for key, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    results: dict[str, JobResult] = {}
    running: dict[Future[_Outcome], Job] = {}
    halt_reason: str | None = None

    def emit(kind: str, key: str, result: JobResult | None) -> None:
        if on_event is not None:
            on_event(Event(kind=kind, key=key, result=result))

    def finish(result: JobResult) -> None:
        results[result.key] = result
        emit("finished", result.key, result)

    def skip_dependants(failed: str) -> None:
        # Dependants of a failed job cannot have started (their counter never
        # reached zero), so each one still without a result is skipped, and so on down.
        stack = list(reversed(graph.dependants[failed]))
        while stack:
            key = stack.pop()
            if key in results:
                continue  # already skipped through another failed dep
            finish(JobResult(key=key, status=Status.SKIPPED, value=None,
                             error=f"dependency failed: {failed}", started=None, finished=None))
            stack.extend(reversed(graph.dependants[key]))

    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="imgbuild-job") as pool:
        while True:
            if halt_reason is None and stop is not None and stop.is_set():
                halt_reason = "interrupted"
            while halt_reason is None and ready and len(running) < parallelism:
                _, key = heapq.heappop(ready)
                job = by_key[key]
                running[pool.submit(_call, run, job)] = job
                emit("started", key, None)
            if not running:
                break
            done, _ = wait(running, timeout=_STOP_POLL_SECONDS if stop is not None else None,
                           return_when=FIRST_COMPLETED)
            outcomes = [(fut.result(), running.pop(fut)) for fut in done]
            # Several can complete between two polls; report them in the order they finished.
            outcomes.sort(key=lambda pair: (pair[0].finished, pair[1].key))
            for outcome, job in outcomes:
                if outcome.exception is None:
                    finish(JobResult(key=job.key, status=Status.SUCCEEDED, value=outcome.value,
                                     error=None, started=outcome.started, finished=outcome.finished))
                    for child in graph.dependants[job.key]:
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            heapq.heappush(ready, (-rank[child], child))
                else:
                    finish(JobResult(key=job.key, status=Status.FAILED, value=None,
                                     error=str(outcome.exception) or type(outcome.exception).__name__,
                                     started=outcome.started, finished=outcome.finished,
                                     exception=outcome.exception))
                    skip_dependants(job.key)
                    if not keep_going and halt_reason is None:
                        halt_reason = f"cancelled: {job.key} failed"

    # Only a halt leaves jobs without a result (the graph is acyclic), but
    # cancel by input order, not by condition, so every job is always reported.
    for job in jobs:
        if job.key not in results:
            finish(JobResult(key=job.key, status=Status.CANCELLED, value=None,
                             error=halt_reason or "cancelled", started=None, finished=None))
    return tuple(results[job.key] for job in jobs)
