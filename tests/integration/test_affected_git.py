"""changed_files and `query affected` against a scripted git history in a temporary repository.

The workspace is a subdirectory of the repository (``repo/ws``), so paths must come out relative to
the workspace and changes outside it must not appear. Needs only git, no engine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from imgbuild.affected import ChangesError, affected_targets, changed_files
from imgbuild.commands import affected as affected_command
from imgbuild.errors import EXIT_USAGE
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import write_files

DF = "FROM busybox:1.36\n"
WS_FILES = {
    "imgbuild.yaml": "version: 1\n",
    ".gitignore": "*.log\n",
    "base/BUILD.yaml": "apps:\n  base: {}\n",
    "base/Dockerfile": DF,
    "apps/api/BUILD.yaml": "apps:\n  api:\n    deps: {BASE_IMAGE: //base}\n",
    "apps/api/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    "apps/api/.dockerignore": "*.md\n",
    "apps/api/README.md": "# api\n",
    "apps/api/src/main.py": "print('api')\n",
    "apps/api/src/legacy.py": "print('old')\n",
    "apps/web/BUILD.yaml": "apps:\n  web: {}\n",
    "apps/web/Dockerfile": DF,
    "apps/web/index.html": "<p>web</p>\n",
    "apps/worker/BUILD.yaml": "apps:\n  worker: {}\n",
    "apps/worker/Dockerfile": DF,
    "apps/worker/old.py": "print('worker')\n",
    "apps/admin/BUILD.yaml": "apps:\n  admin: {}\n",
    "apps/admin/Dockerfile": DF,
    "apps/admin/app.py": "print('admin')\n",
    "apps/batch/BUILD.yaml": "apps:\n  batch: {}\n",
    "apps/batch/Dockerfile": DF,
    "tools/migrate/BUILD.yaml": "apps:\n  migrate:\n    deps: {API: //apps/api}\n",
    "tools/migrate/Dockerfile": "ARG API\nFROM ${API}\n",
}

# What the feature branch and its work tree change, relative to the workspace (see `repo` below).
FEATURE_COMMITTED = ("apps/api/src/legacy.py", "apps/web/index.html", "apps/worker/new.py", "apps/worker/old.py")
FEATURE_ALL = tuple(sorted(FEATURE_COMMITTED + (
    "apps/api/README.md", "apps/api/src/main.py", "apps/batch/job.py", "tools/migrate/Dockerfile")))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, check=True, capture_output=True, text=True, timeout=60,
    ).stdout


def edit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: the workspace; feature (checked out): web edited, a rename, a deletion, a change outside
    the workspace; main then moves on (base, admin) after feature forked; a dirty work tree on top."""
    repo = tmp_path / "repo"
    ws = repo / "ws"
    write_files(ws, WS_FILES)
    edit(repo / "other/notes.txt", "outside the workspace\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "workspace")

    git(repo, "checkout", "-q", "-b", "feature")
    edit(ws / "apps/web/index.html", "<p>web 2</p>\n")
    git(repo, "commit", "-q", "-am", "web: new page")
    git(ws, "mv", "apps/worker/old.py", "apps/worker/new.py")
    git(repo, "commit", "-q", "-m", "worker: rename")
    git(ws, "rm", "-q", "apps/api/src/legacy.py")
    git(repo, "commit", "-q", "-m", "api: drop legacy")
    edit(repo / "other/notes.txt", "changed outside the workspace\n")
    git(repo, "commit", "-q", "-am", "outside")

    # main moves on after the fork: none of this is the feature's change.
    git(repo, "checkout", "-q", "main")
    edit(ws / "base/Dockerfile", "FROM busybox:1.37\n")
    edit(ws / "apps/admin/app.py", "print('admin 2')\n")
    git(repo, "commit", "-q", "-am", "main: base and admin")
    git(repo, "checkout", "-q", "feature")

    # The work tree: unstaged, staged, untracked, ignored, and outside the workspace.
    edit(ws / "apps/api/README.md", "# api, unstaged\n")  # excluded by apps/api/.dockerignore
    edit(ws / "apps/api/src/main.py", "print('api 2')\n")
    edit(ws / "tools/migrate/Dockerfile", "ARG API\nFROM ${API}\nRUN true\n")
    git(ws, "add", "tools/migrate/Dockerfile")
    edit(ws / "apps/batch/job.py", "print('job')\n")  # untracked
    edit(ws / "apps/batch/debug.log", "ignored by .gitignore\n")
    edit(repo / "other/untracked.txt", "outside\n")
    return repo


def test_changed_files_since_the_merge_base_and_the_work_tree(repo: Path) -> None:
    assert changed_files(repo / "ws", "main") == FEATURE_ALL


def test_changed_files_at_the_repository_top_level(repo: Path) -> None:
    found = changed_files(repo, "main")
    assert found == tuple(sorted(["ws/" + p for p in FEATURE_ALL] + ["other/notes.txt", "other/untracked.txt"]))


def test_changed_files_since_head_is_the_work_tree_only(repo: Path) -> None:
    assert changed_files(repo / "ws", "HEAD") == tuple(sorted(set(FEATURE_ALL) - set(FEATURE_COMMITTED)))


def test_changed_files_of_a_clean_tree_since_a_commit(repo: Path) -> None:
    git(repo, "stash", "-q", "--include-untracked")
    assert changed_files(repo / "ws", "main") == FEATURE_COMMITTED
    assert changed_files(repo / "ws", "feature~1") == ()  # only the change outside the workspace
    assert changed_files(repo / "ws", "feature~2") == ("apps/api/src/legacy.py",)


def test_affected_targets_of_the_feature(repo: Path) -> None:
    graph = TargetGraph.build(load_workspace(repo / "ws"))
    found = affected_targets(graph, changed_files(repo / "ws", "main"))
    assert found == {Label("apps/web", "web"), Label("apps/worker", "worker"), Label("apps/api", "api"),
                     Label("tools/migrate", "migrate"), Label("apps/batch", "batch")}


def args(ws: Path, since: str, *, as_json: bool = False, shard: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(workspace=ws, since=since, json=as_json, shard=shard)


def test_query_affected_prints_build_order(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = ["//apps/api:api", "//apps/batch:batch", "//apps/web:web", "//apps/worker:worker",
                "//tools/migrate:migrate"]
    assert affected_command.main(args(repo / "ws", "main")) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert affected_command.main(args(repo / "ws", "main", as_json=True)) == 0
    assert json.loads(capsys.readouterr().out) == expected


def test_query_affected_shards(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    for i in (1, 2, 3):
        assert affected_command.main(args(repo / "ws", "main", as_json=True, shard=f"{i}/3")) == 0
        part = json.loads(capsys.readouterr().out)
        if "//tools/migrate:migrate" in part:  # a chain stays in one job, dependency first
            assert part.index("//apps/api:api") < part.index("//tools/migrate:migrate")
        seen += part
    assert sorted(seen) == ["//apps/api:api", "//apps/batch:batch", "//apps/web:web", "//apps/worker:worker",
                            "//tools/migrate:migrate"]


def test_query_affected_with_nothing_changed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "stash", "-q", "--include-untracked")
    assert affected_command.main(args(repo / "ws", "HEAD", as_json=True)) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == []
    assert "no target affected" in out.err


def test_missing_ref_says_what_to_fetch(repo: Path) -> None:
    with pytest.raises(ChangesError) as exc:
        changed_files(repo / "ws", "origin/main")
    err = exc.value
    assert err.exit_code == EXIT_USAGE
    text = err.render()
    assert "--since origin/main: no such commit in this clone" in text
    assert "`git fetch origin main`" in text
    assert "fetch-depth: 0" in text and "--all" in text


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "", "-"])
def test_option_like_ref_is_refused(repo: Path, ref: str) -> None:
    with pytest.raises(ChangesError, match="is not a git revision"):
        changed_files(repo / "ws", ref)


def test_shallow_clone_missing_ref_then_no_merge_base_then_fetched(repo: Path, tmp_path: Path) -> None:
    git(repo, "stash", "-q", "--include-untracked")
    clone = tmp_path / "clone"
    # As CI checks out: one commit of the branch, no other branch.
    git(tmp_path, "clone", "-q", "--depth=1", "--branch", "feature", f"file://{repo}", str(clone))

    with pytest.raises(ChangesError) as exc:
        changed_files(clone / "ws", "origin/main")
    assert "no such commit in this shallow clone" in exc.value.render()
    assert "git fetch --depth=100 origin main" in exc.value.render()

    git(clone, "fetch", "-q", "--depth=1", "origin", "main:refs/remotes/origin/main")
    with pytest.raises(ChangesError) as exc:
        changed_files(clone / "ws", "origin/main")
    text = exc.value.render()
    assert "no merge base with HEAD in this shallow clone" in text
    assert "--unshallow" in text and "fetch-depth: 0" in text and "--all" in text

    git(clone, "fetch", "-q", "--unshallow", "origin")
    assert changed_files(clone / "ws", "origin/main") == FEATURE_COMMITTED


def test_unrelated_history(repo: Path) -> None:
    git(repo, "stash", "-q", "--include-untracked")
    git(repo, "checkout", "-q", "--orphan", "lonely")
    git(repo, "commit", "-q", "-m", "no parent")
    with pytest.raises(ChangesError, match="has no common history with HEAD"):
        changed_files(repo / "ws", "main")


def test_not_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = write_files(tmp_path / "plain", {"imgbuild.yaml": "version: 1\n"})
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above
    with pytest.raises(ChangesError, match="needs a git repository"):
        changed_files(plain, "main")


def test_no_commit_yet(tmp_path: Path) -> None:
    empty = write_files(tmp_path / "empty", {"imgbuild.yaml": "version: 1\n"})
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(ChangesError, match="HEAD has no commit yet"):
        changed_files(empty, "main")
