"""File names in a context that are not UTF-8 are hashed as bytes and shown escaped (issue #14)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imgbuild.canonical import canonical_json
from imgbuild.cli import main
from imgbuild.digest import Hasher, Inputs
from imgbuild.explain import diff_inputs
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import write_files

FILES = {
    "imgbuild.yaml": "version: 1\n",
    "app/BUILD.yaml": "apps:\n  app:\n    platforms: [linux/amd64]\n    build_args: {V: '1'}\n    labels: {team: é}\n",
    "app/Dockerfile": "FROM busybox:1.36\nCOPY . /app\n",
    "app/main.py": "print(1)\n",
    "app/naïve café.txt": "ü\n",
}
BAD = b"bad\xffname"


def inputs(root: Path) -> Inputs:
    ws = load_workspace(root)
    g = TargetGraph.build(ws)
    return Hasher(ws, stat_cache=None, environ={}).compute(g, [Label("app", "app")])[Label("app", "app")]


def with_file(root: Path, name: bytes, text: bytes = b"x\n") -> Path:
    write_files(root, FILES)
    with open(os.path.join(os.fsencode(root / "app"), name), "wb") as f:
        f.write(text)
    return root


def test_utf8_names_keep_their_digests(tmp_path: Path) -> None:
    # As computed before names were hashed as bytes: existing cache entries stay valid.
    assert inputs(write_files(tmp_path, FILES)).key() == \
        "sha256:264efbb69cc67025fafbadd9b6678c85b36e79177ac10dc5f5f603308a7eb096"


def test_a_name_that_is_not_utf8_is_hashed_as_its_bytes(tmp_path: Path) -> None:
    bad = inputs(with_file(tmp_path / "a", BAD))
    # its escaped spelling is a different, valid name: no collision
    lookalike = inputs(with_file(tmp_path / "b", b"bad\\xffname"))
    other_byte = inputs(with_file(tmp_path / "c", b"bad\xfename"))
    changed = inputs(with_file(tmp_path / "d", BAD, b"y\n"))
    assert len({bad.key(), lookalike.key(), other_byte.key(), changed.key()}) == 4
    assert bad.key() == inputs(tmp_path / "a").key()
    # what is stored with a cache entry is UTF-8 JSON, the name escaped
    stored = canonical_json(bad.manifest()).decode()
    assert "bad\\\\xffname" in stored and json.loads(stored)["files"]["bad\\xffname"][1] != ""


def test_explain_shows_the_name_escaped(tmp_path: Path) -> None:
    root = with_file(tmp_path, BAD)
    old = json.loads(canonical_json(inputs(root).manifest()).decode())  # as a cache entry keeps it
    with open(os.path.join(os.fsencode(root / "app"), BAD), "wb") as f:
        f.write(b"changed\n")
    assert diff_inputs(old, inputs(root).manifest()) == ["file changed (content): bad\\xffname"]


def test_plan_explain_takes_such_a_context(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = with_file(tmp_path, BAD)
    assert main(["plan", "--explain", "-w", str(root), "//..."]) == 0
    assert "//app:app: to build" in capsys.readouterr().out
