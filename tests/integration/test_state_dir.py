"""A new user's repository: no ignore files at all, a target whose context is the whole workspace.

imgbuild's own state (caches, history, logs, journals) must neither reach that context (a rebuild on
every run, its files in the image) nor git (a dirty tree refusing ``--push``); see imgbuild.statedir.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from imgbuild.statedir import for_workspace
from tests.conftest import write_files
from tests.integration.conftest import digest_of, docker, imgbuild

pytestmark = pytest.mark.usefixtures("engine")

REGISTRY = "localhost:5000"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


def fresh_repo(root: Path, prefix: str) -> Path:
    write_files(root, {
        "imgbuild.yaml": f"""
            version: 1
            registries: {{local: {{url: {REGISTRY}/{prefix}, insecure: true}}}}
            defaults: {{tags: [dev]}}
        """,
        "tools/gen/BUILD.yaml": f"apps:\n  gen:\n    context: ../..\n    image: {prefix}-gen\n"
                                "    registry: local\n    push: true\n",
        "tools/gen/Dockerfile": "FROM busybox:1.36\nWORKDIR /src\nCOPY . .\n",
        "go.mod": "module example.com/mono\n",
    })
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def status_of(err: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}\s+(\S+)", err, re.M)
    assert m, err
    return m.group(1)


def test_state_stays_out_of_a_root_context_and_out_of_git(tmp_path: Path, prefix: str) -> None:
    root = fresh_repo(tmp_path / "mono", prefix)
    statuses = []
    for _ in range(3):
        r = imgbuild("build", "//tools/gen", "--progress", "plain", cwd=root)
        assert r.code == 0, r.err
        statuses.append(status_of(r.err, "//tools/gen:gen"))
        assert git(root, "status", "--porcelain") == ""
    assert statuses == ["built", "cached", "cached"]

    files = docker("run", "--rm", f"{prefix}-gen:dev", "find", "/src", "-type", "f", "-not", "-path",
                   "/src/.git/*").split()
    assert sorted(files) == ["/src/go.mod", "/src/imgbuild.yaml", "/src/tools/gen/BUILD.yaml",
                             "/src/tools/gen/Dockerfile"]
    state = for_workspace(root)
    assert state.history_db.is_file() and (state.logs / "tools/gen/gen.log").is_file()  # kept, elsewhere
    assert not (root / ".imgbuild").exists()

    r = imgbuild("build", "//tools/gen", "--push", "--progress", "plain", cwd=root)
    assert r.code == 0, r.err
    assert "uncommitted" not in r.err
    assert digest_of(f"{REGISTRY}/{prefix}/{prefix}-gen", "dev") is not None
    assert git(root, "status", "--porcelain") == ""


def test_reports_written_into_the_tree_do_not_make_it_dirty(tmp_path: Path, prefix: str) -> None:
    root = fresh_repo(tmp_path / "mono", prefix)
    r = imgbuild("ci", "--all", "--no-push", cwd=root)  # its report and JUnit file, in the work tree
    assert r.code == 0, r.err
    assert git(root, "status", "--porcelain") == "?? imgbuild-junit.xml\n?? imgbuild-report.json\n"
    r = imgbuild("build", "//tools/gen", "--push", "--progress", "plain", cwd=root)
    assert r.code == 0, r.err
    assert digest_of(f"{REGISTRY}/{prefix}/{prefix}-gen", "dev") is not None

    (root / "imgbuild-report.json").write_text("{}\n")  # edited by hand: a change like any other
    r = imgbuild("build", "//tools/gen", "--push", "--progress", "plain", cwd=root)
    assert r.code == 2 and "uncommitted changes" in r.err


def test_a_state_dir_inside_the_tree_is_ignored_by_git(tmp_path: Path, prefix: str) -> None:
    root = fresh_repo(tmp_path / "mono", prefix)
    (root / ".dockerignore").write_text(".state\n")  # what the docs ask for a context that contains it
    git(root, "add", ".dockerignore")
    git(root, "commit", "-qm", "state")
    env = {"IMGBUILD_STATE_DIR": ".state"}
    for expected in ("built", "cached"):
        r = imgbuild("build", "//tools/gen", "--progress", "plain", cwd=root, env=env)
        assert r.code == 0, r.err
        assert status_of(r.err, "//tools/gen:gen") == expected
        assert git(root, "status", "--porcelain") == ""
    assert (root / ".state/history.sqlite").is_file() and (root / ".state/logs/tools/gen/gen.log").is_file()


def test_a_build_where_the_state_cannot_be_kept_is_refused_first(tmp_path: Path, prefix: str) -> None:
    root = fresh_repo(tmp_path / "mono", prefix)
    (tmp_path / "a-file").write_text("")
    env = {"XDG_CACHE_HOME": str(tmp_path / "a-file")}  # cannot hold a directory
    r = imgbuild("plan", "//...", cwd=root, env=env)
    assert r.code == 0, r.err  # reading commands do without it
    r = imgbuild("build", "//...", "--progress", "plain", cwd=root, env=env)
    assert r.code == 2
    assert f"cannot create imgbuild's state directory {tmp_path / 'a-file'}" in r.err
    assert "set IMGBUILD_STATE_DIR" in r.err and "Traceback" not in r.err
    assert "[start]" not in r.err  # nothing built
