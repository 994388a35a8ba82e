"""``--dry-run`` prints exactly the commands a build runs: the same argv the executor gets, cache arguments included."""

from __future__ import annotations

import io
import shlex
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from imgbuild.builds.executor import command
from imgbuild.builds.handoff import OciLayouts
from imgbuild.builds.layers import LayerCaches
from imgbuild.builds.progress import PlainProgress
from imgbuild.builds.actions import Action, Build, Cached, decide
from imgbuild.builds.request import local_tag
from imgbuild.builds.results import RunResult
from imgbuild.builds.run import CLAIM_TAG_PREFIX, BuildOptions, dry_run, execute
from imgbuild.builds.service import compute_inputs
from imgbuild.cache.targets import TargetCache
from imgbuild.digest import Inputs
from imgbuild.model import Target, Workspace
from imgbuild.plan import Plan
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.labels import parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages

FILES = {
    "imgbuild.yaml": """\
        version: 1
        defaults: {tags: [dev, '{git.branch}'], cache: here}
        cache_policies:
          here: {backend: local, path: .layer cache, mode: max}
          shared:
            backend: registry
            ref: localhost:5000/cache/layers
            scope: '{git.branch}'
            fallback_scopes: [main]
        """,
    "base/BUILD.yaml": "apps: {base: {build_args: {MOTTO: it's fine}}}\n",
    "base/Dockerfile": "FROM busybox:1.36\n",
    "api/BUILD.yaml": """\
        apps:
          api:
            deps: {BASE: //base}
            cache: shared
            platforms: [linux/amd64]
            secrets: [{id: pip, src: secrets/pip.conf}, {id: token, env: API_TOKEN}]
            labels: {org.opencontainers.image.title: The API}
        """,
    "api/Dockerfile": "ARG BASE\nFROM ${BASE}\n",
}
GIT = GitInfo(sha="f" * 40, branch="feature/x")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
ENV = {"API_TOKEN": "s3cr3t-value"}


def layers(root: Path, *, read_only: bool = False) -> LayerCaches:
    return LayerCaches(load_workspace(root), git=GIT, now=NOW, read_only=read_only, builder="ci", environ=ENV,
                       warn=lambda m: None, driver=lambda builder: "docker")


def contexts_sorted(argv: list[str]) -> list[str]:
    """``argv`` with its ``--build-context`` values in order once placeholders are replaced (they sort by name)."""
    at = [i + 1 for i, a in enumerate(argv) if a == "--build-context"]
    values = sorted(argv[i] for i in at)
    out = list(argv)
    for i, v in zip(at, values):
        out[i] = v
    return out


@pytest.mark.parametrize("no_cache,read_only,handoff", [(False, False, False), (True, False, False),
                                                        (False, True, False), (False, False, True)])
def test_dry_run_prints_the_argv_the_executor_runs(make_ws: WorkspaceFactory, no_cache: bool, read_only: bool,
                                                   handoff: bool) -> None:
    root = make_ws(FILES)
    ws = load_workspace(root)
    plan = make_plan(TargetGraph.build(ws), parse_patterns(["//api"]))
    # handoff: a builder that does not see the engine's images; dependencies go as OCI layouts, and only the
    # requested target is loaded into the engine
    layouts = OciLayouts(root / "oci") if handoff else None
    options = BuildOptions(parallelism=2, logs_dir=root / "logs", builder="ci", no_cache=no_cache, layouts=layouts,
                           load=frozenset({"//api:api"}))
    executor = FakeExecutor()
    result = execute(plan, ws, executor, images=FakeImages(), options=options, git=GIT, environ=ENV,
                     stop=threading.Event(), progress=PlainProgress(io.StringIO()),
                     layers=layers(root, read_only=read_only), now=NOW)
    assert result.ok
    ran = {r.label: contexts_sorted(command(r)) for r in executor.requests}
    claim = next(t for t in executor.request("//api:api").tags if CLAIM_TAG_PREFIX in t)
    run_id = claim.rpartition(CLAIM_TAG_PREFIX)[2]

    printed = dry_run(plan, ws, git=GIT, environ=ENV, options=options, layers=layers(root, read_only=read_only),
                      now=NOW, run_id=run_id)

    # A dependency's image exists only once it is built: the dry run names it where the build puts it.
    api_request = executor.request("//api:api")
    base_ref = dict(api_request.build_args)["BASE"]
    base_layout = dict(api_request.build_contexts).get("base", "")
    shown = {str(t.label): contexts_sorted(shlex.split(shlex.join(argv)
                                                       .replace("oci-layout://<layout of //base:base>", base_layout)
                                                       .replace("<image of //base:base>", base_ref)))
             for t, _, argv in printed if argv is not None}
    assert shown == ran
    if handoff:
        assert base_layout.startswith(f"oci-layout://{root}/oci/")
        assert f"type=oci,dest={root}/oci/.out-" in " ".join(shown["//base:base"])
        assert "--load" not in shown["//base:base"] and "--load" in shown["//api:api"]
    api = " ".join(shown["//api:api"])
    # what the dry run used to leave out: the layer caches, the metadata file, the run's own tag
    if no_cache:
        assert "--cache-from" not in api and "--no-cache" in api
    else:
        assert ("--cache-from type=registry,ref=localhost:5000/cache/layers:api-api-feature-x "
                "--cache-from type=registry,ref=localhost:5000/cache/layers:api-api-main") in api
    if read_only:
        assert "--cache-to" not in api
    else:
        assert "--cache-to type=registry,ref=localhost:5000/cache/layers:api-api-feature-x,mode=min" in api
        assert f"dest={root}/.layer cache/layers/feature-x/base-base,mode=max" in " ".join(shown["//base:base"])
    assert "--metadata-file" in api and f"api:{CLAIM_TAG_PREFIX}{run_id}" in api
    # secrets by id and path or variable name, never by value
    assert f"--secret id=pip,src={root}/secrets/pip.conf --secret id=token,env=API_TOKEN" in api
    assert "s3cr3t" not in repr(printed)


def test_dry_run_writes_nothing(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    ws = load_workspace(root)
    plan = make_plan(TargetGraph.build(ws), parse_patterns(["//..."]))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    printed = dry_run(plan, ws, git=GIT, environ=ENV, options=BuildOptions(parallelism=1, logs_dir=root / "logs"),
                      layers=layers(root), now=NOW)
    assert [str(t.label) for t, _, _ in printed] == ["//base:base", "//api:api"]
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert all(not Path(a).exists() for _, _, argv in printed for a in argv or () if a.endswith(".metadata.json"))


def test_after_a_build_the_dry_run_shows_what_is_cached_and_the_command_of_what_changed(
        make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\ndefaults: {tags: [dev, 'in-{input_digest}']}\n",
                    "base/BUILD.yaml": "apps: {base: {}}\n", "base/Dockerfile": "FROM busybox:1.36\n",
                    "api/BUILD.yaml": "apps: {api: {deps: {BASE: //base}}}\n",
                    "api/Dockerfile": "ARG BASE\nFROM ${BASE}\n"})
    images = FakeImages()
    options = BuildOptions(parallelism=1, logs_dir=root / "logs")

    def decided() -> tuple[Workspace, Plan, dict[str, Inputs], TargetCache, dict[str, Action]]:
        ws = load_workspace(root)
        graph = TargetGraph.build(ws)
        plan = make_plan(graph, parse_patterns(["//api"]))
        inputs = compute_inputs(graph, plan, {})
        cache = TargetCache(ws, images, warn=print)
        return ws, plan, inputs, cache, decide(plan, {lb: i.key() for lb, i in inputs.items()}, cache=cache,
                                               images=images)

    def build(executor: FakeExecutor) -> RunResult:
        ws, plan, inputs, cache, actions = decided()
        return execute(plan, ws, executor, images=images, options=options, git=GIT, environ={},
                       stop=threading.Event(), progress=PlainProgress(io.StringIO()), inputs=inputs, cache=cache,
                       now=NOW, actions=actions)

    def printed(run_id: str) -> list[tuple[Target, Action, list[str] | None]]:
        ws, plan, inputs, cache, actions = decided()
        return dry_run(plan, ws, git=GIT, environ={}, options=options, layers=None, now=NOW, run_id=run_id,
                       actions=actions, inputs=inputs, cache=cache)

    first = build(FakeExecutor())
    base_id = next(t.image_id or "" for t in first.targets if t.label == "//base:base")
    (root / "api" / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nENV CHANGED=1\n")
    [(base, base_action, base_argv), (_, api_action, _)] = shown = printed("0" * 12)
    assert base_action.describe() == f"cached ({base_id})" and base_argv is None
    assert isinstance(base_action, Cached) and isinstance(api_action, Build) and api_action.reason == "no entry"

    executor = FakeExecutor()
    second = build(executor)
    assert {t.label: t.status for t in second.targets} == {"//base:base": "cached", "//api:api": "built"}
    ran = command(executor.request("//api:api"))
    claim = next(t for t in executor.request("//api:api").tags if CLAIM_TAG_PREFIX in t)
    # with the build's run id (in its claim tag and metadata file), the command printed is the one that ran,
    # the dependency named by the exact tag the build gave it and the input digest tags rendered
    assert [a.replace("0" * 12, claim.rpartition(CLAIM_TAG_PREFIX)[2]) for a in shown[1][2] or ()] == ran
    assert printed("1" * 12)[1][2] is None  # and now api is cached too
    assert f"BASE={local_tag(base, base_id)}" in ran
    assert any(a.startswith("api:in-") and "{" not in a for a in ran)
