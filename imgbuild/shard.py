"""Splitting a build between N parallel CI jobs by the dependency graph, never by position in a list.

A job must build a target's dependencies before it, so splitting a chain between jobs would build the
shared part twice (or make one job wait for another). The selected targets are therefore grouped into
the weakly connected components of the graph of the selected targets plus their dependencies: two
targets that share any dependency, selected or not, land in one component, and a component goes to one
job whole. Components are then dealt out largest first, each to the least-loaded job (longest
processing time first), which keeps the heaviest and the lightest job within one component's size.
"""

from __future__ import annotations

import re


from imgbuild.errors import ImgbuildError, LabelError
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_USAGE = "--shard must be I/N with 1 <= I <= N"


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(1, 4)``: the 0-based index of this job and the number of jobs."""
    m = _SHARD_RE.match(text)
    if not m:
        raise ImgbuildError(f"{_USAGE}, e.g. --shard 2/4 for the second of four jobs (got {text!r})")
    one_based, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= one_based <= count:
        raise ImgbuildError(f"{_USAGE} (got {text!r})")
    return one_based - 1, count


def components(graph: TargetGraph, labels: set[Label]) -> list[tuple[Label, ...]]:
    """The selected labels grouped by weakly connected component of labels + their dependencies.

    Each group is in build order; groups are largest first, ties broken by their smallest label.
    """
    unknown = sorted(lb for lb in labels if lb not in graph)
    if unknown:
        raise LabelError(f"no target {unknown[0]}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    closure = graph.with_deps(labels)
    # Ordered over the closure, not the selection: an unselected dependency between two selected
    # labels still puts them in the right order.
    position = {lb: i for i, lb in enumerate(graph.order(closure))}
    groups = [tuple(sorted(labels.intersection(comp), key=position.__getitem__))
              for comp in graph.components(closure)]
    # Every dependency in the closure hangs under a selected label, so no group is empty.
    return sorted(groups, key=lambda g: (-len(g), min(g)))


def partition(graph: TargetGraph, labels: set[Label], count: int) -> list[list[Label]]:
    """All ``count`` shards: each selected label in exactly one, each in build order (may be empty)."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    shards: list[list[Label]] = [[] for _ in range(count)]
    for group in components(graph, labels):
        # Least loaded first; among equals the lowest index, so the result is deterministic.
        target = min(range(count), key=lambda i: (len(shards[i]), i))
        shards[target].extend(group)
    # No edge joins two components, so groups each in build order, one after another, are too.
    return shards


def shard(graph: TargetGraph, labels: set[Label], index: int, count: int) -> list[Label]:
    """The selected labels job ``index`` (0-based) of ``count`` builds, in build order.

    Only selected labels are returned; their unselected dependencies join components (so a shared one
    is built by a single job) and are built, or found cached, by ``imgbuild build`` as usual.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    return partition(graph, labels, count)[index]
