"""`imgbuild ci` runs `imgbuild check` on the targets it selects: findings go to GitHub's job summary and
annotations, and fail the job only under --check-fail-on."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.integration.conftest import imgbuild
from tests.integration.test_ci_command import gh_env, git, repo

pytestmark = pytest.mark.usefixtures("engine")

# A per-commit build arg declared before the step that does not use it: IB102 at line 2.
WEB = "FROM busybox:1.36\nARG GIT_SHA=unknown\nRUN echo slow > /slow.txt\nCOPY index.html /\n"


def test_ci_reports_findings_without_failing(tmp_path: Path, prefix: str) -> None:
    root = repo(tmp_path, prefix)
    (root / "web" / "Dockerfile").write_text(WEB)
    git(root, "commit", "-qam", "web: revision arg")
    r = imgbuild("ci", "--all", "--no-push", cwd=root, env=gh_env(root))
    assert r.code == 0, r.err
    assert "web/Dockerfile:2: warning IB102 //web:web: ARG GIT_SHA is declared at line 2" in r.err
    annotations = [line for line in r.out.splitlines() if line.startswith("::warning ")]
    assert annotations == [next(a for a in annotations if a.startswith(
        "::warning file=web/Dockerfile,line=2,title=imgbuild check IB102%3A "))]
    summary = (root / "summary.md").read_text()
    assert "### imgbuild check" in summary and "| `web/Dockerfile:2` | warning IB102 |" in summary
    report = json.loads((root / "imgbuild-report.json").read_text())
    assert {t["label"]: t["status"] for t in report["targets"]}["//web:web"] == "built"


def test_ci_check_fail_on_stops_before_building(tmp_path: Path, prefix: str) -> None:
    root = repo(tmp_path, prefix)
    (root / "web" / "Dockerfile").write_text(WEB)
    git(root, "commit", "-qam", "web: revision arg")
    r = imgbuild("ci", "--all", "--no-push", "--check-fail-on", "warning", cwd=root, env=gh_env(root))
    assert r.code == 1
    assert "check found a finding at or above warning (--check-fail-on); nothing built" in r.err
    assert not (root / "imgbuild-report.json").exists()  # nothing built
    assert ET.parse(root / "imgbuild-junit.xml").getroot().get("tests") == "0"
    r = imgbuild("ci", "--all", "--no-push", "--no-check", "--check-fail-on", "warning", cwd=root, env=gh_env(root))
    assert r.code == 0 and "IB102" not in r.err
