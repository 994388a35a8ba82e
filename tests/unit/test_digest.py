"""Input digests change with every input that can change an image, and with nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbuild.digest import Hasher, external_bases
from imgbuild import dockerfile
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from imgbuild.statcache import StatCache
from tests.conftest import WorkspaceFactory, write_files

FILES = {
    "imgbuild.yaml": "version: 1\n",
    "base/BUILD.yaml": "apps: {base: {build_args: {V: '1'}}}\n",
    "base/Dockerfile": "FROM busybox:1.36\nARG V\n",
    "app/BUILD.yaml": "apps:\n  app:\n    deps: {BASE: //base}\n    secrets: [{id: tok, env: TOKEN}]\n",
    "app/Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY . /app\n",
    "app/main.py": "print(1)\n",
    "app/README.md": "docs\n",
    "app/.dockerignore": "*.md\n",
}


def keys(root: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    ws = load_workspace(root)
    g = TargetGraph.build(ws)
    hasher = Hasher(ws, stat_cache=StatCache(ws.state.statcache), environ=environ or {})
    found = hasher.compute(g, g.order(ws.targets))
    return {str(lb): i.key() for lb, i in found.items()}


@pytest.fixture
def root(make_ws: WorkspaceFactory) -> Path:
    return make_ws(FILES)


def test_stable_across_runs_and_checkout_paths(root: Path, tmp_path: Path) -> None:
    first = keys(root)
    assert keys(root) == first
    other = write_files(tmp_path / "elsewhere", FILES)
    assert keys(other) == first


@pytest.mark.parametrize(("path", "text", "changed"), [
    ("app/main.py", "print(2)\n", {"//app:app"}),
    ("app/README.md", "other docs\n", set()),  # ignored by .dockerignore
    ("app/new.txt", "x\n", {"//app:app"}),
    ("app/Dockerfile", "ARG BASE\nFROM ${BASE}\nCOPY . /srv\n", {"//app:app"}),
    ("base/Dockerfile", "FROM busybox:1.36\nARG V\nRUN true\n", {"//base:base", "//app:app"}),  # dependants too
    ("base/BUILD.yaml", "apps: {base: {build_args: {V: '2'}}}\n", {"//base:base", "//app:app"}),
    ("app/.dockerignore", "*.md\n*.txt\n", {"//app:app"}),
])
def test_a_change_rebuilds_exactly_what_it_affects(root: Path, path: str, text: str, changed: set[str]) -> None:
    before = keys(root)
    (root / path).write_text(text)
    after = keys(root)
    assert {lb for lb in before if before[lb] != after[lb]} == changed


def test_mode_change_counts(root: Path) -> None:
    before = keys(root)
    (root / "app/main.py").chmod(0o755)
    assert keys(root)["//app:app"] != before["//app:app"]


def test_secret_value_changes_key_but_never_appears(root: Path) -> None:
    a = keys(root, {"TOKEN": "hunter2-secret"})
    b = keys(root, {"TOKEN": "other-secret"})
    assert a["//app:app"] != b["//app:app"] and a["//base:base"] == b["//base:base"]
    ws = load_workspace(root)
    g = TargetGraph.build(ws)
    inputs = Hasher(ws, stat_cache=None, environ={"TOKEN": "hunter2-secret"}).compute(g, g.order(ws.targets))
    manifest = json.dumps(inputs[Label("app", "app")].manifest())
    assert "hunter2" not in manifest and "tok" in manifest


def test_label_is_not_part_of_the_key(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps: {a: {}}\n", "a/Dockerfile": "FROM busybox:1.36\n",
                    "b/BUILD.yaml": "apps: {b: {}}\n", "b/Dockerfile": "FROM busybox:1.36\n"})
    (root / "a/BUILD.yaml").write_text("apps: {a: {}}\n")
    (root / "b/BUILD.yaml").write_text("apps: {a: {}}\n")  # same bytes in both contexts
    k = keys(root)
    assert k["//a:a"] == k["//b:a"]


def test_external_bases_substitute_args(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text("ARG TAG=1.36\nARG BASE\nFROM busybox:${TAG} AS b\nFROM ${BASE}\nFROM b\nFROM scratch\n")
    df = dockerfile.parse(p)
    assert external_bases(df, {}, frozenset({"BASE"})) == ("busybox:1.36",)
    assert external_bases(df, {"TAG": "1.37"}, frozenset({"BASE"})) == ("busybox:1.37",)
