"""``imgbuild explain LABEL``: the target's last build, step by step: cached or ran, and why the first one ran.

Read from the history (the build records carry the step report, issue #16). Not to be confused with
``imgbuild plan --explain``, which says before a build which inputs differ from the last cache entry.
"""

from __future__ import annotations

import argparse
import json
import sys

from imgbuild.commands import load_graph, patterns
from imgbuild.commands.history import open_history
from imgbuild.errors import LabelError
from imgbuild.history.store import HistoryError
from imgbuild.history.record import HistoryRecord

_LOOK_BACK = 200  # build records of the target read to find its last real build behind cached runs


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    labels = graph.select(patterns([args.label], current))
    if len(labels) != 1:
        raise LabelError(f"{args.label} names {len(labels)} targets; explain one, e.g. {labels[0]}")
    label = str(labels[0])
    warnings: list[str] = []
    history = open_history(graph.workspace, warnings.append)
    try:
        records = history.query(labels={label}, kind="build", limit=_LOOK_BACK)
    finally:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    if not records:
        raise HistoryError(f"{label} has no build in the history ({history.name})\n"
                           f"  hint: build it first: imgbuild build {label}")
    latest = records[0]
    built = next((r for r in records if r.steps is not None), None)
    if args.json:
        doc = {"label": label, "latest": _brief(latest),
               "build": None if built is None else {**_brief(built), "steps": built.steps.to_dict()
                                                    if built.steps else None}}
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    if latest is not built:
        print(f"{label}: last run {latest.time}: {latest.cache or '?'} ({_short(latest.image_id)}), "
              "no BuildKit steps ran")
    if built is None or built.steps is None:
        print(f"{label}: no build with step details on record (builds before imgbuild recorded them, "
              "or BuildKit printed no step)")
        return 0
    report = built.steps
    print(f"{label}: built {built.time}  image {_short(built.image_id)}"
          + (f"  commit {built.git_commit[:12]}" if built.git_commit else "")
          + (f"  builder {built.builder}" if built.builder else "")
          + (f"  {built.duration_s:.1f}s" if built.duration_s is not None else ""))
    print(f"{report.cached}/{report.total} steps cached" + ("" if report.bases == () else
                                                           f"; base {', '.join(report.bases)}"))
    print()
    width = max([len(s.name) for s in report.steps] + [4])
    print(f"{'':6}  {'STEP':<{width}}  {'LINE':>4}  INSTRUCTION")
    for s in report.steps:
        mark = ">" if s.name == report.first_ran else " "
        print(f"{mark}{s.status:<6}  {s.name:<{width}}  {s.line if s.line else '-':>4}  {s.instruction[:100]}")
    print()
    first = report.first()
    if first is None:
        print("every step was cached")
        return 0
    print(f"first step that ran: {first.name} {first.instruction[:100]}"
          + (f" (Dockerfile line {first.line})" if first.line else ""))
    print(f"why: {report.reason}")
    for f in report.files:
        print(f"  changed: {f}")
    for a in report.args:
        print(f"  build argument: {a}={dict(built.build_args).get(a, '(unset)')}")
    return 0


def _brief(r: HistoryRecord) -> dict[str, object]:
    return {"id": r.id, "time": r.time, "cache": r.cache, "image_id": r.image_id, "git_commit": r.git_commit,
            "builder": r.builder, "duration_s": r.duration_s}


def _short(digest: str | None) -> str:
    return (digest or "-")[:19]
