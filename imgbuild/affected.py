"""What a change affects: the files changed since a git ref, and the targets those files reach.

Two steps, kept apart so the second is pure: :func:`changed_files` asks git (through
:func:`imgbuild.proc.run`) which files differ between the merge base of a ref and the work tree;
:func:`affected_targets` maps file paths to targets with no process and no git, reading only the
targets' ignore files.

A target reads, and so is affected by a change to:

* a file of its build context that Docker sends, i.e. one its ``.dockerignore`` rules keep. A file the
  rules leave out cannot change the image; a deleted file counts like any other (it left the context);
* its Dockerfile, and the ignore files that decide its rules (``<Dockerfile>.dockerignore``, and the
  context's ``.dockerignore`` unless the former exists and takes precedence), even when the rules
  exclude them from the context;
* its ``BUILD.yaml``;
* the workspace file ``imgbuild.yaml`` (defaults, registries, cache policies): every target.

Everything that depends on an affected target is affected too.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from imgbuild import proc
from imgbuild.dockerignore import IgnoreRules, load_rules
from imgbuild.errors import ImgbuildError
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.model import Target, Workspace
from imgbuild.specfiles.workspace import WORKSPACE_FILE

_CI_HINT = "in GitHub Actions, set `fetch-depth: 0` on actions/checkout"


class ChangesError(ImgbuildError):
    """The changes since a ref cannot be computed (no repository, unknown ref, shallow history)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"error: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")


def changed_files(root: Path, since: str) -> tuple[str, ...]:
    """Files changed between the merge base of ``since`` and HEAD, and the work tree, sorted.

    Paths are posix and relative to ``root`` (the workspace root), even when the repository's top
    level is above it; files outside ``root`` are left out. Included: commits since the merge base,
    staged and unstaged changes, untracked files git does not ignore, deletions, and both the old
    and the new path of a rename.
    """
    base = merge_base(root, since)
    # --no-renames: a rename is a deletion plus an addition, so both paths are listed (rename
    # detection, on by default since git 2.9, would list only the new path). --relative: paths are
    # relative to cwd (the workspace root) and only files below it are listed.
    diff = _git(root, "diff", "--name-only", "--no-renames", "--relative", "-z", base, "--")
    # ls-files lists paths relative to cwd and only below it already.
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    return tuple(sorted({p for p in (diff + untracked).split("\0") if p}))


def merge_base(root: Path, since: str) -> str:
    """The commit where HEAD's history meets ``since``'s; an error that says what to fetch if none."""
    if not since or since.startswith("-"):
        raise ChangesError(f"--since {since!r} is not a git revision", hint="give a branch, tag or commit, "
                           "e.g. --since origin/main")
    try:
        _git(root, "rev-parse", "--show-toplevel")
    except proc.ProcessError as exc:
        raise ChangesError(f"--since needs a git repository, and {root} is not in one ({_first_line(exc)})",
                           hint="run it in a git checkout, or build every target with --all") from None
    try:
        _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except proc.ProcessError:
        raise ChangesError("HEAD has no commit yet: there is no history to compare with",
                           hint="commit first, or build every target with --all") from None
    shallow = _shallow(root)
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    except proc.ProcessError:
        # A full clone stays full: --depth there would make it shallow.
        fetch = f"git fetch {'--depth=100 ' if shallow else ''}origin {_remote_name(since)}"
        raise ChangesError(
            f"--since {since}: no such commit in {'this shallow clone' if shallow else 'this clone'}",
            hint=f"fetch it first (`{fetch}`; {_CI_HINT}), or build every target with --all") from None
    try:
        return _git(root, "merge-base", since, "HEAD").strip()
    except proc.ProcessError as exc:
        if exc.returncode != 1:  # 1 with no output: no common ancestor; anything else is git failing
            raise ChangesError(f"git merge-base {since} HEAD failed: {_first_line(exc)}") from None
    if shallow:
        raise ChangesError(
            f"--since {since}: no merge base with HEAD in this shallow clone (the fetched history of "
            f"{since} and HEAD does not reach a common commit)",
            hint=f"fetch more history (`git fetch --deepen=200 origin {_remote_name(since)}` or "
                 f"`git fetch --unshallow`; {_CI_HINT}), or build every target with --all")
    raise ChangesError(f"--since {since}: it has no common history with HEAD",
                       hint="compare with a branch HEAD was started from, or build every target with --all")


def affected_targets(graph: TargetGraph, files: Iterable[str]) -> set[Label]:
    """The targets the changed ``files`` (workspace-relative posix paths) affect, and their dependants.

    No process, no git: only the ignore files of the targets whose context holds a changed file are
    read. Paths outside the workspace (``../x``) affect nothing.
    """
    ws = graph.workspace
    changed = {p for p in (_normalized(f) for f in files) if p is not None}
    if WORKSPACE_FILE in changed:
        return set(ws.targets)
    own, by_context = _index(ws)
    rules: dict[Label, IgnoreRules] = {}

    def sent(t: Target, path_in_context: str) -> bool:
        if t.label not in rules:
            rules[t.label] = load_rules(t.context, t.dockerfile, root=ws.root)
        return not rules[t.label].excluded(path_in_context)

    direct: set[Label] = set()
    for path in changed:
        direct.update(own.get(path, ()))
        # The contexts holding `path` are those rooted at one of its parent directories.
        parts = path.split("/")
        for k in range(len(parts)):
            ctx = "/".join(parts[:k])
            for t in by_context.get(ctx, ()):
                if t.label not in direct and sent(t, "/".join(parts[k:])):
                    direct.add(t.label)
    return graph.with_rdeps(direct)


def _index(ws: Workspace) -> tuple[dict[str, list[Label]], dict[str, list[Target]]]:
    """(targets by each file that is theirs whatever the ignore rules say, targets by context dir)."""
    own: dict[str, list[Label]] = defaultdict(list)
    by_context: dict[str, list[Target]] = defaultdict(list)
    for t in ws.targets.values():
        ctx = _rel(ws, t.context)
        by_context[ctx].append(t)
        df_ignore = t.dockerfile.with_name(t.dockerfile.name + ".dockerignore")
        paths = [t.spec_file, _rel(ws, t.dockerfile), _rel(ws, df_ignore)]
        # The context's .dockerignore decides the rules unless the Dockerfile's own one exists (a
        # deleted one is listed above: its deletion hands the rules back to the context's file).
        if not df_ignore.is_file():
            paths.append(posixpath.join(ctx, ".dockerignore"))
        for p in paths:
            own[p].append(t.label)
    return own, by_context


def _rel(ws: Workspace, path: Path) -> str:
    rel = ws.relpath(path)
    return "" if rel == "." else rel


def _normalized(path: str) -> str | None:
    p = posixpath.normpath(path) if path else "."
    if p == "." or p == ".." or p.startswith(("../", "/")):
        return None
    return p


def _git(root: Path, *args: str) -> str:
    return proc.run(["git", *args], cwd=root)


def _shallow(root: Path) -> bool:
    try:
        return _git(root, "rev-parse", "--is-shallow-repository").strip() == "true"
    except proc.ProcessError:
        return False


def _remote_name(ref: str) -> str:
    """The name to fetch from origin for ``ref``: ``origin/main`` and ``refs/remotes/origin/main`` are ``main``."""
    for prefix in ("refs/remotes/origin/", "origin/", "refs/heads/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _first_line(exc: proc.ProcessError) -> str:
    lines = exc.stderr.strip().splitlines()
    return lines[0] if lines else f"exit status {exc.returncode}"
