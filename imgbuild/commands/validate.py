"""``imgbuild validate``: load every spec, resolve every label, check every Dockerfile and stage."""

from __future__ import annotations

import argparse

from imgbuild.commands import load_graph
from imgbuild.plan import check_dockerfiles


def main(args: argparse.Namespace) -> int:
    graph, _ = load_graph(args.workspace)
    ws = graph.workspace
    check_dockerfiles(list(ws.targets.values()), ws)
    print(f"ok: {len(ws.targets)} target(s) in {len(ws.packages)} package(s), workspace {ws.root}")
    return 0
