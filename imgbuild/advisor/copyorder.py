"""IB101: the context (or the directory holding a manifest) is copied before dependencies are installed.

BuildKit keys a ``COPY`` by the content of what it copies, and every later step of the stage by the
steps before it: after ``COPY . .``, any changed file of the context reruns the next ``npm ci``. The
fix is the well-known order: copy the manifest and lock files, install, then copy the rest.

Reported at the ``COPY``; ``step_line`` is the install that reruns. The exact replacement lines are
given when the ``COPY`` and the install are in one stage with only settings (WORKDIR, ENV, USER...)
between them, and the install is the first command of its ``RUN`` (the rest stays after the copy).
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

from imgbuild.advisor.ecosystems import COMMAND_SEPARATORS, Download, downloads
from imgbuild.advisor.findings import Finding
from imgbuild.advisor.stages import StageBlock
from imgbuild.dockerfile import Instruction, Source

_FILE_STEPS = frozenset({"RUN", "COPY", "ADD"})
# Commands a RUN that only installs system packages may also hold: moving such a RUN above the copy is safe.
_SYSTEM = frozenset({"apt-get", "apt", "apk", "rm", "set", "echo", "ln", "mkdir", "useradd", "groupadd", "adduser",
                     "addgroup", "dpkg", "update-ca-certificates", "locale-gen", "true", "pip", "pip3", "npm",
                     "gem", "chmod", "chown", "curl", "wget", "tar", "yum", "dnf", "microdnf", "xargs"})
_DIRS = frozenset({"gradle", ".mvn", ".yarn", ".bundle"})


@dataclass(frozen=True, kw_only=True)
class Copy:
    ins: Instruction
    stage: int
    sources: tuple[str, ...]  # normalized, context-relative ("." is the whole context)
    dest: str

    def broad_for(self, dl: Download, context: Path | None) -> str | None:
        """The source that brings ``dl``'s manifests along with everything else, if any."""
        for src in self.sources:
            if src == ".":
                return src
            if context is not None and dl.kind != "packages" and "*" not in src and (context / src).is_dir():
                names = dl.manifests + dl.optional
                if any((context / src / m).exists() for m in names) or not names:
                    return src
        return None


def copy_of(ins: Instruction, stage: int) -> Copy | None:
    """A COPY/ADD from the build context (not ``--from``, not a URL, not a heredoc)."""
    if ins.keyword not in ("COPY", "ADD") or ins.flag("from") is not None:
        return None
    words = _words(ins.body)
    if len(words) < 2:
        return None
    srcs: list[str] = []
    for w in words[:-1]:
        if w.startswith("<<") or "://" in w or w.startswith("git@"):
            continue
        norm = posixpath.normpath(w.lstrip("/")) if w.strip("/") else "."
        srcs.append("." if norm in ("*", "./*") else norm)
    return Copy(ins=ins, stage=stage, sources=tuple(srcs), dest=words[-1]) if srcs else None


def _words(body: str) -> list[str]:
    if body.startswith("["):
        try:
            data = json.loads(body)
            if isinstance(data, list) and all(isinstance(x, str) for x in data):
                return list(data)
        except ValueError:
            pass
    try:
        return shlex.split(body)
    except ValueError:
        return body.split()


def command_text(ins: Instruction) -> str:
    """A RUN's shell text: its exec-form words or shell line, and its heredoc bodies."""
    words = _words(ins.body) if ins.body.startswith("[") else None
    text = " ".join(words) if words is not None else ins.body
    return "\n".join((text, *ins.heredocs))


def check(source: Source, file: str, stages: tuple[StageBlock, ...], context: Path | None) -> list[Finding]:
    out: list[Finding] = []
    copies: dict[int, list[Copy]] = {}  # per stage: context copies so far, parent stage's included
    fetched: dict[int, set[str]] = {}
    reported: set[int] = set()
    for st in stages:
        copies[st.index] = list(copies.get(st.parent, [])) if st.parent is not None else []
        fetched[st.index] = set(fetched.get(st.parent, set())) if st.parent is not None else set()
        for ins in st.body:
            c = copy_of(ins, st.index)
            if c is not None:
                copies[st.index].append(c)
                continue
            if ins.keyword != "RUN":
                continue
            for dl in downloads(command_text(ins)):
                if dl.kind != "packages" and dl.ecosystem in fetched[st.index]:
                    continue  # the dependencies came earlier (pnpm fetch, poetry install --no-root...)
                if dl.kind == "install":
                    fetched[st.index].add(dl.ecosystem)
                if dl.kind == "packages" and not _system_only(ins):
                    continue
                hit = next(((cp, src) for cp in reversed(copies[st.index])
                            if (src := cp.broad_for(dl, context)) is not None), None)
                if hit is None or hit[0].ins.line in reported:
                    continue
                reported.add(hit[0].ins.line)
                before = [cp for cp in copies[st.index] if cp.ins.line < hit[0].ins.line]
                out.append(_finding(source, file, st, hit[0], hit[1], ins, dl, context,
                                    manifests_first=_copied_before(dl, before)))
                break
    return out


def _system_only(ins: Instruction) -> bool:
    for simple in COMMAND_SEPARATORS.split(command_text(ins)):
        words = simple.strip().split()
        while words and ("=" in words[0] or words[0] in ("sudo", "env")):
            words = words[1:]
        if words and words[0].rsplit("/", 1)[-1] not in _SYSTEM:
            return False
    return True


def raw(source: Source, ins: Instruction) -> tuple[str, ...]:
    """The instruction's physical lines as written."""
    return tuple(source.lines[ins.line - 1: ins.end_line])


def _copied_before(dl: Download, earlier: list[Copy]) -> bool:
    """Whether narrower copies before the broad one already brought every required manifest."""
    names = [posixpath.basename(s) for cp in earlier for s in cp.sources if s != "."]
    return bool(dl.manifests) and all(any(fnmatch.fnmatchcase(m, n) for n in names) for m in dl.manifests)


def _finding(source: Source, file: str, st: StageBlock, cp: Copy, src: str, run: Instruction, dl: Download,
             context: Path | None, *, manifests_first: bool) -> Finding:
    copy_text = f"{cp.ins.keyword} {cp.ins.args}"
    what = "the whole context" if src == "." else f"{src}/, which holds {', '.join(dl.manifests) or 'the manifests'}"
    message = f"{copy_text} copies {what} before `{dl.command}` (line {run.line})"
    cost = (f"a change to any file under {'the context' if src == '.' else src + '/'} reruns `{dl.command}` "
            f"and every step after it")
    between = [] if cp.stage != st.index else [i for i in st.body if cp.ins.line < i.line < run.line]
    exact = cp.stage == st.index and not any(i.keyword in _FILE_STEPS for i in between)
    flags = " ".join(f for f in cp.ins.flags if not f.startswith("--from"))
    run_flags = " ".join(run.flags)
    if dl.kind == "packages" or (manifests_first and dl.deps_command is None):
        fix = (f"install before copying the context: move line {run.line} above line {cp.ins.line}"
               + (" (the manifests are copied before it already)" if manifests_first else ""))
        moved = (*raw(source, run), *raw(source, cp.ins), *(x for i in between for x in raw(source, i))) \
            if exact else ()
        return Finding(code="IB101", file=file, line=cp.ins.line, instruction=copy_text, message=message, cost=cost,
                       fix=fix + (f"; lines {cp.ins.line}-{run.end_line} become:" if moved else ""),
                       fix_lines=moved, step_line=run.line)
    manifest_copies = _manifest_copies(dl, src, cp.dest, flags, context)
    first, rest = _split_first(run, dl)
    install = dl.deps_command or (first if first is not None else None)
    fix = "copy the manifest and lock files first, install, then copy the rest"
    if install is None or not exact:
        cd = f"cd {dl.subdir} && " if dl.subdir else ""
        step = f"RUN {run_flags + ' ' if run_flags else ''}{cd}{dl.deps_command or dl.command}"
        return Finding(code="IB101", file=file, line=cp.ins.line, instruction=copy_text, message=message, cost=cost,
                       fix=f"{fix}: put these lines before line {cp.ins.line}"
                           + ("" if dl.deps_command else f" and take `{dl.command}` out of line {run.line}"),
                       fix_lines=(*manifest_copies, step), step_line=run.line)
    lines: list[str] = list(manifest_copies)
    for i in between:
        lines.extend(raw(source, i))
    if dl.deps_command and dl.subdir:
        install = f"cd {dl.subdir} && {install}"
    lines.append(f"RUN {run_flags + ' ' if run_flags else ''}{install}")
    lines.extend(raw(source, cp.ins))
    if dl.deps_command:
        lines.extend(raw(source, run))
    elif rest:
        lines.append(f"RUN {run_flags + ' ' if run_flags else ''}{rest}")
    return Finding(code="IB101", file=file, line=cp.ins.line, instruction=copy_text, message=message, cost=cost,
                   fix=f"{fix}; lines {cp.ins.line}-{run.end_line} become:", fix_lines=tuple(lines),
                   step_line=run.line)


def _manifest_copies(dl: Download, src: str, dest: str, flags: str, context: Path | None) -> list[str]:
    base = ("" if src == "." else src + "/") + (dl.subdir + "/" if dl.subdir else "")
    if context is not None:
        present = [m for m in dl.manifests + dl.optional if (context / base / m).exists()]
        names = list(dict.fromkeys([*dl.manifests, *present]))
        dirs = [m for m in names if (context / base / m).is_dir()]
    else:
        names = list(dl.manifests) + ([dl.optional[0]] if dl.optional and dl.optional[0] not in _DIRS else [])
        if dl.ecosystem == "gradle":
            names = ["settings.gradle", "build.gradle"]
        dirs = []
    files = [n for n in names if n not in dirs]
    d = dest if dest.endswith("/") else ("./" if dest == "." else dest + "/")
    d += dl.subdir + "/" if dl.subdir else ""
    pre = f"COPY {flags} " if flags else "COPY "
    out = [f"{pre}{' '.join(base + f for f in files)} {d}"] if files else []
    out.extend(f"{pre}{base}{x} {d}{x}/" for x in dirs)
    return out


def _split_first(run: Instruction, dl: Download) -> tuple[str | None, str]:
    """(the install command, the rest of the RUN) when the install starts an ``&&`` chain of a shell-form RUN."""
    if run.heredocs or run.body.startswith("["):
        return None, ""
    parts = [p.strip() for p in run.body.split("&&")]
    k = 0
    while k < len(parts) and parts[k].startswith("cd "):
        k += 1  # leading `cd DIR`s: kept with the install and, as each RUN starts afresh, with the rest
    if k < len(parts) and parts[k] == dl.command.strip():
        rest = parts[k + 1:]
        return " && ".join(parts[:k + 1]), " && ".join(parts[:k] + rest) if rest else ""
    return None, ""
