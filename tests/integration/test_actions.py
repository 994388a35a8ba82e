"""Plan, then run, on the real engine: the dry run and ``plan --explain`` say what the build then does."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.integration.conftest import docker, imgbuild, run_in_image
from tests.integration.test_build import workspace

pytestmark = pytest.mark.usefixtures("engine")  # the default builder: every decision here is the same on all


def explained(root: Path) -> dict[str, str]:
    r = imgbuild("plan", "--explain", "--json", "//tools/migrate", cwd=root)
    assert r.code == 0, r.err
    return {t["label"]: t["action"] for t in json.loads(r.out)["targets"]}


def built(root: Path) -> dict[str, dict[str, str]]:
    r = imgbuild("build", "//tools/migrate", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    return {t["label"]: t for t in json.loads((root / "report.json").read_text())["targets"]}


def test_the_dry_run_and_explain_say_what_the_build_then_does(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    assert explained(root) == {"//base:base": "build", "//apps/api:api": "build", "//tools/migrate:migrate": "build"}
    first = built(root)
    base_id = first["//base:base"]["image_id"]
    assert explained(root) == {"//base:base": "cached", "//apps/api:api": "cached", "//tools/migrate:migrate": "cached"}

    (root / "apps/api/src/main.sh").write_text("echo api v2\n")
    dry = imgbuild("build", "//tools/migrate", "--dry-run", cwd=root)
    assert dry.code == 0, dry.err
    lines = dry.out.splitlines()
    # the unchanged target: one line saying so, no command; the changed ones: the exact command
    assert lines[0] == f"# //base:base cached ({base_id})"
    assert lines[1] == "# //apps/api:api" and lines[3] == "# //tools/migrate:migrate" and len(lines) == 5
    api_argv = shlex.split(lines[2])
    assert api_argv[:3] == ["docker", "buildx", "build"]
    # its dependency by the exact tag the build gives it, which is in the engine now: pasteable as it is
    base_ref = next(a.split("=", 1)[1] for a in api_argv if a.startswith("BASE_IMAGE="))
    assert base_ref.startswith(f"{prefix}-base:imgbuild-")
    assert docker("image", "inspect", "--format", "{{.Id}}", base_ref).strip() == base_id
    assert "--build-arg 'API=<image of //apps/api:api>'" in lines[4]
    assert explained(root) == {"//base:base": "cached", "//apps/api:api": "build", "//tools/migrate:migrate": "build"}
    second = built(root)
    assert {lb: t["status"] for lb, t in second.items()} == \
        {"//base:base": "cached", "//apps/api:api": "built", "//tools/migrate:migrate": "built"}
    assert run_in_image(f"{prefix}-migrate:dev", "cat", "/migrate.txt") == "main.sh\n"

    # the base image leaves the engine: its entry remains, so a build restores it, and both say so first
    tags = json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}", base_id))
    docker("image", "rm", *tags)
    assert explained(root)["//base:base"] == "restore"
    assert imgbuild("build", "//tools/migrate", "--dry-run", cwd=root).out.splitlines() == [
        f"# //base:base restored from the target cache ({base_id})",
        f"# //apps/api:api cached ({second['//apps/api:api']['image_id']})",
        f"# //tools/migrate:migrate cached ({second['//tools/migrate:migrate']['image_id']})"]
    assert {lb: t["status"] for lb, t in built(root).items()} == \
        {"//base:base": "restored", "//apps/api:api": "cached", "//tools/migrate:migrate": "cached"}
