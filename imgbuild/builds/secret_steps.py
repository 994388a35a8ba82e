"""The build steps that must run again because a secret they mount changed (issue #14).

BuildKit keys a ``RUN --mount=type=secret`` step by the instruction and the secret's id, never by its
value: after the value changes, BuildKit serves the step from its cache (its own, or a layer cache
imported from elsewhere), and the new image still holds what the old secret produced. imgbuild's input
digest covers each secret's identity (a salted hash, :func:`imgbuild.digest.secret_identity`), so the
target is rebuilt; this module says which stages of that build must bypass BuildKit's cache.

The identities compared are those of the target's newest cache entry, the entry the build replaces: it
is shared by every runner that shares the cache, as the layer caches are. With no entry at all (a first
build) BuildKit's cache is trusted; when the store cannot say, every secret counts as changed. Only ids
and stage names are ever written (to the argv and the log), never a value or its identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Mapping

from imgbuild import dockerfile

if TYPE_CHECKING:
    from imgbuild.cache.targets import TargetCache
    from imgbuild.digest import Inputs
    from imgbuild.model import Target


@dataclass(frozen=True, kw_only=True)
class Bypass:
    """What a build gives BuildKit so that the steps mounting changed secrets run again."""

    secrets: tuple[str, ...]  # the changed secrets that RUN steps mount
    stages: tuple[str, ...]  # named stages with such steps: --no-cache-filter each
    everything: bool  # a stage without a name has such a step (BuildKit filters by name only): --no-cache

    def note(self) -> str:
        """A line for the target's log."""
        what = "every step" if self.everything else f"the steps of stage(s) {', '.join(self.stages)}"
        return (f"# secret(s) {', '.join(self.secrets)} changed since the target's previous cache entry: "
                f"{what} run without BuildKit's cache")


def changed_secrets(current: Mapping[str, str], previous: Mapping[str, str] | None) -> tuple[str, ...]:
    """Ids whose identity is not the one ``previous`` recorded; none when there is no previous record."""
    if previous is None:
        return ()
    return tuple(sorted(i for i, identity in current.items() if previous.get(i) != identity))


def bypass_for(df: dockerfile.Dockerfile, changed: Collection[str]) -> Bypass | None:
    """The stages whose RUN steps mount one of ``changed``; None if no step does.

    A mount whose id holds a variable (``id=$TOKEN_ID``) may be any of them. Stages that build on such
    a stage (``FROM``, ``COPY --from``) need nothing: BuildKit runs again what depends on a step it ran.
    """
    if not changed:
        return None
    hit = [s for s in df.stages if any(i in changed or "$" in i for i in s.secret_ids)]
    if not hit:
        return None
    mounted = {i for s in hit for i in s.secret_ids}
    secrets = tuple(sorted(c for c in changed if c in mounted or any("$" in i for i in mounted)))
    return Bypass(secrets=secrets, stages=tuple(s.name for s in hit if s.name),
                  everything=any(s.name is None for s in hit))


def secret_bypass(target: Target, inputs: Inputs, cache: TargetCache) -> Bypass | None:
    """For a build of ``target`` with ``inputs``: what must bypass BuildKit's cache (None: nothing)."""
    if not inputs.secrets:
        return None
    try:
        df: dockerfile.Dockerfile | None = dockerfile.parse(target.dockerfile)
    except dockerfile.DockerfileError:  # checked before the build; if it changed since, BuildKit will say
        df = None
    if df is not None and not any(s.secret_ids for s in df.stages):
        return None  # nothing mounts a secret: no need to ask the store
    changed = changed_secrets(dict(inputs.secrets), previous_secrets(cache, target))
    if df is None:
        return Bypass(secrets=changed, stages=(), everything=True) if changed else None
    return bypass_for(df, changed)


def previous_secrets(cache: TargetCache, target: Target) -> dict[str, str] | None:
    """The secret identities of the target's newest cache entry: None without an entry, ``{}`` (so every
    secret counts as changed) when the store could not be read or the entry holds no readable inputs."""
    store = cache.store_for(target)
    found = store.entries_for(str(target.label), limit=1)
    if not found:
        return None if store.available else {}
    try:
        secrets = json.loads(found[0].inputs).get("secrets")
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in secrets.items()} if isinstance(secrets, dict) else {}
