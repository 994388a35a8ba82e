"""examples/ci/github-actions.yml as written, on what docker/setup-buildx-action gives a job: a fresh
docker-container builder made current with `docker buildx use`, which does not see the engine's images."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.integration.conftest import REPO, digest_of, docker, imgbuild

pytestmark = pytest.mark.usefixtures("engine")
EXAMPLES_DIR = REPO / "examples"
WORKFLOW = EXAMPLES_DIR / "ci" / "github-actions.yml"
BUILDKIT_IMAGE = "localhost:5000/moby/buildkit:v0.17.3"  # what scripts/dev-services makes


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                   capture_output=True)


@pytest.fixture
def setup_buildx(tmp_path: Path) -> Iterator[dict[str, str]]:
    """docker/setup-buildx-action: `docker buildx create --driver docker-container --use` in the job's
    Docker config; the job's later steps inherit it."""
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config)}
    name = f"gha-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "buildx", "create", "--name", name, "--driver", "docker-container", "--driver-opt",
                    f"image={BUILDKIT_IMAGE},network=host", "--use", "--bootstrap"],
                   check=True, capture_output=True, env={**_environ(), **env}, timeout=300)
    try:
        yield env
    finally:
        subprocess.run(["docker", "buildx", "rm", "-f", name], capture_output=True, env={**_environ(), **env})


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _ci_step(workflow: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in workflow["jobs"]["build"]["steps"] if s.get("name") == "imgbuild ci")


def test_github_actions_template_on_a_docker_container_builder(tmp_path: Path, prefix: str, admin: Any,
                                                              setup_buildx: dict[str, str]) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    step = _ci_step(workflow)
    shards = workflow["jobs"]["build"]["strategy"]["matrix"]["shard"]
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES_DIR / "monorepo", root)
    config = root / "imgbuild.yaml"
    config.write_text(config.read_text().replace("url: localhost:5000/example", f"url: localhost:5000/{prefix}"))
    try:
        admin.create_bucket(Bucket="imgbuild-example-cache")  # the example's S3 policy (scripts/example too)
    except admin.exceptions.BucketAlreadyOwnedByYou:
        pass
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "empty")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the monorepo")  # a push to main builds what HEAD~1..HEAD changed: all

    # A push to main, as GitHub Actions describes it to the step; its secrets are the test server's.
    env = {**setup_buildx, "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/mono", "GITHUB_RUN_ID": "9",
           "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    for key, value in step["env"].items():
        env[key] = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.get(key, str(value))
        if "${{" in env[key]:
            env[key] = ""  # a pull request's head repository: none on a push
    built: dict[str, dict[str, Any]] = {}
    for shard in shards:
        argv = step["run"].replace("${{ matrix.shard }}", shard).split()
        assert argv[:2] == ["imgbuild", "ci"] and not re.search(r"\$\{\{", " ".join(argv))
        r = imgbuild(*argv[1:], cwd=root, env=env, timeout=600)
        assert r.code == 0, r.err
        report = json.loads((root / "imgbuild-report.json").read_text())
        for t in report["targets"]:
            if t["status"] != "skipped" and not built.get(t["label"], {}).get("pushed"):
                built[t["label"]] = t  # a shard's dependency (never pushed there) may be another's target
        assert (root / "imgbuild-junit.xml").is_file()  # what the upload step collects

    plan = json.loads(imgbuild("plan", "//...", "--json", cwd=root).out)
    labels = {t["label"] for t in plan["targets"]}
    assert labels == set(built), sorted(labels ^ set(built))  # the shards cover every target
    assert all(t["status"] in ("built", "cached", "restored") for t in built.values())
    api = built["//apps/api:api"]
    assert api["pushed"] and digest_of(f"localhost:5000/{prefix}/api", "latest") == api["image_id"]
    # The requested images are in the engine although the builder never saw it.
    assert docker("run", "--rm", api["image_id"], "ls", "/app/src").strip()
