"""What a build is asked to do: the typed settings of ``imgbuild build``, which ``ci`` and ``release`` set too."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    jobs: int | None = None  # targets at once (None: the workspace's concurrency)
    keep_going: bool = False
    builder: str | None = None  # None: BUILDX_BUILDER, else buildx's current builder
    no_load: bool = False  # leave the requested images out of the engine (builders other than docker)
    progress: str = "auto"  # auto | tty | plain
    json: Path | None = None
    metadata_file: Path | None = None
    dry_run: bool = False
    no_cache: bool = False
    rebuild: tuple[str, ...] = ()  # patterns built even when cached
    push: bool = False
    push_as_ready: bool = False
    allow_dirty: bool = False
    cache_read_only: bool = False
    journal: object | None = field(default=None, compare=False)  # the no-op journal recorder (imgbuild.uptodate)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BuildSettings:
        """``imgbuild build``'s parsed arguments (the only place an argparse namespace is read)."""
        return cls(jobs=args.jobs, keep_going=args.keep_going, builder=args.builder, no_load=args.no_load,
                   progress=args.progress, json=args.json, metadata_file=args.metadata_file, dry_run=args.dry_run,
                   no_cache=args.no_cache, rebuild=tuple(args.rebuild), push=args.push,
                   push_as_ready=args.push_as_ready, allow_dirty=args.allow_dirty,
                   cache_read_only=args.cache_read_only, journal=getattr(args, "journal", None))
