"""Tests for imgbuild.scheduler with a fake ``run``: orderings and counts, never wall-clock limits."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from imgbuild.scheduler import Event, Job, JobResult, Status, critical_paths, run_jobs


class FakeRun:
    """Sleeps a per-key duration and records, under a lock, starts, finishes and concurrency."""

    def __init__(self, durations: dict[str, float] | None = None, *, fail: frozenset[str] = frozenset(),
                 hooks: dict[str, Callable[[], object]] | None = None) -> None:
        self.durations = durations or {}
        self.fail = fail
        self.hooks = hooks or {}
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []  # ("start" | "end", key), in real order
        self.calls: Counter[str] = Counter()
        self.active = 0
        self.peak = 0

    def __call__(self, job: Job) -> object:
        with self.lock:
            self.log.append(("start", job.key))
            self.calls[job.key] += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if job.key in self.hooks:
                self.hooks[job.key]()
            time.sleep(self.durations.get(job.key, 0.001))
            if job.key in self.fail:
                raise RuntimeError(f"{job.key} broke")
            return f"value of {job.key}"
        finally:
            with self.lock:
                self.active -= 1
                self.log.append(("end", job.key))

    def started(self) -> list[str]:
        return [key for kind, key in self.log if kind == "start"]


def by_key(results: tuple[JobResult, ...]) -> dict[str, JobResult]:
    return {r.key: r for r in results}


def random_dag(seed: int, n: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        earlier = [f"j{k:03d}" for k in range(max(0, i - 8), i)]
        deps = tuple(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3))))
        jobs.append(Job(key=f"j{i:03d}", deps=deps, cost=rng.uniform(1, 5)))
    rng.shuffle(jobs)  # input order must not matter to correctness
    return jobs


def test_never_starts_before_all_deps_finished() -> None:
    jobs = random_dag(seed=7, n=60)
    fake = FakeRun({job.key: 0.0005 * (1 + i % 4) for i, job in enumerate(jobs)})
    results = run_jobs(jobs, fake, parallelism=4)
    assert all(r.status is Status.SUCCEEDED for r in results)
    position = {entry: i for i, entry in enumerate(fake.log)}
    for job in jobs:
        for dep in job.deps:
            assert position[("end", dep)] < position[("start", job.key)], (dep, job.key)
    got = by_key(results)
    for job in jobs:
        assert got[job.key].value == f"value of {job.key}"
        started = got[job.key].started
        assert started is not None
        for dep in job.deps:
            dep_finished = got[dep].finished
            assert dep_finished is not None and dep_finished <= started


def test_peak_concurrency_reaches_parallelism_and_never_exceeds_it() -> None:
    # A barrier of `parallelism` parties only opens if that many jobs run at
    # once, so reaching the peak is proven without relying on sleep timing.
    barrier = threading.Barrier(4, timeout=2)
    jobs = [Job(key=f"w{i:02d}") for i in range(12)]
    fake = FakeRun(hooks={job.key: barrier.wait for job in jobs})
    results = run_jobs(jobs, fake, parallelism=4)
    assert [r.status for r in results] == [Status.SUCCEEDED] * 12
    assert fake.peak == 4


def test_parallelism_bounds_a_wide_graph_below_its_width() -> None:
    jobs = [Job(key="root")] + [Job(key=f"leaf{i}", deps=("root",)) for i in range(20)]
    fake = FakeRun({f"leaf{i}": 0.002 for i in range(20)})
    run_jobs(jobs, fake, parallelism=3)
    assert fake.peak <= 3
    assert fake.started()[0] == "root"


def test_shared_dependency_runs_once() -> None:
    jobs = [
        Job(key="base"),
        Job(key="left", deps=("base",)),
        Job(key="right", deps=("base",)),
        Job(key="top", deps=("left", "right", "base", "base")),  # a repeated dep counts once
    ]
    fake = FakeRun()
    results = run_jobs(jobs, fake, parallelism=4)
    assert fake.calls == Counter({"base": 1, "left": 1, "right": 1, "top": 1})
    assert all(r.ok for r in results)


def test_failure_skips_transitive_dependants_and_keeps_going() -> None:
    jobs = [
        Job(key="a"),
        Job(key="b", deps=("a",)),
        Job(key="c", deps=("b",)),
        Job(key="d", deps=("c", "x")),
        Job(key="x"),
        Job(key="y", deps=("x",)),
    ]
    fake = FakeRun(fail=frozenset({"a"}))
    got = by_key(run_jobs(jobs, fake, parallelism=2, keep_going=True))
    assert got["a"].status is Status.FAILED
    assert got["a"].error == "a broke"
    assert isinstance(got["a"].exception, RuntimeError)
    assert got["a"].started is not None and got["a"].finished is not None
    for key in ("b", "c", "d"):
        assert got[key].status is Status.SKIPPED
        assert got[key].error == "dependency failed: a"
        assert got[key].started is None
    assert got["x"].status is Status.SUCCEEDED and got["y"].status is Status.SUCCEEDED
    assert set(fake.calls) == {"a", "x", "y"}


def test_keep_going_runs_independent_branches_after_a_failure() -> None:
    jobs = [Job(key="bad", cost=10)] + [Job(key=f"ok{i}") for i in range(6)]
    jobs += [Job(key="after_bad", deps=("bad",)), Job(key="after_ok", deps=("ok0", "ok5"))]
    fake = FakeRun(fail=frozenset({"bad"}))
    got = by_key(run_jobs(jobs, fake, parallelism=1, keep_going=True))
    # With one slot, `bad` (longest path) runs first, so everything else ran after the failure.
    assert fake.started()[0] == "bad"
    assert {k: r.status for k, r in got.items()} == {
        "bad": Status.FAILED, "after_bad": Status.SKIPPED, "after_ok": Status.SUCCEEDED,
        **{f"ok{i}": Status.SUCCEEDED for i in range(6)},
    }


def test_fail_fast_cancels_unstarted_and_lets_running_jobs_finish() -> None:
    failure_seen = threading.Event()

    def on_event(event: Event) -> None:
        if event.kind == "finished" and event.key == "fails":
            failure_seen.set()

    jobs = [
        Job(key="slow", cost=10),   # highest priority: starts together with `fails`
        Job(key="fails", cost=5),
        Job(key="after_slow", deps=("slow",)),
        Job(key="after_fails", deps=("fails",)),
        Job(key="after_after_fails", deps=("after_fails",)),
        *(Job(key=f"other{i}") for i in range(4)),
    ]
    # `slow` is still running when the scheduler records the failure, and ends after it.
    fake = FakeRun(fail=frozenset({"fails"}),
                   hooks={"slow": lambda: failure_seen.wait(timeout=2)})
    got = by_key(run_jobs(jobs, fake, parallelism=2, on_event=on_event))
    assert failure_seen.is_set()
    assert sorted(fake.started()) == ["fails", "slow"]
    assert got["fails"].status is Status.FAILED
    assert got["slow"].status is Status.SUCCEEDED and got["slow"].value == "value of slow"
    assert got["after_fails"].status is Status.SKIPPED
    assert got["after_after_fails"].error == "dependency failed: fails"
    for key in ("after_slow", "other0", "other1", "other2", "other3"):
        assert got[key].status is Status.CANCELLED
        assert got[key].error == "cancelled: fails failed"
        assert got[key].started is None


def test_stop_cancels_unstarted_jobs_and_waits_for_running_ones() -> None:
    stop = threading.Event()
    waiter_saw_stop: list[bool] = []
    jobs = [
        Job(key="stopper", cost=9),
        Job(key="waiter", cost=8),  # stands in for a build that kills its subprocess on stop
        *(Job(key=f"queued{i}", cost=1) for i in range(5)),
        Job(key="child", deps=("stopper",)),
    ]
    fake = FakeRun(hooks={"stopper": stop.set,
                          "waiter": lambda: waiter_saw_stop.append(stop.wait(timeout=2))})
    got = by_key(run_jobs(jobs, fake, parallelism=2, stop=stop))
    assert waiter_saw_stop == [True]
    assert sorted(fake.started()) == ["stopper", "waiter"]
    assert got["stopper"].status is Status.SUCCEEDED and got["waiter"].status is Status.SUCCEEDED
    for key in ("child", *(f"queued{i}" for i in range(5))):
        assert got[key].status is Status.CANCELLED and got[key].error == "interrupted"


def test_stop_already_set_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    fake = FakeRun()
    results = run_jobs([Job(key="a"), Job(key="b", deps=("a",))], fake, parallelism=2, stop=stop)
    assert fake.calls == Counter()
    assert [(r.status, r.error) for r in results] == [(Status.CANCELLED, "interrupted")] * 2


def test_longest_remaining_path_starts_first_ties_by_key() -> None:
    jobs = [
        Job(key="short", cost=2),
        Job(key="mid", cost=3),
        Job(key="a1", cost=1),
        Job(key="a2", cost=1, deps=("a1",)),
        Job(key="a3", cost=2, deps=("a2",)),
    ]
    assert critical_paths(jobs) == {"a1": 4, "a2": 3, "a3": 2, "mid": 3, "short": 2}
    fake = FakeRun()
    run_jobs(jobs, fake, parallelism=1)
    # a1 (4) first; then a2 (3) ties with mid (3) and wins by key; then a3 ties short by key.
    assert fake.started() == ["a1", "a2", "mid", "a3", "short"]


def test_critical_path_takes_the_longest_branch() -> None:
    jobs = [Job(key="root", cost=1), Job(key="cheap", cost=1, deps=("root",)),
            Job(key="dear", cost=7, deps=("root",)), Job(key="sink", cost=2, deps=("cheap", "dear"))]
    assert critical_paths(jobs) == {"root": 10, "dear": 9, "cheap": 3, "sink": 2}


def test_results_in_input_order_and_events_on_scheduler_thread() -> None:
    jobs = list(reversed(random_dag(seed=3, n=40)))
    events: list[Event] = []
    threads: set[int] = set()

    def on_event(event: Event) -> None:
        threads.add(threading.get_ident())
        events.append(event)

    results = run_jobs(jobs, FakeRun(fail=frozenset({"j010"})), parallelism=3,
                       keep_going=True, on_event=on_event)
    assert [r.key for r in results] == [job.key for job in jobs]
    assert threads == {threading.get_ident()}
    finished = [e.key for e in events if e.kind == "finished"]
    started = [e.key for e in events if e.kind == "started"]
    assert sorted(finished) == sorted(job.key for job in jobs)  # exactly one each
    assert {e.key: e.result for e in events if e.kind == "finished"} == by_key(results)
    order = [(e.kind, e.key) for e in events]
    for key in started:
        assert order.index(("started", key)) < order.index(("finished", key))
    assert set(started) == {r.key for r in results if r.started is not None}


def test_same_input_gives_same_statuses_and_order() -> None:
    jobs = random_dag(seed=11, n=30)
    fail = frozenset({"j005", "j017"})
    first = run_jobs(jobs, FakeRun(fail=fail), parallelism=4, keep_going=True)
    second = run_jobs(jobs, FakeRun(fail=fail), parallelism=4, keep_going=True)
    assert [(r.key, r.status, r.error) for r in first] == [(r.key, r.status, r.error) for r in second]


def test_empty_job_list() -> None:
    assert run_jobs([], FakeRun(), parallelism=2) == ()


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([Job(key="a"), Job(key="a")], "duplicate job key 'a'"),
        ([Job(key="a", deps=("nope",))], "depends on unknown job 'nope'"),
        ([Job(key="a", deps=("b",)), Job(key="b", deps=("c",)), Job(key="c", deps=("a",)), Job(key="d")],
         "dependency cycle: a -> c -> b -> a"),
        ([Job(key="a", deps=("a",))], "dependency cycle: a -> a"),
        ([Job(key="a", cost=-1)], "cost must be a non-negative number"),
    ],
)
def test_invalid_graphs_raise_before_running(jobs: list[Job], message: str) -> None:
    fake = FakeRun()
    with pytest.raises(ValueError, match=message):
        run_jobs(jobs, fake, parallelism=2)
    assert fake.calls == Counter()


def test_parallelism_must_be_positive() -> None:
    with pytest.raises(ValueError, match="parallelism"):
        run_jobs([Job(key="a")], FakeRun(), parallelism=0)
