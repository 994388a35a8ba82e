"""Releasing images that were already built: tags added by digest in the release registries, never a rebuild.

``imgbuild release VERSION PATTERN...`` takes, for each selected target, the image of the current commit
(the target-cache entry of its current input digest, and the history's push records of this commit, which
say where it was pushed by digest), and points the release tags at that digest in the release registries:

* a registry that holds the image already gets the tags by manifest copy (Registry v2: GET the manifest by
  digest, PUT it under the tag);
* another registry gets the image copied by digest from one that holds it (:mod:`imgbuild.regcopy`);
* an image that is only in the engine (or only in the target cache) is pushed from the engine.

``imgbuild promote PATTERN --from R1 --to R2`` copies what a target's tags point at in R1 to R2, by digest.

Everything is decided first, from observed facts, by the pure :func:`plan_release` and
:func:`plan_promote`: they refuse (:class:`ReleaseRefused`, every problem at once) before anything changes.
Only :func:`execute` writes to registries. A release is idempotent: what is already in place is left
alone, so an interrupted release rerun completes the missing tags, and a target gets one release record
per version and digest.
"""

from __future__ import annotations

import functools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from imgbuild.ci import CIRun
from imgbuild.errors import EXIT_BUILD_FAILED, ImgbuildError
from imgbuild.git import GitInfo
from imgbuild.history.record import HistoryRecord
from imgbuild.push import PushError
from imgbuild.registry import Reference, RegistryError
from imgbuild.regcopy import CopyStats, Repository
from imgbuild.model import Target, WorkspaceConfig
from imgbuild.tags import TagContext, TemplateError, check, render

DEFAULT_TAGS = ("{version}", "{version.major}.{version.minor}", "latest")
DEFAULT_TAGS_NOT_SEMVER = ("{version}", "latest")  # a free-form version has no major.minor

EXIT_REFUSED = EXIT_BUILD_FAILED  # 1: the state forbids it (dirty tree, no image, a tag taken); see README

_SEMVER = re.compile(
    r"v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")
_DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class ReleaseInputError(ImgbuildError):
    """Bad input to release or promote (a version, a tag template, a registry name): exit 2."""


class ReleaseRefused(ImgbuildError):
    """The state forbids the release; nothing was changed. Every problem found is listed: exit 1."""

    exit_code = EXIT_REFUSED

    def __init__(self, problems: Sequence[str], *, what: str = "release") -> None:
        self.problems = tuple(problems)
        super().__init__(f"refusing to {what}, nothing was changed:\n" + "\n".join(f"  - {p}" for p in problems))


# -- versions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Version:
    text: str  # as given: the git tag and the records' release_version
    tag: str  # what {version} renders in image tags: no leading v, `+build` as `_build`
    semver: bool
    core: tuple[int, int, int] = (0, 0, 0)
    prerelease: str = ""

    def precedence(self) -> tuple[object, ...]:
        """SemVer 2.0 precedence (build metadata ignored): compare two versions' keys."""
        if not self.prerelease:
            return (*self.core, (1,))
        ids = tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in self.prerelease.split("."))
        return (*self.core, (0, ids))


def parse_version(text: str, *, semver: bool = True) -> Version:
    """Check a release version; :class:`ReleaseInputError` says what is wrong with it.

    SemVer (``MAJOR.MINOR.PATCH``, optional ``-prerelease`` and ``+build``, optional leading ``v``) is
    required unless ``semver`` is False; then any valid Docker tag is accepted. In image tags a semantic
    version loses its ``v`` and ``+`` becomes ``_`` (Docker tags cannot hold ``+``; Helm does the same).
    """
    m = _SEMVER.fullmatch(text)
    if m:
        tag = text.removeprefix("v").replace("+", "_")
        if not _DOCKER_TAG.fullmatch(tag):
            raise ReleaseInputError(f"version {text!r} is too long for a Docker tag (128 characters at most)")
        return Version(text=text, tag=tag, semver=True, prerelease=m.group("pre") or "",
                       core=(int(m.group("major")), int(m.group("minor")), int(m.group("patch"))))
    if semver:
        raise ReleaseInputError(f"version {text!r} is not a semantic version\n"
                                "  hint: MAJOR.MINOR.PATCH with an optional -prerelease and +build, optionally "
                                "with a leading v (1.4.0, v2.0.0-rc.1); --no-semver accepts any Docker tag")
    if not _DOCKER_TAG.fullmatch(text):
        raise ReleaseInputError(f"version {text!r} is not a valid Docker tag\n"
                                "  hint: letters, digits, _ . and -, not starting with . or -, at most 128")
    if ".." in text or text.endswith(".lock"):  # harmless in Docker tags, refused by git for its tags
        raise ReleaseInputError(f"version {text!r} cannot be a git tag (no '..', no '.lock' at the end)")
    return Version(text=text, tag=text, semver=False)


# -- release tags ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReleaseSettings:
    """What a workspace's ``release:`` section would hold (see :func:`settings_from`)."""

    tags: tuple[str, ...] | None = None  # None: the defaults for the version
    registries: tuple[str, ...] = ()  # empty: each target's own registries
    semver: bool = True


def settings_from(config: WorkspaceConfig) -> ReleaseSettings:
    """The workspace's ``release: {tags, registries, semver}`` (imgbuild.yaml)."""
    section = config.release
    return ReleaseSettings(tags=section.tags or None, registries=section.registries, semver=section.semver)


@dataclass(frozen=True, kw_only=True)
class ReleaseTag:
    tag: str
    pinned: bool  # names this very version: never moved once it points at an image


def check_templates(templates: Sequence[str]) -> None:
    for template in templates:
        try:
            check(template)
        except TemplateError as exc:
            raise ReleaseInputError(f"--tag: {exc}") from None


def release_tags(templates: Sequence[str] | None, version: Version, ctx: TagContext) -> tuple[ReleaseTag, ...]:
    """The tags of a release, rendered; ``templates`` None means the defaults.

    A tag holding the whole version (``1.4.0``, ``v1.4.0``) is pinned: a release never moves it. The
    others (``1.4``, ``latest``) float: they move to the newest release. A prerelease does not get the
    default floating tags (``2.0.0-rc.1`` is not ``latest``); templates given explicitly always apply.
    """
    defaults = templates is None
    chosen = (DEFAULT_TAGS if version.semver else DEFAULT_TAGS_NOT_SEMVER) if templates is None else templates
    ctx = TagContext(git=ctx.git, now=ctx.now, input_digest=ctx.input_digest, version=version.tag,
                     environ=ctx.environ)
    out: list[ReleaseTag] = []
    for template in chosen:
        tag = render(template, ctx)
        if not tag:
            raise ReleaseInputError(f"tag template {template!r} renders to nothing here (a value it needs is "
                                    f"missing: no branch, an unset {{env.NAME}}, ...)")
        pinned = version.tag in tag
        if defaults and version.prerelease and not pinned:
            continue
        if tag not in {t.tag for t in out}:
            out.append(ReleaseTag(tag=tag, pinned=pinned))
    return tuple(out)


# -- where the image of a target is ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Found:
    """Where the image a target has for the current commit is (``digest`` None: it has none)."""

    label: str
    input_digest: str | None
    digest: str | None = None
    repositories: tuple[str, ...] = ()  # host/repo the history says hold it by digest (checked later)
    in_engine: bool = False
    in_cache: bool = False  # a target-cache entry can restore it into the engine
    build: HistoryRecord | None = None  # the push (or build) record it comes from, for the release record


def choose_image(label: str, *, input_digest: str | None, cached_image: str | None, commit: str,
                 pushes: Sequence[HistoryRecord], allow_dirty: bool) -> Found:
    """The image of ``label`` for the current commit, from the cache entry and the commit's push records.

    The cache entry of the current input digest decides when there is one; the push records of the commit
    then say where that image was pushed. Without an entry, the newest push record of the commit with the
    same input digest decides, else the newest clean one of the commit (a period of ``invalidate_every``
    may have changed the digest since). Push records from a dirty tree count only with ``allow_dirty``;
    outside git (no ``commit``), only the input digest can tie a push record to the work tree.
    """
    usable = [r for r in pushes if r.label == label and r.kind == "push" and r.image_id
              and (r.git_commit == commit if commit else True) and (allow_dirty or not r.git_dirty)]
    usable.sort(key=lambda r: (r.time, r.id), reverse=True)
    digest = cached_image
    if digest is None:
        same = [r for r in usable if input_digest and r.input_digest == input_digest]
        clean = [r for r in usable if not r.git_dirty] if commit else []
        pick = (same or clean)[:1]
        digest = pick[0].image_id if pick else None
    if digest is None:
        return Found(label=label, input_digest=input_digest)
    mine = [r for r in usable if r.image_id == digest]
    repos = sorted({str(Repository.parse(ref)) for r in mine for ref in r.pushed if ref.endswith("@" + digest)})
    return Found(label=label, input_digest=input_digest or (mine[0].input_digest if mine else None), digest=digest,
                 repositories=tuple(repos), in_cache=cached_image is not None, build=mine[0] if mine else None)


# -- what the registries hold ---------------------------------------------------------------------------------


class RegistryReader(Protocol):
    def tag_digest(self, ref: Reference) -> str | None: ...
    def has_manifest(self, ref: Reference, digest: str) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What the registries said: the digest of each tag asked about, and which repositories hold which digest."""

    tags: tuple[tuple[str, str | None], ...] = ()  # ("host/repo:tag", digest or None)
    holding: frozenset[tuple[str, str]] = frozenset()  # ("host/repo", digest) pairs that exist

    @functools.cached_property
    def _by_ref(self) -> dict[str, str | None]:
        return dict(self.tags)

    def tag(self, ref: str) -> str | None:
        return self._by_ref.get(ref)

    def holds(self, repo: str, digest: str) -> bool:
        return (repo, digest) in self.holding

    def merged(self, other: Observed) -> Observed:
        return Observed(tags=tuple(sorted({**dict(self.tags), **dict(other.tags)}.items())),
                        holding=self.holding | other.holding)


def observe(client: RegistryReader, *, refs: Iterable[str], holdings: Iterable[tuple[str, str]],
            parallelism: int = 8) -> Observed:
    """Ask the registries, in parallel; :class:`ReleaseRefused` listing every one that could not answer."""
    ref_list, hold_list = sorted(set(refs)), sorted(set(holdings))
    problems: list[str] = []

    def tag(ref: str) -> tuple[str, str | None]:
        try:
            return ref, client.tag_digest(Reference.parse(ref))
        except RegistryError as exc:
            problems.append(f"cannot read tag {ref}: {exc}")
            return ref, None

    def hold(pair: tuple[str, str]) -> bool:
        repo, digest = pair
        try:
            at = Repository.parse(repo)
            return client.has_manifest(Reference(at.host, at.path, digest), digest)
        except RegistryError as exc:
            problems.append(f"cannot check {repo}@{digest}: {exc}")
            return False

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        tags = list(pool.map(tag, ref_list))
        held = list(pool.map(hold, hold_list))
    if problems:
        raise ReleaseRefused(sorted(problems), what="go on without knowing what the registries hold")
    return Observed(tags=tuple(tags), holding=frozenset(p for p, ok in zip(hold_list, held) if ok))


# -- the plan -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TagChange:
    ref: str  # host/repo:tag
    before: str | None  # the digest the tag pointed at (None: a new tag)


@dataclass(frozen=True, kw_only=True)
class Step:
    """Make ``dest`` hold the image and point the changed tags at it."""

    dest: str  # host/repo
    via: str  # tag: dest holds it | registry: copy from ``source`` | engine: push it | cache: restore, push
    changes: tuple[TagChange, ...]
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class TargetPlan:
    label: str
    digest: str
    input_digest: str | None
    steps: tuple[Step, ...]
    refs: tuple[str, ...]  # every ref that points at the image once done (the record's tags)
    repositories: tuple[str, ...]  # every release repository holding it once done (the record's pushed)
    kept: tuple[str, ...] = ()  # floating tags left at a newer release, with why
    recorded: bool = False  # its history record exists already
    build: HistoryRecord | None = None

    @property
    def changes(self) -> tuple[TagChange, ...]:
        return tuple(c for s in self.steps for c in s.changes)


@dataclass(frozen=True, kw_only=True)
class ReleasePlan:
    kind: str  # release | promote
    version: Version | None
    targets: tuple[TargetPlan, ...]
    to_build: tuple[str, ...] = ()  # labels --build-missing builds first (the plan is made again after)
    git_tag: str | None = None  # the annotated tag to create at HEAD

    @property
    def nothing_to_do(self) -> bool:
        return not self.to_build and not self.git_tag and all(not t.steps and t.recorded for t in self.targets)


@dataclass(frozen=True, kw_only=True)
class Want:
    """One target to release: its image, the release repositories (in order) and the tags."""

    found: Found
    repositories: tuple[str, ...]
    tags: tuple[ReleaseTag, ...]
    immutable: frozenset[str] = frozenset()  # repositories whose registry never moves a tag


@dataclass(frozen=True, kw_only=True)
class GitState:
    commit: str  # HEAD ("" outside git)
    dirty: bool
    tag_commit: str | None = None  # where the tag named like the version points, if it exists


def plan_release(wants: Sequence[Want], observed: Observed, *, version: Version,
                 releases: Mapping[str, Sequence[HistoryRecord]], git: GitState, allow_dirty: bool = False,
                 build_missing: bool = False, git_tag: bool = False) -> ReleasePlan:
    """Decide every tag change of a release, or refuse with every problem (:class:`ReleaseRefused`).

    ``releases``: each label's release records (which release set a floating tag, and whether this one is
    recorded). Pure: the facts come in, nothing is read or written.
    """
    problems: list[str] = []
    if not git.commit and not allow_dirty:
        problems.append("the workspace is not in a git repository with a commit: a release records the commit "
                        "it ships (commit first, or pass --allow-dirty)")
    elif git.dirty and not allow_dirty:
        problems.append("the work tree has uncommitted changes: the release would name a commit that does not "
                        "hold what is released (commit or stash them, or pass --allow-dirty)")
    if git_tag:
        if not git.commit:
            problems.append(f"--git-tag: no commit to tag {version.text} at")
        elif git.tag_commit is not None and git.tag_commit != git.commit:
            problems.append(f"--git-tag: git tag {version.text} exists at commit {git.tag_commit[:12]}, not at "
                            f"HEAD {git.commit[:12]}")
    to_build: list[str] = []
    targets: list[TargetPlan] = []
    for want in wants:
        found = want.found
        if found.digest is None:
            if build_missing:
                to_build.append(found.label)
            else:
                problems.append(f"{found.label}: no image for this commit (no target-cache entry for its inputs "
                                f"{(found.input_digest or '?')[:19]}, no push record of commit {git.commit[:12] or '-'})"
                                f"; build and push it first, or pass --build-missing")
            continue
        records = releases.get(found.label, ())
        plan, found_problems = _plan_target(want, found.digest, observed, version=version, records=records)
        problems += found_problems
        targets.append(plan)
    if problems:
        raise ReleaseRefused(problems)
    tag_needed = git_tag and git.tag_commit is None
    return ReleasePlan(kind="release", version=version, targets=tuple(targets), to_build=tuple(to_build),
                       git_tag=version.text if tag_needed else None)


def _plan_target(want: Want, digest: str, observed: Observed, *, version: Version,
                 records: Sequence[HistoryRecord]) -> tuple[TargetPlan, list[str]]:
    found = want.found
    problems: list[str] = []
    steps: list[Step] = []
    refs: list[str] = []
    kept: list[str] = []
    held: list[str] = []
    # Any repository holding the image can be copied from: where it was pushed, and release repositories
    # holding it from an earlier (or interrupted) release.
    sources = [r for r in dict.fromkeys((*found.repositories, *want.repositories)) if observed.holds(r, digest)]
    for repo in want.repositories:
        changes: list[TagChange] = []
        for rt in want.tags:
            ref = f"{repo}:{rt.tag}"
            current = observed.tag(ref)
            if current == digest:
                refs.append(ref)
                continue
            if current is not None:
                if rt.pinned or repo in want.immutable:
                    why = "its registry's tags are immutable" if not rt.pinned else "a release never moves it"
                    problems.append(f"{found.label}: tag {ref} already points at {current}; this release's image "
                                    f"is {digest} ({why})")
                    continue
                newer = _newer_release(records, ref, current, version)
                if newer:
                    kept.append(f"{ref} stays at {current} (release {newer} is newer)")
                    continue
            changes.append(TagChange(ref=ref, before=current))
            refs.append(ref)
        holds = observed.holds(repo, digest) or repo in held
        if changes:
            step = _step(repo, tuple(changes), holds=holds, sources=sources, found=found)
            if step is None:
                problems.append(f"{found.label}: its image {digest} is in no registry that can be reached, not in "
                                f"the engine and not in the target cache; build it again (--build-missing)")
            else:
                steps.append(step)
                holds = True
        if holds:
            held.append(repo)
            if repo not in sources:
                sources.append(repo)
    recorded = any(r.kind == "release" and r.release_version == version.text and r.image_id == digest
                   for r in records)
    return TargetPlan(label=found.label, digest=digest, input_digest=found.input_digest, steps=tuple(steps),
                      refs=tuple(sorted(refs)), repositories=tuple(sorted(held)), kept=tuple(kept),
                      recorded=recorded, build=found.build), problems


def _step(repo: str, changes: tuple[TagChange, ...], *, holds: bool, sources: Sequence[str],
          found: Found) -> Step | None:
    if holds:
        return Step(dest=repo, via="tag", changes=changes)
    if sources:
        host = Repository.parse(repo).host  # same host first: blobs are mounted, not sent
        source = sorted(sources, key=lambda s: Repository.parse(s).host != host)[0]
        return Step(dest=repo, via="registry", source=source, changes=changes)
    if found.in_engine:
        return Step(dest=repo, via="engine", changes=changes)
    if found.in_cache:
        return Step(dest=repo, via="cache", changes=changes)
    return None


def _newer_release(records: Sequence[HistoryRecord], ref: str, current: str, version: Version) -> str | None:
    """The version of the newer release that put the floating tag ``ref`` on ``current``, if one did."""
    for r in sorted(records, key=lambda r: (r.time, r.id), reverse=True):
        if r.kind != "release" or r.image_id != current or ref not in r.tags or not r.release_version:
            continue
        try:
            theirs = parse_version(r.release_version)
        except ReleaseInputError:
            return None
        if version.semver and theirs.precedence() > version.precedence():
            return r.release_version
        return None
    return None


@dataclass(frozen=True, kw_only=True)
class PromoteWant:
    label: str
    source: str  # host/repo in the --from registry
    dest: str  # host/repo in the --to registry
    tags: tuple[str, ...]
    immutable: bool = False  # the --to registry never moves a tag


def plan_promote(wants: Sequence[PromoteWant], observed: Observed, *, move: frozenset[str] = frozenset(),
                 history: Mapping[str, Sequence[HistoryRecord]] | None = None) -> ReleasePlan:
    """Copy what each target's tags point at in the source registry to the destination, by digest.

    Every tag must exist in the source and all of a target's tags must agree on one digest. A tag that
    points at another digest in the destination is refused unless it is in ``move`` (and the registry's
    tags are not immutable). ``observed`` must know the source tags, the destination tags, and whether the
    destination holds each digest. ``history``: each label's records (is this promotion recorded already,
    and which commit built the image?).
    """
    problems: list[str] = []
    targets: list[TargetPlan] = []
    for want in wants:
        digests = {tag: observed.tag(f"{want.source}:{tag}") for tag in want.tags}
        missing = sorted(t for t, d in digests.items() if d is None)
        if missing:
            problems.append(f"{want.label}: {', '.join(f'{want.source}:{t}' for t in missing)} does not exist "
                            f"(choose tags with --tag)")
            continue
        distinct = sorted({d for d in digests.values() if d})
        if len(distinct) > 1:
            problems.append(f"{want.label}: its tags in {want.source} point at different images ("
                            + ", ".join(f"{t} -> {d}" for t, d in sorted(digests.items()))
                            + "); promote one image at a time with --tag")
            continue
        digest = distinct[0]
        changes: list[TagChange] = []
        refs: list[str] = []
        for tag in want.tags:
            ref = f"{want.dest}:{tag}"
            current = observed.tag(ref)
            if current is not None and current != digest and (tag not in move or want.immutable):
                hint = "its registry's tags are immutable" if want.immutable else f"pass --move {tag} to move it"
                problems.append(f"{want.label}: tag {ref} already points at {current}; {want.source}:{tag} is "
                                f"{digest} ({hint})")
                continue
            refs.append(ref)
            if current != digest:
                changes.append(TagChange(ref=ref, before=current))
        steps: tuple[Step, ...] = ()
        if changes:
            holds = observed.holds(want.dest, digest)
            steps = (Step(dest=want.dest, via="tag" if holds else "registry", source=None if holds else want.source,
                          changes=tuple(changes)),)
        pushed = {f"{want.dest}@{digest}"}
        records = (history or {}).get(want.label, ())
        recorded = any(r.kind == "push" and r.image_id == digest and pushed <= set(r.pushed) and set(refs) <= set(r.tags)
                       for r in records)
        made = sorted((r for r in records if r.image_id == digest and r.kind in ("build", "push") and r.git_commit),
                      key=lambda r: (r.kind != "build", r.cache != "built", r.time))  # the build that made it
        build = made[0] if made else None
        targets.append(TargetPlan(label=want.label, digest=digest, input_digest=build.input_digest if build else None,
                                  steps=steps, refs=tuple(sorted(refs)), repositories=(want.dest,),
                                  recorded=recorded, build=build))
    if problems:
        raise ReleaseRefused(problems, what="promote")
    return ReleasePlan(kind="promote", version=None, targets=tuple(targets))


def describe(plan: ReleasePlan, *, dry_run: bool) -> list[str]:
    """The plan for people: per target its image, then each tag and how it gets there."""
    would = "would " if dry_run else ""
    lines: list[str] = []
    for label in plan.to_build:
        lines.append(f"{label}  no image for this commit: {would}build it first")
    for t in plan.targets:
        lines.append(f"{t.label}  {t.digest}")
        for step in t.steps:
            how = {"tag": "tag in place", "registry": f"copy by digest from {step.source}",
                   "engine": "push from the engine", "cache": "restore from the target cache, push"}[step.via]
            for c in step.changes:
                verb = "add" if c.before is None else f"move from {c.before[:19]}"
                lines.append(f"  {c.ref}  {would}{verb} ({how})")
        changed = {c.ref for c in t.changes}
        lines += [f"  {ref}  already there" for ref in t.refs if ref not in changed]
        lines += [f"  {note}" for note in t.kept]
        if not t.recorded:
            lines.append(f"  history: {would}record the {plan.kind if plan.kind == 'release' else 'push'}")
    if plan.git_tag:
        lines.append(f"git: {would}create the annotated tag {plan.git_tag} at HEAD")
    return lines


# -- doing it -------------------------------------------------------------------------------------------------


class Writer(Protocol):
    def tag(self, repo: Repository, digest: str, tags: tuple[str, ...], stats: CopyStats | None = None) -> CopyStats: ...
    def copy(self, src: Repository, dst: Repository, digest: str, tags: tuple[str, ...] = ()) -> CopyStats: ...


# (label, digest, ref, restore first from the target cache) -> None; raises on failure
PushLocal = Callable[[str, str, Reference, bool], None]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    label: str
    error: str | None = None
    done: tuple[str, ...] = ()  # refs this run pointed at the image
    sent: int = 0  # blobs sent between registries

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(plan: ReleasePlan, *, writer: Writer, reader: RegistryReader, push_local: PushLocal,
            parallelism: int = 4) -> list[Outcome]:
    """Carry out every step, targets in parallel; then check each release tag in its registry.

    A failed target does not stop the others (rerunning completes it); its outcome holds the error.
    """
    def one(t: TargetPlan) -> Outcome:
        done: list[str] = []
        sent = 0
        try:
            for step in t.steps:
                dest = Repository.parse(step.dest)
                tags = tuple(Reference.parse(c.ref).tag for c in step.changes)
                if step.via == "tag":
                    writer.tag(dest, t.digest, tags)
                elif step.via == "registry":
                    assert step.source is not None
                    sent += writer.copy(Repository.parse(step.source), dest, t.digest, tags).blobs_sent
                else:
                    push_local(t.label, t.digest, dest.tagged(tags[0]), step.via == "cache")
                    writer.tag(dest, t.digest, tags[1:])
                done += [c.ref for c in step.changes]
            for ref in t.refs:  # nothing is recorded that the registry does not hold
                now = reader.tag_digest(Reference.parse(ref))
                if now != t.digest:
                    raise RegistryError(f"{ref} points at {now or 'nothing'} afterwards, not {t.digest}")
        except (RegistryError, PushError, ImgbuildError) as exc:
            return Outcome(label=t.label, error=str(exc), done=tuple(done), sent=sent)
        return Outcome(label=t.label, done=tuple(done), sent=sent)

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        return list(pool.map(one, plan.targets))


def record_for(t: TargetPlan, *, plan: ReleasePlan, target: Target, git: GitInfo, ci: CIRun | None, workspace: str,
               time: str) -> HistoryRecord:
    """The history record of a finished target: kind ``release`` (with the version), or ``push`` for a promotion.

    ``tags`` are every release reference pointing at the image, ``pushed`` the repositories holding it by
    digest. A release names the commit released (HEAD); a promotion names the commit that built the image
    when the history knows it, else none.
    """
    release = plan.kind == "release"
    build = t.build
    commit = (git.sha or None) if release else (build.git_commit if build else None)
    return HistoryRecord(
        kind="release" if release else "push", time=time, label=t.label, input_digest=t.input_digest,
        image_id=t.digest, manifest_digest=t.digest, pushed=tuple(f"{r}@{t.digest}" for r in t.repositories),
        tags=t.refs, git_commit=commit,
        git_branch=(git.branch or None) if release else (build.git_branch if build else None),
        git_dirty=git.dirty if release else bool(build and build.git_dirty),
        build_args=build.build_args if build and not release else target.build_args,
        secret_ids=build.secret_ids if build and not release else tuple(s.id for s in target.secrets),
        ci_provider=ci.provider if ci else None, ci_run_id=ci.run_id if ci else None,
        ci_run_url=ci.run_url if ci else None,
        release_version=plan.version.text if release and plan.version else None, workspace=workspace,
    )
