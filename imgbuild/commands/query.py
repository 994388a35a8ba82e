"""``imgbuild query deps|rdeps PATTERN...``: the targets themselves plus what they depend on / what depends on them."""

from __future__ import annotations

import argparse
import json

from imgbuild.commands import load_graph, patterns


def main(args: argparse.Namespace) -> int:
    if args.kind == "affected":
        from imgbuild.commands import affected

        return affected.main(args)
    graph, current = load_graph(args.workspace)
    selected = graph.select(patterns(args.patterns, current))
    if args.direct:
        step = graph.direct_deps if args.kind == "deps" else graph.direct_rdeps
        found = set(selected) | {d for lb in selected for d in step(lb)}
    else:
        found = graph.with_deps(selected) if args.kind == "deps" else graph.with_rdeps(selected)
    ordered = graph.order(found)
    if args.json:
        print(json.dumps([str(lb) for lb in ordered], indent=2))
    else:
        for lb in ordered:
            print(lb)
    return 0
