"""The target graph: an edge from each dependency to its dependant; selection by patterns; build order.

Plain adjacency maps and the standard library's :mod:`graphlib` (cycle detection): every command loads the
graph, and importing networkx for these few operations cost about a third of a second per command.
"""

from __future__ import annotations

import difflib
import graphlib
import heapq
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from imgbuild.errors import LabelError, Location, SpecError, SpecErrors
from imgbuild.labels import Label, Pattern, select
from imgbuild.model import Target, Workspace


@dataclass(frozen=True)
class TargetGraph:
    workspace: Workspace
    pred: Mapping[Label, frozenset[Label]]  # each target's direct dependencies
    succ: Mapping[Label, frozenset[Label]] = field(default_factory=dict)  # each target's direct dependants

    @classmethod
    def build(cls, ws: Workspace) -> TargetGraph:
        """Check every ``deps`` label exists and the graph is acyclic; report problems where written."""
        edges: list[tuple[Label, Label]] = []
        errors: list[SpecError] = []
        known = [str(lb) for lb in ws.targets]
        for t in ws.targets.values():
            where = dict(t.dep_locations)
            for arg, dep in t.deps:
                if dep not in ws.targets:
                    close = difflib.get_close_matches(str(dep), known, n=3, cutoff=0.6)
                    hint = (f"did you mean {' or '.join(close)}?" if close
                            else f"no target {dep}; run `imgbuild query deps //...` to list targets")
                    loc = where.get(arg, t.location)
                    errors.append(SpecError(f"unknown target {dep} (deps of {t.label})", location=loc,
                                            key_path=("deps", arg), hint=hint))
                elif dep == t.label:
                    errors.append(SpecError(f"{t.label} depends on itself", location=where.get(arg, t.location),
                                            key_path=("deps", arg)))
                else:
                    edges.append((dep, t.label))
        if errors:
            raise SpecErrors(errors)
        graph = cls.from_edges(ws, ws.targets, edges)
        try:
            graphlib.TopologicalSorter(graph.pred).prepare()
        except graphlib.CycleError as exc:
            # graphlib gives [a, ..., a], each a dependency of the next; shown as users write deps.
            path = list(reversed(exc.args[1]))
            first = ws.targets[path[0]]
            loc = next((loc for arg, loc in first.dep_locations if dict(first.deps)[arg] == path[1]),
                       first.location)
            raise SpecError(
                "dependency cycle: " + " -> ".join(str(lb) for lb in path) + " (each depends on the next)",
                location=loc if isinstance(loc, Location) else None,
                hint="a target cannot depend on itself through others; remove one of these deps",
            ) from None
        return graph

    @classmethod
    def from_edges(cls, ws: Workspace, labels: Iterable[Label], edges: Iterable[tuple[Label, Label]]) -> TargetGraph:
        """A graph of ``labels`` with the given (dependency, dependant) edges, unchecked (tests, tools)."""
        pred: dict[Label, set[Label]] = {lb: set() for lb in labels}
        succ: dict[Label, set[Label]] = {lb: set() for lb in pred}
        for dep, dependant in edges:
            pred.setdefault(dependant, set()).add(dep)
            pred.setdefault(dep, set())
            succ.setdefault(dep, set()).add(dependant)
            succ.setdefault(dependant, set())
        return cls(ws, {k: frozenset(v) for k, v in pred.items()}, {k: frozenset(v) for k, v in succ.items()})

    def __contains__(self, label: object) -> bool:
        return label in self.pred
    def target(self, label: Label) -> Target:
        return self.workspace.targets[label]

    def select(self, patterns: tuple[Pattern, ...]) -> list[Label]:
        """Targets matched by the patterns; a pattern that matches nothing is an error."""
        labels = list(self.workspace.targets)
        for pat in patterns:
            if pat.exclude:
                continue
            if not any(pat.matches(lb) for lb in labels):
                raise LabelError(self._no_match_message(pat))
        return select(labels, patterns)

    def _no_match_message(self, pat: Pattern) -> str:
        known = [str(lb) for lb in self.workspace.targets]
        shown = pat.text or f"//{pat.package}"
        if pat.is_single_label:
            close = difflib.get_close_matches(f"//{pat.package}:{pat.name}", known, n=3, cutoff=0.6)
            if close:
                return f"no target {shown}; did you mean {' or '.join(close)}?"
        pkgs = [p for p in self.workspace.packages]
        close_pkgs = difflib.get_close_matches(pat.package, pkgs, n=3)
        if close_pkgs:
            return f"pattern {shown} matches no target; packages with similar names: {', '.join('//' + p for p in close_pkgs)}"
        return f"pattern {shown} matches no target (run `imgbuild query deps //...` to list them)"

    def with_deps(self, labels: Iterable[Label]) -> set[Label]:
        """The labels and everything they depend on, transitively."""
        return self._closure(labels, self.pred)

    def with_rdeps(self, labels: Iterable[Label]) -> set[Label]:
        """The labels and everything that depends on them, transitively."""
        return self._closure(labels, self.succ)

    @staticmethod
    def _closure(start: Iterable[Label], adjacency: Mapping[Label, frozenset[Label]]) -> set[Label]:
        # One traversal from all start nodes: visiting each node once keeps `//...` linear.
        seen = set(start)
        stack = list(seen)
        while stack:
            for nxt in adjacency[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def order(self, labels: Iterable[Label]) -> list[Label]:
        """A deterministic build order (dependencies first) of the given labels."""
        chosen = set(labels)
        waiting = {lb: len(self.pred[lb] & chosen) for lb in chosen}
        ready = [(str(lb), lb) for lb, n in waiting.items() if n == 0]
        heapq.heapify(ready)  # of the labels ready at each point, the smallest first: deterministic
        out = []
        while ready:
            _, lb = heapq.heappop(ready)
            out.append(lb)
            for nxt in self.succ[lb]:
                if nxt in chosen:
                    waiting[nxt] -= 1
                    if waiting[nxt] == 0:
                        heapq.heappush(ready, (str(nxt), nxt))
        return out

    def components(self, labels: Iterable[Label]) -> list[set[Label]]:
        """The weakly connected components of the graph the labels induce."""
        chosen = set(labels)
        seen: set[Label] = set()
        groups = []
        for start in sorted(chosen, key=str):
            if start in seen:
                continue
            group, stack = {start}, [start]
            while stack:
                lb = stack.pop()
                for nxt in self.pred[lb] | self.succ[lb]:
                    if nxt in chosen and nxt not in group:
                        group.add(nxt)
                        stack.append(nxt)
            seen |= group
            groups.append(group)
        return groups

    def direct_deps(self, label: Label) -> list[Label]:
        return sorted(self.pred[label])

    def direct_rdeps(self, label: Label) -> list[Label]:
        return sorted(self.succ[label])
