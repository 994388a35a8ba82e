"""`imgbuild release` and `imgbuild promote` against the real registry: images built and pushed earlier get
their release tags by digest (checked through the Registry v2 API), nothing is rebuilt, reruns change nothing,
refusals change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from imgbuild.regcopy import Copier, Repository
from imgbuild.statedir import for_workspace
from tests.conftest import write_files
from tests.integration.conftest import REPO, Run, digest_of, imgbuild

pytestmark = pytest.mark.usefixtures("engine")

OTHER = "127.0.0.1:5000/rel"  # the same registry under another name: a copy between registries, blobs sent
GIT_ENV = {"GIT_AUTHOR_NAME": "it", "GIT_AUTHOR_EMAIL": "it@example.com", "GIT_COMMITTER_NAME": "it",
           "GIT_COMMITTER_EMAIL": "it@example.com"}

# Until imgbuild/cli.py registers the commands, the same parser is built from add_arguments in a fresh process.
_WRAPPER = """
import argparse, sys
from pathlib import Path
from imgbuild.commands.release import add_arguments, main
from imgbuild.errors import ImgbuildError
p = argparse.ArgumentParser(prog="imgbuild")
common = argparse.ArgumentParser(add_help=False)
common.add_argument("--workspace", "-w", type=Path)
sub = p.add_subparsers(dest="command", required=True)
add_arguments(sub, common)
try:
    sys.exit(main(p.parse_args(sys.argv[1:])))
except ImgbuildError as exc:
    print(exc.render(), file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def cli(*args: str, cwd: Path) -> Run:
    """``imgbuild release|promote ...`` in a fresh process: the real CLI once it is wired, else the wrapper."""
    if "commands.release" in (REPO / "imgbuild" / "cli.py").read_text():
        return imgbuild(*args, cwd=cwd, env=GIT_ENV)
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **GIT_ENV, "PYTHONPATH": str(REPO)})
    return Run(proc.returncode, proc.stdout, proc.stderr)


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=env).stdout.strip()


@pytest.fixture
def ws(tmp_path: Path, prefix: str) -> Iterator[Path]:
    """A committed workspace: base (not pushed) <- api, and web; images named after the test's prefix."""
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: local, tags: [dev], push: true}}
            registries:
              local: {{url: 'localhost:5000', insecure: true}}
              other: {{url: '{OTHER}', insecure: true}}
        """,
        ".gitignore": ".imgbuild/\n*.json\n",
        "base/BUILD.yaml": f"apps:\n  base: {{image: {prefix}-base, push: false}}\n",
        "base/Dockerfile": "FROM busybox:1.36\nRUN echo base > /base.txt\n",
        "api/BUILD.yaml": f"apps:\n  api:\n    image: {prefix}-api\n    deps: {{BASE_IMAGE: //base}}\n",
        "api/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /app.txt\n",
        "api/app.txt": f"api {prefix}\n",
        "web/BUILD.yaml": f"apps:\n  web: {{image: {prefix}-web}}\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY index.html /srv/\n",
        "web/index.html": f"web {prefix}\n",
    })
    git(root, "init", "-q")
    commit(root, "first")
    yield root
    # Also the release tags pushed from the engine (the prefix fixture removes names starting with it only).
    # Best effort: other tests may be removing images from the same engine at the same time.
    refs = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                          text=True).stdout.split()
    mine = [r for r in refs if prefix in r]
    if mine:
        subprocess.run(["docker", "image", "rm", "-f", *mine], capture_output=True)


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


def build(root: Path, *args: str) -> dict[str, Any]:
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", *args, cwd=root)
    assert r.code == 0, r.err
    return {t["label"]: t for t in json.loads((root / "report.json").read_text())["targets"]}


def logs(root: Path) -> dict[str, int]:
    """Every build log and when it was written: a build that ran rewrites its target's log."""
    return {str(p): p.stat().st_mtime_ns for p in for_workspace(root).logs.rglob("*.log")}


def releases(root: Path) -> list[dict[str, Any]]:
    r = imgbuild("history", "--kind", "release", "--json", cwd=root)
    assert r.code == 0, r.err
    return list(json.loads(r.out))


def test_release_tags_the_pushed_images_by_digest_without_building(ws: Path, prefix: str) -> None:
    report = build(ws, "--push")
    head = git(ws, "rev-parse", "HEAD")
    digests = {name: report[f"//{name}:{name}"]["image_id"] for name in ("api", "web")}
    before = logs(ws)

    r = cli("release", "1.2.3", "//...", cwd=ws)
    assert r.code == 0, r.err
    for name, digest in digests.items():
        for tag in ("1.2.3", "1.2", "latest"):
            assert digest_of(f"localhost:5000/{prefix}-{name}", tag) == digest
    assert digest_of(f"localhost:5000/{prefix}-base", "1.2.3") is None  # push: false is not released
    assert "push: false" in r.err and "//base:base" in r.err
    assert logs(ws) == before  # no build ran
    assert "tag in place" in r.out and "build" not in r.out

    recs = releases(ws)
    assert sorted(rec["label"] for rec in recs) == ["//api:api", "//web:web"]
    for rec in recs:
        name = rec["label"][2:5]
        assert rec["release_version"] == "1.2.3" and rec["image_id"] == digests[name] and rec["git_commit"] == head
        assert rec["pushed"] == [f"localhost:5000/{prefix}-{name}@{digests[name]}"]
        assert rec["tags"] == sorted(f"localhost:5000/{prefix}-{name}:{t}" for t in ("1.2.3", "1.2", "latest"))

    # A rerun: nothing to do, nothing recorded twice.
    r = cli("release", "1.2.3", "//...", cwd=ws)
    assert r.code == 0, r.err
    assert "nothing to do" in r.out and "add" not in r.out
    assert len(releases(ws)) == 2 and logs(ws) == before


def test_an_interrupted_release_is_completed_by_a_rerun(ws: Path, prefix: str) -> None:
    report = build(ws, "--push")
    api = report["//api:api"]["image_id"]
    # As if a release had stopped after its first tag: api:1.2.3 is there, nothing else, no record.
    Copier().tag(Repository.parse(f"localhost:5000/{prefix}-api"), api, ("1.2.3",))

    r = cli("release", "1.2.3", "//api", cwd=ws)
    assert r.code == 0, r.err
    assert f"localhost:5000/{prefix}-api:1.2.3  already there" in r.out
    assert f"localhost:5000/{prefix}-api:1.2  add" in r.out
    assert [digest_of(f"localhost:5000/{prefix}-api", t) for t in ("1.2.3", "1.2", "latest")] == [api] * 3
    assert [rec["label"] for rec in releases(ws)] == ["//api:api"]
    assert cli("release", "1.2.3", "//api", cwd=ws).code == 0 and len(releases(ws)) == 1


def test_another_registry_gets_a_copy_by_digest(ws: Path, prefix: str) -> None:
    web = build(ws, "--push")["//web:web"]["image_id"]
    before = logs(ws)
    r = cli("release", "v2.0.0", "//web", "--registry", "other", "--tag", "{version}", "--tag", "stable", cwd=ws)
    assert r.code == 0, r.err
    assert f"copy by digest from localhost:5000/{prefix}-web" in r.out
    assert digest_of(f"{OTHER}/{prefix}-web", "2.0.0") == web and digest_of(f"{OTHER}/{prefix}-web", "stable") == web
    assert digest_of(f"localhost:5000/{prefix}-web", "2.0.0") is None  # only the release registry
    (rec,) = releases(ws)
    assert rec["release_version"] == "v2.0.0" and rec["pushed"] == [f"{OTHER}/{prefix}-web@{web}"]
    assert logs(ws) == before


def test_an_image_only_in_the_engine_is_pushed_and_a_missing_one_refused_or_built(ws: Path, prefix: str) -> None:
    web = build(ws)["//web:web"]["image_id"]  # built, never pushed
    r = cli("release", "1.0.0", "//web", cwd=ws)
    assert r.code == 0, r.err
    assert "push from the engine" in r.out and digest_of(f"localhost:5000/{prefix}-web", "1.0.0") == web

    (ws / "web" / "index.html").write_text("changed\n")
    commit(ws, "web changes")
    r = cli("release", "1.1.0", "//web", cwd=ws)
    assert r.code == 1 and "//web:web: no image for this commit" in r.err and "--build-missing" in r.err
    assert digest_of(f"localhost:5000/{prefix}-web", "1.1.0") is None

    before = logs(ws)
    r = cli("release", "1.1.0", "//web", "--build-missing", cwd=ws)
    assert r.code == 0, r.err
    assert logs(ws) != before  # this time a build ran
    new = digest_of(f"localhost:5000/{prefix}-web", "1.1.0")
    assert new and new != web and digest_of(f"localhost:5000/{prefix}-web", "latest") == new
    assert digest_of(f"localhost:5000/{prefix}-web", "1.0.0") == web


def test_a_dirty_tree_is_refused(ws: Path, prefix: str) -> None:
    build(ws, "--push")
    (ws / "web" / "index.html").write_text("uncommitted\n")
    r = cli("release", "1.2.3", "//web", cwd=ws)
    assert r.code == 1 and "uncommitted changes" in r.err and "--allow-dirty" in r.err
    assert digest_of(f"localhost:5000/{prefix}-web", "1.2.3") is None and releases(ws) == []


def test_a_release_tag_on_another_image_is_refused_and_nothing_changes(ws: Path, prefix: str) -> None:
    report = build(ws, "--push")
    api, web = report["//api:api"]["image_id"], report["//web:web"]["image_id"]
    # web:1.2.3 already names api's image (copied there by digest)
    Copier().copy(Repository.parse(f"localhost:5000/{prefix}-api"), Repository.parse(f"localhost:5000/{prefix}-web"),
                  api, ("1.2.3",))
    r = cli("release", "1.2.3", "//...", cwd=ws)
    assert r.code == 1
    assert f"tag localhost:5000/{prefix}-web:1.2.3 already points at {api}; this release's image is {web}" in r.err
    assert "nothing was changed" in r.err
    assert digest_of(f"localhost:5000/{prefix}-api", "1.2.3") is None  # api was not released either
    assert digest_of(f"localhost:5000/{prefix}-web", "1.2.3") == api and releases(ws) == []


def test_bad_versions_and_templates_are_exit_2(ws: Path) -> None:
    r = cli("release", "1.2", "//web", cwd=ws)
    assert r.code == 2 and "not a semantic version" in r.err
    r = cli("release", "1.2.3", "//web", "--tag", "{versoin}", cwd=ws)
    assert r.code == 2 and "did you mean {version}" in r.err
    r = cli("release", "1.2.3", "//web", "--registry", "nope", cwd=ws)
    assert r.code == 2 and "unknown registry 'nope'" in r.err


def test_git_tag_is_created_at_head_and_never_moved(ws: Path, prefix: str) -> None:
    build(ws, "--push")
    head = git(ws, "rev-parse", "HEAD")
    r = cli("release", "1.2.3", "//web", "--git-tag", cwd=ws)
    assert r.code == 0, r.err
    assert git(ws, "cat-file", "-t", "1.2.3") == "tag"
    assert git(ws, "rev-parse", "1.2.3^{commit}") == head
    assert git(ws, "tag", "-l", "--format=%(contents:subject)", "1.2.3") == "imgbuild release 1.2.3"
    assert cli("release", "1.2.3", "//web", "--git-tag", cwd=ws).code == 0  # already there: fine

    (ws / "README").write_text("more\n")
    commit(ws, "later")
    r = cli("release", "1.2.3", "//web", "--git-tag", cwd=ws)
    assert r.code == 1 and f"git tag 1.2.3 exists at commit {head[:12]}" in r.err
    assert git(ws, "rev-parse", "1.2.3^{commit}") == head


def test_promote_copies_by_digest_and_refuses_a_taken_tag(ws: Path, prefix: str) -> None:
    report = build(ws, "--push")
    api, web = report["//api:api"]["image_id"], report["//web:web"]["image_id"]
    head = git(ws, "rev-parse", "HEAD")

    r = cli("promote", "//web", "--from", "local", "--to", "other", cwd=ws)  # its own tags: dev
    assert r.code == 0, r.err
    assert digest_of(f"{OTHER}/{prefix}-web", "dev") == web
    hist = json.loads(imgbuild("history", "//web:web", "--kind", "push", "--json", cwd=ws).out)
    promoted = [h for h in hist if h["pushed"] == [f"{OTHER}/{prefix}-web@{web}"]]
    assert len(promoted) == 1 and promoted[0]["git_commit"] == head
    assert cli("promote", "//web", "--from", "local", "--to", "other", cwd=ws).out.endswith("nothing to do\n")

    # other's api:dev names web's image: refused, unless it may move
    Copier().copy(Repository.parse(f"localhost:5000/{prefix}-web"), Repository.parse(f"{OTHER}/{prefix}-api"), web,
                  ("dev",))
    r = cli("promote", "//api", "--from", "local", "--to", "other", cwd=ws)
    assert r.code == 1 and f"tag {OTHER}/{prefix}-api:dev already points at {web}" in r.err
    assert digest_of(f"{OTHER}/{prefix}-api", "dev") == web
    r = cli("promote", "//api", "--from", "local", "--to", "other", "--move", "dev", cwd=ws)
    assert r.code == 0, r.err
    assert digest_of(f"{OTHER}/{prefix}-api", "dev") == api
