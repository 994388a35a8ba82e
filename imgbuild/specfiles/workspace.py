"""Find the workspace (``imgbuild.yaml``) and load its configuration."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from imgbuild.errors import Location, SpecError, SpecErrors
from imgbuild.model import CachePolicy, Defaults, HistoryConfig, Registry, ReleaseConfig, WorkspaceConfig
from imgbuild.specfiles.schemas import validate
from imgbuild.yamlsource import YamlDocument, load_yaml

WORKSPACE_FILE = "imgbuild.yaml"
BUILD_FILE = "BUILD.yaml"


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding imgbuild.yaml."""
    here = start.resolve()
    for d in (here, *here.parents):
        if (d / WORKSPACE_FILE).is_file():
            return d
    raise SpecError(
        f"no {WORKSPACE_FILE} found in {here} or any parent directory",
        hint=f"run imgbuild inside a workspace, pass --workspace DIR, or create {WORKSPACE_FILE} with `version: 1`",
    )


def inside_workspace(root: Path, path: Path) -> Path | None:
    """``path`` with ``..`` and symbolic links resolved, if that is inside the workspace ``root``; else None.

    Resolved, not only normalised: a context that is a link to a directory elsewhere would send
    files from outside the workspace to the build (issue #14).
    """
    return _resolved(str(root), str(path))


@functools.lru_cache(maxsize=None)
def _resolved(root: str, path: str) -> Path | None:
    # Not os.path.abspath for relative paths: it would drop `link/..` before the link is resolved.
    real_root, real = _real(os.path.join(os.getcwd(), root)), _real(os.path.join(os.getcwd(), path))
    if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
        return Path(real)
    return None


@functools.lru_cache(maxsize=None)
def _real(path: str) -> str:
    """``os.path.realpath(path)``, one directory at a time so that the packages of a workspace share
    the work (one lstat per new path part instead of one per part of every path)."""
    parent, name = os.path.split(path)
    if parent == path:  # the file system root
        return path
    if name in ("", "."):
        return _real(parent)
    if name == "..":  # of where the parent really is, as the kernel does
        return os.path.dirname(_real(parent))
    here = os.path.join(_real(parent), name)
    return os.path.realpath(here) if os.path.islink(here) else here


def string_pairs(value: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """A YAML map of scalars as sorted (key, string) pairs. Unquoted values are already the text written
    (schemas.as_written); only an explicitly tagged ``!!bool`` is still a boolean, given as true/false."""
    if not value:
        return ()
    return tuple(sorted((str(k), _scalar(v)) for k, v in value.items()))


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def registry_names(section: dict[str, Any]) -> tuple[str, ...] | None:
    """``registry: x`` or ``registries: [x, y]`` as a tuple, None when neither is set."""
    if "registries" in section:
        return tuple(section["registries"])
    if "registry" in section:
        return (section["registry"],)
    return None


def load_config(root: Path) -> tuple[WorkspaceConfig, YamlDocument]:
    _resolved.cache_clear()  # links may have changed since a previous load in this process
    _real.cache_clear()
    doc = load_yaml(root / WORKSPACE_FILE, WORKSPACE_FILE)
    if doc.data is None:
        raise SpecError("the file is empty", location=Location(file=WORKSPACE_FILE), hint="start it with `version: 1`")
    errors = validate(doc, "workspace")
    if errors:
        raise SpecErrors(errors)
    data: dict[str, Any] = doc.data
    d = data.get("defaults") or {}
    registries = tuple(
        Registry(name=name, url=r["url"].rstrip("/"), insecure=r.get("insecure", False),
                 immutable_tags=r.get("immutable_tags", False))
        for name, r in sorted((data.get("registries") or {}).items())
    )
    policies = tuple(
        CachePolicy(
            name=name,
            backend=p["backend"],
            path=p.get("path"),
            bucket=p.get("bucket"),
            region=p.get("region"),
            prefix=p.get("prefix", ""),
            endpoint_url=p.get("endpoint_url"),
            use_path_style=p.get("use_path_style", False),
            ref=p.get("ref"),
            scope=p.get("scope"),
            fallback_scopes=tuple(p.get("fallback_scopes", ())),
            mode=p.get("mode", "min"),
            write=p.get("write", True),
            invalidate_every=p.get("invalidate_every"),
        )
        for name, p in sorted((data.get("cache_policies") or {}).items())
    )
    h = data.get("history") or {}
    history = HistoryConfig(
        backend=h.get("backend", "sqlite"),
        path=h.get("path"),
        bucket=h.get("bucket"),
        prefix=h.get("prefix", ""),
        region=h.get("region"),
        endpoint_url=h.get("endpoint_url"),
    )
    defaults = Defaults(
        registries=registry_names(d) or (),
        cache=d.get("cache"),
        tags=tuple(d.get("tags", ("latest",))),
        platforms=tuple(d.get("platforms", ())),
        build_args=string_pairs(d.get("build_args")),
        labels=string_pairs(d.get("labels")),
        push=d.get("push", False),
        load=d.get("load", True),
        check_ignore=tuple(sorted(set((d.get("check") or {}).get("ignore", ())))),
    )
    r = data.get("release") or {}
    release = ReleaseConfig(tags=tuple(r.get("tags", ())), registries=tuple(r.get("registries", ())),
                            semver=r.get("semver", True))
    config = WorkspaceConfig(
        root=root,
        file=root / WORKSPACE_FILE,
        defaults=defaults,
        registries=registries,
        cache_policies=policies,
        history=history,
        concurrency=data.get("concurrency", 4),
        release=release,
    )
    _check_references(config, doc, d)
    return config, doc


def _check_references(config: WorkspaceConfig, doc: YamlDocument, defaults: dict[str, Any]) -> None:
    errors: list[SpecError] = []
    known_regs = [r.name for r in config.registries]
    key = "registries" if "registries" in defaults else "registry"
    for i, name in enumerate(config.defaults.registries):
        if name not in known_regs:
            path: tuple[str | int, ...] = ("defaults", key, i) if key == "registries" else ("defaults", key)
            errors.append(doc.error(f"unknown registry {name!r}", path, unknown_hint(name, known_regs, "registries"),
                                    value=True))
    policies = [p.name for p in config.cache_policies]
    if config.defaults.cache and config.defaults.cache not in policies:
        errors.append(doc.error(f"unknown cache policy {config.defaults.cache!r}", ("defaults", "cache"),
                                unknown_hint(config.defaults.cache, policies, "cache_policies"), value=True))
    for i, name in enumerate(config.release.registries):
        if name not in known_regs:
            errors.append(doc.error(f"unknown registry {name!r}", ("release", "registries", i),
                                    unknown_hint(name, known_regs, "registries"), value=True))
    # A store may live outside the workspace (a cache shared between checkouts), but only when its path
    # says so: a relative path that leaves the workspace, through `..` or a symbolic link, is refused.
    stores: list[tuple[tuple[str | int, ...], str | None]] = [
        (("cache_policies", p.name, "path"), p.path) for p in config.cache_policies if p.backend == "local"]
    written_history = doc.data.get("history") or {}
    if written_history.get("backend") == "sqlite" and "path" in written_history:
        stores.append((("history", "path"), written_history["path"]))
    for key_path, path_text in stores:
        if not path_text or path_text.startswith("/"):
            continue
        if inside_workspace(config.root, config.root / path_text) is None:
            errors.append(doc.error(
                f"{path_text} is outside the workspace {config.root}"
                f" (it resolves to {os.path.realpath(config.root / path_text)})", key_path,
                "write an absolute path for a store outside the workspace, or a path inside it", value=True))
    from imgbuild.tags import TemplateError, check

    for section, templates in (("defaults", config.defaults.tags), ("release", config.release.tags)):
        for i, template in enumerate(templates):
            try:
                check(template)
            except TemplateError as exc:
                errors.append(doc.error(str(exc).split(" (known")[0], (section, "tags", i), value=True))
    if errors:
        raise SpecErrors(errors)


def unknown_hint(name: str, known: list[str], section: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if known:
        return f"declared under {section}: in imgbuild.yaml: {', '.join(known)}"
    return f"declare it under {section}: in imgbuild.yaml"
