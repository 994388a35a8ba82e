"""``imgbuild release VERSION PATTERN...`` and ``imgbuild promote PATTERN... --from R1 --to R2``.

Both only gather facts here (the workspace, the target cache, the history, the engine, the registries),
let :mod:`imgbuild.release` plan, print the plan, and run it. Exit status: 0 done (or nothing left to do,
or a dry run); 1 refused because of the state (uncommitted changes, no image for this commit, a release
tag that points at another image, a git tag at another commit, a registry or history that cannot be read)
or a target that failed half-way (rerun to complete it); 2 bad input (version, tag template, registry
name, pattern); 3 no engine when one is needed (``--build-missing``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from imgbuild import git as gitinfo
from imgbuild import proc
from imgbuild.builds.actions import lookups
from imgbuild.builds.images import Images
from imgbuild.builds.request import local_tag
from imgbuild.builds.run import local_tags
from imgbuild.cache.entry import CacheEntry
from imgbuild.cache.targets import TargetCache
from imgbuild.ci import detect
from imgbuild.commands import load_graph, patterns
from imgbuild.commands.history import open_history
from imgbuild.errors import EngineUnavailable, ImgbuildError
from imgbuild.graph import TargetGraph
from imgbuild.history.record import HistoryRecord, utc_now
from imgbuild.history.store import GuardedHistory, HistoryError
from imgbuild.labels import Label
from imgbuild.model import Registry, Target, Workspace
from imgbuild.plan import make_plan
from imgbuild.push import PushError, Pusher, PushPlan
from imgbuild.registry import Reference, RegistryClient
from imgbuild.regcopy import Copier, Repository
from imgbuild.release import (EXIT_REFUSED, Found, GitState, Observed, Outcome, PromoteWant, ReleaseInputError,
                              ReleasePlan, ReleaseRefused, Version, Want, check_templates, choose_image, describe,
                              execute, observe, parse_version, plan_promote, plan_release, record_for,
                              release_tags, settings_from)
from imgbuild.tags import TagContext, render

EPILOG = """exit status:
  0    done, or nothing left to do, or a dry run
  1    refused because of the state, nothing changed: uncommitted changes, no image for this commit, a tag
       that points at another image, a git tag at another commit, a registry or the history unreadable;
       or a target failed half-way (rerun: what is done stays done)
  2    bad input: VERSION, a tag template, a registry name, a pattern
  3    no engine when one is needed (--build-missing)
"""


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register ``imgbuild release`` and ``imgbuild promote`` (``common`` provides ``--workspace``).

    Both run :func:`main` of this module: ``promote`` sets ``command`` to ``release`` (``imgbuild.commands``
    imports the module named by ``command``) and ``verb`` says which one was asked for.
    """
    r = sub.add_parser(
        "release", parents=[common], help="tag the images of this commit as release VERSION, without rebuilding",
        description="Point the release tags (default: {version}, {version.major}.{version.minor}, latest) at the "
                    "images built from the current commit, in the release registries, by digest. Nothing is "
                    "rebuilt; a rerun completes an interrupted release and changes nothing already done.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("version", metavar="VERSION", help="MAJOR.MINOR.PATCH[-pre][+build], optionally with a leading v")
    r.add_argument("patterns", nargs="+", metavar="PATTERN")
    r.add_argument("--registry", action="append", default=[], metavar="NAME",
                   help="release to this registry instead of each target's own (repeatable)")
    r.add_argument("--tag", action="append", default=[], metavar="TEMPLATE",
                   help="a release tag template instead of the defaults (repeatable), e.g. 'v{version}'")
    r.add_argument("--build-missing", action="store_true",
                   help="build the targets that have no image for this commit first (a normal build)")
    r.add_argument("--git-tag", action="store_true", help="create the annotated git tag VERSION at HEAD")
    r.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    r.add_argument("--allow-dirty", action="store_true", help="release from a work tree with uncommitted changes")
    r.add_argument("--no-semver", action="store_true", help="accept any Docker tag as VERSION")
    r.set_defaults(verb="release")

    p = sub.add_parser(
        "promote", parents=[common], help="copy targets' images from one registry to another by digest",
        description="For each target, copy the image its tags point at in the --from registry to the --to "
                    "registry, by digest, with the same tags. Tags already pointing at another image in the "
                    "--to registry are refused unless named with --move.",
        epilog=EPILOG.replace(" (--build-missing)", "").replace("VERSION, ", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("patterns", nargs="+", metavar="PATTERN")
    p.add_argument("--from", dest="source", required=True, metavar="REGISTRY", help="a registry name (imgbuild.yaml)")
    p.add_argument("--to", dest="dest", required=True, metavar="REGISTRY", help="a registry name (imgbuild.yaml)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="promote these tags (templates allowed; repeatable) instead of the target's own tags")
    p.add_argument("--move", action="append", default=[], metavar="TAG",
                   help="this tag may move in the --to registry (e.g. latest; repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.set_defaults(command="release", verb="promote")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "verb", args.command) == "promote":
        return promote(args)
    return release(args)


# -- release --------------------------------------------------------------------------------------------------


def release(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    ws = graph.workspace
    settings = settings_from(ws.config)
    if args.tag:
        check_templates(args.tag)
    templates = tuple(args.tag) or settings.tags
    version = parse_version(args.version, semver=settings.semver and not args.no_semver)
    targets = _pushable(graph, graph.select(patterns(args.patterns, current)))
    registries = {str(t.label): _registries(ws, t, tuple(args.registry) or settings.registries) for t in targets}
    git = gitinfo.read(ws.root)
    environ = dict(os.environ)
    now = datetime.now(timezone.utc)
    history = open_history(ws, _warn)
    client = RegistryClient(insecure_hosts=_insecure(ws))
    images = Images()  # one way to the engine for the whole command
    cache = TargetCache(ws, images, warn=_warn, read_only=True)

    def make(built: dict[str, str], build_missing: bool) -> tuple[ReleasePlan, dict[str, CacheEntry]]:
        keys = _input_digests(graph, targets, environ)
        entries = lookups(cache, targets, keys)  # the build's own cache-hit rule
        pushes = _query(history, targets, kind="push", commit=git.sha or None)
        found = {str(t.label): choose_image(str(t.label), input_digest=keys[str(t.label)],
                                            cached_image=built.get(str(t.label)) or _image(entries, t),
                                            commit=git.sha, pushes=pushes, allow_dirty=args.allow_dirty)
                 for t in targets}
        found = _in_engine(found, images)
        wants = [Want(found=found[str(t.label)], repositories=tuple(str(Repository.parse(f"{r.url}/{t.image}"))
                                                                    for r in registries[str(t.label)]),
                      tags=release_tags(templates, version, TagContext(git=git, now=now, environ=environ,
                                                                       input_digest=_hex(keys[str(t.label)]))),
                      immutable=frozenset(str(Repository.parse(f"{r.url}/{t.image}"))
                                          for r in registries[str(t.label)] if r.immutable_tags))
                 for t in targets]
        observed = _observe_release(client, wants)
        releases = _by_label(_query(history, targets, kind="release"))
        state = GitState(commit=git.sha, dirty=git.dirty,
                         tag_commit=_git_tag_commit(ws.root, version.text) if args.git_tag else None)
        plan = plan_release(wants, observed, version=version, releases=releases, git=state,
                            allow_dirty=args.allow_dirty, build_missing=build_missing, git_tag=args.git_tag)
        return plan, entries

    plan, entries = make({}, args.build_missing)
    if plan.to_build and not args.dry_run:
        built = _build_missing(graph, plan.to_build, current, allow_dirty=args.allow_dirty)
        plan, entries = make(built, False)
    for line in describe(plan, dry_run=args.dry_run):
        print(line)
    if plan.nothing_to_do:
        print(f"release {version.text} is complete: nothing to do")
        return 0
    if args.dry_run:
        return 0
    outcomes = execute(plan, writer=Copier(insecure_hosts=_insecure(ws)), reader=client,
                       push_local=_push_local(graph, cache, entries, client, images),
                       parallelism=ws.config.concurrency)
    _record(plan, outcomes, graph, history, git=git, environ=environ)
    failed = [o for o in outcomes if not o.ok]
    if plan.git_tag and not failed:
        _create_git_tag(ws.root, version, git.sha)
    return _summary(plan, outcomes, version=version, git_tag_skipped=bool(plan.git_tag and failed))


def _pushable(graph: TargetGraph, labels: Sequence[Label]) -> list[Target]:
    """The selected targets with ``push: true`` (as ``build --push`` pushes); the others are named and left."""
    targets = [graph.target(lb) for lb in labels]
    left = [str(t.label) for t in targets if not t.push]
    if left:
        _warn(f"left out (push: false): {', '.join(left)}")
    chosen = [t for t in targets if t.push]
    if not chosen:
        raise ReleaseInputError("nothing to release: no selected target has push: true")
    return chosen


def _registries(ws: Workspace, target: Target, names: Sequence[str]) -> tuple[Registry, ...]:
    """``names`` (--registry, or the release settings) or else the target's own registries."""
    chosen = tuple(names) or target.registries
    if not chosen:
        raise ReleaseInputError(f"{target.label} has no registry to release to\n"
                                f"  hint: set registry: for it (or in defaults), or pass --registry NAME")
    return tuple(_registry(ws, n) for n in chosen)


def _registry(ws: Workspace, name: str) -> Registry:
    known = [r.name for r in ws.config.registries]
    if name not in known:
        from imgbuild.specfiles.workspace import unknown_hint

        raise ReleaseInputError(f"unknown registry {name!r}\n  hint: {unknown_hint(name, known, 'registries')}")
    return ws.config.registry(name)


def _input_digests(graph: TargetGraph, targets: Sequence[Target], environ: dict[str, str]) -> dict[str, str]:
    from imgbuild.builds.service import inputs_now

    plan = make_plan(graph, patterns([str(t.label) for t in targets], ""))
    return {label: inputs.key() for label, inputs in inputs_now(graph, plan, environ).items()}


def _image(entries: dict[str, CacheEntry], target: Target) -> str | None:
    entry = entries.get(str(target.label))
    return entry.image_id if entry else None


def _query(history: GuardedHistory, targets: Sequence[Target], *, kind: str | None = None,
           commit: str | None = None) -> list[HistoryRecord]:
    try:
        return history.query(labels={str(t.label) for t in targets}, kind=kind, commit=commit)
    except HistoryError as exc:
        raise ReleaseRefused([f"cannot read the history {history.name}: {exc} (it says where images were pushed "
                              f"and what was released)"]) from None


def _by_label(records: Sequence[HistoryRecord]) -> dict[str, list[HistoryRecord]]:
    out: dict[str, list[HistoryRecord]] = {}
    for r in records:
        out.setdefault(r.label, []).append(r)
    return out


def _in_engine(found: dict[str, Found], images: Images) -> dict[str, Found]:
    digests = sorted({f.digest for f in found.values() if f.digest})
    try:
        present = images.inspect_many(digests)
    except EngineUnavailable:
        present = {}  # only needed for images in no registry; the plan says so if it comes to that
    return {label: replace(f, in_engine=bool(f.digest and f.digest in present)) for label, f in found.items()}


def _observe_release(client: RegistryClient, wants: Sequence[Want]) -> Observed:
    refs = [f"{repo}:{rt.tag}" for w in wants for repo in w.repositories for rt in w.tags if w.found.digest]
    holdings = [(repo, w.found.digest) for w in wants if w.found.digest
                for repo in (*w.repositories, *w.found.repositories)]
    return observe(client, refs=refs, holdings=holdings)


def _git_tag_commit(root: Path, name: str) -> str | None:
    try:
        return proc.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{name}^{{commit}}"], cwd=root).strip()
    except proc.ProcessError:
        return None


def _build_missing(graph: TargetGraph, labels: Sequence[str], current: str, *, allow_dirty: bool) -> dict[str, str]:
    """``imgbuild build`` of ``labels`` (no push); their image ids. Nothing is released if one fails."""
    from imgbuild.builds.service import run_plan
    from imgbuild.builds.settings import BuildSettings

    print(f"building {len(labels)} target(s) without an image for this commit: {', '.join(labels)}", file=sys.stderr)
    options = BuildSettings(allow_dirty=allow_dirty)
    result = run_plan(options, graph, make_plan(graph, patterns(list(labels), current)), current)
    if result is None or not result.ok:
        raise ReleaseRefused([f"--build-missing: the build did not succeed ({', '.join(labels)})"])
    return {t.label: t.image_id for t in result.targets if t.image_id and t.label in labels}


def _push_local(graph: TargetGraph, cache: TargetCache, entries: dict[str, CacheEntry], client: RegistryClient,
                images: Images) -> Callable[[str, str, Reference, bool], None]:
    """Push an image from the engine (first restored from the target cache when asked), verified by digest."""
    pusher = Pusher(images, client)

    def push(label: str, digest: str, ref: Reference, restore: bool) -> None:
        target = graph.target(Label.parse(label))
        if restore:
            entry = entries.get(label)
            if entry is None or not cache.restore(target, entry, local_tag(target, digest)):
                raise ImgbuildError(f"{label}: cannot restore {digest} from the target cache")
        result = pusher.push(PushPlan(label=label, image_id=digest, refs=(ref,)))
        if result.error:
            raise PushError(result.error)

    return push


def _record(plan: ReleasePlan, outcomes: Sequence[Outcome], graph: TargetGraph, history: GuardedHistory, *,
            git: gitinfo.GitInfo, environ: dict[str, str]) -> None:
    """One record per finished target, unless it has one already (a rerun appends nothing)."""
    ok = {o.label for o in outcomes if o.ok}
    ci = detect(environ)
    time = utc_now()
    for t in plan.targets:
        if t.label in ok and not t.recorded:
            target = graph.target(Label.parse(t.label))
            history.append(record_for(t, plan=plan, target=target, git=git, ci=ci,
                                      workspace=graph.workspace.root.name, time=time))
    history.flush()


def _create_git_tag(root: Path, version: Version, sha: str) -> None:
    try:
        proc.run(["git", "tag", "-a", version.text, "-m", f"imgbuild release {version.text}", sha], cwd=root)
    except proc.ProcessError as exc:
        raise ReleaseRefused([f"--git-tag: the images are released, but git refused the tag: {exc.stderr.strip()}"
                              f" (rerun the release once fixed: it only creates the tag)"]) from None
    print(f"created git tag {version.text} at {sha[:12]} (push it: git push origin {version.text})")


def _summary(plan: ReleasePlan, outcomes: Sequence[Outcome], *, version: Version | None,
             git_tag_skipped: bool = False) -> int:
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"error: {o.label}: {o.error}", file=sys.stderr)
    changed = sum(len(o.done) for o in outcomes)
    what = f"release {version.text}" if version else "promotion"
    if failed:
        print(f"{what}: {len(failed)} of {len(outcomes)} target(s) failed after {changed} tag change(s); "
              f"rerun to complete it (what is done stays done)", file=sys.stderr)
        if git_tag_skipped:
            print("the git tag was not created: every target must be released first", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{what}: {len(outcomes)} target(s), {changed} tag(s) set")
    return 0


# -- promote --------------------------------------------------------------------------------------------------


def promote(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    ws = graph.workspace
    source, dest = _registry(ws, args.source), _registry(ws, args.dest)
    if source.url == dest.url:
        raise ReleaseInputError(f"--from {args.source} and --to {args.dest} are the same registry ({source.url})")
    if args.tag:
        check_templates(args.tag)
    targets = _pushable(graph, graph.select(patterns(args.patterns, current)))
    git = gitinfo.read(ws.root)
    environ = dict(os.environ)
    ctx = TagContext(git=git, now=datetime.now(timezone.utc), environ=environ)
    wants = [PromoteWant(label=str(t.label), source=str(Repository.parse(f"{source.url}/{t.image}")),
                         dest=str(Repository.parse(f"{dest.url}/{t.image}")), tags=_promote_tags(t, args.tag, ctx),
                         immutable=dest.immutable_tags) for t in targets]
    client = RegistryClient(insecure_hosts=_insecure(ws))
    observed = observe(client, refs=[f"{repo}:{tag}" for w in wants for repo in (w.source, w.dest) for tag in w.tags],
                       holdings=())
    holdings = {(w.dest, d) for w in wants for tag in w.tags if (d := observed.tag(f"{w.source}:{tag}"))}
    observed = observed.merged(observe(client, refs=(), holdings=holdings))
    history = open_history(ws, _warn)
    plan = plan_promote(wants, observed, move=frozenset(args.move),
                        history=_by_label(_query(history, targets)))
    for line in describe(plan, dry_run=args.dry_run):
        print(line)
    if plan.nothing_to_do:
        print("promotion is complete: nothing to do")
        return 0
    if args.dry_run:
        return 0
    outcomes = execute(plan, writer=Copier(insecure_hosts=_insecure(ws)), reader=client,
                       push_local=_no_local_push, parallelism=ws.config.concurrency)
    _record(plan, outcomes, graph, history, git=git, environ=environ)
    return _summary(plan, outcomes, version=None)


def _promote_tags(target: Target, given: Sequence[str], ctx: TagContext) -> tuple[str, ...]:
    if not given:
        tags = tuple(t.rpartition(":")[2] for t in local_tags(target, ctx))
        if not tags:
            raise ReleaseInputError(f"{target.label}: none of its tags renders here; name them with --tag")
        return tags
    out = []
    for template in given:
        tag = render(template, ctx)
        if not tag:
            raise ReleaseInputError(f"--tag {template!r} renders to nothing here")
        out.append(tag)
    return tuple(dict.fromkeys(out))


def _no_local_push(label: str, digest: str, ref: Reference, restore: bool) -> None:
    raise ImgbuildError(f"{label}: promote copies between registries only")  # plan_promote never asks


# -- shared ---------------------------------------------------------------------------------------------------


def _insecure(ws: Workspace) -> frozenset[str]:
    return frozenset(r.url.split("/", 1)[0] for r in ws.config.registries if r.insecure)


def _hex(key: str) -> str:
    return key.split(":", 1)[-1]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
