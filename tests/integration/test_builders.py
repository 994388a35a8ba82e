"""Builders that do not see the engine's images (docker-container, remote): images that go only where asked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import docker, imgbuild
from tests.integration.test_push import REGISTRY, registry_digest, report, workspace

pytestmark = pytest.mark.usefixtures("engine")


def test_no_load_pushes_what_the_engine_never_held(tmp_path: Path, prefix: str, outside_builder: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    for _ in range(2):  # built, then cached: both push from the OCI layouts, not from the engine
        r = imgbuild("build", "//...", "--push", "--no-load", "--allow-dirty", "--progress", "plain",
                     "--json", "report.json", cwd=root)
        assert r.code == 0, r.err
        rep = report(root)
        api = rep["//api:api"]
        assert registry_digest(f"{prefix}/api", "v1") == api["image_id"]
        assert api["pushed"] == [f"{REGISTRY}/{prefix}/api@{api['image_id']}"]
        assert docker("image", "ls", "-q", "--filter", f"reference=*{prefix}*").strip() == ""
    # What the registry holds is the dependant built on its dependency.
    pulled = f"{REGISTRY}/{prefix}/api:v1"
    docker("pull", "-q", pulled)
    try:
        assert docker("run", "--rm", pulled, "cat", "/base.txt", "/app.txt") == "base\nv1\n"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", pulled], capture_output=True)


def test_load_false_in_the_spec_keeps_one_target_out_of_the_engine(tmp_path: Path, prefix: str,
                                                                   outside_builder: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    (root / "web/BUILD.yaml").write_text("apps:\n  web: {load: false}\n")
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    rep = report(root)
    assert subprocess.run(["docker", "image", "inspect", rep["//web:web"]["image_id"]],
                          capture_output=True).returncode != 0
    api = rep["//api:api"]["image_id"]
    assert json.loads(docker("image", "inspect", api))[0]["Id"] == api
    assert docker("run", "--rm", api, "cat", "/base.txt", "/app.txt") == "base\nv1\n"


def test_unknown_builder_is_exit_3_naming_buildx_ls(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//...", "--builder", f"no-such-{prefix}", cwd=root)
    assert r.code == 3, r.err
    assert f"no-such-{prefix}" in r.err and "docker buildx ls" in r.err and "Traceback" not in r.err
