"""IB102: a build arg whose value changes between builds is declared before steps that do not use it.

The rule BuildKit applies (docs.docker.com, Dockerfile reference, "Impact on build caching"): an ``ARG``
declared in a stage is in the environment of every later ``RUN`` of that stage, used or not, so its
value is part of each of those steps' cache keys; a changed value reruns every ``RUN`` after the
declaration, not only those that use it. A global ``ARG`` (before the first ``FROM``) reaches only the
``FROM`` lines until a stage declares it again, and an ``ARG`` goes out of scope at the end of its
stage. ``COPY``/``ADD`` and settings are keyed by their own text, so only ``RUN`` steps pay.

An ``ARG`` changes between builds when its value differs between the target's last two build records
in the history, or when its name says so (``GIT_SHA``, ``COMMIT``, ``BUILD_ID``, ``BUILD_DATE``,
``TIMESTAMP``, ``CACHEBUST``, ``cache_invalidator``...). Time-based ones (dates, cache busters) are
meant to rerun everything now and then: for a target whose cache policy has ``invalidate_every``
(which does that per period) they are not reported. An ``ARG`` with no value (no build arg, no default)
is empty in every build and costs nothing.
"""

from __future__ import annotations

import re

from imgbuild.advisor.findings import Finding
from imgbuild.advisor.stages import StageBlock
from imgbuild.dockerfile import Instruction, Source

_COMMIT_TOKENS = frozenset({"SHA", "COMMIT", "REVISION", "HASH", "REF"})
_COMMIT_NAMES = frozenset({"BUILD_ID", "BUILD_NUMBER", "BUILD_NUM", "CI_PIPELINE_ID", "CI_JOB_ID", "RUN_ID",
                           "GITHUB_RUN_ID", "VCS_REF"})
_TIME_TOKENS = frozenset({"DATE", "TIMESTAMP", "TIME", "DATETIME", "BUILDDATE", "BUILDTIME", "EPOCH", "CACHEBUST",
                          "INVALIDATOR", "BUST", "NOW"})


def volatile_kind(name: str) -> str | None:
    """``commit`` (changes with every commit or CI run), ``time`` (with the clock), or None."""
    upper = name.upper()
    if upper in _COMMIT_NAMES:
        return "commit"
    tokens = [t for t in re.split(r"[_.\-]+", upper) if t]
    if any(t in _TIME_TOKENS or "TIMESTAMP" in t or "INVALIDAT" in t or "CACHEBUST" in t for t in tokens):
        return "time"
    if any(t in _COMMIT_TOKENS or "COMMIT" in t or t.endswith("SHA") for t in tokens):
        return "commit" if tokens != ["REF"] else None
    return None


def _uses(ins: Instruction, name: str) -> bool:
    pattern = re.compile(r"\$(?:\{)?" + re.escape(name) + r"(?![A-Za-z0-9_])")
    return any(pattern.search(t) for t in (ins.args, *ins.heredocs))


def check(source: Source, file: str, stages: tuple[StageBlock, ...], *, values: dict[str, str] | None,
          changed: frozenset[str], invalidate_every: bool) -> list[Finding]:
    """``values``: the target's build args (None: unknown, every ARG counts as set); ``changed``: the
    names whose values differ between the target's last two history records."""
    out: list[Finding] = []
    for st in stages:
        for pos, ins in enumerate(st.body):
            if ins.keyword != "ARG":
                continue
            for word in ins.body.split():
                name, eq, default = word.partition("=")
                why = _why(name, changed, invalidate_every)
                if why is None or (values is not None and name not in values and not eq):
                    continue
                f = _finding(source, file, st, ins, pos, name, f"ARG {word}", why)
                if f is not None:
                    out.append(f)
    return out


def _why(name: str, changed: frozenset[str], invalidate_every: bool) -> str | None:
    if name in changed:
        return "its value differs between the target's last two builds"
    kind = volatile_kind(name)
    if kind is None or (kind == "time" and invalidate_every):
        return None
    return "its name says it changes with every " + ("commit or CI run" if kind == "commit" else "build")


def _finding(source: Source, file: str, st: StageBlock, arg: Instruction, pos: int, name: str, decl: str,
             why: str) -> Finding | None:
    later = st.body[pos + 1:]
    carried: list[Instruction] = []  # ENV lines that copy it: they move along with it
    use: Instruction | None = None
    paying: list[Instruction] = []
    for ins in later:
        if _uses(ins, name):
            if ins.keyword in ("ENV", "ARG"):
                carried.append(ins)
                continue
            use = ins
            break
        if ins.keyword == "RUN":
            paying.append(ins)
    if not paying:
        return None
    steps = ", ".join(str(i.line) for i in paying[:5]) + (" ..." if len(paying) > 5 else "")
    message = (f"ARG {name} is declared at line {arg.line} ({why}); {len(paying)} RUN step(s) after it do not use it "
               f"(line{'s' if len(paying) > 1 else ''} {steps})")
    cost = f"every new value of {name} reruns {len(paying)} RUN step(s) that do not need it, and everything after them"
    moved = [decl, *(line for i in carried for line in source.lines[i.line - 1: i.end_line])]
    if use is None:
        fix = (f"nothing in the stage uses {name}: remove it from line {arg.line} (if a script reads it from the "
               f"environment, declare it just before that step)")
        return Finding(code="IB102", file=file, line=arg.line, instruction=f"ARG {arg.args}", message=message,
                       cost=cost, fix=fix)
    fix = (f"declare it just before the step that uses it: remove it from line {arg.line}"
           + (f" (and lines {', '.join(str(i.line) for i in carried)})" if carried else "")
           + f" and write before line {use.line}:")
    return Finding(code="IB102", file=file, line=arg.line, instruction=f"ARG {arg.args}", message=message, cost=cost,
                   fix=fix, fix_lines=tuple(moved), step_line=paying[0].line)
