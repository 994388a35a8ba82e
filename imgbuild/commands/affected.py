"""``imgbuild query affected --since REF [--json]``: the targets changed since REF, and their dependants.

Printed in build order, one label a line (or a JSON list), so that CI can build exactly them:
``imgbuild build $(imgbuild query affected --since origin/main)``. With ``args.shard`` (``I/N``) set,
only this job's share of them (see :mod:`imgbuild.shard`).
"""

from __future__ import annotations

import argparse
import json
import sys

from imgbuild.affected import affected_targets, changed_files
from imgbuild.commands import load_graph
from imgbuild.shard import parse_shard, shard


def main(args: argparse.Namespace) -> int:
    graph, _ = load_graph(args.workspace)
    files = changed_files(graph.workspace.root, args.since)
    found = affected_targets(graph, files)
    shard_text: str | None = getattr(args, "shard", None)  # only when the command line offers --shard
    if shard_text:
        index, count = parse_shard(shard_text)
        labels = shard(graph, found, index, count)
    else:
        labels = graph.order(found)
    # Notes go to stderr, so that stdout stays a plain (here empty) list for scripts.
    if not found:
        print(f"no target affected by the {len(files)} file(s) changed since {args.since}", file=sys.stderr)
    elif not labels:
        print(f"shard {shard_text}: nothing to build ({len(found)} affected target(s) went to other shards)",
              file=sys.stderr)
    if args.json:
        print(json.dumps([str(lb) for lb in labels], indent=2))
    else:
        for lb in labels:
            print(lb)
    return 0
