"""``imgbuild graph PATTERN... --format dot|mermaid|json``: the selected targets and their dependencies."""

from __future__ import annotations

import argparse
import json

from imgbuild.commands import load_graph, patterns
from imgbuild.labels import Label


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    nodes = graph.order(graph.with_deps(graph.select(patterns(args.patterns, current))))
    edges = sorted((dep, lb) for lb in nodes for dep in graph.direct_deps(lb))
    print(render(args.format, nodes, edges), end="")
    return 0


def render(fmt: str, nodes: list[Label], edges: list[tuple[Label, Label]]) -> str:
    """Edges are (dependency, dependant); arrows are drawn from dependant to dependency ("depends on")."""
    if fmt == "json":
        doc = {"nodes": [str(n) for n in nodes],
               "edges": [{"from": str(b), "to": str(a), "kind": "depends_on"} for a, b in edges]}
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "mermaid":
        ids = {n: f"n{i}" for i, n in enumerate(nodes)}
        out = ["graph LR"]
        out += [f'  {ids[n]}["{n}"]' for n in nodes]
        out += [f"  {ids[b]} --> {ids[a]}" for a, b in edges]
        return "\n".join(out) + "\n"
    out = ["digraph imgbuild {", "  rankdir=LR;", "  node [shape=box];"]
    out += [f'  "{n}";' for n in nodes]
    out += [f'  "{b}" -> "{a}";' for a, b in edges]
    out.append("}")
    return "\n".join(out) + "\n"
