"""Tag templates: ``{git.short_sha}``, ``{git.branch}``, ``{date}``, ``{env.NAME}`` ... rendered tag-safe."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from imgbuild.git import GitInfo

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIXED = ("git.sha", "git.short_sha", "git.branch", "git.tag", "date", "datetime", "input_digest",
          "version", "version.major", "version.minor", "version.patch")
_ENV = re.compile(r"^env\.[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class TemplateError(ValueError):
    pass


def check(template: str) -> None:
    """Raise :class:`TemplateError` naming the first unknown placeholder (and the closest known one)."""
    import difflib

    for name in _PLACEHOLDER.findall(template):
        if name not in _FIXED and not _ENV.match(name):
            close = difflib.get_close_matches(name, _FIXED, n=1)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            raise TemplateError(f"unknown placeholder {{{name}}} in tag {template!r}{hint} "
                                f"(known: {', '.join('{' + k + '}' for k in _FIXED)}, {{env.NAME}})")
    if template.count("{") != template.count("}"):
        raise TemplateError(f"unbalanced braces in tag {template!r}")


@dataclass(frozen=True, kw_only=True)
class TagContext:
    git: GitInfo
    now: datetime
    input_digest: str = ""
    version: str = ""
    environ: dict[str, str] = field(default_factory=dict, compare=False)


def render(template: str, ctx: TagContext) -> str:
    """The tag for ``template``, or "" when a value it needs is missing (e.g. no branch when detached)."""
    missing = False

    def value(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        v = _lookup(name, ctx)
        if not v:
            missing = True
        return v

    out = _PLACEHOLDER.sub(value, template)
    return "" if missing else tag_safe(out)


def _lookup(name: str, ctx: TagContext) -> str:
    now = ctx.now.astimezone(timezone.utc)
    parts = ctx.version.lstrip("v").split(".") if ctx.version else []
    dirty = "-dirty" if ctx.git.dirty else ""  # a dirty tree is visible in the tags it produces
    table = {
        "git.sha": ctx.git.sha + dirty if ctx.git.sha else "",
        "git.short_sha": ctx.git.short_sha + dirty if ctx.git.sha else "",
        "git.branch": ctx.git.branch,
        "git.tag": ctx.git.tag,
        "date": now.strftime("%Y%m%d"),
        "datetime": now.strftime("%Y%m%dT%H%M%SZ"),
        "input_digest": ctx.input_digest[:12],
        "version": ctx.version,
        "version.major": parts[0] if len(parts) > 0 else "",
        "version.minor": parts[1] if len(parts) > 1 else "",
        "version.patch": parts[2] if len(parts) > 2 else "",
    }
    if name.startswith("env."):
        return ctx.environ.get(name[4:], "")
    return table.get(name, "")


def tag_safe(text: str) -> str:
    """A valid Docker tag: [A-Za-z0-9_.-], not starting with . or -, at most 128 characters."""
    safe = _UNSAFE.sub("-", text).lstrip(".-")
    return safe[:128]
