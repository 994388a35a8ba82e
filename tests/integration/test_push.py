"""`imgbuild build --push` against the real local registry, checked there by digest (Registry v2 API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files
from tests.integration.conftest import digest_of, imgbuild

pytestmark = pytest.mark.usefixtures("engine")
REGISTRY = "localhost:5000"


def registry_digest(repo: str, tag: str) -> str | None:
    return digest_of(f"{REGISTRY}/{repo}", tag)


def workspace(root: Path, prefix: str, *, immutable: bool = False, registry: str = REGISTRY) -> Path:
    return write_files(root, {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: local, tags: [v1, latest], push: true}}
            registries:
              local: {{url: {registry}/{prefix}, insecure: true, immutable_tags: {str(immutable).lower()}}}
        """,
        "base/BUILD.yaml": "apps:\n  base: {push: false}\n",
        "base/Dockerfile": "FROM busybox:1.36\nRUN echo base > /base.txt\n",
        "api/BUILD.yaml": "apps:\n  api:\n    deps: {BASE_IMAGE: //base}\n",
        "api/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /app.txt\n",
        "api/app.txt": "v1\n",
        "web/BUILD.yaml": "apps:\n  web: {}\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY index.html /srv/\n",
        "web/index.html": "hi\n",
    })


def report(root: Path) -> dict[str, Any]:
    return {t["label"]: t for t in json.loads((root / "report.json").read_text())["targets"]}


@pytest.mark.usefixtures("builder")
def test_push_tags_by_digest(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//...", "--push", "--allow-dirty", "--progress", "plain", "--json", "report.json",
                 "--metadata-file", "meta.json", cwd=root)
    assert r.code == 0, r.err
    rep = report(root)
    for name in ("api", "web"):
        image_id = rep[f"//{name}:{name}"]["image_id"]
        for tag in ("v1", "latest"):
            assert registry_digest(f"{prefix}/{name}", tag) == image_id
        assert rep[f"//{name}:{name}"]["pushed"] == [f"{REGISTRY}/{prefix}/{name}@{image_id}"]
    # push: false, and only requested targets with push on are pushed
    assert registry_digest(f"{prefix}/base", "v1") is None and rep["//base:base"]["pushed"] == []
    meta = json.loads((root / "meta.json").read_text())
    assert meta["//api:api"]["containerimage.digest"] == rep["//api:api"]["digest"]
    assert meta["//api:api"]["imgbuild.pushed"] == rep["//api:api"]["pushed"]

    # Nothing changed: nothing is sent again, the report still lists what the registry holds.
    r = imgbuild("build", "//...", "--push", "--allow-dirty", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0 and report(root)["//api:api"]["pushed"] == rep["//api:api"]["pushed"]


def test_immutable_tags_refuse_before_pushing_anything(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, immutable=True)
    r = imgbuild("build", "//...", "--push", "--allow-dirty", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    before = {n: registry_digest(f"{prefix}/{n}", "v1") for n in ("api", "web")}
    (root / "api/app.txt").write_text("v2\n")  # api changes; web does not
    r = imgbuild("build", "//...", "--push", "--allow-dirty", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 1
    assert f"tag {REGISTRY}/{prefix}/api:v1 already points at {before['api']}" in r.err
    assert {n: registry_digest(f"{prefix}/{n}", "v1") for n in ("api", "web")} == before
    assert all(t["pushed"] == [] for t in report(root).values())  # refused before anything was pushed


def test_unreachable_registry_retried_then_reported(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, registry="localhost:5999")
    r = imgbuild("build", "//web", "--push", "--allow-dirty", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 1
    web = report(root)["//web:web"]
    assert web["status"] == "failed" and web["pushed"] == []
    assert "push failed" in web["error"] and "attempt" in web["error"]


def test_dirty_tree_refuses_push(tmp_path: Path, prefix: str) -> None:
    import subprocess

    root = workspace(tmp_path / "ws", prefix)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    r = imgbuild("build", "//web", "--push", "--progress", "plain", cwd=root)
    assert r.code == 2 and "uncommitted changes" in r.err
