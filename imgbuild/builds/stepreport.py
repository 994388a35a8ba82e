"""During a run: what a target's previous build left to compare with, and its step report once built.

Kept out of :mod:`imgbuild.builds.run` so the run only calls two functions; neither ever fails a build
(a step report is an explanation, not a result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgbuild.builds import steps
from imgbuild.stepwhy import StepReport, explain_build

if TYPE_CHECKING:
    from imgbuild.cache.targets import TargetCache
    from imgbuild.digest import Inputs
    from imgbuild.model import Target


@dataclass(frozen=True, kw_only=True)
class Previous:
    inputs: dict[str, Any] | None  # the input manifest of the target's newest cache entry
    bases: tuple[str, ...]  # the resolved base images of its last build log on this machine


def previous_build(target: Target, log: Path, cache: TargetCache | None) -> Previous:
    """What the target's last build used: read before this build replaces its log and its cache entry."""
    manifest: dict[str, Any] | None = None
    if cache is not None:
        try:
            entry = cache.previous(target)
            manifest = json.loads(entry.inputs) if entry is not None and entry.inputs else None
        except Exception:  # noqa: BLE001 - only an explanation is lost; the cache guard has warned
            manifest = None
    before = steps.read(log) if log.exists() else None
    return Previous(inputs=manifest if isinstance(manifest, dict) else None,
                    bases=before.bases if before is not None else ())


def step_report(target: Target, log: Path, inputs: Inputs | None, previous: Previous) -> StepReport | None:
    """The report of the build whose plain log is ``log``; None if it printed no step (e.g. it never started)."""
    found = steps.read(log)
    if found is None or not found.steps:
        return None
    try:
        return explain_build(found, dockerfile=target.dockerfile, new=inputs.manifest() if inputs else {},
                             old=previous.inputs, previous_bases=previous.bases)
    except Exception:  # noqa: BLE001 - an odd Dockerfile or log must not fail a finished build
        return None
