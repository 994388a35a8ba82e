"""One module per command; ``run`` dispatches parsed arguments to them with explicit keywords."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from imgbuild.errors import LabelError
from imgbuild.graph import TargetGraph
from imgbuild.labels import Pattern, parse_patterns
from imgbuild.specfiles.packages import load


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"imgbuild.commands.{args.command}")
    result: int = module.main(args)
    return result


def load_graph(workspace: Path | None, cwd: Path | None = None) -> tuple[TargetGraph, str]:
    """Load the workspace, check its graph, and say which package ``cwd`` is in."""
    ws, current = load(workspace, cwd or Path.cwd())
    return TargetGraph.build(ws), current


def patterns(texts: list[str], current: str) -> tuple[Pattern, ...]:
    if not texts:
        raise LabelError("give at least one target pattern, e.g. //...")
    return parse_patterns(texts, current_package=current)
