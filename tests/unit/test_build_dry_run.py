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
from imgbuild.builds.run import CLAIM_TAG_PREFIX, BuildOptions, dry_run, execute
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
