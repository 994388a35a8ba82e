"""A finding of the advisor, its stable code and severity, and the ignore comments that silence one.

Codes are stable: a code never changes meaning, so ignore lists and CI filters keep working. ``IB0xx``
are problems reading the inputs, ``IB1xx`` cache-hostile steps (warnings), ``IB2xx`` suggestions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEVERITIES = ("info", "warning", "error")  # in increasing order


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True, kw_only=True)
class Rule:
    code: str
    severity: str
    title: str


RULES = {r.code: r for r in (
    Rule(code="IB001", severity="error", title="the Dockerfile or .dockerignore cannot be read"),
    Rule(code="IB101", severity="warning", title="the context is copied before the dependencies are installed"),
    Rule(code="IB102", severity="warning", title="a build arg that changes between builds is declared too early"),
    Rule(code="IB103", severity="warning", title="a root or parent-directory context has no .dockerignore"),
    Rule(code="IB104", severity="warning", title="the .dockerignore of a root or parent-directory context "
                                                 "keeps .git or imgbuild's state"),
    Rule(code="IB105", severity="warning", title="a large context is mostly not copied"),
    Rule(code="IB201", severity="info", title="package downloads without a cache mount"),
)}


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One problem at one place. ``file`` is workspace-relative; ``line`` 1-based (0: the whole file).

    ``step_line`` is the step that pays for the problem (the install that reruns), when it is not
    ``line`` itself; ``fix_lines`` are the exact lines to write instead, where they can be given.
    """

    code: str
    file: str
    line: int
    instruction: str  # the instruction (or setting) at fault, as written
    message: str
    cost: str
    fix: str
    fix_lines: tuple[str, ...] = ()
    step_line: int | None = None

    @property
    def severity(self) -> str:
        return RULES[self.code].severity

    @property
    def title(self) -> str:
        return RULES[self.code].title


_IGNORE = re.compile(r"#\s*imgbuild:\s*ignore\s*=\s*([A-Za-z0-9_, ]+)")


def ignore_comments(lines: tuple[str, ...]) -> dict[int, frozenset[str]]:
    """``line -> codes`` of every ``# imgbuild: ignore=CODE[,CODE]`` comment (``all`` silences every code)."""
    out: dict[int, frozenset[str]] = {}
    for n, text in enumerate(lines, start=1):
        if "imgbuild" not in text:
            continue
        m = _IGNORE.search(text)
        if m:
            out[n] = frozenset(c.strip().upper() for c in m.group(1).replace(" ", ",").split(",") if c.strip())
    return out


def ignored_here(finding: Finding, comments: dict[int, frozenset[str]]) -> bool:
    """A comment on the finding's line, or on the line just above it, names its code (or ``all``)."""
    for n in (finding.line, finding.line - 1):
        codes = comments.get(n, frozenset())
        if finding.code in codes or "ALL" in codes:
            return True
    return False
