"""Planning: which targets a command works on, in which order, with every setting resolved. No side effects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgbuild import dockerfile
from imgbuild.errors import SpecError, SpecErrors
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label, Pattern
from imgbuild.model import Target, Workspace


@dataclass(frozen=True, kw_only=True)
class PlannedTarget:
    target: Target
    requested: bool  # matched by the patterns (False: only needed as a dependency)
    deps: tuple[Label, ...]


@dataclass(frozen=True, kw_only=True)
class Plan:
    steps: tuple[PlannedTarget, ...]  # dependencies first

    @property
    def labels(self) -> tuple[Label, ...]:
        return tuple(s.target.label for s in self.steps)

    @property
    def feeds(self) -> frozenset[str]:
        """The labels a dependant in the plan builds FROM (the others are its leaves)."""
        return frozenset(str(d) for s in self.steps for d in s.deps)


def make_plan(graph: TargetGraph, patterns: tuple[Pattern, ...], *, check_files: bool = True) -> Plan:
    """The selected targets plus their dependencies, in a valid build order."""
    selected = set(graph.select(patterns))
    needed = graph.with_deps(selected)
    steps = tuple(
        PlannedTarget(target=graph.target(lb), requested=lb in selected, deps=tuple(graph.direct_deps(lb)))
        for lb in graph.order(needed)
    )
    if check_files:
        check_dockerfiles([s.target for s in steps], graph.workspace)
    return Plan(steps=steps)


def check_dockerfiles(targets: list[Target], ws: Workspace) -> None:
    """Every target's Dockerfile exists and parses, and names the target's stage (``FROM ... AS stage``)."""
    errors: list[SpecError] = []
    parsed: dict[Any, dockerfile.Dockerfile | str] = {}
    for t in targets:
        if t.dockerfile not in parsed:
            try:
                parsed[t.dockerfile] = dockerfile.parse(t.dockerfile)
            except dockerfile.DockerfileError as exc:
                parsed[t.dockerfile] = str(exc)
        df = parsed[t.dockerfile]
        rel = ws.relpath(t.dockerfile)
        if isinstance(df, str):
            hint = (f"create {rel} or set `dockerfile:` for {t.label}" if not t.dockerfile.exists()
                    else f"fix {rel}")
            errors.append(SpecError(f"{t.label}: dockerfile {rel} cannot be used: {df}", location=t.location,
                                    hint=hint))
            continue
        if not t.context.is_dir():
            errors.append(SpecError(f"{t.label}: context directory {ws.relpath(t.context)} does not exist",
                                    location=t.location, hint="create it or fix `context:`"))
        if t.stage is not None and df.stage(t.stage) is None:
            names = ", ".join(df.stage_names()) or "(none: name stages with FROM ... AS NAME)"
            errors.append(SpecError(f"{t.label}: stage {t.stage!r} is not in {rel}", location=t.location,
                                    key_path=("stage",), hint=f"stages in {rel}: {names}"))
    if errors:
        raise SpecErrors(errors)


def target_dict(t: Target, ws: Workspace) -> dict[str, Any]:
    """Every resolved setting of a target, JSON-ready and deterministic."""
    return {
        "label": str(t.label),
        "app": t.app,
        "spec_file": t.spec_file,
        "dockerfile": ws.relpath(t.dockerfile),
        "context": ws.relpath(t.context),
        "stage": t.stage,
        "image": t.image,
        "build_args": dict(t.build_args),
        "deps": {arg: str(lb) for arg, lb in t.deps},
        "cache": t.cache,
        "tags": list(t.tags),
        "push": t.push,
        "registries": list(t.registries),
        "platforms": list(t.platforms),
        "secrets": [s.id for s in t.secrets],
        "labels": dict(t.labels),
        "check": {"ignore": list(t.check_ignore)},
    }
