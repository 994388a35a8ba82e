"""Run a plan: each target's request is made when its dependencies are done, then executed in parallel."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from imgbuild.build.executor import BuildError, BuildInterrupted, Executor
from imgbuild.build.progress import Progress
from imgbuild.build.request import BuildRequest, local_tag, plan_request
from imgbuild.build.results import RunResult, TargetResult
from imgbuild.git import GitInfo
from imgbuild.model import Target, Workspace
from imgbuild.plan import Plan
from imgbuild.scheduler import Event, Job, JobResult, Status, run_jobs
from imgbuild.tags import TagContext, render


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    parallelism: int
    logs_dir: Path
    keep_going: bool = False
    builder: str | None = None
    named_contexts: bool = True


@dataclass(frozen=True, kw_only=True)
class Built:
    ref: str  # the exact-build tag handed to dependants
    image_id: str
    digest: str | None
    tags: tuple[str, ...]


def log_path(logs_dir: Path, target: Target) -> Path:
    return logs_dir / target.label.package / f"{target.label.name}.log"


def local_tags(target: Target, ctx: TagContext) -> tuple[str, ...]:
    """``image:tag`` for each of the target's tag templates that renders (registries come with pushing)."""
    out = []
    for template in target.tags:
        tag = render(template, ctx)
        if tag and f"{target.image}:{tag}" not in out:
            out.append(f"{target.image}:{tag}")
    return tuple(out)


def execute(
    plan: Plan,
    ws: Workspace,
    executor: Executor,
    *,
    options: BuildOptions,
    git: GitInfo,
    environ: dict[str, str],
    stop: threading.Event,
    progress: Progress,
    now: datetime | None = None,
) -> RunResult:
    """Build every step of ``plan``, dependencies first, at most ``options.parallelism`` at once."""
    started_at = now or datetime.now(timezone.utc)
    t0 = time.monotonic()
    ctx = TagContext(git=git, now=started_at, environ=environ)
    targets = {str(s.target.label): s.target for s in plan.steps}
    built: dict[str, Built] = {}
    lock = threading.Lock()

    def request_for(target: Target) -> BuildRequest:
        with lock:
            dep_refs = {arg: built[str(dep)].ref for arg, dep in target.deps}
        return plan_request(target, ws, dep_refs=dep_refs, git=git, created=started_at,
                            tags=local_tags(target, ctx), environ=environ, builder=options.builder,
                            named_contexts=options.named_contexts)

    def run(job: Job) -> Built:
        target = targets[job.key]
        request = request_for(target)
        path = log_path(options.logs_dir, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f works
            log.write(f"# {target.label}: docker {' '.join(request.argv())}\n")
            log.flush()
            output = executor.build(request, log=_line_writer(log), stop=stop)
        ref = local_tag(target, output.image_id)
        executor.tag(output.image_id, ref)
        result = Built(ref=ref, image_id=output.image_id, digest=output.digest, tags=request.tags)
        with lock:
            built[job.key] = result
        return result

    def on_event(event: Event) -> None:
        if event.kind == "started":
            progress.started(event.key)
        elif event.result is not None:
            progress.finished(_target_result(event.result, targets[event.key], options.logs_dir))

    jobs = [Job(key=str(s.target.label), deps=tuple(str(d) for d in s.deps)) for s in plan.steps]
    results = run_jobs(jobs, run, parallelism=options.parallelism, keep_going=options.keep_going, stop=stop,
                       on_event=on_event)
    return RunResult(
        targets=tuple(_target_result(r, targets[r.key], options.logs_dir) for r in results),
        interrupted=stop.is_set(),
        started=started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration=time.monotonic() - t0,
    )


def _line_writer(log: object) -> Callable[[str], None]:
    def write(line: str) -> None:
        log.write(line + "\n")  # type: ignore[attr-defined]

    return write


def _target_result(r: JobResult, target: Target, logs_dir: Path) -> TargetResult:
    duration = r.finished - r.started if r.started is not None and r.finished is not None else None
    path = log_path(logs_dir, target)
    log = str(path) if r.started is not None else None
    if r.status is Status.SUCCEEDED and isinstance(r.value, Built):
        return TargetResult(label=r.key, status="built", duration=duration, image_id=r.value.image_id,
                            digest=r.value.digest, tags=r.value.tags, log_path=log)
    if r.status is Status.FAILED and isinstance(r.exception, BuildInterrupted):
        return TargetResult(label=r.key, status="cancelled", duration=duration, log_path=log, error="interrupted")
    if r.status is Status.FAILED:
        exc = r.exception
        tail = exc.log_tail if isinstance(exc, BuildError) else ()
        return TargetResult(label=r.key, status="failed", duration=duration, log_path=log, error=r.error,
                            log_tail=tail)
    status = "skipped" if r.status is Status.SKIPPED else "cancelled"
    return TargetResult(label=r.key, status=status, error=r.error)
