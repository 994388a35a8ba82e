"""Which step of a build missed BuildKit's layer cache, and why (issue #16).

From the steps BuildKit printed (:mod:`imgbuild.builds.steps`), the Dockerfile, and the target's input
manifests of this build and of its previous one (:meth:`imgbuild.digest.Inputs.manifest`), say how many
steps were cached, which step ran first (in Dockerfile order), and the input that made it run:

* ``files``: a COPY/ADD whose sources hold files that changed since the previous build;
* ``build_arg``: a step after an ``ARG`` whose value changed (BuildKit puts every ARG in scope into the
  cache key of a ``RUN``);
* ``base``: the stage's base image moved (a dependency target's image, or an external base whose digest
  differs from the previous build's log);
* ``dependency``: a ``COPY --from`` a dependency target that changed;
* ``stage``: a ``COPY --from`` an earlier stage that ran;
* ``dockerfile``: the Dockerfile itself changed and nothing else explains the step;
* ``secret``: a secret a ``RUN`` mounts changed, so imgbuild had BuildKit bypass its cache for that stage
  (:mod:`imgbuild.builds.secret_steps`; only the secret's id is named);
* ``no_layer_cache``: the builder had nothing to reuse: ``--no-cache``, a failed layer-cache import, the
  first build of the target, or (when the inputs the step depends on did not change) a builder that never
  built it or whose cache was pruned;
* ``none``: every step was cached.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgbuild.builds.steps import BuildLog, LoggedStep
from imgbuild.dockerfile import instructions

# The instructions BuildKit numbers as steps ([stage i/n]); ARG, ENV, LABEL, CMD... are not.
_COUNTED = ("FROM", "RUN", "COPY", "ADD", "WORKDIR")
_MAX_FILES = 10
_ARG_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_ARG_REF_FULL = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class StepFlag:
    name: str  # BuildKit's ``[deps 2/4]``
    instruction: str  # as BuildKit printed it (build args substituted)
    line: int | None  # its line in the Dockerfile, when it could be mapped
    status: str  # cached | ran | failed | cancelled | unfinished

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "instruction": self.instruction, "line": self.line, "status": self.status}


@dataclass(frozen=True, kw_only=True)
class StepReport:
    """One build's steps and the cause of its first miss; JSON form in specs/report.schema.json (``steps``)."""

    total: int
    cached: int
    steps: tuple[StepFlag, ...]  # Dockerfile order
    first_ran: str | None  # the ``name`` of the first step that ran, None if all were cached
    cause: str  # files | build_arg | base | dependency | stage | dockerfile | secret | no_layer_cache | none
    reason: str  # one human sentence
    files: tuple[str, ...] = ()  # changed files under the step's sources (at most 10)
    args: tuple[str, ...] = ()  # build args whose value changed
    bases: tuple[str, ...] = ()  # the resolved base images this build used

    def first(self) -> StepFlag | None:
        return next((s for s in self.steps if s.name == self.first_ran), None)

    def short(self) -> str:
        """The build summary's line: ``4/6 steps cached; ran from [5/6] COPY src/ /app/src/ (src/main.py changed)``."""
        head = f"{self.cached}/{self.total} steps cached"
        first = self.first()
        if first is None:
            return head + (f" ({self.reason.partition('; ')[2]})" if self.args else "")
        where = f" (line {first.line})" if first.line else ""
        return f"{head}; ran from {first.name} {_clip(first.instruction, 60)}{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "cached": self.cached, "first_ran": self.first_ran, "cause": self.cause,
                "reason": self.reason, "files": list(self.files), "args": list(self.args),
                "bases": list(self.bases), "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> StepReport:
        """The inverse of :meth:`to_dict`; ValueError (or KeyError/TypeError) on a malformed document."""
        steps = tuple(StepFlag(name=str(s["name"]), instruction=str(s["instruction"]),
                               line=None if s.get("line") is None else int(s["line"]), status=str(s["status"]))
                      for s in doc["steps"])
        return cls(total=int(doc["total"]), cached=int(doc["cached"]), steps=steps,
                   first_ran=None if doc.get("first_ran") is None else str(doc["first_ran"]),
                   cause=str(doc["cause"]), reason=str(doc["reason"]),
                   files=tuple(str(f) for f in doc.get("files", ())), args=tuple(str(a) for a in doc.get("args", ())),
                   bases=tuple(str(b) for b in doc.get("bases", ())))


@dataclass(frozen=True, kw_only=True)
class _Instr:
    stage: int
    stage_key: str | None
    index: int  # BuildKit's step number within the stage
    line: int
    word: str
    args: str
    scope: tuple[str, ...]  # ARGs declared in the stage before it


@dataclass(frozen=True, kw_only=True)
class _Stage:
    key: str | None
    base: str
    instrs: tuple[_Instr, ...]


def explain_build(log: BuildLog, *, dockerfile: Path, new: dict[str, Any], old: dict[str, Any] | None,
                  previous_bases: tuple[str, ...] = ()) -> StepReport:
    """The step report of one build. ``old`` is the previous build's input manifest (None: none on record);
    ``previous_bases`` the resolved bases of the previous build's log."""
    stages = _stages(dockerfile)
    by_key = {s.key: i for i, s in enumerate(stages)}

    def stage_of(key: str | None) -> int | None:
        i = by_key.get(key)
        return 0 if i is None and len(stages) == 1 else i

    # A stage whose FROM is a named context (a dependency handed over as an OCI layout) has no FROM
    # vertex and BuildKit numbers its first step 1, not 2: per stage, the offset that fits the text.
    shifts: dict[int, int] = {}
    for i, stage in enumerate(stages):
        mine = [s for s in log.steps if stage_of(s.stage) == i]
        scores = {shift: sum(_fits(s, _at(stage, s.index + shift)) for s in mine) for shift in (0, 1)}
        shifts[i] = 1 if scores[1] > scores[0] else 0

    def locate(key: str | None, index: int) -> _Instr | None:
        i = stage_of(key)
        return None if i is None else _at(stages[i], index + shifts[i])

    located = [(s, locate(s.stage, s.index)) for s in log.steps]
    order = {id(s): (x.stage if x else len(stages), s.index) for s, x in located}
    located.sort(key=lambda p: order[id(p[0])])
    flags = tuple(StepFlag(name=s.name, instruction=s.text, line=x.line if x else None, status=s.status)
                  for s, x in located)
    cached = sum(1 for f in flags if f.status == "cached")
    first = next(((s, x) for s, x in located if s.status not in ("cached", "unfinished")), None)
    if first is None:
        # Rebuilt with every step cached: what changed went only into the image's configuration (ENV, LABEL...).
        changed = tuple(a for a in sorted(set(new.get("build_args") or {}) | set((old or {}).get("build_args") or {}))
                        if old is not None and _val(old, a) != _val(new, a))
        reason = "every step was cached" + ("; build argument " + ", ".join(
            f"{a} ({_val(old or {}, a)} -> {_val(new, a)})" for a in changed) + " changed only the image's "
            "configuration" if changed else "")
        return StepReport(total=len(flags), cached=cached, steps=flags, bases=log.bases, first_ran=None,
                          cause="none", reason=reason, args=changed)
    step, instr = first
    cause, reason, files, args = _cause(step.text, instr, stages, log, new=new, old=old,
                                        previous_bases=previous_bases, nothing_cached=cached == 0)
    return StepReport(total=len(flags), cached=cached, steps=flags, bases=log.bases, first_ran=step.name,
                      cause=cause, reason=reason, files=files, args=args)


def _at(stage: _Stage, index: int) -> _Instr | None:
    return next((x for x in stage.instrs if x.index == index), None)


def _fits(step: LoggedStep, instr: _Instr | None) -> int:
    """2 when the Dockerfile's text matches what BuildKit printed (build args as wildcards), 1 for the same
    instruction word, 0 otherwise."""
    if instr is None:
        return 0
    word, _, printed = step.text.partition(" ")
    if word.upper() != instr.word:
        return 0
    pattern = ".*".join(re.escape(" ".join(part.split())) for part in _ARG_REF_FULL.split(instr.args))
    return 2 if re.fullmatch(pattern, " ".join(printed.split()), re.DOTALL) else 1


def _cause(text: str, instr: _Instr | None, stages: list[_Stage], log: BuildLog, *, new: dict[str, Any],
           old: dict[str, Any] | None, previous_bases: tuple[str, ...],
           nothing_cached: bool) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    none: tuple[str, ...] = ()
    stage_key = stages[instr.stage].key if instr is not None else None
    if log.secrets_changed and (not log.no_cache_stages or stage_key in log.no_cache_stages):
        return "secret", (f"secret {', '.join(log.secrets_changed)} changed: the steps that mount it ran without "
                          "BuildKit's cache"), none, none
    if log.no_cache:
        return "no_layer_cache", "no layer cache available: built with --no-cache", none, none
    if log.cache_import_errors and nothing_cached:
        return "no_layer_cache", f"no layer cache available: the cache import failed ({log.cache_import_errors[0]})", \
            none, none
    if old is None:
        return "no_layer_cache", "no layer cache available: first build of this target on record", none, none
    word, _, rest = text.partition(" ")
    word = word.upper()
    if instr is not None:
        stage = stages[instr.stage]
        if instr.index == 2:  # the first step after FROM: did the base move?
            moved = _base_moved(stage.base, new, old, log.bases, previous_bases)
            if moved:
                return "base", moved, none, none
        changed_args = tuple(a for a in instr.scope
                             if (old.get("build_args") or {}).get(a) != (new.get("build_args") or {}).get(a))
        if word in ("COPY", "ADD"):
            # --from as written: BuildKit prints ${ARG} substituted, with the dependency's image in its place.
            written = next((t.split("=", 1)[1] for t in _split(instr.args) if t.startswith("--from=")), None)
            found = _copy_cause(rest, written, stages, new, old)
            if found is not None:
                return found
        if changed_args:
            return "build_arg", "build argument " + ", ".join(
                f"{a} changed ({_val(old, a)} -> {_val(new, a)})" for a in changed_args), none, changed_args
    if old.get("dockerfile", {}).get("digest") != new.get("dockerfile", {}).get("digest"):
        return "dockerfile", "the Dockerfile changed (this line or one before it)", none, none
    if log.cache_import_errors:
        return "no_layer_cache", f"no layer cache available: the cache import failed ({log.cache_import_errors[0]})", \
            none, none
    if log.cache_from is False and nothing_cached:
        return "no_layer_cache", ("no layer cache available: its inputs did not change, this builder had none "
                                  "and there was none to import (no cache policy, or its scope is empty)"), none, none
    return "no_layer_cache", ("no layer cache available: its inputs did not change, so this builder never built "
                              "it or its cache was pruned"), none, none


def _copy_cause(rest: str, source_from: str | None, stages: list[_Stage], new: dict[str, Any],
                old: dict[str, Any]) -> tuple[str, str, tuple[str, ...], tuple[str, ...]] | None:
    toks = _split(rest)
    paths = [t for t in toks if not t.startswith("--")]
    if paths and paths[0].startswith("["):  # JSON form: COPY ["a", "b", "/dst/"]
        try:
            paths = [str(p) for p in json.loads(rest[rest.index("["):])]
        except ValueError:
            paths = []
    sources = paths[:-1]
    if source_from is not None:
        name = source_from.lower()
        if any(s.key == name for s in stages) or name.isdigit():
            return "stage", f"it copies from stage {source_from}, which ran", (), ()
        deps_old, deps_new = old.get("deps") or {}, new.get("deps") or {}
        dep = next((a for a in deps_new if a.lower() == name or f"${{{a}}}" == source_from
                    or f"${a}" == source_from), None)
        if dep is not None and deps_old.get(dep) != deps_new.get(dep):
            return "dependency", f"dependency {dep} changed", (), ()
        return None
    changed = _changed_files(old.get("files") or {}, new.get("files") or {})
    hits = tuple(p for p in changed if any(_under(p, s) for s in sources))
    if hits:
        shown = hits[:_MAX_FILES]
        more = f" and {len(hits) - len(shown)} more" if len(hits) > len(shown) else ""
        return "files", f"{', '.join(shown)}{more} changed", shown, ()
    if old.get("ignore_rules") != new.get("ignore_rules"):
        return "files", ".dockerignore rules changed", (), ()
    return None


def _base_moved(base: str, new: dict[str, Any], old: dict[str, Any], bases: tuple[str, ...],
                previous: tuple[str, ...]) -> str | None:
    for arg in _ARG_REF.findall(base):
        o, n = (old.get("deps") or {}).get(arg), (new.get("deps") or {}).get(arg)
        if n is not None and o != n:
            return f"its base image (dependency {arg}) changed"
    before = {b.split("@")[0]: b for b in previous}
    for ref in bases:
        name = ref.split("@")[0]
        if name in before and before[name] != ref:
            return f"base image {name} moved ({before[name].rpartition('@')[2][:19]} -> {ref.rpartition('@')[2][:19]})"
    if old.get("bases") != new.get("bases"):
        return f"base images changed: {old.get('bases')} -> {new.get('bases')}"
    return None


def _changed_files(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [p for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)]


def _under(path: str, source: str) -> bool:
    """Whether a context file is copied by a COPY/ADD source (a file, a directory, or a pattern)."""
    src = source.strip()
    while src.startswith("./"):
        src = src[2:]
    src = src.lstrip("/").rstrip("/")
    if src in ("", "."):
        return True
    if any(c in src for c in "*?["):
        parts = src.split("/")
        return fnmatch.fnmatch("/".join(path.split("/")[:len(parts)]), src)
    return path == src or path.startswith(src + "/")


def _stages(path: Path) -> list[_Stage]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    out: list[_Stage] = []
    cur: list[_Instr] = []
    scope: list[str] = []
    key: str | None = None
    base = ""
    parsed = instructions(text)
    froms = sum(1 for _, w, _ in parsed if w == "FROM")

    def close() -> None:
        if base:
            out.append(_Stage(key=key, base=base, instrs=tuple(cur)))

    for line, word, args in parsed:
        if word == "FROM":
            close()
            toks = [t for t in _split(args) if not t.startswith("--")]
            named = toks[2].lower() if len(toks) >= 3 and toks[1].lower() == "as" else None
            key = None if froms == 1 else (named or f"stage-{len(out)}")
            base = toks[0] if toks else "?"
            cur, scope = [_Instr(stage=len(out), stage_key=key, index=1, line=line, word=word, args=args, scope=())], []
        elif not base:
            continue  # global ARGs: only in scope once a stage declares them again
        elif word == "ARG":
            scope += [t.split("=", 1)[0] for t in _split(args)]
        elif word in _COUNTED:
            cur.append(_Instr(stage=len(out), stage_key=key, index=len(cur) + 1, line=line, word=word, args=args,
                              scope=tuple(scope)))
    close()
    return out


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args, comments=False)
    except ValueError:
        return args.split()


def _val(manifest: dict[str, Any], arg: str) -> str:
    value = (manifest.get("build_args") or {}).get(arg)
    return "unset" if value is None else repr(value)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def image_flags(report: StepReport, created_by: list[str]) -> list[str | None]:
    """Per entry of an image's history (oldest first, as ``docker image history`` reversed gives it): the
    cached/ran flag of the build step that made it, or None (base image layers, ENV, CMD and the like).

    The final stage's steps are the image's last RUN/COPY/ADD/WORKDIR entries, in order: they are paired
    from the end, since the text differs (image history shows ``${ARG}`` unsubstituted, BuildKit's log
    substituted).
    """
    final = report.steps[-1].name.strip("[]").rpartition(" ")[0] if report.steps else ""
    ours = [s for s in report.steps if s.name.strip("[]").rpartition(" ")[0] == final]
    rows = [i for i, text in enumerate(created_by) if text.split(" ", 1)[0].upper() in _COUNTED[1:]]
    out: list[str | None] = [None] * len(created_by)
    for row, step in zip(rows[len(rows) - len(ours):] if len(ours) <= len(rows) else [], ours):
        if created_by[row].split(" ", 1)[0].upper() == step.instruction.split(" ", 1)[0].upper():
            out[row] = step.status
    return out
