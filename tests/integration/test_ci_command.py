"""`imgbuild ci` in a scripted git repository, with GitHub Actions' environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import write_files
from tests.integration.conftest import imgbuild

pytestmark = pytest.mark.usefixtures("engine")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                   capture_output=True)


def repo(tmp_path: Path, prefix: str) -> Path:
    root = write_files(tmp_path / "repo", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: local, cache: local, tags: ['{{git.short_sha}}'], push: true}}
            registries: {{local: {{url: localhost:5000/{prefix}, insecure: true}}}}
            cache_policies: {{local: {{backend: local, path: .cache}}}}
        """,
        ".gitignore": ".imgbuild/\n.cache/\nimgbuild-*\nsummary.md\n",
        "base/BUILD.yaml": "apps: {base: {push: false}}\n",
        "base/Dockerfile": "FROM busybox:1.36\nRUN echo base > /base.txt\n",
        "api/BUILD.yaml": "apps:\n  api:\n    deps: {BASE: //base}\n",
        "api/Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY app.txt /\n",
        "api/app.txt": "v1\n",
        "web/BUILD.yaml": "apps: {web: {}}\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY index.html /\n",
        "web/index.html": "hi\n",
    })
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def gh_env(root: Path, **extra: str) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/mono", "GITHUB_RUN_ID": "77",
            "GITHUB_STEP_SUMMARY": str(root / "summary.md"), **extra}


def test_fork_pull_request_builds_affected_reads_caches_never_pushes(tmp_path: Path, prefix: str) -> None:
    root = repo(tmp_path, prefix)
    git(root, "checkout", "-qb", "feat")
    (root / "web/index.html").write_text("hello\n")
    git(root, "commit", "-qam", "web change")
    env = gh_env(root, GITHUB_EVENT_NAME="pull_request", GITHUB_REF="refs/pull/5/merge", GITHUB_HEAD_REF="feat",
                 GITHUB_BASE_REF="main", IMGBUILD_PR_HEAD_REPO="eve/mono")
    r = imgbuild("ci", "--since", "main", cwd=root, env=env)
    assert r.code == 0, r.err
    report = json.loads((root / "imgbuild-report.json").read_text())
    assert [t["label"] for t in report["targets"]] == ["//web:web"]  # only what the PR changed
    assert report["targets"][0]["pushed"] == []  # pull requests never push
    assert not (root / ".cache" / "entries").exists() or not list((root / ".cache" / "entries").iterdir())
    assert "read, never written" in r.err
    suite = ET.parse(root / "imgbuild-junit.xml").getroot()
    assert [c.get("name") for c in suite.iter("testcase")] == ["web"]
    assert "| `//web:web` |" in (root / "summary.md").read_text()


def test_default_branch_pushes_and_failures_annotate(tmp_path: Path, prefix: str) -> None:
    root = repo(tmp_path, prefix)
    env = gh_env(root, GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/main", GITHUB_REF_NAME="main")
    r = imgbuild("ci", "--all", cwd=root, env=env)
    assert r.code == 0, r.err
    report = {t["label"]: t for t in json.loads((root / "imgbuild-report.json").read_text())["targets"]}
    assert report["//api:api"]["pushed"] and report["//web:web"]["pushed"] and report["//base:base"]["pushed"] == []

    (root / "api/Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN exit 7\n")
    git(root, "commit", "-qam", "break api")
    r = imgbuild("ci", cwd=root, env=env)  # on main: what this commit changed
    assert r.code == 1
    assert "::error file=api/BUILD.yaml,line=2,title=imgbuild //api:api failed::" in r.out
    labels = [c.get("name") for c in ET.parse(root / "imgbuild-junit.xml").getroot().iter("testcase")]
    assert labels == ["base", "api"]


def test_shards_are_disjoint_and_complete(tmp_path: Path, prefix: str) -> None:
    root = repo(tmp_path, prefix)
    seen = []
    for i in (1, 2):
        r = imgbuild("ci", "--all", "--no-push", "--shard", f"{i}/2", "--json", f"r{i}.json", cwd=root,
                     env={"CI": "true"})
        assert r.code == 0, r.err
        seen.append({t["label"] for t in json.loads((root / f"r{i}.json").read_text())["targets"]})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == {"//base:base", "//api:api", "//web:web"}
    assert {"//base:base", "//api:api"} in seen  # a dependency chain stays in one job
