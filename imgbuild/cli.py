"""The command line: argument parsing only; each command is a function in ``imgbuild.commands``."""

from __future__ import annotations

import sys
from imgbuild import __version__

TYPE_CHECKING = False  # not typing's: `imgbuild build` answered from its no-op journal never imports typing
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EPILOG = """exit status:
  0    success
  1    a build or push failed (or a target was skipped because its dependency failed);
       check found a finding at or above --fail-on;
       release/promote refused because of the registries' or the work tree's state
  2    bad input: a spec error, an unknown label or pattern, a usage error, a bad version
  3    the container engine is not reachable
  130  interrupted

patterns: //apps/api:api  //apps/api  //apps/api:all  //apps/...  //...  :api  -//apps/legacy/...
"""


def _parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="imgbuild",
        description="Build container images in monorepos: a mini Bazel for images.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"imgbuild {__version__}")
    # Also before the command (`imgbuild -w DIR plan ...`); a -w after the command wins.
    p.add_argument("--workspace", "-w", type=Path, metavar="DIR", dest="top_workspace",
                   help="the workspace root, for every command (also accepted after the command)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", "-w", type=Path, metavar="DIR",
                        help="the workspace root (default: the nearest directory above with imgbuild.yaml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sb = sub.add_parser("build", parents=[common], help="build targets and their dependencies (docker buildx)")
    from imgbuild.commands.build import add_arguments

    add_arguments(sb)

    sp = sub.add_parser("plan", parents=[common], help="show the targets a build would run, in order, fully resolved")
    sp.add_argument("patterns", nargs="+", metavar="PATTERN")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.add_argument("--explain", action="store_true",
                    help="per target: cached, or to build and which inputs differ from its last cache entry")

    sq = sub.add_parser("query", help="list dependencies, dependants or affected targets")
    kinds = sq.add_subparsers(dest="kind", metavar="deps|rdeps|affected")
    kinds.required = True
    for kind, text in (("deps", "the targets and everything they depend on"),
                       ("rdeps", "the targets and everything that depends on them")):
        sk = kinds.add_parser(kind, parents=[common], help=text)
        sk.add_argument("patterns", nargs="+", metavar="PATTERN")
        sk.add_argument("--direct", action="store_true", help="only direct (one level) dependencies or dependants")
        sk.add_argument("--json", action="store_true")
    sa = kinds.add_parser("affected", parents=[common], help="targets whose inputs changed since a git ref")
    sa.add_argument("--since", metavar="REF", required=True,
                    help="files changed since the merge base of REF and HEAD, plus the work tree")
    sa.add_argument("--shard", metavar="I/N", help="only this CI job's share (dependency chains are never split)")
    sa.add_argument("--json", action="store_true")
    sa.set_defaults(patterns=[])

    sg = sub.add_parser("graph", parents=[common], help="print the dependency graph")
    sg.add_argument("patterns", nargs="*", metavar="PATTERN", default=["//..."])
    sg.add_argument("--format", choices=("dot", "mermaid", "json"), default="dot")

    sub.add_parser("validate", parents=[common], help="check every spec, label, Dockerfile and stage")

    si = sub.add_parser("inspect", parents=[common], help="the layers of a target's latest image")
    si.add_argument("label", metavar="LABEL")
    si.add_argument("--json", action="store_true")

    se = sub.add_parser("explain", parents=[common],
                        help="a target's last build step by step: cached or ran, and why the first step ran")
    se.add_argument("label", metavar="LABEL")
    se.add_argument("--json", action="store_true")

    sc = sub.add_parser("cache", parents=[common],
                        help="the caches: `imgbuild cache stats`, `imgbuild cache gc` (clean-up)")
    sc.add_argument("action", choices=("stats", "gc"))
    sc.add_argument("--json", action="store_true")
    sc.add_argument("--older-than", metavar="AGE",
                    help="gc: delete entries and layer caches older than AGE (Nh, Nd, Nw; default 30d)")
    sc.add_argument("--keep-per-scope", metavar="N", type=int,
                    help="gc: always keep the newest N entries of each target and its N newest layer caches "
                         "(default 1)")
    sc.add_argument("--dry-run", action="store_true",
                    help="gc: list what would be deleted, and its size; delete nothing")

    from imgbuild.commands.check import add_arguments as add_check_arguments
    from imgbuild.commands.ci import add_arguments as add_ci_arguments
    from imgbuild.commands.history import add_arguments as add_history_arguments
    from imgbuild.commands.release import add_arguments as add_release_arguments

    add_check_arguments(sub, common)
    add_ci_arguments(sub, common)
    add_release_arguments(sub, common)

    add_history_arguments(sub, common)

    ss = sub.add_parser("schema", help="print a JSON Schema of a file format")
    ss.add_argument("kind", nargs="?", choices=("workspace", "build", "report", "history-record", "check"), default="build")
    return p


def _protect_exclusions(argv: Sequence[str]) -> list[str]:
    """Keep ``-//apps/legacy/...`` a pattern: argparse would take it for an option.

    A leading space makes argparse see a positional; :func:`Pattern.parse` strips it again.
    """
    return [f" {a}" if a.startswith(("-//", "-:", "-...")) else a for a in argv]


# tarfile's extraction filters (``extractall(filter="data")``, which unpacking images relies on) are in
# 3.10.12+, 3.11.4+ and 3.12+; older interpreters would fail later with a TypeError. See pyproject.toml.
MIN_PYTHON = {(3, 10): (3, 10, 12), (3, 11): (3, 11, 4)}


def python_problem(version: tuple[int, ...]) -> str | None:
    """Why this Python cannot run imgbuild, or None when it can."""
    v = tuple(version[:3])
    need = MIN_PYTHON.get((v[0], v[1]), (3, 10, 12))
    if v >= (3, 12) or v[:2] in MIN_PYTHON and v >= need:
        return None
    shown = ".".join(str(n) for n in v)
    wanted = ".".join(str(n) for n in need)
    return (f"imgbuild needs Python {wanted} or newer (3.10.12+, 3.11.4+ or 3.12+: tarfile's extraction "
            f"filters); this is Python {shown} ({sys.executable})")


def _leading_workspace(raw: list[str]) -> tuple[list[str], list[str]]:
    """``-w DIR`` / ``--workspace DIR`` / ``--workspace=DIR`` given before the command, and the rest."""
    lead: list[str] = []
    i = 0
    while i < len(raw):
        a = raw[i]
        if a in ("-w", "--workspace") and i + 1 < len(raw):
            lead += raw[i:i + 2]
            i += 2
        elif a.startswith("--workspace=") or (a.startswith("-w") and len(a) > 2):
            lead.append(a)
            i += 1
        else:
            break
    return lead, raw[i:]


def main(argv: Sequence[str] | None = None) -> int:
    problem = python_problem(tuple(sys.version_info[:3]))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 3  # EXIT_ENGINE: the environment cannot run builds (see README's exit status)
    raw = list(sys.argv[1:] if argv is None else argv)
    lead, rest = _leading_workspace(raw)
    if lead and rest[:1] == ["build"]:
        raw = ["build", *lead, *rest[1:]]  # so that a no-op build is still answered from its journal
    journal = None
    if raw[:1] == ["build"]:
        from imgbuild import uptodate  # standard library only: a no-op answers before anything else loads

        try:
            replayed = uptodate.replay(raw[1:])
            if replayed is not None:
                return replayed
            journal = uptodate.Recorder.begin(raw[1:])
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130  # EXIT_INTERRUPTED, without importing imgbuild.errors
    try:
        return _run(raw, journal)
    finally:
        if journal is not None:
            journal.stop()


def _run(raw: list[str], journal: object) -> int:
    args = _parser().parse_args(_protect_exclusions(raw))
    if getattr(args, "workspace", None) is None and args.top_workspace is not None:
        args.workspace = args.top_workspace
    args.journal = journal
    from imgbuild import commands
    from imgbuild.errors import EXIT_INTERRUPTED, ImgbuildError

    try:
        return commands.run(args)
    except ImgbuildError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `imgbuild plan //... | head`
        return 0
