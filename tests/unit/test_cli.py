"""The commands end to end, in process: output, JSON, exit codes, and no tracebacks for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbuild.cli import main, python_problem
from tests.conftest import EXAMPLES, WorkspaceFactory

MONOREPO = EXAMPLES / "monorepo"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_lists_order_and_resolved_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--workspace", str(MONOREPO), "//tools/migrate", "--json")
    assert code == 0
    doc = json.loads(out)
    labels = [t["label"] for t in doc["targets"]]
    assert labels == ["//base:base", "//apps/api:api", "//tools/migrate:migrate"]
    api = doc["targets"][1]
    assert api["deps"] == {"BASE_IMAGE": "//base:base"}
    assert api["build_args"] == {"PORT": "8080"}
    assert api["dockerfile"] == "apps/api/Dockerfile" and api["context"] == "apps/api"
    assert api["cache"] == "shared" and api["requested"] is False


def test_plan_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "-w", str(MONOREPO), "//apps/web:all")
    assert code == 0
    assert "//apps/web:test" in out and "stage test" in out and "2 target(s)" in out


def test_exclusion_pattern_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", "deps", "-w", str(MONOREPO), "//apps/...", "-//apps/web/...")
    assert code == 0
    assert "//apps/web" not in out and "//apps/api:api" in out and "//base:base" in out


def test_relative_patterns_use_the_current_package(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(MONOREPO / "apps" / "web")
    code, out, _ = run(capsys, "query", "deps", ":runtime")
    assert (code, out) == (0, "//apps/web:runtime\n")


def test_query_rdeps(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "query", "rdeps", "-w", str(MONOREPO), "//apps/api")
    assert code == 0 and out.split() == ["//apps/api:api", "//tools/migrate:migrate"]
    code, out, _ = run(capsys, "query", "rdeps", "--direct", "-w", str(MONOREPO), "//base")
    assert "//tools/migrate:migrate" not in out and "//apps/admin:admin" in out


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "json"])
def test_graph_formats(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(capsys, "graph", "-w", str(MONOREPO), "//tools/...", "--format", fmt)
    assert code == 0
    if fmt == "json":
        doc = json.loads(out)
        assert {"from": "//tools/migrate:migrate", "to": "//apps/api:api", "kind": "depends_on"} in doc["edges"]
        assert len(doc["nodes"]) == 3
    elif fmt == "dot":
        assert out.startswith("digraph") and '"//tools/migrate:migrate" -> "//apps/api:api";' in out
    else:
        assert out.startswith("graph LR") and "-->" in out


def test_validate_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "-w", str(MONOREPO))
    assert code == 0 and out.startswith("ok: ")
    code, out, _ = run(capsys, "schema", "workspace")
    assert code == 0 and json.loads(out)["title"] == "imgbuild.yaml"


def test_bad_input_exit_2_without_traceback(capsys: pytest.CaptureFixture[str], make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps:\n  a:\n    contxt: .\n"})
    code, out, err = run(capsys, "plan", "-w", str(root), "//...")
    assert code == 2 and out == ""
    assert "a/BUILD.yaml:3:5" in err and "did you mean 'context'" in err and "Traceback" not in err


def test_unknown_label_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "-w", str(MONOREPO), "//apps/apii")
    assert code == 2 and "did you mean" in err


def test_outside_a_workspace(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "plan", "//...")
    assert code == 2 and "no imgbuild.yaml found" in err and "--workspace" in err


def test_explain_says_why(capsys: pytest.CaptureFixture[str], make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps: {a: {build_args: {X: '1'}}}\n", "a/Dockerfile": "FROM busybox:1.36\n",
                    "a/app.txt": "one\n"})
    code, out, _ = run(capsys, "plan", "--explain", "-w", str(root), "//...")
    assert code == 0 and "//a:a: to build" in out and "never built with this cache" in out
    code, out, _ = run(capsys, "cache", "stats", "-w", str(root), "--json")
    assert code == 0 and json.loads(out)[0]["entries"] == 0


def test_push_of_a_target_without_a_registry_is_refused_before_building(capsys: pytest.CaptureFixture[str],
                                                                        make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps:\n  a:\n    push: true\n", "a/Dockerfile": "FROM busybox:1.36\n",
                    "b/BUILD.yaml": "apps:\n  b: {}\n", "b/Dockerfile": "FROM busybox:1.36\n"})
    code, out, err = run(capsys, "build", "-w", str(root), "//...", "--push", "--dry-run")
    assert code == 2 and out == ""
    assert "//a:a has push: true but no registry to push to" in err and "a/BUILD.yaml:2" in err
    assert "//b:b" not in err and "Traceback" not in err


@pytest.mark.parametrize("lead", [["-w", str(MONOREPO)], ["--workspace", str(MONOREPO)], [f"--workspace={MONOREPO}"]])
def test_workspace_before_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, lead: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no workspace here: only the option can find it
    code, out, err = run(capsys, *lead, "plan", "//tools/migrate")
    assert (code, err) == (0, "")
    assert "//tools/migrate:migrate" in out and "3 target(s)" in out


def test_workspace_after_the_command_wins(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "-w", str(MONOREPO), "plan", "-w", str(tmp_path), "//...")
    assert code == 2 and str(tmp_path) in err


@pytest.mark.parametrize(("version", "ok"), [
    ((3, 9, 18), False), ((3, 10, 11), False), ((3, 10, 12), True), ((3, 11, 3), False), ((3, 11, 4), True),
    ((3, 12, 0), True), ((3, 13, 1), True)])
def test_python_version_check(version: tuple[int, int, int], ok: bool) -> None:
    problem = python_problem(version)
    if ok:
        assert problem is None
    else:
        assert problem is not None and ".".join(map(str, version)) in problem
        assert "3.10.12+, 3.11.4+ or 3.12+" in problem
