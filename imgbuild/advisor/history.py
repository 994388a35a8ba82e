"""Which build args of a target changed between its last two builds, from the manifest history."""

from __future__ import annotations

from collections.abc import Iterable

from imgbuild.history.store import HistoryStore


def changed_args(store: HistoryStore, labels: Iterable[str]) -> dict[str, frozenset[str]]:
    """label -> names whose value differs (or that one of the two builds lacked) between its two newest
    build records; labels with fewer than two records are left out."""
    out: dict[str, frozenset[str]] = {}
    for label in labels:
        records = store.query(labels={label}, kind="build", limit=2)
        if len(records) < 2:
            continue
        new, old = dict(records[0].build_args), dict(records[1].build_args)
        names = frozenset(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
        if names:
            out[label] = names
    return out
