"""Which BuildKit layer-cache scopes a target reads and writes under its cache policy.

A scope separates the caches of lines of work (a branch and ``main``), so that a branch never
overwrites the cache ``main`` builds start from, yet a new branch starts warm from ``main``'s:

* the own scope is the policy's ``scope`` template (``"{git.branch}"``, ``"{env.CI_COMMIT_REF_SLUG}"``)
  rendered like a tag; without a template, or when it renders empty (a detached ``HEAD``), it is the
  branch, or ``main`` when there is no branch;
* ``fallback_scopes`` are read after the own scope (in the synced S3 layout, only when the own scope
  has no cache yet);
* ``invalidate_every`` (``12h``, ``7d``, ``2w``) cuts time into periods counted from the Unix epoch;
  the period (``7d-2930``) is appended to every scope, so a new period starts from an empty cache and
  the dependency layers are rebuilt at least once per period without a ``cache_invalidator`` build arg.
  The same value must go into the target's input digest, so the whole-image target cache also
  misses once per period instead of restoring an image whose layers were never rebuilt.

Pure: the caller reads git and the clock once per run and passes them in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from imgbuild.git import GitInfo
from imgbuild.model import CachePolicy
from imgbuild.tags import TagContext, render, tag_safe

DEFAULT_SCOPE = "main"

_DURATION = re.compile(r"^([1-9][0-9]*)([hdw])$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, kw_only=True)
class LayerScope:
    """The scopes of one target for one run.

    ``write_scope`` is None when nothing may be written (``write: false`` or a read-only run).
    ``read_scopes`` starts with the own scope, then the fallbacks, without duplicates.
    ``period`` is the invalidation period (``"7d-2930"``) or None; it belongs in the input digest.
    """

    write_scope: str | None
    read_scopes: tuple[str, ...]
    period: str | None


def layer_scope(policy: CachePolicy, *, git: GitInfo, now: datetime, read_only: bool,
                environ: Mapping[str, str] | None = None) -> LayerScope:
    """The scopes ``policy`` gives a target built from ``git`` at ``now`` (``environ`` for ``{env.NAME}``)."""
    ctx = TagContext(git=git, now=now, environ=dict(environ or {}))
    own = (render(policy.scope, ctx) if policy.scope else "") or tag_safe(git.branch) or DEFAULT_SCOPE
    fallbacks = [render(s, ctx) for s in policy.fallback_scopes]
    period = invalidation_period(policy.invalidate_every, now) if policy.invalidate_every else None
    scopes: list[str] = []
    for s in (own, *fallbacks):
        if not s:  # a fallback whose placeholder has no value in this run
            continue
        key = f"{s}-{period}" if period else s
        if key not in scopes:
            scopes.append(key)
    write = None if read_only or not policy.write else scopes[0]
    return LayerScope(write_scope=write, read_scopes=tuple(scopes), period=period)


def period_seconds(every: str) -> int:
    """``12h`` -> 43200; ValueError for anything the workspace schema would not accept."""
    m = _DURATION.match(every)
    if not m:
        raise ValueError(f"invalid period {every!r}: expected N followed by h, d or w (12h, 7d, 2w)")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def invalidation_period(every: str, now: datetime) -> str:
    """``"<every>-<n>"`` with n = floor(seconds since the epoch / period), from ``now`` in UTC.

    Periods are aligned on the epoch, not on the first build, so every machine agrees on them without
    sharing any state. (Weeks therefore start on Thursdays, 1970-01-01's weekday.)
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    seconds = math.floor(now.astimezone(timezone.utc).timestamp())  # integers: exact at the boundary
    return f"{every}-{seconds // period_seconds(every)}"
