"""Just enough Dockerfile parsing to check targets before a build: stages, their bases, global ARGs."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_DIRECTIVE = re.compile(r"^#\s*(\w+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


@dataclass(frozen=True, kw_only=True)
class Stage:
    index: int
    name: str | None  # lower-cased, as Docker matches stage names case-insensitively
    base: str  # the FROM reference as written, e.g. busybox:1.36 or ${BASE_IMAGE}
    line: int


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


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) for each instruction; continuations joined, heredoc bodies skipped."""
    escape = "\\"
    lines = text.splitlines()
    out: list[tuple[int, str, str]] = []
    i = 0
    # Parser directives (# escape=`) are only honoured at the very top.
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
        i += 1
    while i < len(lines):
        line = lines[i]
        start = i + 1
        stripped = line.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and i < len(lines):
            parts[-1] = parts[-1][: -len(escape)]
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("#"):
                continue
            parts.append(nxt)
        full = " ".join(p for p in parts if p)
        word, _, rest = full.partition(" ")
        for tag in _HEREDOC.findall(rest) if word.upper() in ("RUN", "COPY", "ADD") else []:
            while i < len(lines) and lines[i].strip() != tag:
                i += 1
            i += 1
        out.append((start, word.upper(), rest.strip()))
    return out


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
    if not stages:
        raise DockerfileError(f"{path}: no FROM instruction")
    return Dockerfile(path=path, stages=tuple(stages), global_args=tuple(global_args),
                      arg_defaults=tuple(sorted(defaults.items())))


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args, comments=False)
    except ValueError:
        return args.split()
