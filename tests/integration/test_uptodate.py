"""The no-op journal on the real engine: an unchanged build is answered from it, and anything that could
change the answer (a file, the engine's images, git) makes the build run normally again."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from imgbuild.statedir import for_workspace

from tests.integration.conftest import Run, docker, imgbuild
from tests.integration.test_cache import workspace

pytestmark = pytest.mark.usefixtures("engine")

RACY = 2.1  # files changed within 2 s of a run's start are not trusted (see imgbuild.uptodate)
UP_TO_DATE = "up to date: nothing changed since the build"


def plain(root: Path) -> Run:
    r = imgbuild("build", "//...", "--progress", "plain", cwd=root)
    assert r.code == 0, r.err
    return r


def status(r: Run, label: str) -> str:
    """The target's status in the summary table."""
    # (not the step-report lines after the table, which start with the label too)
    rows = [line.split() for line in r.err.splitlines() if line.startswith(label + " ")
            and line.split()[1] in ("built", "cached", "restored", "failed", "skipped", "cancelled")]
    assert len(rows) == 1, r.err
    return rows[0][1]


def history(root: Path, label: str) -> list[dict[str, Any]]:
    r = imgbuild("history", label, "--json", cwd=root)
    assert r.code == 0, r.err
    return list(json.loads(r.out))


def journaled(root: Path) -> Run:
    """Unchanged builds, far enough from the last change: one writes the journal, the next is answered by it."""
    time.sleep(RACY)
    plain(root)
    answered = plain(root)
    assert UP_TO_DATE in answered.err, answered.err
    return answered


def test_an_unchanged_build_is_answered_from_the_journal_until_something_changes(tmp_path: Path,
                                                                                 prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, "{backend: local}")
    plain(root)  # builds everything
    time.sleep(RACY)
    assert UP_TO_DATE not in plain(root).err  # all cached: this one writes the journal
    answered = plain(root)
    assert UP_TO_DATE in answered.err, answered.err
    for label in ("//base:base", "//api:api", "//web:web"):
        assert status(answered, label) == "cached"
    assert answered.err.strip().splitlines()[-1].startswith("ok: 3 cached in ")
    # The answered build is in the history like any other: built, cached, and cached again (time renewed).
    records = history(root, "//api")
    assert [r["cache"] for r in records] == ["cached", "cached", "built"]
    assert records[0]["time"] > records[1]["time"] and records[0]["image_id"] == records[2]["image_id"]

    # A file the build ignores (api/.dockerignore: *.md) changes nothing.
    (root / "api/notes.md").write_text("still ignored\n")
    assert UP_TO_DATE in plain(root).err

    # A tag removed in the engine: the build runs, and the tag is back.
    docker("image", "rm", f"{prefix}-web:dev")
    r = plain(root)
    assert UP_TO_DATE not in r.err and status(r, "//web:web") == "cached"
    web = history(root, "//web")[0]
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{prefix}-web:dev").strip() == web["image_id"]

    # A tag moved to another image by someone else: the build runs and puts it back.
    journaled(root)
    docker("tag", f"{prefix}-base:dev", f"{prefix}-web:dev")
    r = plain(root)
    assert UP_TO_DATE not in r.err
    web = history(root, "//web")[0]
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{prefix}-web:dev").strip() == web["image_id"]

    # A new file next to a Dockerfile (here a .dockerignore that changes the context): the build runs.
    journaled(root)
    (root / "web/.dockerignore").write_text("nothing-matches\n")
    r = plain(root)
    assert UP_TO_DATE not in r.err

    # A file in a context: that target is rebuilt.
    journaled(root)
    (root / "api/main.sh").write_text("echo v2\n")
    r = plain(root)
    assert UP_TO_DATE not in r.err and status(r, "//api:api") == "built"

    # Another command line (or environment) has its own journal.
    r = imgbuild("build", "//web", "--progress", "plain", cwd=root)
    assert r.code == 0 and UP_TO_DATE not in r.err


def test_git_commits_and_a_dirty_work_tree_void_the_journal(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, "{backend: local}")
    (root / "imgbuild.yaml").write_text((root / "imgbuild.yaml").read_text().replace("tags: [dev]",
                                                                                     "tags: [dev, '{git.short_sha}']"))
    (root / ".gitignore").write_text(".imgbuild/\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                              check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "one")
    plain(root)
    journaled(root)

    # A change outside every context still makes the work tree dirty: records and tags would say so.
    (root / "README.md").write_text("docs\n")
    r = plain(root)
    assert UP_TO_DATE not in r.err
    assert history(root, "//web")[0]["git_dirty"] is True

    # Committed: a new commit, a new {git.short_sha} tag, so the build runs and tags it.
    git("add", "-A")
    git("commit", "-q", "-m", "two")
    r = plain(root)
    assert UP_TO_DATE not in r.err
    sha = git("rev-parse", "HEAD").strip()
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{prefix}-web:{sha[:12]}").strip()
    journaled(root)

    # A new git tag ({git.tag} templates could use it): the build runs.
    git("tag", "v1.0.0")
    assert UP_TO_DATE not in plain(root).err


def test_images_removed_since_the_last_run_are_not_trusted(tmp_path: Path, prefix: str) -> None:
    """The engine-trust file answers "is the cached image still there" from the engine's event log; an
    image deleted since (with all its tags) must be noticed, and rebuilt or restored, never reported cached."""
    root = workspace(tmp_path / "ws", prefix, "{backend: local}")
    env = {"IMGBUILD_NO_JOURNAL": "1"}  # the full check every time
    first = imgbuild("build", "//...", "--progress", "plain", cwd=root, env=env)
    assert first.code == 0, first.err
    trust = json.loads(for_workspace(root).engine_trust.read_text())
    web_id = trust["images"][f"{prefix}-web:dev"]
    assert {ref for ref, i in trust["images"].items() if i == web_id} == \
        {f"{prefix}-web:dev", f"{prefix}-web:imgbuild-{web_id.split(':')[1][:16]}"}

    docker("image", "rm", "-f", web_id)
    r = imgbuild("build", "//...", "--progress", "plain", cwd=root, env=env)
    assert r.code == 0, r.err
    assert status(r, "//web:web") in ("restored", "built") and status(r, "//api:api") == "cached"
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{prefix}-web:dev").strip() == web_id
