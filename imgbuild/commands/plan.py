"""``imgbuild plan PATTERN...``: the targets a build would run, in order, with every setting resolved."""

from __future__ import annotations

import argparse
import json
import sys

from imgbuild.commands import load_graph, patterns
from imgbuild.plan import make_plan, target_dict


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    plan = make_plan(graph, patterns(args.patterns, current))
    ws = graph.workspace
    out = sys.stdout
    if args.json:
        doc = {
            "workspace": str(ws.root),
            "targets": [
                {**target_dict(s.target, ws), "requested": s.requested, "order": i}
                for i, s in enumerate(plan.steps)
            ],
        }
        json.dump(doc, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    width = len(str(len(plan.steps)))
    lines = []
    for i, s in enumerate(plan.steps, 1):
        t = s.target
        mark = "" if s.requested else "  (dependency)"
        lines.append(f"{i:>{width}}. {t.label}{mark}")
        lines.append(f"     dockerfile {ws.relpath(t.dockerfile)}  stage {t.stage or '(final)'}  "
                     f"context {ws.relpath(t.context)}")
        details = [f"image {t.image}", f"cache {t.cache or '-'}", f"tags {', '.join(t.tags) or '-'}"]
        if t.deps:
            details.append("deps " + ", ".join(f"{a}={lb}" for a, lb in t.deps))
        if t.build_args:
            details.append("args " + ", ".join(f"{k}={v}" for k, v in t.build_args))
        lines.append("     " + "  ".join(details))
    lines.append(f"{len(plan.steps)} target(s), {sum(s.requested for s in plan.steps)} requested")
    out.write("\n".join(lines) + "\n")
    return 0
