"""CI detection, the push decision, and the CI reports (JUnit, GitHub summary and annotations)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from imgbuild.builds.outputs import github_annotations, github_summary, write_junit
from imgbuild.builds.results import RunResult, TargetResult
from imgbuild.ci import detect
from imgbuild.commands.ci import should_push
from imgbuild.git import GitInfo
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory

GH_PR = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/mono", "GITHUB_RUN_ID": "42",
         "GITHUB_SERVER_URL": "https://github.com", "GITHUB_EVENT_NAME": "pull_request",
         "GITHUB_REF": "refs/pull/7/merge", "GITHUB_HEAD_REF": "feat/x", "GITHUB_BASE_REF": "main",
         "IMGBUILD_PR_HEAD_REPO": "someone/mono"}


@pytest.mark.parametrize(("env", "provider", "run_id", "branch", "pr", "fork"), [
    (GH_PR, "github", "42", "feat/x", "7", True),
    ({**GH_PR, "IMGBUILD_PR_HEAD_REPO": "acme/mono"}, "github", "42", "feat/x", "7", False),
    ({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/mono", "GITHUB_RUN_ID": "1", "GITHUB_EVENT_NAME": "push",
      "GITHUB_REF_NAME": "main", "GITHUB_REF": "refs/heads/main"}, "github", "1", "main", None, False),
    ({"GITLAB_CI": "true", "CI_PIPELINE_ID": "9", "CI_PIPELINE_URL": "https://gl/p/9", "CI_COMMIT_BRANCH": "dev"},
     "gitlab", "9", "dev", None, False),
    ({"GITLAB_CI": "true", "CI_PIPELINE_ID": "9", "CI_MERGE_REQUEST_IID": "3",
      "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "f", "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "2", "CI_PROJECT_ID": "1"},
     "gitlab", "9", "f", "3", True),
    ({"BUILDKITE": "true", "BUILDKITE_BUILD_ID": "b", "BUILDKITE_BRANCH": "main", "BUILDKITE_PULL_REQUEST": "false"},
     "buildkite", "b", "main", None, False),
    ({"CIRCLECI": "true", "CIRCLE_WORKFLOW_ID": "w", "CIRCLE_BRANCH": "x",
      "CIRCLE_PULL_REQUEST": "https://github.com/a/b/pull/5", "CIRCLE_PR_USERNAME": "eve"},
     "circleci", "w", "x", "5", True),
    ({"JENKINS_URL": "https://j", "BUILD_TAG": "jenkins-x-1", "BRANCH_NAME": "main"}, "jenkins", "jenkins-x-1",
     "main", None, False),
    ({"CI": "true"}, "generic", None, None, None, False),
])
def test_detect(env: dict[str, str], provider: str, run_id: str | None, branch: str | None, pr: str | None,
                fork: bool) -> None:
    ci = detect(env)
    assert ci is not None
    assert (ci.provider, ci.run_id, ci.branch, ci.pull_request, ci.fork) == (provider, run_id, branch, pr, fork)


def test_no_ci() -> None:
    assert detect({"HOME": "/root"}) is None


def test_push_only_on_default_branch_or_tag() -> None:
    main = detect({"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main", "GITHUB_EVENT_NAME": "push"})
    feature = detect({"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "feat", "GITHUB_EVENT_NAME": "push"})
    pr = detect(GH_PR)
    git = GitInfo(sha="a" * 40, branch="")
    assert should_push(main, git, None, "main", {})
    assert not should_push(feature, git, None, "main", {})
    assert should_push(feature, git, None, "main", {"GITHUB_REF_TYPE": "tag"})
    assert not should_push(pr, git, None, "main", {})
    assert should_push(pr, git, "always", "main", {}) and not should_push(main, git, "never", "main", {})
    assert not should_push(None, git, None, "main", {})  # not in CI: no surprise pushes


RESULT = RunResult(
    targets=(
        TargetResult(label="//base:base", status="cached", duration=0.1, image_id="sha256:" + "a" * 64),
        TargetResult(label="//apps/api:api", status="failed", duration=2.0, error="docker buildx build failed: x",
                     log_tail=("#5 ERROR: exit code: 1",), log_path="/tmp/api.log"),
        TargetResult(label="//tools/m:m", status="skipped", error="dependency failed: //apps/api:api"),
    ),
    interrupted=False, started="2026-11-28T00:00:00Z", duration=3.0)


def test_junit_one_case_per_target(tmp_path: Path) -> None:
    write_junit(RESULT, tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["api"].get("classname") == "apps.api"
    failure = cases["api"].find("failure")
    assert failure is not None and "#5 ERROR" in (failure.text or "")
    assert cases["m"].find("skipped") is not None and cases["base"].find("failure") is None


def test_github_summary_and_annotations(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"apps/api/BUILD.yaml": "apps:\n  api: {}\n", "base/BUILD.yaml": "apps: {base: {}}\n",
                    "tools/m/BUILD.yaml": "apps: {m: {}}\n"})
    summary = github_summary(RESULT)
    assert "| `//apps/api:api` | ❌ failed |" in summary
    (line,) = github_annotations(RESULT, load_workspace(root))
    assert line.startswith("::error file=apps/api/BUILD.yaml,line=2,title=imgbuild //apps/api:api failed::")


def test_immutable_tags_are_per_registry_not_per_host(make_ws: WorkspaceFactory) -> None:
    from imgbuild.labels import Label
    from imgbuild.push import Pusher, plan_push

    root = make_ws({"imgbuild.yaml": "version: 1\nregistries:\n  prod: {url: r.io/prod, immutable_tags: true}\n"
                                     "  dev: {url: r.io/dev}\n",
                    "a/BUILD.yaml": "apps: {a: {registries: [prod, dev]}}\n"})
    ws = load_workspace(root)
    plan = plan_push(ws.targets[Label("a", "a")], ws, "sha256:" + "1" * 64, ("a:v1",))

    class Registry:
        asked: list[str] = []

        def tag_digest(self, ref: object) -> str:
            self.asked.append(str(ref))
            return "sha256:" + "2" * 64

    class Engine:
        def known_digests(self, image_id: str) -> frozenset[str]:
            return frozenset()

    reg = Registry()
    problems = Pusher(Engine(), reg).immutable_conflicts([plan])  # type: ignore[arg-type]
    assert reg.asked == ["r.io/prod/a:v1"] and len(problems) == 1 and "r.io/prod/a:v1" in problems[0]
