"""``imgbuild ci``: the one command of a CI pipeline.

Detects the CI provider (GitHub Actions, GitLab CI, Buildkite, CircleCI, Jenkins, else generic), builds the
targets affected since the base ref (or all with ``--all``), reads but never writes the shared caches for
pull requests from forks, pushes only on the default branch or a tag (unless told otherwise), and writes
the build report, a JUnit XML file and, on GitHub Actions, a job summary and error annotations.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from imgbuild import git as gitinfo
from imgbuild import statedir
from imgbuild.builds.outputs import github_annotations, github_summary, write_junit
from imgbuild.builds.results import RunResult, write_metadata
from imgbuild.ci import CIRun, detect
from imgbuild.commands import load_graph
from imgbuild.commands.check import FAIL_ON, fails, run_check
from imgbuild.builds.service import run_plan
from imgbuild.builds.settings import BuildSettings
from imgbuild.commands.build import exit_status
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label, parse_patterns
from imgbuild.model import Workspace
from imgbuild.plan import make_plan


def add_arguments(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ci", parents=[common], help="build what changed, as a CI pipeline's one command")
    p.add_argument("--all", action="store_true", help="build every target, not only the affected ones")
    p.add_argument("--since", metavar="REF", help="base ref for affected targets (default: the pull request's "
                   "base, else origin/<default branch>)")
    p.add_argument("--shard", metavar="I/N", help="build the I-th of N graph-disjoint parts (parallel CI jobs)")
    p.add_argument("--default-branch", default="main", metavar="NAME", help="pushes happen on it (default: main)")
    push = p.add_mutually_exclusive_group()
    push.add_argument("--push", dest="push_mode", action="store_const", const="always",
                      help="push whatever the branch")
    push.add_argument("--no-push", dest="push_mode", action="store_const", const="never", help="never push")
    p.add_argument("-j", "--jobs", type=int, metavar="N")
    p.add_argument("--json", type=Path, default=Path("imgbuild-report.json"), metavar="FILE")
    p.add_argument("--junit", type=Path, default=Path("imgbuild-junit.xml"), metavar="FILE")
    p.add_argument("--metadata-file", type=Path, metavar="FILE",
                   help="write buildx's metadata (containerimage.digest, buildx.build.ref, ...) per target")
    p.add_argument("--pattern", action="append", default=[], metavar="PATTERN",
                   help="limit to these targets (default //...)")
    p.add_argument("--check-fail-on", choices=FAIL_ON, default="never", metavar="LEVEL",
                   help="run `imgbuild check` on the selected targets first and fail (exit 1, nothing built) when "
                        "a finding at or above LEVEL exists: info, warning, error, never (default: report only)")
    p.add_argument("--no-check", action="store_true", help="do not run `imgbuild check` on the selected targets")


def should_push(ci: CIRun | None, git: gitinfo.GitInfo, mode: str | None, default_branch: str,
                environ: dict[str, str]) -> bool:
    if mode == "always":
        return True
    if mode == "never" or ci is None or ci.pull_request:
        return False
    tagged = bool(git.tag) or environ.get("GITHUB_REF_TYPE") == "tag" or bool(environ.get("CI_COMMIT_TAG")) \
        or bool(environ.get("BUILDKITE_TAG")) or bool(environ.get("CIRCLE_TAG"))
    branch = ci.branch or git.branch
    return tagged or branch == default_branch


def main(args: argparse.Namespace) -> int:
    from imgbuild.affected import affected_targets, changed_files
    from imgbuild.shard import parse_shard, shard

    environ = dict(os.environ)
    ci = detect(environ)
    graph, _ = load_graph(args.workspace)
    ws = graph.workspace
    git = gitinfo.read(ws.root)
    universe = set(graph.select(parse_patterns(args.pattern or ["//..."])))
    if args.all:
        selected = universe
        why = "all targets (--all)"
    else:
        base = args.since or (f"origin/{ci.base_ref}" if ci and ci.base_ref else f"origin/{args.default_branch}")
        branch = (ci.branch if ci else None) or git.branch  # CI checkouts are often a detached HEAD
        if not args.since and not (ci and ci.base_ref) and (branch == args.default_branch or git.tag):
            base = "HEAD~1"  # on the default branch (or a tag) itself: what this commit changed
        selected = affected_targets(graph, changed_files(ws.root, base)) & universe
        why = f"targets affected since {base}"
    if args.shard:
        index, count = parse_shard(args.shard)
        selected = set(shard(graph, selected, index, count))
        why += f", shard {args.shard}"
    print(f"imgbuild ci: {ci.provider if ci else 'no CI detected'}; {len(selected)} {why}", file=sys.stderr)
    fork = bool(ci and ci.fork)
    push = should_push(ci, git, args.push_mode, args.default_branch, environ)
    if fork:
        print("imgbuild ci: pull request from a fork: shared caches are read, never written", file=sys.stderr)
    if selected and not args.no_check and _check(graph, selected, args.check_fail_on, environ):
        print(f"imgbuild ci: check found a finding at or above {args.check_fail_on} (--check-fail-on); "
              "nothing built", file=sys.stderr)
        _write_outputs(None, args, ws, environ)
        return 1
    if not selected:
        print("imgbuild ci: nothing to build", file=sys.stderr)
        _write_outputs(None, args, ws, environ)
        return 0
    plan = make_plan(graph, parse_patterns(sorted(str(lb) for lb in selected)))
    options = BuildSettings(jobs=args.jobs, progress="plain", json=args.json, metadata_file=args.metadata_file,
                            cache_read_only=fork, push=push)
    result = run_plan(options, graph, plan, "")
    _write_outputs(result, args, ws, environ)
    return exit_status(result)


def _write_outputs(result: RunResult | None, args: argparse.Namespace, ws: Workspace,
                   environ: dict[str, str]) -> None:
    res = result or RunResult(targets=(), interrupted=False, started="", duration=0.0)
    write_junit(res, args.junit)
    statedir.remember_output(ws.state, args.junit)  # not a change to the work tree (git.read)
    if result is None and args.metadata_file:
        write_metadata(res, args.metadata_file)  # nothing to build: a step reading it finds {}, not nothing
        statedir.remember_output(ws.state, args.metadata_file)
    if environ.get("GITHUB_ACTIONS") == "true":
        summary_path = environ.get("GITHUB_STEP_SUMMARY")
        if summary_path:
            with open(summary_path, "a", encoding="utf-8") as fh:
                fh.write(github_summary(res) + "\n")
        for line in github_annotations(res, ws):
            print(line)


def _check(graph: TargetGraph, selected: set[Label], fail_on: str, environ: dict[str, str]) -> bool:
    """Run the advisor on the selected targets: findings to stderr, and on GitHub Actions to the job summary
    and as annotations. True when they fail the job under ``fail_on``."""
    from imgbuild.advisor.output import github_annotations, github_summary, text

    report = run_check(graph, [graph.target(lb) for lb in sorted(selected)], history=None)
    if report.findings:
        print(text(report), file=sys.stderr)
    if environ.get("GITHUB_ACTIONS") == "true":
        summary_path = environ.get("GITHUB_STEP_SUMMARY")
        if summary_path:
            with open(summary_path, "a", encoding="utf-8") as fh:
                fh.write(github_summary(report) + "\n")
        for line in github_annotations(report):
            print(line)
    return fails(report, fail_on)
