"""The no-op journal (imgbuild.uptodate): which commands it may answer, which engine events void it, what it
records of a run, and that the history records it replays are the ones the history store verifies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from imgbuild import engine_events, uptodate
from imgbuild.statedir import for_workspace
from imgbuild.history.record import HistoryRecord
from imgbuild.history.sqlite import SqliteHistory

IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.mark.parametrize("argv, ok, workspace", [
    (["//..."], True, None),
    (["//apps/...", "-//apps/legacy/...", "-j", "4", "--progress", "plain", "-k"], True, None),
    (["//...", "--workspace", "ws", "--jobs=2"], True, "ws"),
    (["//...", "-w=ws"], True, "ws"),
    (["//...", "--push"], False, None),
    (["//...", "--json", "r.json"], False, None),
    (["//...", "--no-cache"], False, None),
    (["//...", "--rebuild", "//a:a"], False, None),
    (["//...", "--dry-run"], False, None),
    (["//...", "--metadata-file", "m.json"], False, None),
    (["//...", "-j"], False, None),  # a flag missing its value: argparse will say so
    (["--help"], False, None),
])
def test_only_plain_builds_may_be_answered_by_a_journal(argv: list[str], ok: bool, workspace: str | None) -> None:
    assert uptodate.workspace_option(argv) == (ok, workspace)


def test_the_command_key_changes_with_arguments_directory_and_environment_but_not_shell_noise() -> None:
    env = {"HOME": "/root", "SECRET_TOKEN": "x", "OLDPWD": "/a", "SHLVL": "1"}
    key = uptodate.command_key(["//..."], "/ws", env)
    assert uptodate.command_key(["//..."], "/ws", {**env, "OLDPWD": "/b", "SHLVL": "3"}) == key
    assert uptodate.command_key(["//..."], "/ws", {**env, "SECRET_TOKEN": "y"}) != key
    assert uptodate.command_key(["//...", "-j", "2"], "/ws", env) != key
    assert uptodate.command_key(["//..."], "/ws/apps", env) != key


def _event(action: str, image_id: str, name: str = "", kind: str = "image") -> dict[str, object]:
    return {"Type": kind, "Action": action, "Actor": {"ID": image_id, "Attributes": {"name": name} if name else {}},
            "timeNano": 1}


IMAGES = {"acme/api:latest": IMG, "acme/api:imgbuild-aaaaaaaaaaaaaaaa": IMG}


@pytest.mark.parametrize("event, voids", [
    (_event("untag", IMG, "acme/api:latest"), True),  # docker rmi of our tag
    (_event("delete", IMG), True),  # our image removed
    (_event("tag", OTHER, "acme/api:latest"), True),  # our tag moved to another image
    (_event("tag", IMG, "acme/api:latest"), False),  # our tag set again on our image
    (_event("tag", OTHER, "acme/web:latest"), False),  # someone else's tag
    (_event("untag", OTHER, "acme/web:latest"), False),
    (_event("delete", OTHER), False),
    (_event("pull", "acme/api:latest", "acme/api"), True),  # a pull may move our tag
    (_event("load", "docker.io/acme/api:latest", "docker.io/acme/api:latest"), True),
    (_event("pull", "busybox:1.36", "busybox"), False),
    (_event("save", IMG, "acme/api:latest"), False),
    (_event("die", "c0ffee", "acme/api:latest", kind="container"), False),
])
def test_engine_events_that_void_a_journal(event: dict[str, object], voids: bool) -> None:
    assert bool(engine_events.untrusted([event], IMAGES)) is voids


def test_only_the_images_an_event_touches_lose_trust() -> None:
    images = {**IMAGES, "acme/web:latest": OTHER, "acme/web:imgbuild-bbbbbbbbbbbbbbbb": OTHER}
    assert engine_events.untrusted([_event("untag", IMG, "acme/api:latest")], images) == {IMG}
    assert engine_events.untrusted([_event("tag", IMG, "acme/web:latest")], images) == {OTHER}
    assert engine_events.untrusted([_event("pull", "acme/web:2", "acme/web")], images) == {OTHER}
    assert engine_events.untrusted([_event("tag", IMG, "acme/api:v2"), _event("save", OTHER)], images) == set()


def test_replayed_records_are_records_the_history_verifies(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    first = HistoryRecord(kind="build", time="2026-01-02T03:04:05.678Z", label="//apps/api:api",
                          input_digest="sha256:" + "c" * 64, image_id=IMG, manifest_digest=IMG,
                          tags=("acme/api:latest",), git_commit="d" * 40, git_branch="main",
                          build_args=(("A", "1"),), secret_ids=("npm",), cache="cached", duration_s=0.01,
                          ci_provider="github", workspace="ws")
    store = SqliteHistory(db)
    store.append(first)
    payload = {k: v for k, v in first.to_dict().items() if k not in ("id", "time")}
    uptodate._append_history({"history": {"sqlite": str(db), "records": [payload, payload]}}, str(tmp_path))

    records = store.query()  # verifies every row: its id against its content, its columns against the record
    assert len(records) == 2  # one replayed row: the two payloads share this moment, hence one id
    replayed = next(r for r in records if r.id != first.id)
    assert {k: v for k, v in replayed.to_dict().items() if k not in ("id", "time")} == payload
    assert replayed.time > first.time
    assert replayed.to_bytes() == HistoryRecord(**{**payload, "time": replayed.time,
                                                   "tags": tuple(payload["tags"]), "pushed": (),
                                                   "platforms": (), "build_args": (("A", "1"),),
                                                   "secret_ids": ("npm",)}).to_bytes()


def test_a_recorder_keeps_what_was_read_and_listed_not_what_was_written(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "app").mkdir(parents=True)
    (ws / "imgbuild.yaml").write_text("version: 1\n")
    (ws / "app" / "Dockerfile").write_text("FROM busybox\n")
    (ws / "app" / "cached.txt").write_text("x\n")
    env = {"DOCKER_HOST": "tcp://nowhere:2375", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    state = for_workspace(ws, env)
    (state.logs).mkdir(parents=True)
    (state.target_cache / "entries").mkdir(parents=True)
    state.statcache.write_text("{}")
    (state.target_cache / "entries" / "e.json").write_text("{}")
    rec = uptodate.Recorder(["//..."], str(ws), env, str(ws))
    rec.start()
    try:
        (ws / "app" / "Dockerfile").read_text()
        list(os.scandir(ws / "app"))
        state.statcache.read_text()  # imgbuild's bookkeeping, rewritten by every run: not an input
        (state.target_cache / "entries" / "e.json").read_text()  # a cache entry: an input of the answer
        (state.logs / "app.log").write_text("log\n")
        (ws / "out.txt").write_text("written\n")
        sys.audit(uptodate.STAT_EVENT, str(ws / "app" / "cached.txt"))
    finally:
        rec.stop()
    (ws / "late.txt").read_text() if (ws / "late.txt").exists() else None  # after stop: not recorded
    paths = rec._paths()
    assert str(ws / "app" / "Dockerfile") in paths
    assert str(ws / "app") in paths  # listed, and the Dockerfile's directory (a new .dockerignore shows there)
    assert str(ws / "app" / "cached.txt") in paths  # answered by the stat cache without being read
    assert str(ws / "out.txt") not in paths and str(state.logs / "app.log") not in paths
    assert str(state.statcache) not in paths and str(state.cache) not in paths
    assert str(state.target_cache / "entries" / "e.json") in paths
    assert not any(p.startswith(os.path.dirname(uptodate.__file__)) for p in paths)
    assert rec.anchor is None and not rec.save(images={}, records=[], history_db="", summary=[], state="ok",
                                               git=None)  # no engine events to trust: no journal
