"""The advisor's entry points: the findings of one Dockerfile, and of a set of targets, ignores applied.

:func:`check_dockerfile` is pure over its arguments (plus reading the context for manifest names);
:func:`check_targets` reads each target's Dockerfile, ``.dockerignore`` and context once, however many
targets share them, and groups a finding that several targets share into one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from imgbuild import dockerfile
from imgbuild.advisor import buildargs, context as ctx, copyorder, mounts, readable
from imgbuild.advisor.findings import RULES, SEVERITIES, Finding, ignore_comments, ignored_here, severity_rank
from imgbuild.advisor.stages import StageBlock, needed, split_stages
from imgbuild.dockerignore import IgnoreRules
from imgbuild.model import Target, Workspace


def check_dockerfile(data: bytes, *, file: str, stage: str | None, values: dict[str, str] | None = None,
                     changed: frozenset[str] = frozenset(), invalidate_every: bool = False,
                     context: Path | None = None) -> tuple[list[Finding], dict[int, frozenset[str]]]:
    """Findings of one Dockerfile as built for ``stage``, and its ignore comments (not yet applied).

    ``values``: the build args the target passes (None: unknown); ``changed``: args whose value differs
    between its last two builds; ``context``: the build context, to name the manifests that exist.
    """
    parsed, found, comments = _static(data, file, stage, context)
    out = list(found)
    if parsed is not None:
        source, chain = parsed
        args = buildargs.check(source, file, chain, values=values, changed=changed, invalidate_every=invalidate_every)
        out = sorted(out + args, key=lambda f: (f.line, f.code))
    return out, dict(comments)


@functools.lru_cache(maxsize=64)
def _static(data: bytes, file: str, stage: str | None, context: Path | None) -> tuple[
        tuple[dockerfile.Source, tuple[StageBlock, ...]] | None, tuple[Finding, ...],
        tuple[tuple[int, frozenset[str]], ...]]:
    """What does not depend on the target's build args: targets of one Dockerfile and stage share it.
    (None when the file cannot be read, with the IB001 findings instead.)"""
    text, bad = readable.read_text(data, file)
    if text is None:
        return None, (bad,) if bad else (), ()
    source = dockerfile.read(text)
    comments = tuple(ignore_comments(source.lines).items())
    problems = readable.problems(source, file, stage)
    if problems:
        return None, tuple(problems), comments
    _, stages = split_stages(source)
    chain = needed(stages, stage)
    found = copyorder.check(source, file, chain, context) + mounts.check(file, chain)
    return (source, chain), tuple(found), comments


@dataclass(frozen=True, kw_only=True)
class Reported:
    finding: Finding
    targets: tuple[str, ...]  # labels, sorted


@dataclass(frozen=True, kw_only=True)
class Report:
    findings: tuple[Reported, ...]  # by file, line, code
    ignored: int  # findings silenced by a comment or a spec's ignore list
    targets: int  # targets checked

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in reversed(SEVERITIES)}
        for r in self.findings:
            out[r.finding.severity] += 1
        return out

    def worst(self) -> str | None:
        ranks = [severity_rank(r.finding.severity) for r in self.findings]
        return SEVERITIES[max(ranks)] if ranks else None


def check_targets(ws: Workspace, targets: Iterable[Target], *, changed: dict[str, frozenset[str]] | None = None,
                  invalidate_every: frozenset[str] = frozenset()) -> Report:
    """Every finding of ``targets``; ``changed``: label -> build args that changed in its history;
    ``invalidate_every``: names of the cache policies that have ``invalidate_every``."""
    changed = changed or {}
    grouped: dict[tuple[str, str, int, str], tuple[Finding, set[str]]] = {}
    ignored = 0
    count = 0
    files: dict[Path, bytes | None] = {}
    rules_of: dict[tuple[Path, Path, Path], tuple[list[Finding], IgnoreRules | None]] = {}
    walks: dict[tuple[Path, Path | None], ctx.ContextFacts] = {}
    memo: dict[tuple[object, ...], tuple[list[Finding], dict[int, frozenset[str]]]] = {}
    sources: dict[tuple[Path, str | None], tuple[str, ...]] = {}
    for t in targets:
        count += 1
        label = str(t.label)
        display = ws.relpath(t.dockerfile)
        if t.dockerfile not in files:
            try:
                files[t.dockerfile] = t.dockerfile.read_bytes()
            except OSError:
                files[t.dockerfile] = None
        data = files[t.dockerfile]
        if data is None:
            found = [readable.unreadable(t.spec_file, t.location.line or 1, f"dockerfile: {display}",
                                         f"{display} cannot be read", f"create {display} or fix `dockerfile:`")]
            comments: dict[int, frozenset[str]] = {}
        else:
            # Only which args have a value matters to the rules, so targets of one Dockerfile share the work.
            has_value = frozenset(dict(t.build_args)) | frozenset(arg for arg, _ in t.deps)
            mkey = (t.dockerfile, t.stage, has_value, changed.get(label, frozenset()), t.cache in invalidate_every,
                   t.context)
            if mkey not in memo:
                memo[mkey] = check_dockerfile(
                    data, file=display, stage=t.stage, values=dict.fromkeys(has_value, ""), changed=mkey[3],
                    invalidate_every=bool(mkey[4]), context=t.context if t.context.is_dir() else None)
            found, comments = memo[mkey]
            if not any(f.code == "IB001" for f in found) and t.context.is_dir():
                if (t.dockerfile, t.stage) not in sources:
                    sources[t.dockerfile, t.stage] = _copy_sources(data, t.stage)
                found = found + _context_findings(ws, t, sources[t.dockerfile, t.stage], rules_of, walks)
        for f in found:
            if f.code in t.check_ignore or (f.file == display and ignored_here(f, comments)):
                ignored += 1
                continue
            key = (f.file, f.code, f.line, f.message)
            if key in grouped:
                grouped[key][1].add(label)
            else:
                grouped[key] = (f, {label})
    ordered = sorted(grouped.values(), key=lambda v: (v[0].file, v[0].line, v[0].code))
    return Report(findings=tuple(Reported(finding=f, targets=tuple(sorted(lbs))) for f, lbs in ordered),
                  ignored=ignored, targets=count)


def _context_findings(ws: Workspace, t: Target, sources: tuple[str, ...],
                      rules_of: dict[tuple[Path, Path, Path], tuple[list[Finding], IgnoreRules | None]],
                      walks: dict[tuple[Path, Path | None], ctx.ContextFacts]) -> list[Finding]:
    package_dir = ws.root / t.spec_file.rpartition("/")[0] if "/" in t.spec_file else ws.root
    key = (t.context, t.dockerfile, package_dir)
    if key not in rules_of:
        rules_of[key] = ctx.ignore_findings(
            context=t.context, dockerfile=t.dockerfile, root=ws.root, package_dir=package_dir, spec_file=t.spec_file,
            spec_line=t.location.line, display=ws.relpath(t.context), relpath=ws.relpath)
    found, rules = rules_of[key]
    out = [_at_target(f, t) for f in found]
    if rules is None or "." in sources:  # unreadable rules; or everything is copied
        return out
    wkey = (t.context, ctx.ignore_file(t.context, t.dockerfile))  # one walk per context and ignore file
    if wkey not in walks:
        walks[wkey] = ctx.walk(t.context, rules)
    big = ctx.size_finding(walks[wkey], sources, spec_file=t.spec_file, spec_line=t.location.line,
                           display=ws.relpath(t.context))
    return out + ([big] if big else [])


def _at_target(f: Finding, t: Target) -> Finding:
    """IB103 and IB105 point at the spec that sets the context: the target's own line there."""
    if f.code not in ("IB103", "IB105") or f.file != t.spec_file:
        return f
    return replace(f, line=t.location.line)


def _copy_sources(data: bytes, stage: str | None) -> tuple[str, ...]:
    source = dockerfile.read(data.decode("utf-8", "replace"))
    _, stages = split_stages(source)
    out: list[str] = []
    for st in needed(stages, stage):
        for ins in st.body:
            c = copyorder.copy_of(ins, st.index)
            if c is not None:
                out.extend(c.sources)
    return tuple(dict.fromkeys(out))


__all__ = ["RULES", "Report", "Reported", "check_dockerfile", "check_targets"]
