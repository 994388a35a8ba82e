"""Which CI system runs us, from its environment: provider, run id and url, branch, pull request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class CIRun:
    provider: str  # github | gitlab | buildkite | circleci | jenkins | generic
    run_id: str | None = None
    run_url: str | None = None
    branch: str | None = None
    pull_request: str | None = None
    base_ref: str | None = None
    fork: bool = False  # a pull request from a fork: untrusted, must not write shared caches


def detect(env: dict[str, str]) -> CIRun | None:
    """The CI run described by ``env``, or None outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        server, repo, run = env.get("GITHUB_SERVER_URL", "https://github.com"), env.get("GITHUB_REPOSITORY"), \
            env.get("GITHUB_RUN_ID")
        is_pr = env.get("GITHUB_EVENT_NAME", "").startswith("pull_request")
        head_repo = env.get("IMGBUILD_PR_HEAD_REPO")  # the workflow may pass github.event.pull_request.head.repo
        return CIRun(provider="github", run_id=run,
                     run_url=f"{server}/{repo}/actions/runs/{run}" if repo and run else None,
                     branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
                     pull_request=(env.get("GITHUB_REF", "").split("/")[2]
                                   if is_pr and env.get("GITHUB_REF", "").count("/") >= 2 else None),
                     base_ref=env.get("GITHUB_BASE_REF") or None,
                     fork=bool(is_pr and head_repo and repo and head_repo != repo))
    if env.get("GITLAB_CI") == "true":
        return CIRun(provider="gitlab", run_id=env.get("CI_PIPELINE_ID"), run_url=env.get("CI_PIPELINE_URL"),
                     branch=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_BRANCH"),
                     pull_request=env.get("CI_MERGE_REQUEST_IID"),
                     base_ref=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
                     fork=bool(env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID") and
                               env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID") != env.get("CI_PROJECT_ID")))
    if env.get("BUILDKITE") == "true":
        pr = env.get("BUILDKITE_PULL_REQUEST")
        pr = None if pr in (None, "", "false") else pr
        return CIRun(provider="buildkite", run_id=env.get("BUILDKITE_BUILD_ID"), run_url=env.get("BUILDKITE_BUILD_URL"),
                     branch=env.get("BUILDKITE_BRANCH"), pull_request=pr,
                     base_ref=env.get("BUILDKITE_PULL_REQUEST_BASE_BRANCH") or None,
                     fork=bool(pr and env.get("BUILDKITE_PULL_REQUEST_REPO") and
                               env.get("BUILDKITE_PULL_REQUEST_REPO") != env.get("BUILDKITE_REPO")))
    if env.get("CIRCLECI") == "true":
        pr_url = env.get("CIRCLE_PULL_REQUEST")
        return CIRun(provider="circleci", run_id=env.get("CIRCLE_WORKFLOW_ID") or env.get("CIRCLE_BUILD_NUM"),
                     run_url=env.get("CIRCLE_BUILD_URL"), branch=env.get("CIRCLE_BRANCH"),
                     pull_request=pr_url.rsplit("/", 1)[-1] if pr_url else None,
                     fork=bool(env.get("CIRCLE_PR_USERNAME")))
    if env.get("JENKINS_URL"):
        return CIRun(provider="jenkins", run_id=env.get("BUILD_TAG") or env.get("BUILD_NUMBER"),
                     run_url=env.get("BUILD_URL"), branch=env.get("CHANGE_BRANCH") or env.get("BRANCH_NAME"),
                     pull_request=env.get("CHANGE_ID"), base_ref=env.get("CHANGE_TARGET"))
    if env.get("CI") in ("true", "1", "True"):
        return CIRun(provider="generic", run_id=env.get("CI_RUN_ID"), run_url=env.get("CI_RUN_URL"))
    return None
