"""The request sent to the engine for one target: a frozen value, compared by equality in tests.

Planning a request does no I/O; :mod:`imgbuild.builds.executor` alone runs it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from imgbuild.git import GitInfo
from imgbuild.model import Pairs, Target, Workspace

# Where the engine supports it (BuildKit >= 0.10), each dependency is also a named build context, so a
# Dockerfile may write `FROM base-image` or `COPY --from=base-image` instead of an ARG.
LOCAL_TAG_PREFIX = "imgbuild-"


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    label: str
    context: str
    dockerfile: str
    target: str | None
    build_args: Pairs
    build_contexts: Pairs
    platforms: tuple[str, ...]
    secrets: tuple[str, ...]  # --secret specs: id=...,src=... or id=...,env=... (never a value)
    labels: Pairs
    tags: tuple[str, ...]
    builder: str | None = None
    load: bool = True
    outputs: tuple[str, ...] = ()  # --output specs besides --load (e.g. the OCI layout a dependant reads)
    metadata_file: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False  # BuildKit runs every step (imgbuild build --no-cache)
    no_cache_filter: tuple[str, ...] = ()  # stages whose steps BuildKit runs (a secret they mount changed)

    def argv(self) -> tuple[str, ...]:
        """The ``docker`` arguments, in a fixed order (the dry run prints exactly these)."""
        a: list[str] = ["buildx", "build", "--progress", "plain"]
        if self.builder:
            a += ["--builder", self.builder]
        a += ["--file", self.dockerfile]
        if self.target:
            a += ["--target", self.target]
        for k, v in self.build_args:
            a += ["--build-arg", f"{k}={v}"]
        for k, v in self.build_contexts:
            a += ["--build-context", f"{k}={v}"]
        if self.platforms:
            a += ["--platform", ",".join(self.platforms)]
        for s in self.secrets:
            a += ["--secret", s]
        for k, v in self.labels:
            a += ["--label", f"{k}={v}"]
        for t in self.tags:
            a += ["--tag", t]
        for c in self.cache_from:
            a += ["--cache-from", c]
        for c in self.cache_to:
            a += ["--cache-to", c]
        if self.no_cache:
            a.append("--no-cache")
        else:
            for stage in self.no_cache_filter:
                a += ["--no-cache-filter", stage]
        if self.metadata_file:
            a += ["--metadata-file", self.metadata_file]
        for o in self.outputs:
            a += ["--output", o]
        if self.load:
            a.append("--load")
        a.append(self.context)
        return tuple(a)


def context_name(arg: str) -> str:
    """A build-arg name as a named-context name: BASE_IMAGE -> base-image."""
    return re.sub(r"[^a-z0-9]+", "-", arg.lower()).strip("-")


def local_tag(target: Target, image_id: str) -> str:
    """The tag that names exactly one build of a target (its image id), handed to dependants."""
    digest = image_id.split(":", 1)[-1]
    return f"{target.image}:{LOCAL_TAG_PREFIX}{digest[:16]}"


def oci_labels(target: Target, git: GitInfo, created: datetime) -> Pairs:
    """The target's labels plus the OCI ones imgbuild sets (user labels win on a clash)."""
    auto = {"org.opencontainers.image.created": created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if git.sha:
        auto["org.opencontainers.image.revision"] = git.sha
    if git.remote_url:
        auto["org.opencontainers.image.source"] = git.remote_url
    auto["dev.imgbuild.label"] = str(target.label)
    auto.update(dict(target.labels))
    return tuple(sorted(auto.items()))


def secret_specs(target: Target, ws: Workspace, environ: dict[str, str]) -> tuple[str, ...]:
    """``--secret`` values. An ``env`` secret that is not set is left out (the RUN mount is then empty)."""
    out = []
    for s in target.secrets:
        if s.env is not None:
            if s.env in environ:
                out.append(f"id={s.id},env={s.env}")
        elif s.src is not None:
            src = os.path.expanduser(s.src)
            path = src if os.path.isabs(src) else str(ws.root / src)
            out.append(f"id={s.id},src={path}")
    return tuple(out)


def plan_request(
    target: Target,
    ws: Workspace,
    *,
    dep_refs: dict[str, str],
    git: GitInfo,
    created: datetime,
    tags: tuple[str, ...],
    environ: dict[str, str],
    builder: str | None = None,
    metadata_file: str | None = None,
    named_contexts: bool = True,
    dep_layouts: dict[str, str] | None = None,
) -> BuildRequest:
    """The engine request for ``target``, given the exact image reference of each of its deps.

    ``dep_refs`` maps each deps build-arg name to the reference of the dependency's fresh build. With
    ``dep_layouts`` (deps build-arg name -> ``oci-layout://`` context, for builders that do not see the
    engine's images), that reference itself is also a named context, so ``FROM ${ARG}`` resolves to the
    layout instead of a registry.
    """
    args = dict(target.build_args)
    contexts: dict[str, str] = {}
    for arg, _label in target.deps:
        ref = dep_refs[arg]
        args[arg] = ref
        if dep_layouts is not None:
            contexts[ref] = dep_layouts[arg]
            contexts[context_name(arg)] = dep_layouts[arg]
        elif named_contexts:
            contexts[context_name(arg)] = f"docker-image://{ref}"
    return BuildRequest(
        label=str(target.label),
        context=str(target.context),
        dockerfile=str(target.dockerfile),
        target=target.stage,
        build_args=tuple(sorted(args.items())),
        build_contexts=tuple(sorted(contexts.items())),
        platforms=target.platforms,
        secrets=secret_specs(target, ws, environ),
        labels=oci_labels(target, git, created),
        tags=tags,
        builder=builder,
        metadata_file=metadata_file,
    )
