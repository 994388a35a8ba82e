"""Run a plan: each target is found in the cache, restored, or built, dependencies first, in parallel.

A target whose input digest is in the cache is not built: its image is used as it is (``cached``) or
loaded from the cache store's blobs (``restored``). Dependants always get the exact image of their
dependency: on the ``docker`` driver through a tag in the engine that names its image id; on every other
builder as an OCI layout named context (:mod:`imgbuild.builds.handoff`), since those do not see the engine.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from imgbuild.builds import metadata
from imgbuild.builds.actions import Action, Build, Cached, Restore, decide
from imgbuild.builds.executor import BuildError, BuildInterrupted, Executor, command
from imgbuild.builds.handoff import OciLayouts
from imgbuild.builds.progress import Progress
from imgbuild.builds.request import BuildRequest, local_tag, plan_request
from imgbuild.builds.results import RunResult, TargetResult
from imgbuild.builds.secret_steps import Bypass, secret_bypass
from imgbuild.builds.stepreport import previous_build, step_report
from imgbuild.git import GitInfo
from imgbuild.labels import file_name
from imgbuild.model import Target, Workspace
from imgbuild.plan import Plan
from imgbuild.scheduler import Event, Job, JobResult, Status, run_jobs
from imgbuild.tags import TagContext, render

if TYPE_CHECKING:
    from imgbuild.builds.layers import LayerCaches
    from imgbuild.cache.targets import ImageStore, TargetCache
    from imgbuild.digest import Inputs
    from imgbuild.stepwhy import StepReport


CLAIM_TAG_PREFIX = "imgbuild-run-"


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    parallelism: int
    logs_dir: Path
    keep_going: bool = False
    builder: str | None = None
    named_contexts: bool = True
    rebuild: frozenset[str] = frozenset()  # labels built even when cached (--rebuild, or all with --no-cache)
    no_cache: bool = False  # --no-cache: no layer cache imported and BuildKit's own cache bypassed too
    # Set for builders that do not see the engine's images: dependencies go to dependants as OCI layouts.
    layouts: OciLayouts | None = None
    # With ``layouts``: the labels whose image must end up in the engine (None: every target's).
    load: frozenset[str] | None = None

    def loads(self, label: str) -> bool:
        return self.layouts is None or self.load is None or label in self.load


@dataclass(frozen=True, kw_only=True)
class Built:
    status: str  # built | cached | restored
    ref: str  # the exact-build tag handed to dependants
    image_id: str
    digest: str | None
    tags: tuple[str, ...]
    metadata: str = "{}"  # buildx's --metadata-file content for built targets
    layout: str | None = None  # the digest of its OCI layout in options.layouts, when it has one


def log_path(logs_dir: Path, target: Target) -> Path:
    return logs_dir / target.label.package / file_name(target.label.name, ".log")


def local_tags(target: Target, ctx: TagContext) -> tuple[str, ...]:
    """``image:tag`` for each of the target's tag templates that renders (registries come with pushing)."""
    out = []
    for template in target.tags:
        tag = render(template, ctx)
        if tag and f"{target.image}:{tag}" not in out:
            out.append(f"{target.image}:{tag}")
    return tuple(out)


def claim_tag(target: Target, run_id: str) -> str:
    """A name only run ``run_id`` gives the target's build, until its exact-build tag is on."""
    return f"{target.image}:{CLAIM_TAG_PREFIX}{run_id}"


def _run_name(target: Target, run_id: str) -> str:
    # The label hashed: it can be longer than a file name may be.
    return f"{run_id}-{hashlib.sha256(str(target.label).encode()).hexdigest()[:16]}"


def metadata_path(target: Target, run_id: str) -> str:
    """Where buildx writes the metadata of ``target``'s build in run ``run_id`` (the executor reads and removes it).

    Named by the run's random id, so concurrent runs never share one, and known in advance, so the dry run
    prints the exact command.
    """
    return os.path.join(tempfile.gettempdir(), f"imgbuild-{_run_name(target, run_id)}.metadata.json")


def output_dir(layouts: OciLayouts, target: Target, run_id: str) -> Path:
    """Where the build of ``target`` in run ``run_id`` writes its OCI layout, until :meth:`OciLayouts.adopt`
    moves it into place (named like ``OciLayouts.scratch``'s directories, but known to the dry run)."""
    return layouts.root / f".out-{_run_name(target, run_id)}"


def build_request(target: Target, ws: Workspace, *, dep_refs: dict[str, str], tags: tuple[str, ...], run_id: str,
                  git: GitInfo, environ: dict[str, str], created: datetime, options: BuildOptions,
                  layers: LayerCaches | None, dep_layouts: dict[str, str] | None = None, out: Path | None = None,
                  fetch: bool = True) -> BuildRequest:
    """The request the engine gets for ``target`` in run ``run_id``: what ``execute`` runs and ``--dry-run`` prints.

    ``out``: the directory of the build's OCI layout output (builders that do not see the engine's images).
    ``fetch=False`` (the dry run) leaves the layer caches kept in S3 where they are: a synced S3 cache then
    lists every scope it would read, where a build passes only the one it fetched.
    """
    loading = options.loads(str(target.label))
    request = plan_request(target, ws, dep_refs=dep_refs, git=git, created=created,
                           tags=(*tags, claim_tag(target, run_id)) if loading else tags, environ=environ,
                           builder=options.builder, named_contexts=options.named_contexts, dep_layouts=dep_layouts,
                           metadata_file=metadata_path(target, run_id))
    if out is not None:
        request = replace(request, outputs=(f"type=oci,dest={out},tar=false",), load=loading)
    if layers is not None:
        # The `inline` backend reads its cache from the target's image in its (first) registry.
        image_ref = (f"{ws.config.registry(target.registries[0]).url}/{target.image}:{tags[0].rpartition(':')[2]}"
                     if target.registries and tags else None)
        cache_from, cache_to = layers.before(target, image_ref, fetch=fetch)
        # --no-cache still exports, so the next runs benefit from this fresh build.
        request = replace(request, cache_from=() if options.no_cache else cache_from, cache_to=cache_to)
    if options.no_cache:
        request = replace(request, no_cache=True)
    return request


def dry_run(plan: Plan, ws: Workspace, *, git: GitInfo, environ: dict[str, str], options: BuildOptions,
            layers: LayerCaches | None, now: datetime, run_id: str | None = None,
            actions: Mapping[str, Action] | None = None, inputs: dict[str, Inputs] | None = None,
            cache: TargetCache | None = None) -> list[tuple[Target, Action, list[str] | None]]:
    """Each target's action (every target built when ``actions`` is None) and, for a build, the command
    ``execute`` would run; runs and writes nothing.

    A dependency built in the run exists only once it is built: ``<image of //LABEL>`` (and on builders that do
    not see the engine's images, ``<layout of //LABEL>``) stands where it goes. A dependency taken from the cache
    is named by the exact tag the run gives it. With ``inputs`` (and ``cache``) the commands have the
    ``{input_digest}`` tags and the ``--no-cache-filter`` of a changed secret a build would give them.
    """
    run_id = run_id or new_run_id()
    layouts = options.layouts
    chosen = actions or {}
    out: list[tuple[Target, Action, list[str] | None]] = []
    for step in plan.steps:
        t = step.target
        action = chosen.get(str(t.label), Build(reason="no entry"))
        if not isinstance(action, Build):
            out.append((t, action, None))
            continue
        dep_refs = {}
        for arg, dep in t.deps:
            dep_action = chosen.get(str(dep))
            dep_refs[arg] = (local_tag(ws.targets[dep], dep_action.entry.image_id)
                             if dep_action is not None and not isinstance(dep_action, Build) else f"<image of {dep}>")
        dep_layouts = ({arg: f"oci-layout://<layout of {dep}>" for arg, dep in t.deps}
                       if layouts is not None else None)
        ctx = TagContext(git=git, now=now, environ=environ, input_digest=_hex(inputs, str(t.label)))
        request = build_request(t, ws, dep_refs=dep_refs, dep_layouts=dep_layouts, tags=local_tags(t, ctx),
                                run_id=run_id, git=git, environ=environ, created=now, options=options, layers=layers,
                                out=output_dir(layouts, t, run_id) if layouts is not None else None, fetch=False)
        out.append((t, action, command(_bypassing(request, _bypass(t, inputs, cache, options)))))
    return out


def decide_actions(plan: Plan, inputs: dict[str, Inputs], options: BuildOptions, *, cache: TargetCache,
                   images: ImageStore | None, engine_optional: bool = False) -> dict[str, Action]:
    """What a run with ``options`` does with each target (:func:`imgbuild.builds.actions.decide`)."""
    return decide(plan, {label: i.key() for label, i in inputs.items()}, cache=cache, images=images,
                  rebuild=options.rebuild, no_cache=options.no_cache, layouts=options.layouts, load=options.load,
                  engine_optional=engine_optional)


def new_run_id() -> str:
    return secrets.token_hex(6)


def execute(
    plan: Plan,
    ws: Workspace,
    executor: Executor,
    *,
    images: ImageStore,
    options: BuildOptions,
    git: GitInfo,
    environ: dict[str, str],
    stop: threading.Event,
    progress: Progress,
    inputs: dict[str, Inputs] | None = None,
    cache: TargetCache | None = None,
    check_engine: Callable[[], object] | None = None,
    after_build: Callable[[Target, Built], None] | None = None,
    layers: LayerCaches | None = None,
    now: datetime | None = None,
    actions: Mapping[str, Action] | None = None,
) -> RunResult:
    """Build every step of ``plan``, dependencies first, at most ``options.parallelism`` at once.

    ``inputs`` (label -> input digest) and ``cache`` enable the target cache; without them every
    target is built. ``actions`` (:func:`imgbuild.builds.actions.decide`, computed here when not given)
    say which targets are taken from the cache; the jobs carry them out, and build a target whose image
    cannot be had after all. ``after_build`` runs in the target's job once its image is ready (built, cached
    or restored); raising there fails the target and so skips its dependants.
    """
    started_at = now or datetime.now(timezone.utc)
    t0 = time.monotonic()
    targets = {str(s.target.label): s.target for s in plan.steps}
    built: dict[str, Built] = {}
    reports: dict[str, StepReport] = {}  # what BuildKit did per step, for the targets built here
    lock = threading.Lock()
    run_id = new_run_id()

    def tag_context(label: str) -> TagContext:
        return TagContext(git=git, now=started_at, environ=environ, input_digest=_hex(inputs, label))

    def apply_tags(image_id: str, refs: tuple[str, ...], existing: frozenset[str] = frozenset()) -> None:
        for ref in refs:
            if ref not in existing:
                images.tag(image_id, ref)

    def request_for(target: Target, tags: tuple[str, ...], out: Path | None) -> BuildRequest:
        with lock:
            dep_refs = {arg: built[str(dep)].ref for arg, dep in target.deps}
            dep_layouts = None
            if layouts is not None:
                dep_layouts = {arg: layouts.context(built[str(dep)].layout or "") for arg, dep in target.deps}
        return build_request(target, ws, dep_refs=dep_refs, dep_layouts=dep_layouts, tags=tags, run_id=run_id,
                             git=git, environ=environ, created=started_at, options=options, layers=layers, out=out)

    if actions is None:
        actions = (decide_actions(plan, inputs, options, cache=cache, images=images)
                   if cache is not None and inputs is not None else {})
    if check_engine is not None and any(not isinstance(actions.get(label), (Cached, Restore)) for label in targets):
        check_engine()  # something will be built: no engine or no buildx is exit 3 now, not a failed target
    layouts = options.layouts
    # The targets a dependant in this run builds FROM: with layouts, only these need theirs on disk.
    feeds = plan.feeds

    def from_cache(target: Target, action: Cached | Restore, tags: tuple[str, ...]) -> Built | None:
        """Carry out a cached or restore action; None (a warning said why) when the image cannot be had."""
        assert cache is not None
        label = str(target.label)
        entry = action.entry
        ref = local_tag(target, entry.image_id)
        existing = action.engine_tags if isinstance(action, Cached) and action.in_engine else None
        status = "cached"
        layout = None
        if layouts is not None and label in feeds:
            layout, fetched = cache.layout(target, entry, layouts, images, in_engine=existing is not None)
            if layout is None:
                return None  # the guard has warned: rebuild it
            status = "restored" if fetched else status
        if not options.loads(label):
            return Built(status=status, ref=ref, image_id=entry.image_id, digest=entry.manifest_digest, tags=tags,
                         layout=layout, metadata=metadata.from_entry(entry))
        if existing is None:
            if layout is not None and layouts is not None:
                if not _load_layout(images, layouts, layout, entry.oci_index, ref):
                    progress.warn(f"loading {label} from its OCI layout failed; building it instead")
                    return None
            elif not cache.restore(target, entry, ref):
                return None
            status = "restored"
            existing = frozenset({ref})
        apply_tags(entry.image_id, (ref, *tags), existing)
        return Built(status=status, ref=ref, image_id=entry.image_id, digest=entry.manifest_digest, tags=tags,
                     layout=layout, metadata=metadata.from_entry(entry))

    def run(job: Job) -> Built:
        target = targets[job.key]
        tags = local_tags(target, tag_context(job.key))
        key = inputs[job.key].key() if inputs else None
        action = actions.get(job.key)
        if isinstance(action, (Cached, Restore)):
            hit = from_cache(target, action, tags)
            if hit is not None:
                if after_build is not None:
                    after_build(target, hit)
                with lock:
                    built[job.key] = hit
                return hit
        # A name only this run uses, so the image cannot lose its last name (and vanish from a containerd
        # image store) if a concurrent build moves the shared tags before this one tags its exact build.
        claim = claim_tag(target, run_id)
        loading = options.loads(job.key)
        out = output_dir(layouts, target, run_id) if layouts is not None else None
        if out is not None:
            out.mkdir(parents=True)
        request = request_for(target, tags, out)
        bypass = _bypass(target, inputs, cache, options)
        request = _bypassing(request, bypass)
        path = log_path(options.logs_dir, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        before = previous_build(target, path, cache)  # read before this build overwrites the log and the entry
        with path.open("w", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f works
            log.write(f"# {target.label}: {shlex.join(command(request))}\n")
            if key:
                log.write(f"# input digest {key}\n")
            if bypass is not None:
                log.write(bypass.note() + "\n")
            try:
                output = executor.build(request, log=_line_writer(log), stop=stop)
                layout = layouts.adopt(out) if layouts is not None and out is not None else None
            finally:
                if out is not None and out.exists():
                    shutil.rmtree(out, ignore_errors=True)
                log.flush()
                found = step_report(target, path, inputs[job.key] if inputs else None, before)
                if found is not None:
                    with lock:
                        reports[job.key] = found
            if layers is not None:
                note = layers.after(target)
                if note:
                    log.write(note + "\n")
        ref = local_tag(target, output.image_id)
        if loading:
            apply_tags(output.image_id, (ref,))
            images.untag(claim)
        if cache is not None and key is not None and inputs is not None:
            from imgbuild.canonical import canonical_json

            # In the background: saving the image and uploading its blobs must not hold up dependants,
            # which only need the image in the engine. The run waits for every recording before it ends.
            recordings.append(recorder.submit(
                cache.record, target, key=key, ref=ref, image_id=output.image_id, manifest_digest=output.digest,
                config_digest=output.config_digest, inputs=canonical_json(inputs[job.key].manifest()).decode(),
                build_metadata=metadata.for_entry(output.metadata), supersede=job.key in options.rebuild,
                layout=layouts.get(layout) if layouts is not None and layout is not None else None))
        result = Built(status="built", ref=ref, image_id=output.image_id, digest=output.digest, tags=tags,
                       metadata=metadata.without_name(output.metadata, claim), layout=layout)
        if after_build is not None:
            after_build(target, result)  # e.g. --push-as-ready: a failure here fails the target
        with lock:
            built[job.key] = result
        return result

    def on_event(event: Event) -> None:
        if event.kind == "started":
            progress.started(event.key)
        elif event.result is not None:
            progress.finished(_target_result(event.result, targets[event.key], options.logs_dir, inputs, reports))

    jobs = [Job(key=str(s.target.label), deps=tuple(str(d) for d in s.deps)) for s in plan.steps]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgbuild-record") as recorder:
        recordings: list[Future[None]] = []
        results = run_jobs(jobs, run, parallelism=options.parallelism, keep_going=options.keep_going, stop=stop,
                           on_event=on_event)
        for f in recordings:
            f.result()  # TargetCache.record never raises; this only waits
    return RunResult(
        targets=tuple(_target_result(r, targets[r.key], options.logs_dir, inputs, reports) for r in results),
        interrupted=stop.is_set(),
        started=started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration=time.monotonic() - t0,
    )


def _hex(inputs: dict[str, Inputs] | None, label: str) -> str:
    """The hex digits of the target's input digest, for ``{input_digest}`` tags ("" without digests)."""
    return inputs[label].key().split(":", 1)[1] if inputs else ""


def _bypass(target: Target, inputs: dict[str, Inputs] | None, cache: TargetCache | None,
            options: BuildOptions) -> Bypass | None:
    # A changed secret: BuildKit would serve the steps that mount it from its cache (issue #14).
    if cache is None or inputs is None or options.no_cache:
        return None
    return secret_bypass(target, inputs[str(target.label)], cache)


def _bypassing(request: BuildRequest, bypass: Bypass | None) -> BuildRequest:
    """``request`` with what must bypass BuildKit's cache for a changed secret."""
    if bypass is None:
        return request
    return replace(request, no_cache=bypass.everything, no_cache_filter=bypass.stages)


def _load_layout(images: ImageStore, layouts: OciLayouts, digest: str, index_json: str, ref: str) -> bool:
    """Load an image the run already has as an OCI layout into the engine, as ``ref`` (no second download)."""
    path = layouts.get(digest)
    if path is None:
        return False
    with tempfile.TemporaryDirectory(prefix="imgbuild-load-", dir=layouts.root) as tmp:
        try:
            images.load(index_json, path / "blobs" / "sha256", ref, Path(tmp))
        except Exception:  # noqa: BLE001 - the caller rebuilds
            return False
    return True


def _line_writer(log: object) -> Callable[[str], None]:
    def write(line: str) -> None:
        log.write(line + "\n")  # type: ignore[attr-defined]

    return write


def _target_result(r: JobResult, target: Target, logs_dir: Path, inputs: dict[str, Inputs] | None,
                   reports: dict[str, StepReport] | None = None) -> TargetResult:
    duration = r.finished - r.started if r.started is not None and r.finished is not None else None
    key = inputs[r.key].key() if inputs else None
    steps = (reports or {}).get(r.key)
    if r.status is Status.SUCCEEDED and isinstance(r.value, Built):
        log = str(log_path(logs_dir, target)) if r.value.status == "built" else None
        return TargetResult(label=r.key, status=r.value.status, duration=duration, image_id=r.value.image_id,
                            digest=r.value.digest, tags=r.value.tags, log_path=log, input_digest=key,
                            metadata=r.value.metadata, steps=steps if r.value.status == "built" else None)
    log = str(log_path(logs_dir, target)) if r.started is not None else None
    if r.status is Status.FAILED and isinstance(r.exception, BuildInterrupted):
        return TargetResult(label=r.key, status="cancelled", duration=duration, log_path=log, error="interrupted",
                            input_digest=key)
    if r.status is Status.FAILED:
        exc = r.exception
        tail = exc.log_tail if isinstance(exc, BuildError) else ()
        return TargetResult(label=r.key, status="failed", duration=duration, log_path=log, error=r.error,
                            log_tail=tail, input_digest=key, steps=steps)
    status = "skipped" if r.status is Status.SKIPPED else "cancelled"
    return TargetResult(label=r.key, status=status, error=r.error, input_digest=key)
