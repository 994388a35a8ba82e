"""The target graph: an edge from each dependency to its dependant; selection by patterns; build order."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable

import networkx as nx

from imgbuild.errors import LabelError, Location, SpecError, SpecErrors
from imgbuild.labels import Label, Pattern, select
from imgbuild.model import Target, Workspace


@dataclass(frozen=True)
class TargetGraph:
    workspace: Workspace
    graph: nx.DiGraph  # nodes: Label; edge dep -> dependant

    @classmethod
    def build(cls, ws: Workspace) -> TargetGraph:
        """Check every ``deps`` label exists and the graph is acyclic; report problems where written."""
        g = nx.DiGraph()
        g.add_nodes_from(ws.targets)
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
                    g.add_edge(dep, t.label)
        if errors:
            raise SpecErrors(errors)
        if nx.is_directed_acyclic_graph(g):  # much cheaper than find_cycle on the common, acyclic path
            return cls(ws, g)
        cycle = nx.find_cycle(g)
        # Edges run dependency -> dependant; show the cycle as "depends on" arrows, as users write deps.
        path = [v for _, v in reversed(cycle)] + [cycle[-1][1]]
        first = ws.targets[cycle[0][1]]
        loc = next((loc for arg, loc in first.dep_locations if dict(first.deps)[arg] == cycle[0][0]), first.location)
        raise SpecError(
            "dependency cycle: " + " -> ".join(str(lb) for lb in path) + " (each depends on the next)",
            location=loc if isinstance(loc, Location) else None,
            hint="a target cannot depend on itself through others; remove one of these deps",
        )

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
        return self._closure(labels, self.graph.pred)

    def with_rdeps(self, labels: Iterable[Label]) -> set[Label]:
        """The labels and everything that depends on them, transitively."""
        return self._closure(labels, self.graph.succ)

    @staticmethod
    def _closure(start: Iterable[Label], adjacency: Any) -> set[Label]:
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
        sub = self.graph.subgraph(set(labels))
        return list(nx.lexicographical_topological_sort(sub, key=str))

    def direct_deps(self, label: Label) -> list[Label]:
        return sorted(self.graph.predecessors(label))

    def direct_rdeps(self, label: Label) -> list[Label]:
        return sorted(self.graph.successors(label))
