from __future__ import annotations

import pytest

from imgbuild.errors import LabelError, SpecError, SpecErrors
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label, parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import EXAMPLES, WorkspaceFactory

DF = "FROM busybox:1.36\n"


def graph_of(make_ws: WorkspaceFactory, files: dict[str, str]) -> TargetGraph:
    return TargetGraph.build(load_workspace(make_ws(files)))


def test_order_puts_dependencies_first() -> None:
    g = TargetGraph.build(load_workspace(EXAMPLES / "monorepo"))
    order = g.order(g.workspace.targets)
    for lb, t in g.workspace.targets.items():
        for dep in t.dep_labels:
            assert order.index(dep) < order.index(lb)


def test_plan_includes_dependencies_not_requested() -> None:
    g = TargetGraph.build(load_workspace(EXAMPLES / "monorepo"))
    plan = make_plan(g, parse_patterns(["//tools/migrate"]))
    assert [str(s.target.label) for s in plan.steps] == ["//base:base", "//apps/api:api", "//tools/migrate:migrate"]
    assert [s.requested for s in plan.steps] == [False, False, True]


def test_rdeps_and_deps() -> None:
    g = TargetGraph.build(load_workspace(EXAMPLES / "monorepo"))
    assert Label("tools/migrate", "migrate") in g.with_rdeps([Label("base", "base")])
    assert g.with_deps([Label("tools/migrate", "migrate")]) == {
        Label("base", "base"), Label("apps/api", "api"), Label("tools/migrate", "migrate")}


def test_cycle_is_reported_as_its_path(make_ws: WorkspaceFactory) -> None:
    with pytest.raises(SpecError) as exc:
        graph_of(make_ws, {
            "a/BUILD.yaml": "apps:\n  x:\n    deps: {B: '//b:y'}\n",
            "b/BUILD.yaml": "apps:\n  y:\n    deps: {A: '//a:x'}\n",
        })
    msg = exc.value.message
    assert "dependency cycle" in msg
    assert ("//a:x -> //b:y -> //a:x" in msg) or ("//b:y -> //a:x -> //b:y" in msg)
    assert exc.value.location is not None and exc.value.location.line == 3


def test_unknown_dep_is_reported_where_written_with_suggestion(make_ws: WorkspaceFactory) -> None:
    with pytest.raises(SpecErrors) as exc:
        graph_of(make_ws, {
            "base/BUILD.yaml": "apps:\n  base: {}\n",
            "api/BUILD.yaml": "apps:\n  api:\n    deps:\n      BASE_IMAGE: //bsae\n",
        })
    (err,) = exc.value.errors
    assert "unknown target //bsae:bsae" in err.message
    assert str(err.location) == "api/BUILD.yaml:4:19"
    assert err.hint is not None and "//base:base" in err.hint


def test_relative_dep_label(make_ws: WorkspaceFactory) -> None:
    g = graph_of(make_ws, {"p/BUILD.yaml": "apps:\n  a: {}\n  b:\n    deps: {A: ':a'}\n"})
    assert g.direct_deps(Label("p", "b")) == [Label("p", "a")]


def test_pattern_matching_nothing_suggests(make_ws: WorkspaceFactory) -> None:
    g = graph_of(make_ws, {"apps/api/BUILD.yaml": "apps:\n  api: {}\n"})
    with pytest.raises(LabelError, match="did you mean //apps/api:api"):
        g.select(parse_patterns(["//apps/api:apii"]))
    with pytest.raises(LabelError, match="matches no target"):
        g.select(parse_patterns(["//services/..."]))


def test_missing_dockerfile_and_stage_before_any_build(make_ws: WorkspaceFactory) -> None:
    g = graph_of(make_ws, {
        "a/BUILD.yaml": "apps:\n  a: {}\n",
        "b/BUILD.yaml": "apps:\n  b:\n    targets:\n      test: {stage: tset}\n",
        "b/Dockerfile": "FROM busybox:1.36 AS build\nFROM build AS test\n",
    })
    with pytest.raises(SpecErrors) as exc:
        make_plan(g, parse_patterns(["//..."]))
    text = "\n".join(e.render() for e in exc.value.errors)
    assert "//a:a: dockerfile a/Dockerfile cannot be used" in text
    assert "stage 'tset' is not in b/Dockerfile" in text and "stages in b/Dockerfile: build, test" in text
