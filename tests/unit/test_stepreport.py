"""A run with an executor that prints recorded BuildKit logs: step reports reach the result, the summary, the
report JSON (valid against specs/report.schema.json) and the history records."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

import jsonschema
import pytest

from imgbuild.builds.executor import BuildError, BuildOutput
from imgbuild.builds.outputs import github_summary
from imgbuild.builds.progress import PlainProgress, summary
from imgbuild.builds.records import records_for
from imgbuild.builds.request import BuildRequest
from imgbuild.builds.results import RunResult, write_report
from imgbuild.builds.run import BuildOptions, execute
from imgbuild.cli import main
from imgbuild.commands.history import open_history
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.history.record import HistoryRecord
from imgbuild.labels import parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from imgbuild.specfiles.schemas import schema_dir
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages

DATA = Path(__file__).resolve().parents[1] / "data" / "buildkit-logs"
FILES = {
    "imgbuild.yaml": "version: 1\n",
    "ok/BUILD.yaml": "apps: {ok: {}}\n",
    "ok/Dockerfile": (DATA / "Dockerfile.single").read_text(),
    "ok/a.txt": "a\n",
    "bad/BUILD.yaml": "apps: {bad: {}}\n",
    "bad/Dockerfile": (DATA / "Dockerfile.multi").read_text(),
}


class LoggingExecutor(FakeExecutor):
    """Prints a recorded plain log for each target, as `docker buildx build --progress plain` would."""

    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput:
        name = {"//ok:ok": "docker/7-single.log", "//bad:bad": "remote/5-failed.log"}[request.label]
        lines = (DATA / name).read_text().splitlines()
        for line in lines:
            log(line)
        if request.label == "//bad:bad":
            raise BuildError("docker buildx build failed: ERROR: exit code: 1", tuple(lines[-3:]))
        return super().build(request, log=lambda _: None, stop=stop)


def run(root: Path) -> RunResult:
    ws = load_workspace(root)
    plan = make_plan(TargetGraph.build(ws), parse_patterns(["//..."]))
    return execute(plan, ws, LoggingExecutor(), images=FakeImages(),
                   options=BuildOptions(parallelism=2, logs_dir=root / ".imgbuild/logs", keep_going=True),
                   git=GitInfo(sha="f" * 40, branch="main"), environ={}, stop=threading.Event(),
                   progress=PlainProgress(io.StringIO()))


def test_built_and_failed_targets_carry_their_steps_everywhere(make_ws: WorkspaceFactory, tmp_path: Path) -> None:
    root = make_ws(FILES)
    result = run(root)
    by = {t.label: t for t in result.targets}
    ok, bad = by["//ok:ok"], by["//bad:bad"]
    assert ok.status == "built" and ok.steps is not None
    assert [(s.name, s.line, s.status) for s in ok.steps.steps] == [("[2/3]", 3, "ran"), ("[3/3]", 4, "ran")]
    assert ok.steps.cause == "no_layer_cache"  # no target cache here: nothing on record to compare with
    assert bad.status == "failed" and bad.steps is not None
    assert [s.name for s in bad.steps.steps if s.status == "failed"] == ["[stage-2 5/5]"]

    out = io.StringIO()
    summary(result, out)
    assert ("//ok:ok  0/2 steps cached; ran from [2/3] COPY a.txt /a.txt (line 3): no layer cache available: "
            "first build of this target on record") in out.getvalue().splitlines()

    assert ("- `//ok:ok` 0/2 steps cached; ran from [2/3] COPY a.txt /a.txt (line 3): no layer cache available: "
            "first build of this target on record") in github_summary(result).splitlines()

    write_report(result, tmp_path / "report.json")
    doc = json.loads((tmp_path / "report.json").read_text())
    validator = jsonschema.Draft202012Validator(json.loads((schema_dir() / "report.schema.json").read_text()))
    assert [e.message for e in validator.iter_errors(doc)] == []
    steps = {t["label"]: t["steps"] for t in doc["targets"]}
    assert steps["//ok:ok"]["first_ran"] == "[2/3]" and steps["//bad:bad"]["cached"] == 7

    [record] = records_for(result, load_workspace(root), git=GitInfo(sha="f" * 40, branch="main"), ci=None,
                           builder=None, layers={})
    assert record.label == "//ok:ok" and record.steps == ok.steps
    assert HistoryRecord.from_bytes(record.to_bytes()).steps == ok.steps


def test_explain_shows_the_last_build_in_full(make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws(FILES)
    assert main(["explain", "//ok", "-w", str(root)]) == 2
    assert "//ok:ok has no build in the history" in capsys.readouterr().err
    result = run(root)
    ws = load_workspace(root)
    built = records_for(result, ws, git=GitInfo(sha="f" * 40, branch="main"), ci=None, builder="ci-builder",
                        layers={})
    later = [replace(r, time="2099-01-01T00:00:00Z", cache="cached", steps=None) for r in built]
    history = open_history(ws, lambda m: None)
    history.append_all([*built, *later])
    assert main(["explain", "//ok", "-w", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("//ok:ok: last run 2099-01-01T00:00:00.000Z: cached (sha256:")
    assert out[1].startswith("//ok:ok: built ") and "builder ci-builder" in out[1]
    assert out[2].startswith("0/2 steps cached; base docker.io/library/busybox:1.36@sha256:17e1")
    assert [ln.split() for ln in out[5:7]] == [[">ran", "[2/3]", "3", "COPY", "a.txt", "/a.txt"],
                                               ["ran", "[3/3]", "4", "RUN", "cat", "/a.txt", ">", "/b.txt"]]
    assert out[-2:] == ["first step that ran: [2/3] COPY a.txt /a.txt (Dockerfile line 3)",
                        "why: no layer cache available: first build of this target on record"]
    assert main(["explain", "//ok", "-w", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latest"]["cache"] == "cached" and doc["build"]["steps"]["first_ran"] == "[2/3]"
