"""``imgbuild inspect LABEL``: the layers of the target's latest image (count, sizes, the instruction of each),
and per step whether its last build found it in BuildKit's cache or ran it."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from imgbuild.builds.actions import Build, Restore, decide
from imgbuild.builds.images import Images
from imgbuild.cache.targets import TargetCache
from imgbuild.commands import load_graph, patterns
from imgbuild.builds.service import inputs_now
from imgbuild.errors import ImgbuildError, LabelError
from imgbuild.model import Workspace
from imgbuild.plan import make_plan
from imgbuild.stepwhy import StepReport, image_flags


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    labels = graph.select(patterns([args.label], current))
    if len(labels) != 1:
        raise LabelError(f"{args.label} names {len(labels)} targets; inspect one, e.g. {labels[0]}")
    plan = make_plan(graph, patterns([str(labels[0])], current))
    inputs = inputs_now(graph, plan, dict(os.environ))
    target = graph.target(labels[0])
    warnings: list[str] = []
    images = Images()
    cache = TargetCache(graph.workspace, images, warn=warnings.append)
    # The build's own decision: cached means its image is in this engine.
    action = decide(plan, {label: i.key() for label, i in inputs.items()}, cache=cache, images=images)[str(labels[0])]
    if isinstance(action, Build):
        raise ImgbuildError(f"{target.label} has no image for its current inputs\n"
                            f"  hint: build it first: imgbuild build {target.label}")
    entry = action.entry
    if isinstance(action, Restore):
        raise ImgbuildError(f"{target.label}'s image {entry.image_id} is not in this engine\n"
                            f"  hint: `imgbuild build {target.label}` restores it from the cache")
    steps = list(reversed(images.history(entry.image_id)))  # oldest first, as the Dockerfile reads
    layers = [s for s in steps if int(str(s.get("Size", 0)) or 0) > 0]
    total = sum(int(str(s.get("Size", 0))) for s in steps)
    report = _last_build(graph.workspace, str(target.label), entry.image_id)
    flags = image_flags(report, [_instruction(s) for s in steps]) if report else [None] * len(steps)
    if args.json:
        print(json.dumps({"label": str(target.label), "image_id": entry.image_id, "layer_count": len(layers),
                          "total_bytes": total,
                          "last_build": None if report is None else {"total": report.total, "cached": report.cached,
                                                                     "first_ran": report.first_ran,
                                                                     "reason": report.reason},
                          "steps": [{"instruction": _instruction(s), "bytes": int(str(s.get("Size", 0))),
                                     "cache": flag} for s, flag in zip(steps, flags)]}, indent=2))
        return 0
    print(f"{target.label}  {entry.image_id}")
    print(f"{len(layers)} layers, {total / 1e6:.2f} MB")
    print(f"last build: {report.short()}\n" if report else
          "last build: no step details on record (see `imgbuild explain`)\n")
    print(f"{'SIZE':>10}  {'CACHE':<6}  INSTRUCTION")
    for s, flag in zip(steps, flags):
        size = int(str(s.get("Size", 0)))
        print(f"{_size(size):>10}  {flag or '':<6}  {_instruction(s)[:110]}")
    return 0


def _last_build(ws: Workspace, label: str, image_id: str) -> StepReport | None:
    """The step report of the build that made ``image_id``, from the history; None if none is on record."""
    from imgbuild.commands.history import open_history
    from imgbuild.history.store import HistoryError

    warnings: list[str] = []
    try:
        records = open_history(ws, warnings.append).query(labels={label}, kind="build", limit=200)
    except HistoryError as exc:
        print(f"warning: no step flags: {exc}", file=sys.stderr)
        return None
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return next((r.steps for r in records if r.steps is not None and r.image_id == image_id), None)


def _instruction(step: dict[str, object]) -> str:
    text = str(step.get("CreatedBy") or "")
    text = re.sub(r"\s*# buildkit$", "", text)
    text = re.sub(r"^/bin/sh -c #\(nop\)\s*", "", text)
    if not text:
        return f"({step.get('Comment') or 'base image'})"
    return text


def _size(n: int) -> str:
    if n == 0:
        return "0"
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"
