"""``imgbuild cache stats``: entries and bytes per target-cache store; ``imgbuild cache gc``: clean-up."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgbuild.cache.store import GuardedStore
from imgbuild.cache.targets import open_store
from imgbuild.errors import ImgbuildError
from imgbuild.model import CachePolicy
from imgbuild.specfiles.packages import load

if TYPE_CHECKING:  # gc imports boto3: only when it runs
    from imgbuild.cache.gc import Deletion, Rules, StoreReport

DEFAULT_OLDER_THAN = "30d"
DEFAULT_KEEP = 1
LISTED_BLOBS = 20  # per store in the text output; --json lists every one


def main(args: argparse.Namespace) -> int:
    if args.action == "gc":
        return gc(args)
    given = [o for o, v in (("--older-than", args.older_than), ("--keep-per-scope", args.keep_per_scope),
                            ("--dry-run", args.dry_run)) if v not in (None, False)]
    if given:
        raise ImgbuildError(f"{', '.join(given)}: only for `imgbuild cache gc`")
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


def gc(args: argparse.Namespace) -> int:
    """Exit status 0, or 1 when a store could not be read or something could not be deleted."""
    from imgbuild.cache import gc as cache_gc

    age = args.older_than if args.older_than is not None else DEFAULT_OLDER_THAN
    keep = args.keep_per_scope if args.keep_per_scope is not None else DEFAULT_KEEP
    try:
        older_than = cache_gc.parse_age(age)
    except ValueError as exc:
        raise ImgbuildError(f"--older-than: {exc}") from None
    if keep < 0:
        raise ImgbuildError(f"--keep-per-scope: {keep} is negative; give 0 or more")
    ws, _ = load(args.workspace, Path.cwd())
    rules = cache_gc.Rules(now=datetime.now(timezone.utc), older_than=older_than, keep=keep)
    srcs, skipped = cache_gc.sources(ws)
    reports = cache_gc.run(srcs, rules, dry_run=args.dry_run)
    failed = any(r.error or (r.result is not None and r.result.failures) for r in reports)
    if args.json:
        print(json.dumps(_json(reports, rules, dry_run=args.dry_run, skipped=skipped), indent=2))
    else:
        _text(reports, dry_run=args.dry_run, skipped=skipped)
    return 1 if failed else 0


def _json(reports: list[StoreReport], rules: Rules, *, dry_run: bool, skipped: list[str]) -> dict[str, Any]:
    from imgbuild.cache.gc import format_age

    stores = []
    for r in reports:
        plan, result = r.plan, r.result
        listed = plan.deletions if plan is not None else ()
        row: dict[str, Any] = {
            "policy": r.source.policy, "cache": r.source.cache, "store": r.source.name, "error": r.error,
            "deletions": [_deletion(d) for d in listed],
            "deleted": len(result.deleted) if result is not None else 0,
            "deleted_bytes": result.bytes if result is not None else 0,
            "planned_bytes": plan.bytes if plan is not None else 0,
            "failures": list(result.failures) if result is not None else [],
            "held_back": result.held_back if result is not None else 0,
            "kept": {"items": len(plan.kept), "blobs": plan.kept_blobs, "bytes": plan.kept_bytes} if plan else None,
            "notes": list(plan.notes) if plan is not None else [],
        }
        stores.append(row)
    return {"dry_run": dry_run, "started": rules.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "older_than": format_age(rules.older_than), "keep_per_scope": rules.keep,
            "grace_seconds": int(rules.grace.total_seconds()), "stores": stores, "skipped": skipped}


def _deletion(d: Deletion) -> dict[str, Any]:
    return {"kind": d.kind, "key": d.key, "bytes": d.size, "reason": d.reason, "subject": d.subject}


def _text(reports: list[StoreReport], *, dry_run: bool, skipped: list[str]) -> None:
    verb = "would delete" if dry_run else "deleted"
    for r in reports:
        head = f"{r.source.name}  ({_what(r.source.cache)}, policy {r.source.policy})"
        if r.plan is None:
            print(f"{head}: {r.error}")
            continue
        plan = r.plan
        print(head)
        blobs = 0
        for d in plan.deletions:
            if d.kind == "marker":
                continue  # one per entry: the entry's line says it
            if d.kind in ("blob", "file", "leftover"):
                blobs += 1
                if blobs > LISTED_BLOBS:
                    continue
            subject = f"{d.subject}  " if d.subject else ""
            print(f"  {d.kind:<8} {subject}{d.key}  {_size(d.size)}  ({d.reason})")
        if blobs > LISTED_BLOBS:
            print(f"  ... and {blobs - LISTED_BLOBS} more blobs and files (--json lists them all)")
        for note in plan.notes:
            print(f"  note: {note}")
        done = r.result
        count = len(plan.deletions) if done is None else len(done.deleted)
        size = plan.bytes if done is None else done.bytes
        print(f"  {verb} {count} object(s), {_size(size)}; kept {len(plan.kept)} "
              f"{'entries' if r.source.cache != 'layers' else 'layer caches'} and {plan.kept_blobs} blob(s), "
              f"{_size(plan.kept_bytes)}")
        if done is not None:
            for failure in done.failures:
                print(f"  failed: {failure}")
            if done.held_back:
                print(f"  kept {done.held_back} object(s) that a reference which could not be deleted names")
    for s in skipped:
        print(f"not cleaned: {s}")


def _what(cache: str) -> str:
    return {"targets": "target cache", "mirror": "mirror of the S3 target cache", "layers": "layer cache"}[cache]


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
