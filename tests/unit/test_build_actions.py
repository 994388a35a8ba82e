"""The action of each target, decided once before a run (imgbuild.builds.actions), and a run that carries it out."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from imgbuild.builds.actions import Action, Build, Cached, Restore, decide
from imgbuild.builds.handoff import OciLayouts
from imgbuild.builds.progress import PlainProgress
from imgbuild.builds.request import local_tag
from imgbuild.builds.run import BuildOptions, execute
from imgbuild.builds.service import compute_inputs
from imgbuild.cache.local import LocalStore
from imgbuild.cache.targets import TargetCache
from imgbuild.builds.results import RunResult
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label, parse_patterns
from imgbuild.plan import Plan, make_plan
from imgbuild.specfiles.packages import load_workspace
from imgbuild.model import Workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages

FILES = {
    "imgbuild.yaml": "version: 1\ndefaults: {tags: [dev]}\n",
    "base/BUILD.yaml": "apps: {base: {}}\n",
    "base/Dockerfile": "FROM busybox:1.36\n",
    "api/BUILD.yaml": "apps: {api: {deps: {BASE: //base}}}\n",
    "api/Dockerfile": "ARG BASE\nFROM ${BASE}\n",
}
BASE, API = "//base:base", "//api:api"


def setup(root: Path) -> tuple[Workspace, Plan, dict[str, str]]:
    ws = load_workspace(root)
    graph = TargetGraph.build(ws)
    plan = make_plan(graph, parse_patterns(["//..."]))
    return ws, plan, {label: i.key() for label, i in compute_inputs(graph, plan, {}).items()}


def build(root: Path, images: FakeImages, *, layouts: OciLayouts | None = None, load: frozenset[str] | None = None,
          actions: dict[str, Action] | None = None, out: io.StringIO | None = None,
          executor: FakeExecutor | None = None) -> RunResult:
    ws = load_workspace(root)
    graph = TargetGraph.build(ws)
    plan = make_plan(graph, parse_patterns(["//..."]))
    progress = PlainProgress(out or io.StringIO())
    return execute(plan, ws, executor or FakeExecutor(), images=images,
                   options=BuildOptions(parallelism=2, logs_dir=root / "logs", layouts=layouts, load=load),
                   git=GitInfo(sha="f" * 40, branch="main"), environ={}, stop=threading.Event(),
                   progress=progress, inputs=compute_inputs(graph, plan, {}),
                   cache=TargetCache(ws, images, warn=progress.warn), actions=actions)


def statuses(result: RunResult) -> dict[str, str]:
    return {t.label: t.status for t in result.targets}


def test_nothing_in_the_cache_builds_everything(make_ws: WorkspaceFactory) -> None:
    ws, plan, keys = setup(make_ws(FILES))
    actions = decide(plan, keys, cache=TargetCache(ws, FakeImages(), warn=print), images=FakeImages())
    assert actions == {BASE: Build(reason="no entry"), API: Build(reason="no entry")}


def test_each_kind_of_action_and_the_run_that_carries_it_out(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    images = FakeImages()
    built = build(root, images)
    ids = {t.label: t.image_id for t in built.targets}
    ws, plan, keys = setup(root)
    cache = TargetCache(ws, images, warn=print)

    # the engine that built them has them: cached, with the names it has on them
    here = decide(plan, keys, cache=cache, images=images)
    assert all(isinstance(a, Cached) and a.in_engine and a.entry.image_id == ids[lb] for lb, a in here.items())
    api_ref = local_tag(ws.targets[Label("api", "api")], ids[API] or "")
    assert isinstance(here[API], Cached) and api_ref in here[API].engine_tags

    # a fresh engine: both come from the cache store's blobs
    fresh = FakeImages()
    elsewhere = decide(plan, keys, cache=TargetCache(ws, fresh, warn=print), images=fresh)
    assert {lb: (type(a), getattr(a, "source", None)) for lb, a in elsewhere.items()} == \
        {BASE: (Restore, "store"), API: (Restore, "store")}

    # asked for: built whatever the cache holds, and the reason says who asked
    assert decide(plan, keys, cache=cache, images=images, rebuild=frozenset({API}))[API] == Build(reason="--rebuild")
    forced = decide(plan, keys, cache=cache, images=images, rebuild=frozenset({BASE, API}), no_cache=True)
    assert set(forced.values()) == {Build(reason="--no-cache")}

    # the run does what the actions say
    assert statuses(build(root, images, actions=here)) == {BASE: "cached", API: "cached"}
    assert statuses(build(root, fresh, actions=elsewhere)) == {BASE: "restored", API: "restored"}
    assert fresh.refs[api_ref] == ids[API]
    mixed = {**here, API: Build(reason="--rebuild")}
    assert statuses(build(root, images, actions=mixed)) == {BASE: "cached", API: "built"}


def test_outside_the_engine_a_dependency_comes_from_its_layout_or_the_store(make_ws: WorkspaceFactory,
                                                                            tmp_path: Path) -> None:
    root = make_ws(FILES)
    layouts = OciLayouts(tmp_path / "oci")
    build(root, FakeImages())  # in the engine: FakeImages.save gives the cache real blobs
    ws, plan, keys = setup(root)
    fresh = FakeImages()
    cache = TargetCache(ws, fresh, warn=print)

    # base feeds api: its layout is on disk (hard links from this machine's store), and it goes to no engine
    only_api = decide(plan, keys, cache=cache, images=fresh, layouts=layouts, load=frozenset({API}))
    assert isinstance(only_api[BASE], Cached) and not only_api[BASE].in_engine
    assert isinstance(only_api[API], Restore) and only_api[API].source == "store"
    # when base must be in the engine too, it is loaded from that layout
    every = decide(plan, keys, cache=cache, images=fresh, layouts=layouts, load=None)
    assert isinstance(every[BASE], Restore) and every[BASE].source == "layout"
    # with neither a layout nor this machine's blobs, the store is the only source
    for d in (tmp_path / "oci", LocalStore(ws.state.target_cache).blob_dir):
        for blob in d.rglob("*"):
            if blob.is_file():
                blob.unlink()
    gone = decide(plan, keys, cache=cache, images=fresh, layouts=layouts, load=frozenset({API}))
    assert isinstance(gone[BASE], Restore) and gone[BASE].source == "store"


def test_a_restore_that_fails_at_run_time_builds_the_target_with_a_warning(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    build(root, FakeImages())
    ws, plan, keys = setup(root)
    fresh = FakeImages()
    actions = decide(plan, keys, cache=TargetCache(ws, fresh, warn=print), images=fresh)
    assert isinstance(actions[API], Restore)
    # the blobs go between the decision and the run
    for blob in LocalStore(ws.state.target_cache).blob_dir.iterdir():
        blob.write_bytes(b"damaged")
    out = io.StringIO()
    executor = FakeExecutor()
    result = build(root, fresh, actions=actions, out=out, executor=executor)
    assert result.ok and statuses(result) == {BASE: "built", API: "built"}
    assert sorted(r.label for r in executor.requests) == [API, BASE]
    assert "is corrupt" in out.getvalue() and "the target is rebuilt" in out.getvalue()


class RefusingLoads(FakeImages):
    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None:
        raise RuntimeError("the engine refused the layout")


def test_a_layout_the_engine_refuses_builds_the_target_with_a_warning(make_ws: WorkspaceFactory,
                                                                      tmp_path: Path) -> None:
    root = make_ws(FILES)
    layouts = OciLayouts(tmp_path / "oci")
    build(root, FakeImages())
    ws, plan, keys = setup(root)
    refusing = RefusingLoads()
    actions = decide(plan, keys, cache=TargetCache(ws, refusing, warn=print), images=refusing, layouts=layouts)
    assert actions[BASE] == Restore(entry=actions[BASE].entry, source="layout")  # type: ignore[union-attr]
    out = io.StringIO()
    result = build(root, refusing, layouts=layouts, actions=actions, out=out)
    assert statuses(result)[BASE] == "built"
    assert "warning: loading //base:base from its OCI layout failed; building it instead" in out.getvalue()
