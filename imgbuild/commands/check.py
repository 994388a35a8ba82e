"""``imgbuild check [PATTERN...]``: the layer-cache advisor (findings with codes, costs and fixes)."""

from __future__ import annotations

import argparse
import json
import sys

from imgbuild.advisor.check import Report, check_targets
from imgbuild.advisor.findings import SEVERITIES, severity_rank
from imgbuild.advisor.output import as_json, text
from imgbuild.commands import load_graph, patterns
from imgbuild.graph import TargetGraph
from imgbuild.model import Target

FAIL_ON = (*SEVERITIES, "never")


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common],
                       help="find what in Dockerfiles, build args and contexts defeats the layer cache")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["//..."], help="targets to check (default //...)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON (imgbuild schema check)")
    p.add_argument("--fail-on", choices=FAIL_ON, default="warning", metavar="LEVEL",
                   help="exit 1 when a finding at or above LEVEL exists: info, warning (default), error, never")
    hist = p.add_mutually_exclusive_group()
    hist.add_argument("--history", dest="history", action="store_const", const=True,
                      help="read the history even when it is in S3 (default: only a local SQLite history)")
    hist.add_argument("--no-history", dest="history", action="store_const", const=False,
                      help="do not read the history (build args that changed are then known by name only)")


def run_check(graph: TargetGraph, targets: list[Target], *, history: bool | None) -> Report:
    """The advisor over ``targets``, with the build args that changed in their history where it is read."""
    ws = graph.workspace
    changed: dict[str, frozenset[str]] = {}
    cfg = ws.config.history
    from imgbuild.history.store import sqlite_path

    local = cfg.backend != "s3" and sqlite_path(cfg, ws.root).is_file()
    if history or (history is None and local):
        from imgbuild.advisor.history import changed_args
        from imgbuild.history.store import HistoryError, open_store

        try:
            store = open_store(cfg, ws.root, on_corrupt=lambda exc: None)
            changed = changed_args(store, [str(t.label) for t in targets if t.build_args])
        except HistoryError as exc:
            print(f"warning: the history was not read ({exc}); changed build args are known by name only",
                  file=sys.stderr)
    periodic = frozenset(p.name for p in ws.config.cache_policies if p.invalidate_every)
    return check_targets(ws, targets, changed=changed, invalidate_every=periodic)


def fails(report: Report, fail_on: str) -> bool:
    worst = report.worst()
    return fail_on != "never" and worst is not None and severity_rank(worst) >= severity_rank(fail_on)


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    selected = graph.select(patterns(args.patterns, current))
    report = run_check(graph, [graph.target(lb) for lb in sorted(selected)], history=args.history)
    if args.json:
        print(json.dumps(as_json(report), indent=2, sort_keys=True))
    else:
        print(text(report))
    return 1 if fails(report, args.fail_on) else 0
