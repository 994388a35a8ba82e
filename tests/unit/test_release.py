"""Release and promote: versions, tags, finding the image, the plan and its refusals, execution and records,
and the Registry v2 copy, all with fakes (no registry, no engine, no process)."""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import pytest

from imgbuild.errors import Location
from imgbuild.git import GitInfo
from imgbuild.history.record import HistoryRecord
from imgbuild.labels import Label
from imgbuild.model import Target
from imgbuild.registry import Reference, RegistryError
from imgbuild.regcopy import BlobMounts, Copier, CopyStats, Opened, Repository
from imgbuild.release import (DEFAULT_TAGS, Found, GitState, Observed, PromoteWant, ReleaseInputError,
                              ReleasePlan, ReleaseRefused, ReleaseSettings, ReleaseTag, TargetPlan, Version, Want,
                              check_templates, choose_image, describe, execute, observe, parse_version,
                              plan_promote, plan_release, record_for, release_tags, settings_from)
from imgbuild.tags import TagContext

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
KEY = "sha256:" + "a" * 64
SHA = "c" * 40
OLD_SHA = "d" * 40
REG = "localhost:5000/team/web"
REL = "registry.example.com/rel/web"
CTX = TagContext(git=GitInfo(sha=SHA, branch="main"), now=datetime(2024, 5, 1, tzinfo=timezone.utc))
CLEAN = GitState(commit=SHA, dirty=False)
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeRegistries, sha


# -- versions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, tag, pre", [
    ("1.2.3", "1.2.3", ""),
    ("v1.2.3", "1.2.3", ""),
    ("0.0.0", "0.0.0", ""),
    ("1.2.3-rc.1", "1.2.3-rc.1", "rc.1"),
    ("v2.0.0-alpha-1.x", "2.0.0-alpha-1.x", "alpha-1.x"),
    ("1.2.3+build.5", "1.2.3_build.5", ""),
    ("1.0.0-beta+exp.sha.5114f85", "1.0.0-beta_exp.sha.5114f85", "beta"),
])
def test_semantic_versions_and_their_image_tag(text: str, tag: str, pre: str) -> None:
    v = parse_version(text)
    assert (v.text, v.tag, v.semver, v.prerelease) == (text, tag, True, pre)


@pytest.mark.parametrize("text", ["1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "latest", "V1.2.3",
                                  "1.2.3+", "", " 1.2.3", "1.2.3 "])
def test_not_semantic_versions_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ReleaseInputError, match="not a semantic version") as info:
        parse_version(text)
    assert "--no-semver" in str(info.value) and info.value.exit_code == 2


def test_no_semver_accepts_any_docker_tag_only() -> None:
    assert parse_version("nightly-2024.05", semver=False) == Version(text="nightly-2024.05", tag="nightly-2024.05",
                                                                      semver=False)
    assert parse_version("v1.2.3", semver=False).semver  # still recognized (and its v still dropped)
    for bad in ("-x", ".x", "a/b", "a:b", "a+b", "x" * 129, ""):
        with pytest.raises(ReleaseInputError, match="not a valid Docker tag"):
            parse_version(bad, semver=False)
    with pytest.raises(ReleaseInputError, match="git tag"):
        parse_version("a..b", semver=False)


def test_semver_precedence_follows_the_spec() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    keys = [parse_version(v).precedence() for v in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert parse_version("1.0.0+a").precedence() == parse_version("v1.0.0+b").precedence()


# -- tags -------------------------------------------------------------------------------------------------


def test_default_tags_pin_the_version_and_float_the_others() -> None:
    assert release_tags(None, parse_version("v1.4.2"), CTX) == (
        ReleaseTag(tag="1.4.2", pinned=True), ReleaseTag(tag="1.4", pinned=False),
        ReleaseTag(tag="latest", pinned=False))
    assert DEFAULT_TAGS == ("{version}", "{version.major}.{version.minor}", "latest")


def test_a_prerelease_gets_no_default_floating_tag_but_explicit_ones_apply() -> None:
    pre = parse_version("2.0.0-rc.1")
    assert release_tags(None, pre, CTX) == (ReleaseTag(tag="2.0.0-rc.1", pinned=True),)
    assert [t.tag for t in release_tags(("v{version}", "rc", "{git.short_sha}"), pre, CTX)] == [
        "v2.0.0-rc.1", "rc", SHA[:12]]


def test_free_form_versions_default_to_version_and_latest() -> None:
    tags = release_tags(None, parse_version("nightly", semver=False), CTX)
    assert [(t.tag, t.pinned) for t in tags] == [("nightly", True), ("latest", False)]


def test_templates_are_checked_rendered_and_deduplicated() -> None:
    with pytest.raises(ReleaseInputError, match=r"unknown placeholder \{versoin\}.*did you mean \{version\}"):
        check_templates(["{versoin}"])
    with pytest.raises(ReleaseInputError, match="renders to nothing"):
        release_tags(("{env.NOT_SET}",), parse_version("1.0.0"), CTX)
    tags = release_tags(("{version}", "{version.major}.{version.minor}.{version.patch}", "latest", "latest"),
                        parse_version("1.0.0"), CTX)
    assert [t.tag for t in tags] == ["1.0.0", "latest"]


def test_settings_come_from_the_workspace_release_section(make_ws: WorkspaceFactory) -> None:
    from imgbuild.specfiles.packages import load_workspace

    plain = load_workspace(make_ws({"imgbuild.yaml": "version: 1\n"}))
    assert settings_from(plain.config) == ReleaseSettings()
    root = make_ws({"imgbuild.yaml": "version: 1\nregistries: {prod: {url: r.io/a}}\n"
                                     "release: {tags: ['v{version}'], registries: [prod], semver: false}\n"})
    assert settings_from(load_workspace(root).config) == ReleaseSettings(tags=("v{version}",),
                                                                         registries=("prod",), semver=False)


# -- finding the image --------------------------------------------------------------------------------------


def push(digest: str, *, commit: str = SHA, key: str | None = KEY, repos: tuple[str, ...] = (REG,), dirty: bool = False,
         time: str = "2024-05-01T10:00:00Z", label: str = "//web:web") -> HistoryRecord:
    return HistoryRecord(kind="push", time=time, label=label, image_id=digest, input_digest=key, git_commit=commit,
                         git_dirty=dirty, pushed=tuple(f"{r}@{digest}" for r in repos),
                         tags=tuple(f"{r}:dev" for r in repos))


def test_the_cache_entry_decides_and_push_records_say_where() -> None:
    records = [push(D1, repos=(REG, REL)), push(D2, time="2024-05-02T00:00:00Z")]
    found = choose_image("//web:web", input_digest=KEY, cached_image=D1, commit=SHA, pushes=records, allow_dirty=False)
    assert (found.digest, found.repositories, found.in_cache) == (D1, (REG, REL), True)
    assert found.build == records[0]


def test_without_an_entry_the_commits_push_record_decides() -> None:
    other_key = "sha256:" + "b" * 64
    records = [push(D1, key=other_key, time="2024-05-03T00:00:00Z"), push(D2, time="2024-05-01T00:00:00Z"),
               push(D3, commit=OLD_SHA, time="2024-05-04T00:00:00Z")]
    found = choose_image("//web:web", input_digest=KEY, cached_image=None, commit=SHA, pushes=records,
                         allow_dirty=False)
    assert (found.digest, found.in_cache) == (D2, False)  # same inputs first, whatever the time
    found = choose_image("//web:web", input_digest="sha256:" + "e" * 64, cached_image=None, commit=SHA,
                         pushes=records, allow_dirty=False)
    assert found.digest == D1  # else the newest of this commit; never another commit's
    assert choose_image("//web:web", input_digest=KEY, cached_image=None, commit=SHA, pushes=[records[2]],
                        allow_dirty=False).digest is None


def test_dirty_push_records_count_only_when_allowed_and_outside_git_only_same_inputs() -> None:
    dirty = [push(D1, dirty=True)]
    assert choose_image("//web:web", input_digest=KEY, cached_image=None, commit=SHA, pushes=dirty,
                        allow_dirty=False).digest is None
    assert choose_image("//web:web", input_digest=KEY, cached_image=None, commit=SHA, pushes=dirty,
                        allow_dirty=True).digest == D1
    anywhere = [push(D1, commit=OLD_SHA, key="sha256:" + "f" * 64), push(D2, commit=OLD_SHA)]
    assert choose_image("//web:web", input_digest=KEY, cached_image=None, commit="", pushes=anywhere,
                        allow_dirty=True).digest == D2


# -- the release plan ----------------------------------------------------------------------------------------


def want(*, digest: str | None = D1, repos: tuple[str, ...] = (REG,), version: str = "1.4.2",
         pushed: tuple[str, ...] = (REG,), engine: bool = False, cache: bool = True,
         immutable: frozenset[str] = frozenset(), label: str = "//web:web") -> Want:
    found = Found(label=label, input_digest=KEY, digest=digest, repositories=pushed if digest else (),
                  in_engine=engine, in_cache=cache and digest is not None)
    return Want(found=found, repositories=repos, tags=release_tags(None, parse_version(version), CTX),
                immutable=immutable)


def seen(tags: dict[str, str | None] | None = None, holding: set[tuple[str, str]] | None = None) -> Observed:
    return Observed(tags=tuple((tags or {}).items()), holding=frozenset(holding or set()))


def release(wants: list[Want], observed: Observed, version: str = "1.4.2", **kw: object) -> ReleasePlan:
    kw.setdefault("git", CLEAN)
    return plan_release(wants, observed, version=parse_version(version), releases=kw.pop("releases", {}),  # type: ignore[arg-type]
                        **kw)  # type: ignore[arg-type]


def released(digest: str, version: str, refs: tuple[str, ...], *, time: str = "2024-04-01T00:00:00Z") -> HistoryRecord:
    return HistoryRecord(kind="release", time=time, label="//web:web", image_id=digest, release_version=version,
                         tags=refs, pushed=(f"{REG}@{digest}",))


def test_tags_are_added_in_place_where_the_image_was_pushed() -> None:
    plan = release([want()], seen(holding={(REG, D1)}))
    (t,) = plan.targets
    assert [(s.dest, s.via) for s in t.steps] == [(REG, "tag")]
    assert [c.ref for c in t.changes] == [f"{REG}:1.4.2", f"{REG}:1.4", f"{REG}:latest"]
    assert t.refs == tuple(sorted(c.ref for c in t.changes)) and t.repositories == (REG,)
    assert not t.recorded and not plan.nothing_to_do and plan.git_tag is None


def test_a_rerun_changes_nothing_and_records_nothing() -> None:
    refs = (f"{REG}:1.4.2", f"{REG}:1.4", f"{REG}:latest")
    plan = release([want()], seen({r: D1 for r in refs}, {(REG, D1)}),
                   releases={"//web:web": [released(D1, "1.4.2", refs)]})
    assert plan.nothing_to_do and plan.targets[0].recorded and plan.targets[0].steps == ()


def test_an_interrupted_release_is_completed_and_recorded_once() -> None:
    plan = release([want()], seen({f"{REG}:1.4.2": D1}, {(REG, D1)}))
    (t,) = plan.targets
    assert [c.ref for c in t.changes] == [f"{REG}:1.4", f"{REG}:latest"]
    assert f"{REG}:1.4.2" in t.refs and not t.recorded
    assert "already there" in "\n".join(describe(plan, dry_run=False))


def test_a_pinned_tag_on_another_image_is_refused_with_both_digests_and_every_problem() -> None:
    other = want(label="//api:api", repos=("localhost:5000/team/api",), pushed=("localhost:5000/team/api",))
    with pytest.raises(ReleaseRefused) as info:
        release([want(), other], seen({f"{REG}:1.4.2": D2, "localhost:5000/team/api:1.4.2": D3},
                                      {(REG, D1), ("localhost:5000/team/api", D1)}))
    assert info.value.exit_code == 1 and len(info.value.problems) == 2
    assert f"//web:web: tag {REG}:1.4.2 already points at {D2}; this release's image is {D1}" in str(info.value)
    assert "nothing was changed" in str(info.value)


def test_floating_tags_move_unless_a_newer_release_holds_them() -> None:
    plan = release([want()], seen({f"{REG}:latest": D2, f"{REG}:1.4": D2}, {(REG, D1)}),
                   releases={"//web:web": [released(D2, "1.4.1", (f"{REG}:latest", f"{REG}:1.4"))]})
    moved = {c.ref: c.before for c in plan.targets[0].changes}
    assert moved[f"{REG}:latest"] == D2 and moved[f"{REG}:1.4"] == D2 and moved[f"{REG}:1.4.2"] is None
    assert "move from" in "\n".join(describe(plan, dry_run=True))

    # 1.3.9 after 1.4.1: latest stays at 1.4.1's image; 1.3 is new
    plan = release([want(version="1.3.9")], seen({f"{REG}:latest": D2}, {(REG, D1)}), version="1.3.9",
                   releases={"//web:web": [released(D2, "1.4.1", (f"{REG}:latest",))]})
    (t,) = plan.targets
    assert [c.ref for c in t.changes] == [f"{REG}:1.3.9", f"{REG}:1.3"]
    assert t.kept == (f"{REG}:latest stays at {D2} (release 1.4.1 is newer)",) and f"{REG}:latest" not in t.refs


def test_nothing_moves_in_a_registry_with_immutable_tags() -> None:
    with pytest.raises(ReleaseRefused, match="immutable"):
        release([want(immutable=frozenset({REG}))], seen({f"{REG}:latest": D2}, {(REG, D1)}))


def test_another_registry_gets_a_copy_by_digest_from_one_holding_the_image() -> None:
    mirror = "localhost:5000/mirror/web"
    plan = release([want(repos=(REL, mirror))], seen(holding={(REG, D1)}))
    (t,) = plan.targets
    assert [(s.dest, s.via, s.source) for s in t.steps] == [(REL, "registry", REG), (mirror, "registry", REG)]
    assert t.repositories == tuple(sorted((REL, mirror)))


def test_a_local_only_image_is_pushed_once_then_copied() -> None:
    plan = release([want(pushed=(), engine=True, repos=(REL, REG))], seen())
    assert [(s.dest, s.via, s.source) for s in plan.targets[0].steps] == [(REL, "engine", None),
                                                                           (REG, "registry", REL)]
    plan = release([want(pushed=(), engine=False, cache=True)], seen())
    assert plan.targets[0].steps[0].via == "cache"


def test_a_release_registry_holding_the_image_is_a_source_for_the_others() -> None:
    plan = release([want(pushed=(), cache=False, repos=(REL, REG))], seen(holding={(REG, D1)}))
    assert [(s.dest, s.via, s.source) for s in plan.targets[0].steps] == [(REL, "registry", REG), (REG, "tag", None)]


def test_an_image_nowhere_reachable_is_refused() -> None:
    with pytest.raises(ReleaseRefused, match="in no registry that can be reached"):
        release([want(cache=False)], seen())  # the push record's registry no longer holds it


def test_a_target_without_an_image_is_refused_unless_it_is_to_be_built() -> None:
    with pytest.raises(ReleaseRefused, match=r"//web:web: no image for this commit.*--build-missing"):
        release([want(digest=None)], seen())
    plan = release([want(digest=None), want(label="//api:api", repos=("localhost:5000/team/api",),
                                            pushed=("localhost:5000/team/api",))],
                   seen(holding={("localhost:5000/team/api", D1)}), build_missing=True)
    assert plan.to_build == ("//web:web",) and [t.label for t in plan.targets] == ["//api:api"]
    assert "no image for this commit: would build it first" in "\n".join(describe(plan, dry_run=True))


def test_the_work_tree_must_be_clean_and_committed() -> None:
    with pytest.raises(ReleaseRefused, match="uncommitted changes.*--allow-dirty"):
        release([want()], seen(holding={(REG, D1)}), git=GitState(commit=SHA, dirty=True))
    with pytest.raises(ReleaseRefused, match="not in a git repository"):
        release([want()], seen(holding={(REG, D1)}), git=GitState(commit="", dirty=False))
    assert release([want()], seen(holding={(REG, D1)}), git=GitState(commit=SHA, dirty=True), allow_dirty=True)


def test_the_git_tag_is_created_once_and_never_moved() -> None:
    obs = seen(holding={(REG, D1)})
    assert release([want()], obs, git_tag=True).git_tag == "1.4.2"
    assert release([want()], obs, git_tag=True, git=GitState(commit=SHA, dirty=False, tag_commit=SHA)).git_tag is None
    with pytest.raises(ReleaseRefused, match=f"git tag v1.4.2 exists at commit {OLD_SHA[:12]}, not at HEAD"):
        release([want(version="v1.4.2")], obs, version="v1.4.2", git_tag=True,
                git=GitState(commit=SHA, dirty=False, tag_commit=OLD_SHA))


# -- observing ------------------------------------------------------------------------------------------------


class FakeReader:
    def __init__(self, tags: dict[str, str], held: set[tuple[str, str]], broken: str = "") -> None:
        self.tags = tags
        self.held = held
        self.broken = broken

    def tag_digest(self, ref: Reference) -> str | None:
        if self.broken and ref.host == self.broken:
            raise RegistryError(f"{ref.host}: connection refused")
        return self.tags.get(str(ref))

    def has_manifest(self, ref: Reference, digest: str) -> bool:
        return (f"{ref.host}/{ref.repository}", digest) in self.held


def test_observe_asks_every_registry_and_refuses_when_one_cannot_answer() -> None:
    reader = FakeReader({f"{REG}:1.4.2": D1}, {(REG, D1)})
    obs = observe(reader, refs=[f"{REG}:1.4.2", f"{REG}:latest"], holdings=[(REG, D1), (REL, D1)])
    assert obs.tag(f"{REG}:1.4.2") == D1 and obs.tag(f"{REG}:latest") is None
    assert obs.holds(REG, D1) and not obs.holds(REL, D1)
    with pytest.raises(ReleaseRefused, match="cannot read tag registry.example.com/rel/web:1.4.2"):
        observe(FakeReader({}, set(), broken="registry.example.com"), refs=[f"{REL}:1.4.2"], holdings=[])


# -- promote --------------------------------------------------------------------------------------------------

STAGING = "localhost:5000/staging/web"
PROD = "registry.example.com/prod/web"


def promoting(tags: tuple[str, ...] = ("1.4.2", "latest"), *, immutable: bool = False) -> PromoteWant:
    return PromoteWant(label="//web:web", source=STAGING, dest=PROD, tags=tags, immutable=immutable)


def test_promote_copies_what_the_source_tags_point_at() -> None:
    obs = seen({f"{STAGING}:1.4.2": D1, f"{STAGING}:latest": D1})
    build = HistoryRecord(kind="build", time="2024-05-01T00:00:00Z", label="//web:web", image_id=D1, git_commit=OLD_SHA,
                          input_digest=KEY, cache="built")
    plan = plan_promote([promoting()], obs, history={"//web:web": [build]})
    (t,) = plan.targets
    assert [(s.dest, s.via, s.source) for s in t.steps] == [(PROD, "registry", STAGING)]
    assert t.refs == (f"{PROD}:1.4.2", f"{PROD}:latest") and t.build == build and not t.recorded
    plan = plan_promote([promoting()], obs.merged(seen(holding={(PROD, D1)})))
    assert plan.targets[0].steps[0].via == "tag"


def test_promote_refuses_missing_tags_disagreeing_tags_and_taken_tags() -> None:
    with pytest.raises(ReleaseRefused, match=f"{STAGING}:latest does not exist"):
        plan_promote([promoting()], seen({f"{STAGING}:1.4.2": D1}))
    with pytest.raises(ReleaseRefused, match="point at different images"):
        plan_promote([promoting()], seen({f"{STAGING}:1.4.2": D1, f"{STAGING}:latest": D2}))
    taken = seen({f"{STAGING}:1.4.2": D1, f"{STAGING}:latest": D1, f"{PROD}:latest": D2})
    with pytest.raises(ReleaseRefused, match=f"tag {PROD}:latest already points at {D2}.*--move latest"):
        plan_promote([promoting()], taken)
    plan = plan_promote([promoting()], taken, move=frozenset({"latest"}))
    assert {c.ref: c.before for c in plan.targets[0].changes}[f"{PROD}:latest"] == D2
    with pytest.raises(ReleaseRefused, match="immutable"):
        plan_promote([promoting(immutable=True)], taken, move=frozenset({"latest"}))


def test_a_promotion_already_recorded_is_not_recorded_again() -> None:
    obs = seen({f"{STAGING}:latest": D1, f"{PROD}:latest": D1}, {(PROD, D1)})
    done = HistoryRecord(kind="push", time="2024-05-01T00:00:00Z", label="//web:web", image_id=D1,
                         pushed=(f"{PROD}@{D1}",), tags=(f"{PROD}:latest", f"{PROD}:other"))
    plan = plan_promote([promoting(("latest",))], obs, history={"//web:web": [done]})
    assert plan.nothing_to_do


# -- execution and records ------------------------------------------------------------------------------------


class FakeWriter:
    def __init__(self, reader: FakeReader, *, fail: str = "") -> None:
        self.reader = reader
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def _set(self, repo: Repository, digest: str, tags: tuple[str, ...]) -> None:
        if self.fail and self.fail in str(repo):
            raise RegistryError(f"{repo.host}: HTTP 500")
        for tag in tags:
            self.reader.tags[f"{repo}:{tag}"] = digest

    def tag(self, repo: Repository, digest: str, tags: tuple[str, ...], stats: CopyStats | None = None) -> CopyStats:
        self.calls.append(("tag", str(repo), *tags))
        self._set(repo, digest, tags)
        return stats or CopyStats()

    def copy(self, src: Repository, dst: Repository, digest: str, tags: tuple[str, ...] = ()) -> CopyStats:
        self.calls.append(("copy", str(src), str(dst), *tags))
        self._set(dst, digest, tags)
        return CopyStats(blobs_sent=2)


def test_execute_follows_the_plan_and_checks_every_tag_afterwards() -> None:
    plan = release([want(pushed=(), engine=True, repos=(REL, REG))], seen())
    reader = FakeReader({}, set())
    writer = FakeWriter(reader)
    pushed: list[str] = []

    def push_local(label: str, digest: str, ref: Reference, restore: bool) -> None:
        pushed.append(f"{label} {ref} {restore}")
        reader.tags[str(ref)] = digest

    (outcome,) = execute(plan, writer=writer, reader=reader, push_local=push_local)
    assert outcome.ok and outcome.sent == 2 and len(outcome.done) == 6
    assert pushed == [f"//web:web {REL}:1.4.2 False"]
    assert writer.calls == [("tag", REL, "1.4", "latest"), ("copy", REL, REG, "1.4.2", "1.4", "latest")]


def test_a_failing_target_does_not_stop_the_others_and_a_wrong_tag_is_an_error() -> None:
    api = "localhost:5000/team/api"
    plan = release([want(), want(label="//api:api", repos=(api,), pushed=(api,))], seen(holding={(REG, D1), (api, D1)}))
    reader = FakeReader({}, set())
    outcomes = execute(plan, writer=FakeWriter(reader, fail="team/web"), reader=reader,
                       push_local=lambda *a: None)
    assert [(o.label, o.ok) for o in outcomes] == [("//web:web", False), ("//api:api", True)]
    assert "HTTP 500" in (outcomes[0].error or "")

    class Liar(FakeWriter):
        def tag(self, repo: Repository, digest: str, tags: tuple[str, ...],
                stats: CopyStats | None = None) -> CopyStats:
            return super().tag(repo, D3, tags, stats)

    reader = FakeReader({}, set())
    (outcome, _) = execute(plan, writer=Liar(reader), reader=reader, push_local=lambda *a: None)
    assert f"points at {D3} afterwards, not {D1}" in (outcome.error or "")


def target(label: str = "//web:web") -> Target:
    lb = Label.parse(label)
    return Target(label=lb, app=lb.name, spec_file="web/BUILD.yaml", location=Location(file="web/BUILD.yaml"),
                  dockerfile=Path("/ws/web/Dockerfile"), context=Path("/ws/web"), stage=None, image="web",
                  build_args=(("MODE", "prod"),), deps=(), cache=None, tags=("latest",), push=True,
                  registries=("local",), platforms=(), secrets=(), labels=())


def test_the_release_record_names_version_commit_tags_and_digests() -> None:
    plan = release([want(repos=(REG, REL))], seen(holding={(REG, D1)}))
    git = GitInfo(sha=SHA, branch="main")
    rec = record_for(plan.targets[0], plan=plan, target=target(), git=git, ci=None, workspace="ws",
                     time="2024-05-01T00:00:00Z")
    assert (rec.kind, rec.release_version, rec.image_id, rec.git_commit, rec.input_digest) == (
        "release", "1.4.2", D1, SHA, KEY)
    assert rec.pushed == tuple(sorted((f"{REL}@{D1}", f"{REG}@{D1}")))
    assert len(rec.tags) == 6 and rec.build_args == (("MODE", "prod"),)


def test_a_promotion_record_is_a_push_naming_the_commit_that_built_the_image() -> None:
    build = HistoryRecord(kind="build", time="2024-05-01T00:00:00Z", label="//web:web", image_id=D1,
                          git_commit=OLD_SHA, git_branch="release", input_digest=KEY, cache="built",
                          build_args=(("MODE", "staging"),))
    plan = plan_promote([promoting()], seen({f"{STAGING}:1.4.2": D1, f"{STAGING}:latest": D1}),
                        history={"//web:web": [build]})
    rec = record_for(plan.targets[0], plan=plan, target=target(), git=GitInfo(sha=SHA), ci=None, workspace="ws",
                     time="2024-05-02T00:00:00Z")
    assert (rec.kind, rec.release_version, rec.git_commit, rec.git_branch) == ("push", None, OLD_SHA, "release")
    assert rec.pushed == (f"{PROD}@{D1}",) and rec.build_args == (("MODE", "staging"),)


# -- the Registry v2 copy ---------------------------------------------------------------------------------------


def test_copy_between_registries_sends_every_blob_and_keeps_the_digest() -> None:
    regs = FakeRegistries()
    digest = regs.image("localhost:5000", "team/web")
    copier = Copier(send=regs.send)
    stats = copier.copy(Repository.parse("localhost:5000/team/web"), Repository.parse("127.0.0.1:5000/rel/web"), digest,
                        ("1.4.2", "latest"))
    assert stats.manifests_put == 3 and stats.blobs_sent == 5 and stats.blobs_mounted == 0
    assert regs.manifests[("127.0.0.1:5000", "rel/web", "1.4.2")] == regs.manifests[("localhost:5000", "team/web", digest)]
    assert stats.tags_put == ["127.0.0.1:5000/rel/web:1.4.2", "127.0.0.1:5000/rel/web:latest"]
    again = copier.copy(Repository.parse("localhost:5000/team/web"), Repository.parse("127.0.0.1:5000/rel/web"), digest)
    assert (again.manifests_put, again.blobs_sent) == (0, 0)  # already there: only HEADs


def test_copy_within_a_registry_mounts_blobs_and_tag_copies_the_manifest() -> None:
    regs = FakeRegistries()
    digest = regs.image("localhost:5000", "team/web")
    copier = Copier(send=regs.send)
    stats = copier.copy(Repository.parse("localhost:5000/team/web"), Repository.parse("localhost:5000/rel/web"), digest)
    assert stats.blobs_mounted == 5 and stats.blobs_sent == 0
    regs.requests.clear()
    copier.tag(Repository.parse("localhost:5000/rel/web"), digest, ("v1",))
    assert regs.requests == ["GET localhost:5000/v2/rel/web/manifests/" + digest,
                             "PUT localhost:5000/v2/rel/web/manifests/v1"]
    with pytest.raises(RegistryError, match="does not exist"):
        copier.tag(Repository.parse("localhost:5000/rel/web"), D1, ("v1",))


def test_a_manifest_that_does_not_match_its_digest_is_refused() -> None:
    regs = FakeRegistries()
    digest = regs.image("localhost:5000", "team/web")
    regs.manifests[("localhost:5000", "team/web", digest)] = ("application/vnd.oci.image.index.v1+json", b"{}")
    with pytest.raises(RegistryError, match="whose digest is"):
        Copier(send=regs.send).tag(Repository.parse("localhost:5000/team/web"), digest, ("x",))


def test_a_bearer_challenge_is_answered_with_a_token() -> None:
    regs = FakeRegistries(token_host="registry.example.com")
    digest = regs.image("registry.example.com", "team/web")
    Copier(send=regs.send).tag(Repository.parse("registry.example.com/team/web"), digest, ("v1",))
    assert ("registry.example.com", "team/web", "v1") in regs.manifests
    assert any(r.startswith("GET auth.example.com/token") for r in regs.requests)


# -- the command line -------------------------------------------------------------------------------------------


def test_release_and_promote_are_registered_and_both_reach_this_module() -> None:
    from imgbuild.commands.release import add_arguments

    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace")
    sub = parser.add_subparsers(dest="command")
    add_arguments(sub, common)
    args = parser.parse_args(["release", "1.2.3", "//apps/...", "//web", "--tag", "v{version}", "--tag", "stable",
                              "--registry", "prod", "--git-tag", "--dry-run"])
    assert (args.command, args.verb, args.version, args.patterns) == ("release", "release", "1.2.3",
                                                                      ["//apps/...", "//web"])
    assert args.tag == ["v{version}", "stable"] and args.registry == ["prod"] and args.git_tag and args.dry_run
    assert not args.build_missing and not args.allow_dirty and not args.no_semver
    args = parser.parse_args(["promote", "//...", "--from", "staging", "--to", "prod", "--move", "latest"])
    assert (args.command, args.verb, args.source, args.dest, args.move, args.tag) == (
        "release", "promote", "staging", "prod", ["latest"], [])


def test_describe_says_how_each_tag_gets_there() -> None:
    plan = release([want(pushed=(), engine=True, repos=(REL, REG))], seen({f"{REG}:latest": D2}), git_tag=True)
    text = "\n".join(describe(plan, dry_run=True))
    assert f"{REL}:1.4.2  would add (push from the engine)" in text
    assert f"{REG}:latest  would move from {D2[:19]} (copy by digest from {REL})" in text
    assert "would record the release" in text and "would create the annotated tag 1.4.2" in text
    assert replace(plan, targets=(), git_tag=None).nothing_to_do
    assert isinstance(plan.targets[0], TargetPlan)


def test_parallel_pushes_send_a_shared_layer_once_and_mount_it_elsewhere(tmp_path: Path) -> None:
    """Images on one base pushed at once to different repositories: the base layer travels once."""
    regs = FakeRegistries()
    shared = b"base-layer" * 1000
    digests = []
    for i in range(2):
        config, own = f"config-{i}".encode(), f"layer-{i}".encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"digest": sha(config), "size": len(config)},
                               "layers": [{"digest": sha(shared), "size": len(shared)},
                                          {"digest": sha(own), "size": len(own)}]}).encode()
        for blob in (config, own, shared, manifest):
            (tmp_path / sha(blob).split(":")[1]).write_bytes(blob)
        digests.append(sha(manifest))
    uploads: list[str] = []

    def slow_send(method: str, url: str, headers: dict[str, str], data: bytes | IO[bytes] | None) -> Opened:
        if method == "PUT" and "/blobs/uploads/" in url:
            uploads.append(url)
            if sha(shared) in urllib.parse.unquote(url):
                time.sleep(0.2)  # the other push reaches the shared layer meanwhile
        return regs.send(method, url, headers, data)

    copier = Copier(send=slow_send)
    mounts = BlobMounts()
    with ThreadPoolExecutor(max_workers=2) as pool:
        stats = list(pool.map(lambda i: copier.push_blobs(tmp_path, Repository.parse(f"localhost:5000/team/app{i}"),
                                                          digests[i], ("v1",), mounts), range(2)))
    assert sum(1 for u in uploads if sha(shared) in urllib.parse.unquote(u)) == 1
    assert sorted(s.blobs_mounted for s in stats) == [0, 1]
    for i in range(2):
        assert regs.blobs[("localhost:5000", f"team/app{i}", sha(shared))] == shared
        assert regs.manifests[("localhost:5000", f"team/app{i}", "v1")][1] == (tmp_path / digests[i][7:]).read_bytes()
