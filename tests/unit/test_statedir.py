"""imgbuild's own state lives outside the work tree (or, when put inside, stays out of git and digests),
and an old in-tree ``.imgbuild/`` history is moved out without losing a record."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from imgbuild import statedir
from imgbuild.digest import Hasher
from imgbuild.git import changed
from imgbuild.graph import TargetGraph
from imgbuild.history import HistoryRecord
from imgbuild.history.sqlite import SqliteHistory
from imgbuild.specfiles.packages import load_workspace
from imgbuild.statcache import StatCache
from imgbuild.statedir import for_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.test_history import at

ROOT_CONTEXT = {
    "BUILD.yaml": "apps: {tool: {context: ., dockerfile: Dockerfile}}\n",
    "Dockerfile": "FROM busybox:1.36\nCOPY . /src\n",
    "main.go": "package main\n",
}


def test_default_dirs_are_outside_the_workspace_keyed_by_its_real_path(tmp_path: Path, state_home: Path) -> None:
    ws = tmp_path / "my repo"
    ws.mkdir()
    (tmp_path / "link").symlink_to(ws)
    dirs = for_workspace(ws)
    key = f"my_repo-{hashlib.sha256(os.fsencode(os.path.realpath(ws))).hexdigest()[:16]}"
    assert dirs.cache == state_home / "cache" / "imgbuild" / key
    assert dirs.records == state_home / "state" / "imgbuild" / key  # records apart from what may be wiped
    assert dirs.history_db == dirs.records / "history.sqlite" and dirs.logs == dirs.cache / "logs"
    assert for_workspace(tmp_path / "link") == dirs  # the same workspace by another path
    assert dirs.inside_workspace() == ()
    other = tmp_path / "elsewhere" / "my repo"
    other.mkdir(parents=True)
    assert for_workspace(other).cache != dirs.cache  # same name, other checkout: its own state


def test_xdg_and_home(tmp_path: Path) -> None:
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "relative/is/ignored"}
    cache, records = statedir.roots(str(tmp_path), env)
    assert cache.startswith("/home/u/.cache/imgbuild/") and records.startswith("/home/u/.local/state/imgbuild/")
    cache, records = statedir.roots(str(tmp_path), {**env, "XDG_CACHE_HOME": "/c", "XDG_STATE_HOME": "/s"})
    assert cache.startswith("/c/imgbuild/") and records.startswith("/s/imgbuild/")


def test_override_inside_the_workspace_is_ignored_by_git_and_digests(make_ws: WorkspaceFactory,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_ws(ROOT_CONTEXT)
    monkeypatch.setenv("IMGBUILD_STATE_DIR", "state")  # relative: to the workspace root
    ws = load_workspace(root)
    assert ws.state.cache == ws.state.records == root / "state"
    assert (root / "state" / ".gitignore").read_text().splitlines()[-1] == "*"

    def key() -> str:
        w = load_workspace(root)
        g = TargetGraph.build(w)
        found = Hasher(w, stat_cache=StatCache(w.state.statcache), environ={}).compute(g, g.order(w.targets))
        return next(iter(found.values())).key()

    first = key()
    (root / "state" / "cache" / "blob").parent.mkdir(parents=True)
    (root / "state" / "cache" / "blob").write_text("written by a build\n")
    assert key() == first  # its own writes never change an input digest
    (root / "main.go").write_text("package main // changed\n")
    assert key() != first


def _legacy_history(root: Path, *records: HistoryRecord) -> Path:
    old = root / ".imgbuild" / "history.sqlite"
    SqliteHistory(old).append_all(list(records))
    return old


def test_an_old_in_tree_history_is_moved_once_with_a_notice(make_ws: WorkspaceFactory,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws(ROOT_CONTEXT)
    old = _legacy_history(root, at(1), at(2))
    (root / ".imgbuild" / "history-spool").mkdir()
    (root / ".imgbuild" / "history-spool" / "r1.json").write_text("{}")
    ws = load_workspace(root)
    err = capsys.readouterr().err
    assert f"moved the history (.imgbuild/history.sqlite) to {ws.state.history_db}" in err
    assert "delete it" in err
    assert not old.exists() and not Path(f"{old}-wal").exists()
    assert [r.id for r in SqliteHistory(ws.state.history_db).query()] == [at(2).id, at(1).id]
    assert (ws.state.history_spool / "r1.json").read_text() == "{}"
    load_workspace(root)
    assert capsys.readouterr().err == ""  # once


def test_an_old_history_is_merged_into_one_already_there(make_ws: WorkspaceFactory) -> None:
    root = make_ws(ROOT_CONTEXT)
    dirs = for_workspace(root)
    SqliteHistory(dirs.history_db).append_all([at(2), at(3)])
    _legacy_history(root, at(1), at(2))
    load_workspace(root)
    assert [r.id for r in SqliteHistory(dirs.history_db).query()] == [at(3).id, at(2).id, at(1).id]


def test_a_damaged_old_row_is_moved_too(make_ws: WorkspaceFactory) -> None:
    root = make_ws(ROOT_CONTEXT)
    old = _legacy_history(root, at(1))
    with sqlite3.connect(old) as db:  # a row no reader can verify: still a record, never dropped
        db.execute("INSERT INTO records VALUES ('sha256:00', 't', '//x:x', NULL, 'build', '{bad')")
    dirs = load_workspace(root).state
    with sqlite3.connect(dirs.history_db) as db:
        assert {r[0] for r in db.execute("SELECT id FROM records")} == {at(1).id, "sha256:00"}


def test_an_explicit_history_path_keeps_its_meaning(make_ws: WorkspaceFactory) -> None:
    root = make_ws({**ROOT_CONTEXT,
                    "imgbuild.yaml": "version: 1\nhistory: {backend: sqlite, path: .imgbuild/history.sqlite}\n"})
    old = _legacy_history(root, at(1))
    ws = load_workspace(root)
    assert old.exists() and not ws.state.history_db.exists()
    from imgbuild.history.store import open_store

    store = open_store(ws.config.history, ws.root)
    assert isinstance(store, SqliteHistory) and store.path == old


def test_reports_imgbuild_wrote_do_not_make_the_tree_dirty(make_ws: WorkspaceFactory) -> None:
    root = make_ws(ROOT_CONTEXT)
    dirs = for_workspace(root)
    (root / "imgbuild-report.json").write_text('{"targets": []}\n')
    (root / "out").mkdir()
    (root / "out" / "junit.xml").write_text("<testsuite/>\n")
    status = ["?? imgbuild-report.json", "?? out/"]
    assert changed(status, str(root), root)  # not written by imgbuild: a change like any other
    statedir.remember_output(dirs, root / "imgbuild-report.json")
    statedir.remember_output(dirs, root / "out" / "junit.xml")
    assert not changed(status, str(root), root)
    assert changed([*status, " M BUILD.yaml"], str(root), root)
    (root / "out" / "junit.xml").write_text("<testsuite>edited</testsuite>\n")
    assert changed(status, str(root), root)  # edited since: the user's change


def test_an_old_history_that_cannot_be_read_stays_where_it_is(make_ws: WorkspaceFactory,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws(ROOT_CONTEXT)
    (root / ".imgbuild").mkdir()
    old = root / ".imgbuild" / "history.sqlite"
    old.write_bytes(b"not a database, but maybe someone's records" * 100)
    load_workspace(root)
    err = capsys.readouterr().err
    assert "could not move imgbuild's old state" in err and "the next command tries again" in err
    assert old.read_bytes().startswith(b"not a database")


def test_absorbing_a_file_removed_meanwhile_creates_nothing(tmp_path: Path) -> None:
    from imgbuild.history.store import HistoryUnavailable

    gone = tmp_path / "old" / "history.sqlite"
    gone.parent.mkdir()
    with pytest.raises(HistoryUnavailable):
        SqliteHistory(tmp_path / "new.sqlite").absorb(gone)
    assert not gone.exists()  # never an empty database in its place, which would hide the next attempt


def test_packages_are_not_searched_for_in_the_state_dir(make_ws: WorkspaceFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_ws({**ROOT_CONTEXT, "build-state/cache/BUILD.yaml": "apps: {stray: {}}\n"})
    monkeypatch.setenv("IMGBUILD_STATE_DIR", "build-state")
    assert sorted(str(lb) for lb in load_workspace(root).targets) == ["//:tool"]

