"""Docker's ``.dockerignore`` rules, as BuildKit applies them when it sends a build context.

What is reproduced, and from where (moby/buildkit ``frontend/dockerfile/dockerignore``,
moby/patternmatcher, tonistiigi/fsutil ``filter.go``; docs.docker.com "Build context"):

* Reading: a UTF-8 BOM is dropped; a line whose *first column* is ``#`` is a comment (``  # x`` is
  the pattern ``# x``); surrounding whitespace is trimmed; ``!`` marks an exception and is followed
  by optional whitespace; the rest is cleaned like Go's ``filepath.Clean`` and a leading ``/``
  dropped, so ``/foo/bar/``, ``foo//bar`` and ``./foo/bar`` are all ``foo/bar``. ``.`` matches
  nothing ("for historical reasons"), ``!`` alone is an error.
* Patterns are anchored at the context root: ``foo`` is ``<root>/foo`` only, unlike gitignore.
  ``*`` and ``?`` never match ``/``; ``[...]`` classes (``^`` negates, ``!`` does not) and ``\\``
  escapes follow ``filepath.Match``, whose syntax errors Docker reports as errors. ``**`` matches any
  number of directories, with moby's literal fast paths kept exactly: ``**`` first makes the pattern
  a pure *suffix* test (``**foo`` matches ``barfoo``), a trailing ``**`` after literal text a pure
  *prefix* test (``foo/**`` matches ``foo/x`` but not ``foo``).
* A pattern applies to a path when it matches the path or one of its parent directories, and the
  last applying pattern decides (``!`` re-includes). Precisely, BuildKit walks the tree and computes
  each path's matches from its parent's (``MatchesUsingParentResults``): a pattern carries down from
  a directory only if it was evaluated there, and patterns are evaluated only while they could
  change the verdict. So ``a/c`` then ``!a`` still excludes ``a/c``; this module does the same.

Where moby's regexp translation departs from its own ``filepath.Match`` syntax, Docker's result is
an accident (``\\d`` becomes a digit class, ``\\q`` a failed build, ``*`` inside ``[...]`` garbles
the class, ``[[:alpha:]]`` becomes a POSIX class). Those few forms are rejected here with a hint to
rewrite them, rather than guessed: a guess that differs from Docker would make a stale cache hit.
``^`` outside a class is an anchor in Docker's regexps (``^a*`` matches ``a1``); that is reproduced.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from imgbuild.errors import ImgbuildError, Location

# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip() also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_BOM = "\ufeff"


class DockerignoreError(ImgbuildError):
    """A .dockerignore that Docker would reject, or that imgbuild cannot reproduce faithfully."""

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        out = f"error: {where}{self.message}"
        return f"{out}\n  hint: {self.hint}" if self.hint else out


class Kind(Enum):
    """moby's four ways of testing a pattern; the three literal ones are not regexps at all."""

    EXACT = "exact"
    PREFIX = "prefix"  # literal text then a final ``**``
    SUFFIX = "suffix"  # ``**`` first, then literal text
    REGEXP = "regexp"


@dataclass(frozen=True, kw_only=True)
class IgnorePattern:
    """One cleaned pattern; ``text`` is without the ``!``."""

    text: str
    exception: bool
    kind: Kind
    regexp: re.Pattern[str] | None = field(default=None, repr=False)
    match: Callable[[str], object] = field(repr=False, compare=False)

    @property
    def line(self) -> str:
        return f"!{self.text}" if self.exception else self.text


@dataclass(frozen=True, kw_only=True)
class IgnoreRules:
    """The patterns of one ignore file. ``IgnoreRules()`` excludes nothing."""

    patterns: tuple[IgnorePattern, ...] = ()

    @classmethod
    def parse(cls, text: str, *, source: str = ".dockerignore") -> IgnoreRules:
        """Read an ignore file's text as Docker does; ``source`` names it in errors."""
        out: list[IgnorePattern] = []
        for lineno, raw in enumerate(text.split("\n"), start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[1:]
            if raw.startswith("#"):  # only column 1: Docker trims after this test
                continue
            line = raw.strip(_GO_SPACE)
            if not line:
                continue
            invert = line[0] == "!"
            if invert:
                line = line[1:].strip(_GO_SPACE)
            if line:
                line = go_clean(line)
                if len(line) > 1 and line[0] == "/":
                    line = line[1:]
            # patternmatcher.New trims and cleans the whole line once more, "!" included.
            line = ("!" if invert else "") + line
            line = line.strip(_GO_SPACE)
            if not line:
                continue
            line = go_clean(line)
            where = Location(file=source, line=lineno)
            exception = line[0] == "!"
            if exception:
                if len(line) == 1:
                    hint = "write the path to re-include after the !"
                    raise DockerignoreError('illegal exclusion pattern: "!"', location=where, hint=hint)
                line = line[1:]
            out.append(compile_pattern(line, exception=exception, location=where))
        return cls(patterns=tuple(out))

    @property
    def text(self) -> str:
        """The normalized patterns, one a line: equal texts give equal file sets (part of a digest)."""
        return "".join(p.line + "\n" for p in self.patterns)

    def excluded(self, relpath: str) -> bool:
        """Whether Docker leaves ``relpath`` (posix, relative to the context root) out of the context."""
        relpath = go_clean(relpath).lstrip("/")
        if relpath == "." or not self.patterns:
            return False
        parts = relpath.split("/")
        info: tuple[bool, ...] = ()
        matched = False
        for k in range(1, len(parts) + 1):
            matched, info = self.match("/".join(parts[:k]), info)
        return matched

    def match(self, path: str, parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """(excluded, per-pattern applies) for ``path`` given its parent directory's per-pattern result.

        The walker calls this once per entry with the result of the entry's directory (``()`` at the
        top level), as BuildKit's ``MatchesUsingParentResults`` does; given ``()`` for a nested path,
        the parent directories are tested directly instead.
        """
        matched = False
        info: list[bool] = []
        # Without the parent's result (top level, or a caller that has none) the parent directories
        # are tested directly, as MatchesOrParentMatches does.
        parents = () if parent else _parent_dirs(path)
        for i, p in enumerate(self.patterns):
            if parent and parent[i]:
                hit = True
            elif p.exception != matched:
                # Skipped: the verdict cannot change. Not recorded as applying, so not carried down.
                info.append(False)
                continue
            else:
                hit = bool(p.match(path))
                if not hit and parents:
                    hit = any(p.match(d) for d in parents)
            info.append(hit)
            if hit:
                matched = not p.exception
        return matched, tuple(info)

    def may_reinclude_under(self, reldir: str) -> bool:
        """False when no ``!`` pattern can re-include anything strictly below ``reldir``.

        Meant for a directory that is itself excluded: then only an exception that matches some
        path below it directly can bring that path back (excluding patterns carried down from the
        directory stay last), so when this is False the walker may skip the whole directory.
        Conservative: True means "maybe".
        """
        reldir = go_clean(reldir).strip("/")
        below = reldir + "/"
        depth = reldir.count("/") + 1
        return any(_could_match_below(p, below, depth) for p in self.patterns if p.exception)


def load_rules(context: Path, dockerfile: Path, *, root: Path | None = None) -> IgnoreRules:
    """The rules Docker uses for this Dockerfile: ``<dockerfile>.dockerignore`` beside it if that
    exists (it takes precedence), else ``<context>/.dockerignore``, else none.

    With ``root`` (the workspace), an ignore file that is a symbolic link to a file outside it is an
    error: what a build sends is decided by files of the workspace only (issue #14).
    """
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        try:
            data = candidate.read_bytes()
            if root is not None and not _within(root, candidate):
                raise DockerignoreError(
                    f"{candidate} is a symbolic link to {os.path.realpath(candidate)}, outside the workspace {root}",
                    hint="make the ignore file a regular file of the workspace")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise DockerignoreError(
                f"cannot read {candidate}: {e.strerror or e}", hint="make the ignore file readable"
            ) from None
        # Go reads bytes; undecodable bytes stay as surrogates and match os.scandir's names.
        return IgnoreRules.parse(data.decode("utf-8", "surrogateescape"), source=str(candidate))
    return IgnoreRules()


def _within(root: Path, path: Path) -> bool:
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def go_clean(path: str) -> str:
    """Go's ``path/filepath.Clean`` on Unix (``posixpath.normpath`` keeps a leading ``//``)."""
    if not path:
        return "."
    rooted = path[0] == "/"
    out: list[str] = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def compile_pattern(text: str, *, exception: bool, location: Location | None = None) -> IgnorePattern:
    """Classify and compile a cleaned pattern as moby's ``Pattern.compile`` does (see module doc)."""

    def bad(message: str, hint: str) -> DockerignoreError:
        return DockerignoreError(f"pattern {text!r}: {message}", location=location, hint=hint)

    kind = Kind.EXACT
    rx: list[str] = []
    i, n, step = 0, len(text), 0
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":  # "**/" is "**"
                    i += 1
                if i == n:
                    if kind is Kind.EXACT:
                        kind = Kind.PREFIX
                    else:
                        rx.append(".*")
                        kind = Kind.REGEXP
                else:
                    rx.append("(?:.*/)?")
                    kind = Kind.REGEXP
                if step == 0:
                    kind = Kind.SUFFIX
            else:
                rx.append("[^/]*")
                kind = Kind.REGEXP
        elif ch == "?":
            rx.append("[^/]")
            kind = Kind.REGEXP
        elif ch == "\\":
            if i == n:
                raise bad("syntax error in pattern (trailing \\)", "escape a character after the \\ or drop it")
            rx.append(_escaped(text[i], bad))
            i += 1
            kind = Kind.REGEXP
        elif ch == "[":
            cls, i = _char_class(text, i, bad)
            rx.append(cls)
            kind = Kind.REGEXP
        elif ch == "]":
            rx.append(r"\]")
            kind = Kind.REGEXP
        elif ch == "^":
            rx.append("^")  # moby passes it to the regexp unescaped: an anchor
        else:
            rx.append(re.escape(ch))
        step += 1

    if kind is Kind.EXACT:
        return IgnorePattern(text=text, exception=exception, kind=kind, match=text.__eq__)
    if kind is Kind.PREFIX:
        prefix = text[:-2]
        return IgnorePattern(text=text, exception=exception, kind=kind, match=lambda p: p.startswith(prefix))
    if kind is Kind.SUFFIX:
        suffix = text[2:]
        bare = suffix[1:] if suffix[:1] == "/" else None  # "**/foo" also matches "foo"
        return IgnorePattern(
            text=text, exception=exception, kind=kind, match=lambda p: p.endswith(suffix) or p == bare
        )
    compiled = re.compile("".join(rx))
    return IgnorePattern(text=text, exception=exception, kind=kind, regexp=compiled, match=compiled.fullmatch)


def _escaped(ch: str, bad: Callable[[str, str], DockerignoreError]) -> str:
    # Docker turns "\x" into the RE2 escape "\x": literal only for ASCII punctuation.
    if ch.isascii() and not ch.isalnum():
        return re.escape(ch)
    raise bad(
        f"Docker reads \\{ch} as a regular-expression escape, not the literal {ch!r}",
        f"write {ch!r} without the backslash, or use [{ch}]",
    )


def _char_class(text: str, i: int, bad: Callable[[str, str], DockerignoreError]) -> tuple[str, int]:
    """Parse ``[...]`` from just after the ``[`` with ``filepath.Match``'s grammar; (regexp, next i)."""
    n = len(text)
    unterminated = bad("syntax error in pattern (unterminated or malformed [...])", "close the class with ]")
    out = ["["]
    if i < n and text[i] == "^":
        out.append("^")
        i += 1
    ranges = 0

    def member(i: int) -> tuple[str, int]:
        if i >= n or text[i] in "-]":
            raise unterminated
        ch = text[i]
        if ch == "\\":
            i += 1
            if i >= n:
                raise unterminated
            ch = text[i]
            if not (ch.isascii() and not ch.isalnum()):
                raise bad(
                    f"Docker reads \\{ch} inside [...] as a regular-expression escape",
                    f"write {ch!r} without the backslash",
                )
        elif ch in "*?":
            raise bad(f"Docker mistranslates {ch!r} inside [...]", f"write it escaped as \\{ch}")
        elif ch == "[" and i + 1 < n and text[i + 1] == ":":
            raise bad("Docker reads [: inside [...] as a POSIX class", "list the characters instead")
        if i + 1 >= n:
            raise unterminated
        return ch, i + 1

    while True:
        if i < n and text[i] == "]" and ranges:
            out.append("]")
            return "".join(out), i + 1
        lo, i = member(i)
        hi = lo
        if text[i] == "-":
            hi, i = member(i + 1)
            if hi < lo:
                raise bad(f"invalid class range {lo}-{hi}", "put the lower character first")
        out.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
        ranges += 1


def _parent_dirs(path: str) -> tuple[str, ...]:
    parts = path.split("/")
    return tuple("/".join(parts[:k]) for k in range(1, len(parts)))


_SPECIAL = frozenset("*?[]\\^")


def _could_match_below(p: IgnorePattern, below: str, depth: int) -> bool:
    """Whether exception ``p`` can directly match some path that starts with ``below`` (``dir/``)."""
    if p.kind is Kind.EXACT:
        return p.text.startswith(below)
    if p.kind is Kind.SUFFIX:
        return True
    literal = p.text[:-2] if p.kind is Kind.PREFIX else _literal_prefix(p.text)
    if not (literal.startswith(below) or below.startswith(literal)):
        return False
    if p.kind is Kind.REGEXP and "**" not in p.text and not (_SPECIAL - {"*", "?"}) & set(p.text):
        # Only * and ? as wildcards, neither crossing "/": a fixed number of segments, each a glob.
        segments = p.text.split("/")
        if len(segments) <= depth:
            return False
        dirs = below[:-1].split("/")
        return all(_segment_regexp(s).fullmatch(d) for s, d in zip(segments, dirs))
    return True


def _literal_prefix(text: str) -> str:
    for i, ch in enumerate(text):
        if ch in _SPECIAL:
            return text[:i]
    return text


@functools.lru_cache(maxsize=256)
def _segment_regexp(segment: str) -> re.Pattern[str]:
    return re.compile("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in segment))
