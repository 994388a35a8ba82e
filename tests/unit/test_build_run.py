"""Running a plan with a fake executor: deps get exactly their dependency's build, failures cascade."""

from __future__ import annotations

import threading
from pathlib import Path

from imgbuild.builds.handoff import OciLayouts
from imgbuild.builds.progress import PlainProgress
from imgbuild.builds.request import local_tag
from imgbuild.builds.results import RunResult
from imgbuild.builds.run import BuildOptions, execute
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label, parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages

DF = "ARG BASE\nFROM ${BASE}\n"
FILES = {
    "imgbuild.yaml": "version: 1\ndefaults: {tags: [dev, '{git.branch}']}\n",
    "base/BUILD.yaml": "apps: {base: {}}\n",
    "base/Dockerfile": "FROM busybox:1.36\n",
    "a/BUILD.yaml": "apps: {a: {deps: {BASE: //base}}}\n",
    "a/Dockerfile": DF,
    "b/BUILD.yaml": "apps: {b: {deps: {BASE: //a}}}\n",
    "b/Dockerfile": DF,
    "c/BUILD.yaml": "apps: {c: {deps: {BASE: //base}}}\n",
    "c/Dockerfile": DF,
}


def run(root: Path, executor: FakeExecutor, *, keep_going: bool = False,
        stop: threading.Event | None = None, images: FakeImages | None = None,
        layouts: OciLayouts | None = None, load: frozenset[str] | None = None) -> RunResult:
    ws = load_workspace(root)
    plan = make_plan(TargetGraph.build(ws), parse_patterns(["//..."]))
    import io

    return execute(plan, ws, executor, images=images or FakeImages(), options=BuildOptions(parallelism=2, logs_dir=root / ".imgbuild/logs",
                                                            keep_going=keep_going, layouts=layouts, load=load),
                   git=GitInfo(sha="f" * 40, branch="feature/x"), environ={}, stop=stop or threading.Event(),
                   progress=PlainProgress(io.StringIO()))


def test_dependants_get_the_exact_build_of_their_dependency(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    ex = FakeExecutor()
    images = FakeImages()
    result = run(root, ex, images=images)
    assert result.ok and [t.status for t in result.targets] == ["built"] * 4
    ws = load_workspace(root)
    by_label = {t.label: t for t in result.targets}
    base_ref = local_tag(ws.targets[Label("base", "base")], by_label["//base:base"].image_id or "")
    assert dict(ex.request("//a:a").build_args)["BASE"] == base_ref
    assert images.refs[base_ref] == by_label["//base:base"].image_id
    a_ref = local_tag(ws.targets[Label("a", "a")], by_label["//a:a"].image_id or "")
    assert dict(ex.request("//b:b").build_args)["BASE"] == a_ref
    *user_tags, claim = ex.request("//b:b").tags
    assert user_tags == ["b:dev", "b:feature-x"]  # templates rendered tag-safe
    # plus a name only this run uses, so a concurrent build moving b:dev cannot leave the image nameless;
    # dropped once the exact-build tag is on
    assert claim.startswith("b:imgbuild-run-") and claim not in images.refs
    assert (root / ".imgbuild/logs/b/b.log").read_text().splitlines()[1] == "#1 building //b:b"


def test_failure_skips_dependants_and_keeps_logs(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    result = run(root, FakeExecutor(fail=frozenset({"//a:a"})), keep_going=True)
    status = {t.label: t.status for t in result.targets}
    assert status == {"//base:base": "built", "//a:a": "failed", "//b:b": "skipped", "//c:c": "built"}
    failed = next(t for t in result.targets if t.label == "//a:a")
    assert failed.log_tail == ("#2 ERROR: exit code: 1",)
    assert "ERROR" in Path(failed.log_path or "").read_text()
    assert not result.ok


def test_stop_cancels_what_did_not_finish(make_ws: WorkspaceFactory) -> None:
    root = make_ws(FILES)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    result = run(root, FakeExecutor(durations={"//a:a": 30, "//c:c": 30}), stop=stop)
    status = {t.label: t.status for t in result.targets}
    assert result.interrupted
    assert status == {"//base:base": "built", "//a:a": "cancelled", "//c:c": "cancelled", "//b:b": "skipped"}


def test_outside_the_engine_dependencies_go_as_oci_layouts(make_ws: WorkspaceFactory, tmp_path: Path) -> None:
    """A builder that does not see the engine: each dependant names its dependency's layout, under the
    reference its ARG receives and under the context name; only the targets to load touch the engine."""
    root = make_ws(FILES)
    ex, images = FakeExecutor(), FakeImages()
    layouts = OciLayouts(tmp_path / "oci")
    result = run(root, ex, images=images, layouts=layouts, load=frozenset({"//b:b"}))
    assert result.ok and [t.status for t in result.targets] == ["built"] * 4
    by_label = {t.label: t for t in result.targets}
    base = by_label["//base:base"].image_id or ""
    a_request = ex.request("//a:a")
    ref = dict(a_request.build_args)["BASE"]
    assert dict(a_request.build_contexts) == {ref: layouts.context(base), "base": layouts.context(base)}
    assert (layouts.path(base) / "index.json").is_file()
    assert not a_request.load and ex.request("//b:b").load
    assert all(o.startswith("type=oci,dest=") for r in ex.requests for o in r.outputs)
    # Only b went to the engine; no scratch output directory is left behind.
    assert set(images.refs.values()) == {by_label["//b:b"].image_id}
    assert sorted(p.name for p in layouts.root.iterdir()) == sorted(
        (t.image_id or "")[7:] for t in result.targets)


def test_a_failed_dependency_skips_its_dependants_outside_the_engine(make_ws: WorkspaceFactory,
                                                                     tmp_path: Path) -> None:
    root = make_ws(FILES)
    result = run(root, FakeExecutor(fail=frozenset({"//a:a"})), layouts=OciLayouts(tmp_path / "oci"),
                 keep_going=True)
    statuses = {t.label: t.status for t in result.targets}
    assert statuses == {"//base:base": "built", "//a:a": "failed", "//b:b": "skipped", "//c:c": "built"}
    assert next(t for t in result.targets if t.label == "//b:b").error == "dependency failed: //a:a"
    assert not [p for p in (tmp_path / "oci").iterdir() if p.name.startswith(".out-")]
