"""Just enough Dockerfile parsing to check targets before a build: stages, their bases, global ARGs, and
which stages mount which secrets."""

from __future__ import annotations

import csv
import posixpath
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

_DIRECTIVE = re.compile(r"^#\s*(\w+)\s*=\s*(\S+)\s*$")


@dataclass(frozen=True, kw_only=True)
class Stage:
    index: int
    name: str | None  # lower-cased, as Docker matches stage names case-insensitively
    base: str  # the FROM reference as written, e.g. busybox:1.36 or ${BASE_IMAGE}
    line: int
    secret_ids: tuple[str, ...] = ()  # ids its RUN steps mount (--mount=type=secret), as written: may hold $VARS


@dataclass(frozen=True, kw_only=True)
class Dockerfile:
    path: Path
    stages: tuple[Stage, ...]
    global_args: tuple[str, ...]  # ARGs declared before the first FROM
    arg_defaults: tuple[tuple[str, str], ...] = ()  # their default values, where given

    def stage(self, name: str) -> Stage | None:
        key = name.lower()
        return next((s for s in self.stages if s.name == key), None)

    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if s.name)

    def external_bases(self) -> tuple[str, ...]:
        """Base images that are neither earlier stages nor build-arg substitutions nor ``scratch``."""
        names = set()
        out = []
        for s in self.stages:
            b = s.base
            if b.lower() not in names and "$" not in b and b.lower() != "scratch" and b not in out:
                out.append(b)
            if s.name:
                names.add(s.name)
        return tuple(out)


class DockerfileError(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """One instruction as BuildKit's parser sees it: continuations joined, heredoc bodies attached."""

    line: int  # first physical line, 1-based
    end_line: int  # last physical line (a heredoc's terminator included)
    keyword: str  # upper-cased: RUN, COPY, ONBUILD...
    args: str  # everything after the keyword, continuations joined with a space
    flags: tuple[str, ...] = ()  # leading --name[=value] words of FROM/RUN/COPY/ADD (--mount=..., --from=...)
    body: str = ""  # args without those flags: the command, or the sources and destination
    heredocs: tuple[str, ...] = ()  # bodies of <<EOF documents, in order

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (``""`` for a bare ``--name``), None when absent."""
        for f in self.flags:
            key, eq, value = f[2:].partition("=")
            if key == name:
                return value if eq else ""
        return None

    def flag_values(self, name: str) -> tuple[str, ...]:
        return tuple(f[2:].partition("=")[2] for f in self.flags if f[2:].partition("=")[0] == name)


@dataclass(frozen=True, kw_only=True)
class Source:
    """A Dockerfile's text as instructions, with its parser directives (``# syntax=``, ``# escape=``)."""

    instructions: tuple[Instruction, ...]
    directives: tuple[tuple[str, str], ...]
    escape: str
    lines: tuple[str, ...]  # the physical lines, for comments such as ``# imgbuild: ignore=CODE``


# A heredoc marker: <<EOF, <<-EOF, <<"EOF", <<'EOF'; not a here-string (<<<) nor a shift ($((1<<2))).
_HEREDOC_MARK = re.compile(r"(?<![<\d])<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2(?![<\w])")
_FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(?:=(?:\"[^\"]*\"|'[^']*'|\S)*)?")
_FLAGGED = frozenset({"FROM", "RUN", "COPY", "ADD"})


def read(text: str) -> Source:
    """Split a Dockerfile into instructions the way BuildKit's parser does; never raises.

    Parser directives count only in the first lines, before any other comment, blank line or
    instruction. Lines ending with the escape character continue the instruction; comment lines
    and blank lines inside a continuation are dropped. ``RUN``/``COPY``/``ADD`` with ``<<WORD`` take
    the following lines up to ``WORD`` as a heredoc body (``<<-`` strips leading tabs).
    """
    escape = "\\"
    lines = tuple(text.replace("\r\n", "\n").split("\n"))  # BuildKit splits at \n only (not \x1e, \u2028...)
    out: list[Instruction] = []
    directives: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        directives.append((key, value))
        if key == "escape" and value in ("\\", "`"):
            escape = value
        i += 1
    while i < len(lines):
        start = i + 1
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        more = stripped.endswith(escape)
        while more and i < len(lines):
            parts[-1] = parts[-1][: -len(escape)].rstrip() if parts[-1].endswith(escape) else parts[-1]
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("#") or not nxt:
                continue  # comment and empty lines inside a continuation are dropped, it goes on
            parts.append(nxt)
            more = nxt.endswith(escape)
        if parts[-1].endswith(escape):
            parts[-1] = parts[-1][: -len(escape)].rstrip()  # a continuation at the end of the file
        full = " ".join(p for p in parts if p)
        word, _, rest = full.partition(" ")
        keyword = word.upper()
        rest = rest.strip()
        flags: list[str] = []
        body = rest
        if keyword in _FLAGGED:
            while True:
                fm = _FLAG.match(body)
                if not fm:
                    break
                flags.append(fm.group(0))
                body = body[fm.end():].lstrip()
        docs: list[str] = []
        if keyword in ("RUN", "COPY", "ADD"):
            for dash, _, tag in _HEREDOC_MARK.findall(body):
                doc: list[str] = []
                while i < len(lines) and lines[i].strip() != tag:
                    doc.append(lines[i].lstrip("\t") if dash else lines[i])
                    i += 1
                i += 1
                docs.append("\n".join(doc))
        out.append(Instruction(line=start, end_line=min(i, len(lines)), keyword=keyword, args=rest,
                               flags=tuple(flags), body=body, heredocs=tuple(docs)))
    return Source(instructions=tuple(out), directives=tuple(directives), escape=escape, lines=lines)


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) for each instruction; continuations joined, heredoc bodies skipped."""
    return [(ins.line, ins.keyword, ins.args) for ins in read(text).instructions]


def parse(path: Path) -> Dockerfile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DockerfileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DockerfileError(f"{path} is not UTF-8 text") from None
    stages: list[Stage] = []
    global_args: list[str] = []
    defaults: dict[str, str] = {}
    for line, word, args in instructions(text):
        if word == "ARG" and not stages:
            for tok in _split(args):
                arg, eq, default = tok.partition("=")
                global_args.append(arg)
                if eq:
                    defaults[arg] = default
        elif word == "FROM":
            toks = [t for t in _split(args) if not t.startswith("--")]
            if not toks:
                raise DockerfileError(f"{path}:{line}: FROM without an image")
            stage_name = toks[2].lower() if len(toks) >= 3 and toks[1].lower() == "as" else None
            stages.append(Stage(index=len(stages), name=stage_name, base=toks[0], line=line))
        elif word == "RUN" and stages:
            ids = [i for i in secret_mounts(args) if i not in stages[-1].secret_ids]
            if ids:
                stages[-1] = replace(stages[-1], secret_ids=(*stages[-1].secret_ids, *ids))
    if not stages:
        raise DockerfileError(f"{path}: no FROM instruction")
    return Dockerfile(path=path, stages=tuple(stages), global_args=tuple(global_args),
                      arg_defaults=tuple(sorted(defaults.items())))


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args, comments=False)
    except ValueError:
        return args.split()


def secret_mounts(run_args: str) -> tuple[str, ...]:
    """The secret ids a RUN instruction mounts: its leading ``--mount=type=secret,...`` flags.

    As BuildKit reads them: the id defaults to the base name of ``target`` (alias ``dst``,
    ``destination``). A flag that cannot be read is left out (BuildKit then refuses the Dockerfile).
    """
    ids = []
    for token in run_args.split():
        if not token.startswith("--"):
            break  # the command starts: flags come first
        name, _, value = token[2:].partition("=")
        if name != "mount":
            continue
        try:
            fields = dict(f.partition("=")[::2] for f in next(csv.reader([value.strip("'\"")])))
        except (csv.Error, StopIteration):
            continue
        if fields.get("type") != "secret":
            continue
        target = fields.get("target") or fields.get("dst") or fields.get("destination") or ""
        secret_id = fields.get("id") or posixpath.basename(target)
        if secret_id:
            ids.append(secret_id)
    return tuple(ids)
