"""``imgbuild build PATTERN...``: build the selected targets and their dependencies on BuildKit.

Only arguments here: they become a :class:`~imgbuild.builds.settings.BuildSettings`, and
:func:`imgbuild.builds.service.run_plan` does the build.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgbuild.builds.results import RunResult
from imgbuild.builds.service import run_plan
from imgbuild.builds.settings import BuildSettings
from imgbuild.commands import load_graph, patterns
from imgbuild.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED
from imgbuild.plan import make_plan


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("patterns", nargs="+", metavar="PATTERN")
    p.add_argument("-j", "--jobs", type=_positive, metavar="N", help="targets built at once (default: workspace concurrency)")
    p.add_argument("-k", "--keep-going", action="store_true", help="after a failure, finish independent targets")
    p.add_argument("--builder", metavar="NAME", help="the buildx builder to use")
    p.add_argument("--no-load", action="store_true",
                   help="leave the requested images in no local engine (on builders other than `docker`; "
                        "with --push they go to the registries only)")
    p.add_argument("--progress", choices=("auto", "tty", "plain"), default="auto",
                   help="live view on a terminal (auto), or one line per event (plain)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the build report (specs/report.schema.json)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what each target would get (cached, restored, or the exact build command); run nothing")
    p.add_argument("--no-cache", action="store_true",
                   help="build every selected target from scratch: no target cache, no layer cache, no BuildKit cache")
    p.add_argument("--rebuild", action="append", default=[], metavar="LABEL",
                   help="build this target even if it is cached (repeatable; a pattern)")
    p.add_argument("--push", action="store_true",
                   help="push targets with `push: true` to their registries once every selected target built")
    p.add_argument("--push-as-ready", action="store_true",
                   help="with --push: push each target as soon as it and its dependencies are done")
    p.add_argument("--allow-dirty", action="store_true", help="allow --push from a work tree with changes")
    p.add_argument("--metadata-file", type=Path, metavar="FILE",
                   help="write buildx-style metadata (containerimage.digest, ...) per target")
    p.add_argument("--cache-read-only", action="store_true",
                   help="read the target cache but never write it (untrusted builds, e.g. forks' pull requests)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return n


def main(args: argparse.Namespace) -> int:
    graph, current = load_graph(args.workspace)
    plan = make_plan(graph, patterns(args.patterns, current))
    result = run_plan(BuildSettings.from_args(args), graph, plan, current)
    return exit_status(result)


def exit_status(result: RunResult | None) -> int:
    if result is None:  # a dry run
        return 0
    if result.interrupted:
        return EXIT_INTERRUPTED
    return 0 if result.ok else EXIT_BUILD_FAILED


