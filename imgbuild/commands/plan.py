"""``imgbuild plan PATTERN...``: the targets a build would run, in order, with every setting resolved."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from imgbuild.commands import load_graph, patterns
from imgbuild.graph import TargetGraph
from imgbuild.plan import Plan, make_plan, target_dict


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    plan = make_plan(graph, patterns(args.patterns, current))
    ws = graph.workspace
    out = sys.stdout
    if args.explain:
        return _explain(graph, plan, json_out=args.json)
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


def _explain(graph: TargetGraph, plan: Plan, *, json_out: bool) -> int:
    """Per target: the action a build would take (the same decision, :func:`imgbuild.builds.actions.decide`),
    and for a build why (what differs from the target's newest cache entry)."""
    from imgbuild.builds.actions import Build, Restore, decide
    from imgbuild.builds.images import Images
    from imgbuild.cache.targets import TargetCache
    from imgbuild.builds.service import inputs_now
    from imgbuild.explain import diff_inputs

    ws = graph.workspace
    inputs = inputs_now(graph, plan, dict(os.environ))
    warnings: list[str] = []
    cache = TargetCache(ws, Images(), warn=warnings.append)
    actions = decide(plan, {label: i.key() for label, i in inputs.items()}, cache=cache, images=cache.images,
                     engine_optional=True)
    rows: list[dict[str, Any]] = []
    for step in plan.steps:
        t = step.target
        label = str(t.label)
        key = inputs[label].key()
        action = actions[label]
        if not isinstance(action, Build):
            rows.append({"label": label, "input_digest": key, "state": "cached", "image_id": action.entry.image_id,
                         "action": "restore" if isinstance(action, Restore) else "cached", "reasons": []})
            continue
        previous = cache.previous(t)
        if previous is None:
            reasons = ["never built with this cache"]
        else:
            try:
                old = json.loads(previous.inputs)
            except ValueError:
                old = {}
            reasons = diff_inputs(old, inputs[label].manifest(), dep_labels={a: str(d) for a, d in t.deps}) \
                or ["inputs differ in a way not recorded by the previous entry"]
        rows.append({"label": label, "input_digest": key, "state": "build", "action": "build", "image_id": None,
                     "reasons": reasons})
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if json_out:
        json.dump({"targets": rows}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    said = {"cached": "cached", "restore": "cached (restored from the target cache: not in this engine)",
            "build": "to build"}
    for row in rows:
        print(f"{row['label']}: {said[row['action']]}  ({row['input_digest'][:19]})")
        for reason in row["reasons"]:
            print(f"    {reason}")
    return 0
