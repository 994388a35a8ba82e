"""Shared test helpers: tiny workspaces written from a dict of files."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

WorkspaceFactory = Callable[[dict[str, str]], Path]


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture
def make_ws(tmp_path: Path) -> WorkspaceFactory:
    """Write a workspace; ``imgbuild.yaml`` defaults to ``version: 1`` when not given."""

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / "ws"
        files = {"imgbuild.yaml": "version: 1\n", **files}
        return write_files(root, files)

    return make
