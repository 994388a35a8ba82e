"""Sharding by graph: complete, disjoint, components whole, balanced, deterministic; parse_shard."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgbuild.errors import ImgbuildError, LabelError
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.model import Defaults, Workspace, WorkspaceConfig
from imgbuild.shard import components, parse_shard, partition, shard


def make_graph(n: int, edges: list[tuple[int, int]]) -> TargetGraph:
    """Targets //p<i>:t; an edge (i, j) with i < j means j depends on i (so the graph is acyclic)."""
    ws = Workspace(config=WorkspaceConfig(root=Path("/ws"), file=Path("/ws/imgbuild.yaml"), defaults=Defaults()),
                   targets={}, packages=())
    return TargetGraph.from_edges(ws, [lb(i) for i in range(n)], [(lb(i), lb(j)) for i, j in edges])


def lb(i: int) -> Label:
    return Label(f"p{i:02d}", "t")


@st.composite
def graphs_and_selections(draw: st.DrawFn) -> tuple[TargetGraph, set[Label]]:
    n = draw(st.integers(min_value=1, max_value=25))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    density = draw(st.sampled_from([0.0, 0.05, 0.15, 0.4]))
    edges = [p for p in pairs if draw(st.floats(0, 1)) < density] if pairs and density else []
    selected = draw(st.sets(st.integers(0, n - 1), max_size=n))
    return make_graph(n, edges), {lb(i) for i in selected}


@settings(max_examples=300, deadline=None)
@given(graphs_and_selections(), st.integers(min_value=1, max_value=5))
def test_shards_are_disjoint_complete_whole_and_balanced(case: tuple[TargetGraph, set[Label]], count: int) -> None:
    graph, selected = case
    shards = partition(graph, selected, count)
    assert len(shards) == count
    flat = [x for s in shards for x in s]
    assert len(flat) == len(set(flat)), "a target is in two shards"
    assert set(flat) == selected, "a selected target is in no shard"
    assert [shard(graph, selected, i, count) for i in range(count)] == shards

    # A component of (selection + its deps) is never split, even when joined only by an unselected dep.
    # networkx, independent of the graph's own code, says what the components are.
    closure = nx.DiGraph((dep, lb) for lb in graph.with_deps(selected) for dep in graph.pred[lb])
    closure.add_nodes_from(graph.with_deps(selected))
    where = {x: i for i, s in enumerate(shards) for x in s}
    for comp in nx.weakly_connected_components(closure):
        assert len({where[x] for x in comp if x in selected}) <= 1

    # Each shard is in build order: a selected dependency (direct or through others) comes first.
    for s in shards:
        pos = {x: i for i, x in enumerate(s)}
        for x in s:
            for dep in graph.with_deps([x]) - {x}:
                if dep in pos:
                    assert pos[dep] < pos[x]

    groups = components(graph, selected)
    if groups:
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= len(groups[0])
    # Deterministic: the same answer however the set was built.
    assert partition(graph, set(sorted(selected, reverse=True)), count) == shards


def test_shared_unselected_dependency_joins_two_chains() -> None:
    # 0 -> 1 and 0 -> 2, with only 1 and 2 selected: one component, one shard builds both.
    graph = make_graph(3, [(0, 1), (0, 2)])
    assert partition(graph, {lb(1), lb(2)}, 2) == [[lb(1), lb(2)], []]


def test_largest_components_first_to_the_least_loaded() -> None:
    # Components: {0,1,2} (chain), {3,4}, {5}, {6}; two shards -> 3+1 and 2+1.
    graph = make_graph(7, [(0, 1), (1, 2), (3, 4)])
    everything = {lb(i) for i in range(7)}
    assert [list(g) for g in components(graph, everything)] == [
        [lb(0), lb(1), lb(2)], [lb(3), lb(4)], [lb(5)], [lb(6)]]
    assert partition(graph, everything, 2) == [[lb(0), lb(1), lb(2), lb(6)], [lb(3), lb(4), lb(5)]]
    assert partition(graph, everything, 1) == [[lb(0), lb(1), lb(2), lb(3), lb(4), lb(5), lb(6)]]
    assert partition(graph, {lb(2)}, 3) == [[lb(2)], [], []]


def test_build_order_through_an_unselected_dependency() -> None:
    # p02 -> p01 -> p00 (p00 needs p01, which needs p02), only p00 and p02 selected: p02 comes first
    # although p00 sorts before it and no direct edge joins them.
    graph = TargetGraph.from_edges(make_graph(0, []).workspace, [], [(lb(2), lb(1)), (lb(1), lb(0))])
    assert shard(graph, {lb(0), lb(2)}, 0, 1) == [lb(2), lb(0)]


def test_unknown_label_and_bad_index() -> None:
    graph = make_graph(2, [])
    with pytest.raises(LabelError, match="no target //nope:t"):
        partition(graph, {Label("nope", "t")}, 2)
    with pytest.raises(ValueError):
        shard(graph, {lb(0)}, 2, 2)
    with pytest.raises(ValueError):
        partition(graph, {lb(0)}, 0)


@pytest.mark.parametrize(("text", "expected"), [("1/1", (0, 1)), ("2/4", (1, 4)), ("4/4", (3, 4)), (" 3 / 5 ", (2, 5))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "0/0", "2", "a/b", "-1/4", "1/4/2", "", "1.5/4"])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ImgbuildError, match=r"--shard must be I/N with 1 <= I <= N") as exc:
        parse_shard(text)
    assert exc.value.exit_code == 2
