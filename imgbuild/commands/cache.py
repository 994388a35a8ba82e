"""``imgbuild cache stats``: entries and bytes per target-cache store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imgbuild.cache.store import GuardedStore
from imgbuild.cache.targets import open_store
from imgbuild.model import CachePolicy
from imgbuild.spec.packages import load


def main(args: argparse.Namespace) -> int:
    ws, _ = load(args.workspace, Path.cwd())
    warnings: list[str] = []
    policies: list[CachePolicy | None] = [None, *ws.config.cache_policies]
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for policy in policies:
        store = GuardedStore(open_store(ws, policy), warn=warnings.append, read_only=True)
        if store.name in seen:
            continue
        seen.add(store.name)
        st = store.stats()
        rows.append({"policy": policy.name if policy else "(default)", "store": store.name, "entries": st.entries,
                     "blobs": st.blobs, "bytes": st.bytes, "available": store.available})
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("POLICY", "STORE", "ENTRIES", "BLOBS", "SIZE")
    table = [head] + [(str(r["policy"]), str(r["store"]), str(r["entries"]), str(r["blobs"]),
                       _size(int(r["bytes"])) if r["available"] else "unavailable") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
