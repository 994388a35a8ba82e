"""``imgbuild history``: what was built, pushed and released, from which commit, when; ``history show ID``."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from imgbuild.history.record import KINDS, HistoryRecord
from imgbuild.history.store import GuardedHistory, HistoryError, HistoryUnavailable, InvalidQuery, open_store
from imgbuild.labels import Label, Pattern, parse_patterns
from imgbuild.model import Workspace
from imgbuild.specfiles.packages import load

_AGE = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TABLE = ("TIME", "KIND", "LABEL", "ID", "DIGEST", "COMMIT", "TAGS")


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register ``imgbuild history`` (``common`` provides ``--workspace``)."""
    p = sub.add_parser("history", parents=[common], help="list what was built, pushed and released (`history show "
                                                         "ID`: one record in full)",
                       description="List the history records, newest first, or show one: imgbuild history show ID")
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="only these targets (//apps/..., -//apps/legacy/...); or: show ID")
    p.add_argument("--since", metavar="WHEN", help="records from then on: 2024-05-01, 2024-05-01T10:00:00Z "
                                                   "(UTC unless an offset is given), or an age: 30m, 12h, 7d, 2w")
    p.add_argument("--commit", metavar="SHA", help="records of this git commit (a prefix is enough)")
    p.add_argument("--tag", metavar="TAG", help="records with this tag (v1.2.3) or full reference")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--limit", type=_count, metavar="N", help="at most N records (the newest)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    out.add_argument("--format", choices=("table", "csv", "json"))
    p.set_defaults(format="table")


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}")
    return n


def open_history(ws: Workspace, warn: Callable[[str], None]) -> GuardedHistory:
    """The workspace's history store behind a guard that spools to the state directory's ``history-spool/``.

    For builds: ``append`` never fails because of the store. Damaged records met by a query are passed to
    ``warn`` and left out.
    """
    store = open_store(ws.config.history, ws.root, on_corrupt=lambda exc: warn(f"{exc}; left out"))
    return GuardedHistory(store, ws.state.history_spool, warn)


def parse_since(text: str, *, now: datetime) -> datetime:
    """``--since``: an ISO date or time (naive means UTC) or an age before ``now`` (``7d``, ``12h``)."""
    raw = text.strip()
    if m := _AGE.fullmatch(raw):
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(f"--since {text!r}: give a date (2024-05-01), a time (2024-05-01T10:00:00Z) or an age "
                           f"(30m, 12h, 7d, 2w)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def main(args: argparse.Namespace) -> int:
    ws, current = load(args.workspace, Path.cwd())
    warnings: list[str] = []
    history = open_history(ws, warnings.append)
    try:
        if args.patterns[:1] == ["show"]:
            return _show(history, args)
        return _list(history, args, current=current)
    except HistoryUnavailable as exc:
        raise HistoryUnavailable(f"history {history.name} unavailable: {exc}") from exc
    finally:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)


def _show(history: GuardedHistory, args: argparse.Namespace) -> int:
    if len(args.patterns) != 2:
        raise InvalidQuery("usage: imgbuild history show ID (an id, or enough of its first hex digits)")
    given = [f"--{name}" for name in ("since", "commit", "tag", "kind", "limit") if getattr(args, name) is not None]
    if given:
        raise InvalidQuery(f"history show takes an id only, not {' '.join(given)}")
    record = history.get(args.patterns[1])
    if record is None:
        raise HistoryError(f"no history record {args.patterns[1]!r} in {history.name}")
    doc = record.to_dict()
    print(json.dumps({"id": doc.pop("id"), **doc}, indent=2))  # the id first, then the fields in their order
    return 0


def _list(history: GuardedHistory, args: argparse.Namespace, *, current: str) -> int:
    patterns = parse_patterns(args.patterns, current_package=current) if args.patterns else ()
    # Exact labels go to the store, which selects on them; anything wider is matched here, because the
    # history holds labels that may no longer be in the workspace.
    exact = bool(patterns) and all(p.is_single_label and not p.exclude for p in patterns)
    labels = {str(Label(p.package, p.name or "")) for p in patterns} if exact else None
    since = parse_since(args.since, now=datetime.now(timezone.utc)) if args.since is not None else None
    records = history.query(labels=labels, since=since, commit=args.commit, tag=args.tag, kind=args.kind,
                            limit=args.limit if exact or not patterns else None)
    if patterns and not exact:
        records = [r for r in records if _selected(r.label, patterns)][:args.limit]
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in records], indent=2, sort_keys=True))
    elif args.format == "csv":
        _csv(records)
    else:
        _table(records)
    waiting = len(history.spooled())
    if waiting:
        print(f"note: {waiting} record(s) wait in {history.spool_dir} (the store could not be reached when they "
              f"were made); listed above when they match, uploaded by the next build", file=sys.stderr)
    return 0


def _selected(label: str, patterns: Sequence[Pattern]) -> bool:
    """Left to right, as on the build command line: the last pattern matching the label decides."""
    parsed = Label.parse(label)
    chosen = False
    for p in patterns:
        if p.matches(parsed):
            chosen = not p.exclude
    return chosen


def _short(digest: str | None) -> str:
    return digest[len("sha256:"):][:12] if digest else "-"


def _table(records: list[HistoryRecord]) -> None:
    if not records:
        print("no history records match", file=sys.stderr)
        return
    rows = [_TABLE] + [(
        r.time[:19].replace("T", " ") + "Z",
        r.kind,
        r.label,
        _short(r.id),
        _short(r.manifest_digest or r.image_id),
        (r.git_commit or "")[:12] + ("+dirty" if r.git_dirty else "") or "-",
        " ".join(r.tags) or "-",
    ) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _csv(records: list[HistoryRecord]) -> None:
    """Every field, one row per record: lists space-separated, pairs as ``key=value``."""
    columns = ["id", *(k for k in _payload_keys() if k != "id")]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(columns)
    for r in records:
        doc = r.to_dict()
        out.writerow([_cell(doc[c]) for c in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _payload_keys() -> list[str]:
    return list(HistoryRecord(kind="build", time="1970-01-01T00:00:00Z", label="//:x").to_dict())
