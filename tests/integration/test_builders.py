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


def test_fresh_runner_push_fetches_only_what_a_build_needs(tmp_path: Path, prefix: str, outside_builder: str,
                                                           bucket: str, s3_endpoint: str, aws_env: None) -> None:
    """A single-use CI runner, S3 target cache warm, one app changed, `--push --no-load`: the changed app is
    built on its dependency's layout (downloaded), the unchanged app the registry already holds is only
    checked there (nothing downloaded), and the engine is never used."""
    root = workspace(tmp_path / "ws", prefix)
    policy = f"{{backend: s3, bucket: {bucket}, prefix: ci/, endpoint_url: '{s3_endpoint}', use_path_style: true}}"
    config = (root / "imgbuild.yaml").read_text().replace("push: true}", "push: true, cache: ci}")
    (root / "imgbuild.yaml").write_text(config + f"cache_policies:\n  ci: {policy}\n")
    args = ("build", "//...", "--push", "--no-load", "--allow-dirty", "--progress", "plain", "--json", "report.json")
    r = imgbuild(*args, cwd=root)
    assert r.code == 0, r.err
    first = report(root)

    subprocess.run(["rm", "-rf", str(root / ".imgbuild")], check=True)
    docker("buildx", "prune", "-af")
    (root / "api/app.txt").write_text("v2\n")
    r = imgbuild(*args, cwd=root)
    assert r.code == 0, r.err
    rep = report(root)
    assert {label: t["status"] for label, t in rep.items()} == {
        "//base:base": "restored", "//api:api": "built", "//web:web": "cached"}
    web = rep["//web:web"]["image_id"]
    assert web == first["//web:web"]["image_id"] and registry_digest(f"{prefix}/web", "v1") == web
    assert not (root / ".imgbuild" / "oci" / web.split(":")[1]).exists()  # never downloaded
    api = rep["//api:api"]["image_id"]
    assert registry_digest(f"{prefix}/api", "v1") == api != first["//api:api"]["image_id"]
    assert docker("image", "ls", "-q", "--filter", f"reference=*{prefix}*").strip() == ""
    pulled = f"{REGISTRY}/{prefix}/api:v1"
    docker("pull", "-q", pulled)
    try:
        assert docker("run", "--rm", pulled, "cat", "/base.txt", "/app.txt") == "base\nv2\n"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", pulled], capture_output=True)
