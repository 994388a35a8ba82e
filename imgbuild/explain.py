"""Why did it rebuild: the differences between two input manifests (see :meth:`Inputs.manifest`)."""

from __future__ import annotations

from typing import Any

_MAX_FILES = 10


def diff_inputs(old: dict[str, Any], new: dict[str, Any], *, dep_labels: dict[str, str] | None = None) -> list[str]:
    """Human-readable differences, most telling first: Dockerfile, files, args, deps, the rest."""
    out: list[str] = []
    if old.get("scheme") != new.get("scheme"):
        return [f"the cache key scheme changed ({old.get('scheme')} -> {new.get('scheme')})"]
    if old.get("dockerfile") != new.get("dockerfile"):
        od, nd = old.get("dockerfile") or {}, new.get("dockerfile") or {}
        out.append(f"Dockerfile {nd.get('path')} changed" if od.get("path") == nd.get("path")
                   else f"Dockerfile moved: {od.get('path')} -> {nd.get('path')}")
    if old.get("stage") != new.get("stage"):
        out.append(f"stage: {old.get('stage')} -> {new.get('stage')}")
    out += _files(old.get("files") or {}, new.get("files") or {})
    if old.get("ignore_rules") != new.get("ignore_rules"):
        out.append(".dockerignore rules changed")
    out += _mapping("build arg", old.get("build_args") or {}, new.get("build_args") or {})
    for arg in sorted(set(old.get("deps") or {}) | set(new.get("deps") or {})):
        o, n = (old.get("deps") or {}).get(arg), (new.get("deps") or {}).get(arg)
        if o != n:
            who = (dep_labels or {}).get(arg, arg)
            out.append(f"dependency {who} changed" if o and n else f"dependency {who} {'added' if n else 'removed'}")
    out += _mapping("secret", old.get("secrets") or {}, new.get("secrets") or {}, values=False)
    out += _mapping("label", old.get("labels") or {}, new.get("labels") or {})
    if old.get("platforms") != new.get("platforms"):
        out.append(f"platforms: {old.get('platforms')} -> {new.get('platforms')}")
    if old.get("bases") != new.get("bases"):
        out.append(f"base images: {old.get('bases')} -> {new.get('bases')}")
    out += _mapping("setting", old.get("extra") or {}, new.get("extra") or {})
    return out


def _files(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = []
    for path in sorted(set(old) | set(new)):
        if path not in old:
            changes.append(f"file added: {path}")
        elif path not in new:
            changes.append(f"file removed: {path}")
        elif old[path] != new[path]:
            what = "mode" if old[path][1] == new[path][1] else "content"
            changes.append(f"file changed ({what}): {path}")
    if len(changes) > _MAX_FILES:
        changes = changes[:_MAX_FILES] + [f"... and {len(changes) - _MAX_FILES} more file changes"]
    return changes


def _mapping(what: str, old: dict[str, Any], new: dict[str, Any], *, values: bool = True) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        if k not in old:
            out.append(f"{what} added: {k}")
        elif k not in new:
            out.append(f"{what} removed: {k}")
        elif old[k] != new[k]:
            out.append(f"{what} {k}: {old[k]!r} -> {new[k]!r}" if values else f"{what} {k} changed")
    return out
