"""The resolved domain model: the workspace configuration and its targets. Frozen, parsed once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgbuild import statedir
from imgbuild.errors import Location
from imgbuild.labels import Label
from imgbuild.statedir import StateDirs

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Registry:
    name: str
    url: str
    insecure: bool = False
    immutable_tags: bool = False


@dataclass(frozen=True, kw_only=True)
class CachePolicy:
    """A named cache policy from ``cache_policies:``; its settings are used by the caching issues."""

    name: str
    backend: str  # local | s3 | registry | inline | gha
    path: str | None = None
    bucket: str | None = None
    region: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    use_path_style: bool = False
    ref: str | None = None
    scope: str | None = None
    fallback_scopes: tuple[str, ...] = ()
    mode: str = "min"
    write: bool = True
    invalidate_every: str | None = None


@dataclass(frozen=True, kw_only=True)
class HistoryConfig:
    backend: str = "sqlite"
    path: str | None = None  # None: the state directory's history.sqlite (imgbuild.statedir)
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class Defaults:
    registries: tuple[str, ...] = ()
    cache: str | None = None
    tags: tuple[str, ...] = ("latest",)
    platforms: tuple[str, ...] = ()
    build_args: Pairs = ()
    labels: Pairs = ()
    push: bool = False
    load: bool = True
    check_ignore: tuple[str, ...] = ()  # advisor codes `imgbuild check` does not report (`check: {ignore: [...]}`)


@dataclass(frozen=True, kw_only=True)
class ReleaseConfig:
    tags: tuple[str, ...] = ()  # empty: the defaults for the version
    registries: tuple[str, ...] = ()  # empty: each target's own registries
    semver: bool = True


@dataclass(frozen=True, kw_only=True)
class WorkspaceConfig:
    root: Path
    file: Path
    defaults: Defaults
    registries: tuple[Registry, ...] = ()
    cache_policies: tuple[CachePolicy, ...] = ()
    history: HistoryConfig = field(default_factory=HistoryConfig)
    concurrency: int = 4
    release: ReleaseConfig = field(default_factory=ReleaseConfig)

    def registry(self, name: str) -> Registry:
        return next(r for r in self.registries if r.name == name)

    def cache_policy(self, name: str) -> CachePolicy:
        return next(p for p in self.cache_policies if p.name == name)


@dataclass(frozen=True, kw_only=True)
class Secret:
    """A build secret: its id and where its value comes from. The value itself is never stored."""

    id: str
    src: str | None = None
    env: str | None = None


@dataclass(frozen=True, kw_only=True)
class Target:
    """One buildable image: an app, or one of the app's ``targets:`` (a Dockerfile stage)."""

    label: Label
    app: str
    spec_file: str  # workspace-relative path of the BUILD.yaml
    location: Location  # where the target (or its app) is declared
    dockerfile: Path  # absolute
    context: Path  # absolute
    stage: str | None
    image: str
    build_args: Pairs
    deps: tuple[tuple[str, Label], ...]  # build-arg name -> dependency label
    cache: str | None
    tags: tuple[str, ...]
    push: bool
    registries: tuple[str, ...]
    platforms: tuple[str, ...]
    secrets: tuple[Secret, ...]
    labels: Pairs
    # Whether a build that asks for it leaves its image in the local engine (builders other than `docker`).
    load: bool = True
    check_ignore: tuple[str, ...] = ()  # advisor codes not reported: defaults', app's and target's lists together
    # Where each deps entry is written, so an unknown or cyclic dependency is reported there.
    dep_locations: tuple[tuple[str, Location], ...] = field(default=(), compare=False)

    @property
    def dep_labels(self) -> tuple[Label, ...]:
        return tuple(sorted({lb for _, lb in self.deps}))


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """The loaded workspace: its configuration and every target, keyed by label."""

    config: WorkspaceConfig
    targets: dict[Label, Target]
    packages: tuple[str, ...]

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def state(self) -> StateDirs:
        """Where imgbuild keeps this workspace's caches, logs and default history (outside the work tree)."""
        return statedir.for_workspace(self.root)

    def relpath(self, path: Path) -> str:
        """``path`` relative to the workspace root, as shown to users ("." for the root itself)."""
        text, root = str(path), str(self.root)
        if text == root:
            return "."
        if text.startswith(root + os.sep):
            return text[len(root) + 1 :].replace(os.sep, "/")
        return text
