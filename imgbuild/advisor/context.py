"""The build-context rules: a root or parent-directory context without a useful ``.dockerignore``
(IB103, IB104), and a large context that the Dockerfile mostly does not copy (IB105).

imgbuild hashes the whole context (after ``.dockerignore``) into the target's input digest, and
BuildKit keys ``COPY . .`` by it: in a context holding the repository root, every commit changes
``.git``, so such a target never stays cached. imgbuild's own state is outside the work tree
(:mod:`imgbuild.statedir`); when ``IMGBUILD_STATE_DIR`` puts it inside a context, or an old ``.imgbuild/``
is still there, the ``.dockerignore`` must exclude it too (imgbuild leaves it out of the digest, but
BuildKit would still send it, and ``COPY . .`` copy it). A context that
is much larger than what its Dockerfile copies costs its transfer and hashing on every build.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgbuild import statedir
from imgbuild.advisor.findings import Finding
from imgbuild.dockerignore import DockerignoreError, IgnoreRules, load_rules

LARGE_CONTEXT = 50 * 1000 * 1000  # bytes sent; below this, what is not copied costs little
MOSTLY_UNUSED = 0.5  # report when the Dockerfile copies less than this share of it
MAX_FILES = 200_000  # a walk stops here: such a context is reported as large without a share


@dataclass(frozen=True, kw_only=True)
class ContextFacts:
    """What the walk of one context (with its ignore rules) found."""

    total: int  # bytes sent to the builder
    by_top: tuple[tuple[str, int], ...]  # bytes per top-level entry, largest first
    files: tuple[tuple[str, int], ...]  # (path, size) of each file sent, context-relative
    complete: bool  # False when the walk stopped at MAX_FILES


def ignore_file(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file BuildKit reads for this Dockerfile, if any (see :func:`load_rules`)."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            return candidate
    return None


def ignore_findings(*, context: Path, dockerfile: Path, root: Path, package_dir: Path, spec_file: str,
                    spec_line: int, display: str,
                    relpath: Callable[[Path], str]) -> tuple[list[Finding], IgnoreRules | None]:
    """IB103/IB104 for a context at the workspace root or above the target's package; and the rules."""
    try:
        rules = load_rules(context, dockerfile)
    except DockerignoreError as exc:
        where = exc.location
        return [Finding(code="IB001", file=relpath(Path(where.file)) if where else display,
                        line=where.line if where else 1, instruction="",
                        message=f".dockerignore cannot be read: {exc.message}",
                        cost="the target cannot be built", fix=exc.hint or "fix the pattern")], None
    broad = context == root or (package_dir != context and context in package_dir.parents)
    if not broad:
        return [], rules
    kind = "the workspace root" if context == root else f"{display}, a parent of the target's package"
    found = ignore_file(context, dockerfile)
    own = [p.relative_to(context).as_posix() for p in statedir.for_workspace(root).inside_workspace()
           if p != context and p.is_relative_to(context)]
    needed = [n for n in (".git", statedir.LEGACY_DIR) if (context / n).exists()]
    needed += [n for n in own if n not in needed]
    if found is None:
        return [Finding(
            code="IB103", file=spec_file, line=spec_line, instruction=f"context: {display}",
            message=f"the context is {kind} and has no .dockerignore",
            cost="every file of the context, .git included, is sent and hashed: any change anywhere "
                 "rebuilds the target and reruns `COPY . .`",
            fix=f"create {relpath(context / '.dockerignore')} with at least:",
            fix_lines=tuple(needed or [".git"]))], rules
    missing = [n for n in needed if not rules.excluded(n)]
    if not missing:
        return [], rules
    return [Finding(
        code="IB104", file=relpath(found), line=1, instruction=f"context: {display}",
        message=f"the context is {kind} and its .dockerignore does not exclude {' or '.join(missing)}",
        cost=("every commit changes .git: the target is rebuilt each time and `COPY . .` reruns" if ".git" in missing
              else "imgbuild's state is sent to the builder, and `COPY . .` copies it into the image"),
        fix=f"add to {relpath(found)}:", fix_lines=tuple(missing))], rules



def walk(context: Path, rules: IgnoreRules) -> ContextFacts:
    """Sizes of the files BuildKit would send (symlinks counted as links, never followed)."""
    total = 0
    files: list[tuple[str, int]] = []
    by_top: dict[str, int] = {}
    stack: list[tuple[str, tuple[bool, ...]]] = [("", ())]
    complete = True
    while stack:
        rel_dir, parent = stack.pop()
        try:
            entries = list(os.scandir(context / rel_dir if rel_dir else context))
        except OSError:
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            excluded, info = rules.match(rel, parent) if rules.patterns else (False, ())
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if not excluded or rules.may_reinclude_under(rel):
                    stack.append((rel, info))
                continue
            if excluded:
                continue
            try:
                size = e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            total += size
            files.append((rel, size))
            top = rel.split("/", 1)[0]
            by_top[top] = by_top.get(top, 0) + size
            if len(files) >= MAX_FILES:
                complete = False
                stack.clear()
                break
    return ContextFacts(total=total, by_top=tuple(sorted(by_top.items(), key=lambda kv: (-kv[1], kv[0]))),
                        files=tuple(files), complete=complete)


def copied(path: str, sources: tuple[str, ...]) -> bool:
    """Whether a COPY/ADD source (a path or glob, context-relative) takes ``path``."""
    parts = path.split("/")
    for src in sources:
        if src == ".":
            return True
        sp = src.split("/")
        if len(sp) <= len(parts) and all(fnmatch.fnmatchcase(p, s) for p, s in zip(parts, sp)):
            return True
    return False


def size_finding(facts: ContextFacts, sources: tuple[str, ...], *, spec_file: str, spec_line: int,
                 display: str) -> Finding | None:
    """IB105 when the context is above LARGE_CONTEXT and the Dockerfile copies under MOSTLY_UNUSED of it."""
    if facts.total < LARGE_CONTEXT or "." in sources:
        return None
    used = sum(size for path, size in facts.files if copied(path, sources))
    if facts.complete and used >= facts.total * MOSTLY_UNUSED:
        return None
    # Only entries worth a line: at least 1% of what is sent.
    unused_top = [name for name, size in facts.by_top if size * 100 >= facts.total and not copied(name, sources)
                  and not any(src.split("/")[0] == name or "*" in src.split("/")[0] for src in sources)]
    mb = facts.total / 1e6
    return Finding(
        code="IB105", file=spec_file, line=spec_line, instruction=f"context: {display}",
        message=f"the context sends {mb:.0f} MB and the Dockerfile copies {used / 1e6:.0f} MB of it",
        cost=f"every build transfers and hashes {mb:.0f} MB; a change in a file the image never sees still "
             "rebuilds the target",
        fix="leave out what no COPY takes: add to .dockerignore:",
        fix_lines=tuple(unused_top[:12]))
