"""What a run does with each target, decided once before anything runs (issue #13, "plan, then run").

One function, :func:`decide`, turns the plan, the input digests, the target cache's lookups (in parallel)
and one question to the engine (which of the cached images it has) into an action per target:

* :class:`Cached`: the cache has an entry for the target's inputs and its image is where the run needs it
  (in the engine, or, for a builder that does not see the engine, obtainable without a download);
* :class:`Restore`: the entry's image must be brought first: downloaded from the cache ``store``, or
  loaded into the engine from the OCI ``layout`` the run has on disk;
* :class:`Build`: no usable entry, or the user asked for a build (``--rebuild``, ``--no-cache``).

The build's jobs only carry these out (a restore that fails then is a warning and a build); ``--dry-run``
prints them, ``plan --explain``, ``inspect`` and ``release`` read their entries from them: the cache-hit
rule lives here alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Sequence, Union

from imgbuild.errors import EngineUnavailable

if TYPE_CHECKING:
    from imgbuild.builds.handoff import OciLayouts
    from imgbuild.cache.entry import CacheEntry
    from imgbuild.cache.targets import ImageStore, TargetCache
    from imgbuild.model import Target
    from imgbuild.plan import Plan

BuildReason = Literal["no entry", "--rebuild", "--no-cache", "entry unusable"]
RestoreSource = Literal["store", "layout"]


@dataclass(frozen=True, kw_only=True)
class Cached:
    entry: CacheEntry
    in_engine: bool  # False only where the run needs the image in no engine (a builder that does not see it)
    engine_tags: frozenset[str] = frozenset()  # the names the engine has on it: only missing ones are added

    def describe(self) -> str:
        return f"cached ({self.entry.image_id})"


@dataclass(frozen=True, kw_only=True)
class Restore:
    entry: CacheEntry
    source: RestoreSource  # store: its blobs are downloaded; layout: loaded from the run's OCI layout of it

    def describe(self) -> str:
        where = "the target cache" if self.source == "store" else "its OCI layout"
        return f"restored from {where} ({self.entry.image_id})"


@dataclass(frozen=True, kw_only=True)
class Build:
    reason: BuildReason

    def describe(self) -> str:
        return f"built ({self.reason})"


Action = Union[Cached, Restore, Build]


def lookups(cache: TargetCache, targets: Sequence[Target], keys: Mapping[str, str]) -> dict[str, CacheEntry]:
    """The target cache's entry of each target's input digest (``keys``: label -> digest), looked up in parallel:
    a no-op run of many targets on a remote store waits for one round trip, not one per target."""
    if not targets:
        return {}

    def one(t: Target) -> tuple[str, CacheEntry | None]:
        return str(t.label), cache.lookup(t, keys[str(t.label)])

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
        return {label: e for label, e in pool.map(one, targets) if e is not None}


def decide(plan: Plan, keys: Mapping[str, str], *, cache: TargetCache, images: ImageStore | None,
           rebuild: frozenset[str] = frozenset(), no_cache: bool = False, layouts: OciLayouts | None = None,
           load: frozenset[str] | None = None, engine_optional: bool = False) -> dict[str, Action]:
    """The action of every step of ``plan`` (label -> action).

    ``keys``: label -> input digest. ``images``: the engine, asked once which cached images it has (None, or an
    engine that cannot be reached: none). ``rebuild``: labels built even when cached (all of them with
    ``no_cache``). ``layouts``: set for builders that do not see the engine's images; dependencies then go to
    dependants as OCI layouts, and only the ``load`` labels (None: all) must end up in the engine.
    An engine that cannot be reached is exit 3 (:class:`EngineUnavailable`), or, with ``engine_optional`` (the
    dry run, ``plan --explain``), an engine that has none of the images.
    """
    wanted = [s.target for s in plan.steps if str(s.target.label) not in rebuild]
    hits = lookups(cache, wanted, keys)
    on_engine = _inventory(images, sorted({e.image_id for e in hits.values()}), optional=engine_optional)
    # The targets a dependant in this run builds FROM: with layouts, only these need theirs on disk.
    feeds = plan.feeds
    actions: dict[str, Action] = {}
    for step in plan.steps:
        target = step.target
        label = str(target.label)
        entry = hits.get(label)
        if label in rebuild:
            actions[label] = Build(reason="--no-cache" if no_cache else "--rebuild")
        elif entry is None:
            actions[label] = Build(reason="no entry")
        elif entry.key != keys[label]:
            actions[label] = Build(reason="entry unusable")
        else:
            loads = layouts is None or load is None or label in load
            actions[label] = _reuse(target, entry, cache, layouts, in_engine=on_engine.get(entry.image_id),
                                    feeds=label in feeds, loads=loads)
    return actions


def _reuse(target: Target, entry: CacheEntry, cache: TargetCache, layouts: OciLayouts | None, *,
           in_engine: frozenset[str] | None, feeds: bool, loads: bool) -> Action:
    """A cache hit: cached where the image is, a restore where it must be brought."""
    if layouts is not None and feeds:
        if cache.layout_source(target, entry, layouts, in_engine=in_engine is not None) == "store":
            return Restore(entry=entry, source="store")
        if loads and in_engine is None:
            return Restore(entry=entry, source="layout")
    elif loads and in_engine is None:
        return Restore(entry=entry, source="store")
    return Cached(entry=entry, in_engine=in_engine is not None, engine_tags=in_engine or frozenset())


def _inventory(images: ImageStore | None, image_ids: list[str], *, optional: bool) -> dict[str, frozenset[str]]:
    """One question to the engine: which of these images it has, and their names."""
    if images is None or not image_ids:
        return {}
    try:
        return images.inspect_many(image_ids)
    except EngineUnavailable:
        if not optional:
            raise
        return {}


def entries(actions: Mapping[str, Action]) -> dict[str, CacheEntry]:
    """The cache entry of every target the actions take from the cache (label -> entry)."""
    return {label: a.entry for label, a in actions.items() if not isinstance(a, Build)}
