"""A build, wired: engine, builder, caches, layer caches, pushes, history and journal around one run of a plan.

The commands that build (``build``, ``ci``, ``release --build-missing``) give it a :class:`BuildSettings`
(typed, frozen) and a plan; :mod:`imgbuild.builds.run` carries the targets out.
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from imgbuild import git as gitinfo
from imgbuild import statedir
from imgbuild.builds import builders
from imgbuild.builds.bake import BakeExecutor
from imgbuild.builds.executor import BuildxExecutor
from imgbuild.builds.handoff import OciLayouts
from imgbuild.builds.images import Images
from imgbuild.builds.trust import TrustingImages
from imgbuild.builds.layers import LayerCaches
from imgbuild.builds.progress import LiveProgress, PlainProgress, Progress, summary
from imgbuild.builds.request import local_tag
from imgbuild.builds.results import RunResult, TargetResult, with_push, write_metadata, write_report
from imgbuild.builds.run import BuildOptions, Built, decide_actions, dry_run, execute
from imgbuild.builds.settings import BuildSettings
from imgbuild.commands import patterns
from imgbuild.connections import Connections
from imgbuild.cache.targets import TargetCache
from imgbuild.digest import Hasher, Inputs
from imgbuild.errors import ImgbuildError, SpecError, SpecErrors
from imgbuild.fileset import FilesetError
from imgbuild.graph import TargetGraph
from imgbuild.history.store import sqlite_path
from imgbuild.labels import Label
from imgbuild.push import PushError, Pusher, plan_push
from imgbuild.regcopy import Copier
from imgbuild.registry import Authorizer, RegistryClient
from imgbuild.model import Target, Workspace
from imgbuild.plan import Plan
from imgbuild.statcache import StatCache
from imgbuild.engine_events import normal_ref
from imgbuild.engine_gateway import EngineGateway
from imgbuild.uptodate import Recorder

if TYPE_CHECKING:
    from imgbuild.history.record import HistoryRecord


def run_plan(settings: BuildSettings, graph: TargetGraph, plan: Plan, current: str) -> RunResult | None:
    """Build ``plan`` with ``settings``; None for a dry run."""
    ws = graph.workspace
    if settings.push or settings.push_as_ready:
        _check_push_targets(plan)
    git = gitinfo.read(ws.root)
    environ = dict(os.environ)
    if settings.dry_run:
        _dry_run(settings, graph, plan, git=git, environ=environ, current=current)
        return None
    push = settings.push or settings.push_as_ready
    statedir.require(ws.state)  # logs, caches and records need it: say so before anything builds
    if push and git.dirty and not settings.allow_dirty:
        raise ImgbuildError("refusing to push from a work tree with uncommitted changes: the tags and the "
                            "history would name a commit that does not hold what was built\n"
                            "  hint: commit or stash the changes, or pass --allow-dirty (tags then end in -dirty)")
    requested = {str(s.target.label) for s in plan.steps if s.requested}
    pushing = {lb for lb in requested if graph.target(Label.parse(lb)).push} if push else set()
    insecure = _insecure_hosts(ws)
    engine = EngineGateway(environ=environ)  # socket or CLI: decided once, for images, builds, cache and pushes
    pusher = _pusher(insecure, engine) if pushing else None
    pushes: dict[str, tuple[tuple[str, ...], str | None]] = {}

    def push_now(target: Target, built: Built) -> None:
        """--push-as-ready: push inside the target's job; a refused or failed push fails the target."""
        assert pusher is not None
        plan_ = plan_push(target, ws, built.image_id, built.tags)
        conflicts = pusher.immutable_conflicts([plan_])
        if conflicts:
            pushes[str(target.label)] = ((), "; ".join(conflicts))
            raise PushError("; ".join(conflicts))
        res = pusher.push(plan_)
        pushes[str(target.label)] = (res.pushed, res.error)
        if res.error:
            raise PushError(res.error)
    now = datetime.now(timezone.utc)
    layers, options = _run_options(settings, graph, plan, git=git, environ=environ, now=now, current=current)
    inputs = compute_inputs(graph, plan, environ, extra=layers.period)
    executor = _executor(plan, options, engine)
    images = TrustingImages(ws.state.engine_trust, environ, engine)
    stop = threading.Event()
    progress = _progress(settings.progress, len(plan.steps))
    warn = once_per_outage(progress.warn)
    cache = TargetCache(ws, images, warn=warn, read_only=settings.cache_read_only)
    layers.warn = warn
    loaded = options.load or frozenset()
    try:
        with _stop_on_signals(stop):
            actions = decide_actions(plan, inputs, options, cache=cache, images=images)
            result = execute(plan, ws, executor, images=images, options=options, git=git, environ=environ,
                             stop=stop, progress=progress, inputs=inputs, cache=cache, check_engine=executor.check,
                             after_build=_only(pushing, push_now) if settings.push_as_ready and pusher else None,
                             layers=layers, now=now, actions=actions)
            if pusher is not None and not settings.push_as_ready and result.ok:
                _push_after(result, graph, pusher, pushing, pushes, cache,
                            options.layouts, loaded)
            elif pusher is not None and not settings.push_as_ready:
                progress.warn("not pushing anything: a target did not build (the registries are untouched)")
    finally:
        progress.close()
    result = with_push(result, pushes)
    in_engine = _engine_refs(result, graph, options.loads)
    images.remember(in_engine)
    records = _record_history(result, ws, git=git, environ=environ, builder=settings.builder, images=images,
                              warn=progress.warn)
    if settings.json:
        write_report(result, settings.json)
        statedir.remember_output(ws.state, settings.json)  # not a change to the work tree (git.read)
    if settings.metadata_file:
        write_metadata(result, settings.metadata_file)
        statedir.remember_output(ws.state, settings.metadata_file)
    summary(result, sys.stderr)
    journal = settings.journal
    if isinstance(journal, Recorder):
        _journal(journal, result, graph, ws, git=git, records=records, warned=progress.warnings > 0, layers=layers,
                 images=in_engine)
    return result


def _executor(plan: Plan, options: BuildOptions, engine: EngineGateway) -> BuildxExecutor | BakeExecutor:
    """On the ``docker`` driver, leaves that start together are built by one bake (:mod:`imgbuild.builds.bake`)."""
    single = BuildxExecutor(engine=engine)
    if options.layouts is not None:
        return single  # the other builders take dependencies as layouts, one build each
    return BakeExecutor(single, leaves=frozenset(str(lb) for lb in plan.labels) - plan.feeds)


def _engine_refs(result: RunResult, graph: TargetGraph, loads: Callable[[str], bool]) -> dict[str, str]:
    """The local tags and exact-build tags the run left in the engine (ref -> image id)."""
    out: dict[str, str] = {}
    for t in result.targets:
        if t.ok and t.image_id and loads(t.label):
            for ref in (*t.tags, local_tag(graph.target(Label.parse(t.label)), t.image_id)):
                out[normal_ref(ref)] = t.image_id
    return out


def _journal(journal: Recorder, result: RunResult, graph: TargetGraph, ws: Workspace, *, git: gitinfo.GitInfo,
             records: list[HistoryRecord], warned: bool, layers: LayerCaches, images: dict[str, str]) -> None:
    """Let the next identical command answer from a journal (imgbuild.uptodate) if this one was a pure no-op."""
    targets = [graph.target(Label.parse(t.label)) for t in result.targets]
    spool = ws.state.history_spool
    if (warned or not result.ok or any(t.status != "cached" or not t.image_id for t in result.targets)
            or ws.config.history.backend != "sqlite" or (spool.is_dir() and any(spool.iterdir()))
            or any("{datetime" in tag for t in targets for tag in t.tags) or any(layers.period(t) for t in targets)):
        return
    table = io.StringIO()
    summary(result, table)
    lines = table.getvalue().rstrip("\n").split("\n")
    payloads = [{k: v for k, v in r.to_dict().items() if k not in ("id", "time")} for r in records]
    journal.save(images=images, records=payloads, history_db=str(sqlite_path(ws.config.history, ws.root)),
                 summary=lines[:-1], state=lines[-1].rsplit(" in ", 1)[0], git=[git.sha, git.branch, git.dirty])


def _pusher(insecure: frozenset[str], engine: EngineGateway) -> Pusher:
    send = Connections().send  # one pool of kept-alive connections for the checks and the uploads
    auth = Authorizer(send)  # and one login per registry (a credential helper runs once per host)
    return Pusher(Images(engine), RegistryClient(insecure_hosts=insecure, send=send, auth=auth),
                  copier=Copier(insecure_hosts=insecure, send=send, auth=auth))


def _check_push_targets(plan: Plan) -> None:
    """A requested target with ``push: true`` and no registry would be pushed nowhere: bad input, before any build."""
    errors = [SpecError(f"{s.target.label} has push: true but no registry to push to", location=s.target.location,
                        hint="name one with `registry:` (or `registries:`) on it or in imgbuild.yaml's `defaults`, "
                             "or set `push: false`")
              for s in plan.steps if s.requested and s.target.push and not s.target.registries]
    if errors:
        raise SpecErrors(errors)


def inputs_now(graph: TargetGraph, plan: Plan, environ: dict[str, str]) -> dict[str, Inputs]:
    """The input digests a build would use right now (for explain and inspect: same keys as build)."""
    ws = graph.workspace
    # Only the invalidation period of the policies matters here, and it depends on the time alone.
    layers = LayerCaches(ws, git=gitinfo.GitInfo(), now=datetime.now(timezone.utc), read_only=True,
                         builder=None, environ=environ, warn=lambda m: None)
    return compute_inputs(graph, plan, environ, extra=layers.period)


def compute_inputs(graph: TargetGraph, plan: Plan, environ: dict[str, str],
                   extra: Callable[[Target], tuple[tuple[str, str], ...]] | None = None,
                   save: bool = True) -> dict[str, Inputs]:
    """Input digests of every step, with the workspace's stat cache (saved for the next run unless ``save`` is
    False: a dry run writes nothing)."""
    ws = graph.workspace
    stat_cache = StatCache(ws.state.statcache)
    hasher = Hasher(ws, stat_cache=stat_cache, environ=environ, extra=extra)
    try:
        found = hasher.compute(graph, [s.target.label for s in plan.steps])
    except FilesetError as exc:
        raise ImgbuildError(f"cannot read the build context: {exc}") from None
    if not save:
        return {str(lb): i for lb, i in found.items()}
    try:
        stat_cache.save()
    except OSError:
        pass  # only a speed-up: the next run rehashes
    return {str(lb): i for lb, i in found.items()}


def _record_history(result: RunResult, ws: Workspace, *, git: gitinfo.GitInfo, environ: dict[str, str],
                    builder: str | None, images: Images, warn: Callable[[str], None]) -> list[HistoryRecord]:
    """Append a record per target (and per push) to the workspace's history; a failing store spools locally."""
    from imgbuild.builds.records import records_for
    from imgbuild.ci import detect
    from imgbuild.commands.history import open_history

    from concurrent.futures import ThreadPoolExecutor

    def layer_facts(image_id: str) -> tuple[int, int] | None:
        try:
            sizes = [int(str(s.get("Size", 0)) or 0) for s in images.history(image_id)]
        except Exception:
            return None  # layer facts are a nicety; the record itself must be written
        return sum(1 for n in sizes if n > 0), sum(sizes)

    built = [t for t in result.targets if t.status == "built" and t.image_id]
    with ThreadPoolExecutor(max_workers=8) as pool:
        facts = list(pool.map(lambda t: layer_facts(t.image_id or ""), built))
    layers = {t.label: f for t, f in zip(built, facts) if f is not None}
    history = open_history(ws, warn)
    records = records_for(result, ws, git=git, ci=detect(environ), builder=builder, layers=layers)
    history.append_all(records)
    history.flush()
    return records


def once_per_outage(warn: Callable[[str], None]) -> Callable[[str], None]:
    """One warning per unreachable service, however many stores (target cache, layer cache) use it."""
    seen: set[str] = set()
    lock = threading.Lock()

    def deduped(message: str) -> None:
        reason = message.split(" unavailable: ", 1)[1].split(";", 1)[0] if " unavailable: " in message else None
        with lock:
            if reason is not None and reason in seen:
                return
            if reason is not None:
                seen.add(reason)
        warn(message)

    return deduped


def _insecure_hosts(ws: Workspace) -> frozenset[str]:
    return frozenset(r.url.split("/", 1)[0] for r in ws.config.registries if r.insecure)


def _only(labels: set[str], hook: Callable[[Target, Built], None]) -> Callable[[Target, Built], None]:
    def run(target: Target, built: Built) -> None:
        if str(target.label) in labels:
            hook(target, built)

    return run


def _push_after(result: RunResult, graph: TargetGraph, pusher: Pusher, labels: set[str],
                pushes: dict[str, tuple[tuple[str, ...], str | None]], cache: TargetCache,
                layouts: OciLayouts | None, loaded_labels: frozenset[str] = frozenset()) -> None:
    """Default --push: every target built, then check every immutable tag, then push all in parallel."""
    ws = graph.workspace

    def blobs(t: TargetResult) -> Path | None:
        if not t.input_digest or not t.image_id:
            return None
        found = cache.local_blobs(graph.target(Label.parse(t.label)), t.input_digest, t.image_id)
        if found is None and layouts is not None and t.label not in loaded_labels:
            # Built or restored on a builder that left it in no engine: its OCI layout has the blobs.
            layout = layouts.get(t.image_id)
            found = layout / "blobs" / "sha256" if layout is not None else None
        return found

    def fetch(t: TargetResult) -> Callable[[], Path | None] | None:
        """A cached target that is in no engine and no layout: its blobs come from the cache store, and only
        if a registry lacks a tag (an unchanged image the registry holds costs one check, no download)."""
        if layouts is None or t.label in loaded_labels or not t.input_digest:
            return None
        target, key = graph.target(Label.parse(t.label)), t.input_digest

        def run() -> Path | None:
            layout = _layout_from_cache(cache, layouts, target, key)
            return layout / "blobs" / "sha256" if layout is not None else None

        return run

    plans = [replace(plan_push(graph.target(Label.parse(t.label)), ws, t.image_id or "", t.tags, blob_dir=blobs(t)),
                     fetch_blobs=fetch(t))
             for t in result.targets if t.label in labels]
    conflicts = pusher.immutable_conflicts(plans)
    if conflicts:
        for p in plans:
            pushes[p.label] = ((), "refused before pushing anything: " + "; ".join(conflicts))
        return
    for res in pusher.push_all(plans):
        pushes[res.label] = (res.pushed, res.error)


def _layout_from_cache(cache: TargetCache, layouts: OciLayouts, target: Target, key: str) -> Path | None:
    """The layout of a cached target that no step of the run needed on disk, fetched from its store now."""
    entry = cache.lookup(target, key)
    if entry is None:
        return None
    digest, _ = cache.layout(target, entry, layouts, cache.images, in_engine=False)
    return layouts.get(digest) if digest is not None else None


def _progress(mode: str, total: int) -> Progress:
    if mode == "tty" or (mode == "auto" and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"):
        return LiveProgress(total)
    return PlainProgress()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``: running builds are killed, finished results are kept and reported."""

    def handler(signum: int, frame: object) -> None:
        if not stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping running builds...", file=sys.stderr)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_options(settings: BuildSettings, graph: TargetGraph, plan: Plan, *, git: gitinfo.GitInfo,
                 environ: dict[str, str], now: datetime, current: str) -> tuple[LayerCaches, BuildOptions]:
    """The layer caches and the options of a build with ``settings``: the same for a build and its dry run."""
    ws = graph.workspace
    builder = builders.resolve(settings.builder, environ)  # an unknown builder is exit 3 before anything runs
    layers = LayerCaches(ws, git=git, now=now, read_only=settings.cache_read_only, builder=settings.builder,
                         environ=environ, warn=lambda m: print(f"warning: {m}", file=sys.stderr),
                         driver=lambda _name: builder.driver)
    rebuild = {str(s.target.label) for s in plan.steps} if settings.no_cache else set()
    if settings.rebuild:
        rebuild |= {str(lb) for lb in graph.select(patterns(list(settings.rebuild), current))}
    layouts = None if builder.sees_engine_images else OciLayouts(ws.state.oci_layouts)
    loaded = frozenset() if settings.no_load else frozenset(
        str(s.target.label) for s in plan.steps if s.requested and s.target.load)
    options = BuildOptions(parallelism=settings.jobs or ws.config.concurrency, logs_dir=ws.state.logs,
                           keep_going=settings.keep_going, builder=settings.builder, rebuild=frozenset(rebuild),
                           no_cache=settings.no_cache, layouts=layouts, load=loaded)
    return layers, options


def _dry_run(settings: BuildSettings, graph: TargetGraph, plan: Plan, *, git: gitinfo.GitInfo,
             environ: dict[str, str], current: str) -> None:
    """Print each target's action: for a build, the command it would run (cache arguments included),
    shell-quoted; for a target taken from the cache, one comment line saying so. Runs and writes nothing."""
    now = datetime.now(timezone.utc)
    ws = graph.workspace
    layers, options = _run_options(settings, graph, plan, git=git, environ=environ, now=now, current=current)
    inputs = compute_inputs(graph, plan, environ, extra=layers.period, save=False)
    warn = once_per_outage(lambda m: print(f"warning: {m}", file=sys.stderr))
    # Read-only: a dry run writes nothing, not even a repaired entry.
    cache = TargetCache(ws, Images(EngineGateway(environ=environ)), warn=warn, read_only=True)
    actions = decide_actions(plan, inputs, options, cache=cache, images=cache.images, engine_optional=True)
    for target, action, argv in dry_run(plan, ws, git=git, environ=environ, options=options, layers=layers,
                                        now=now, actions=actions, inputs=inputs, cache=cache):
        if argv is None:
            print(f"# {target.label} {action.describe()}")
        else:
            print(f"# {target.label}")
            print(shlex.join(argv))
