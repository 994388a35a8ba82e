"""Discover BUILD.yaml packages and resolve their apps into targets (target > app > workspace defaults)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from imgbuild import statedir
from imgbuild.errors import ImgbuildError, LabelError, SpecError, SpecErrors
from imgbuild.labels import Label
from imgbuild.model import Secret, Target, Workspace, WorkspaceConfig
from imgbuild.specfiles.schemas import remembered, validate
from imgbuild.tags import TemplateError
from imgbuild.tags import check as check_template
from imgbuild.specfiles.workspace import (BUILD_FILE, WORKSPACE_FILE, inside_workspace, load_config, registry_names,
                                     string_pairs, unknown_hint)
from imgbuild.yamlsource import YamlDocument, load_yaml

# Directories never searched for packages: VCS data, our own state, dependency trees.
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})


def discover(root: Path) -> Iterator[str]:
    """Workspace-relative package paths ("" for the root), sorted; nested workspaces are not entered, nor is
    imgbuild's state directory when ``IMGBUILD_STATE_DIR`` puts it in the work tree (it can be large)."""
    found = []
    own = {str(p) for p in statedir.for_workspace(root).inside_workspace()}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and WORKSPACE_FILE in filenames:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS
                       and not (own and os.path.realpath(os.path.join(dirpath, d)) in own)]
        if BUILD_FILE in filenames:
            rel = here.relative_to(root).as_posix()
            found.append("" if rel == "." else rel)
    return iter(sorted(found))


def load_workspace(root: Path) -> Workspace:
    """Load imgbuild.yaml and every BUILD.yaml below it; all spec problems are reported together.

    Every command starts here, so this is also where the state directory is made and an old in-tree
    ``.imgbuild/`` history is moved out of the work tree (:func:`imgbuild.statedir.migrate`).
    """
    dirs = statedir.for_workspace(root)
    try:
        dirs.prepare()
    except OSError:
        pass  # each user of a state file copes with it missing (a miss, a rebuild, a spooled record)
    with remembered(dirs.spec_memo):
        ws = _load_workspace(root)
    history = ws.config.history
    statedir.migrate(dirs, move_history=history.backend == "sqlite" and history.path is None,
                     notice=lambda m: print(f"note: {m}", file=sys.stderr))
    return ws


def _load_workspace(root: Path) -> Workspace:
    config, _ = load_config(root)
    targets: dict[Label, Target] = {}
    errors: list[SpecError] = []
    packages = list(discover(root))
    for pkg in packages:
        display = f"{pkg}/{BUILD_FILE}" if pkg else BUILD_FILE
        try:
            doc = load_yaml(root / pkg / BUILD_FILE, display)
            for t in _package_targets(config, pkg, doc):
                targets[t.label] = t
        except SpecErrors as exc:
            errors.extend(exc.errors)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise SpecErrors(errors)
    return Workspace(config=config, targets=targets, packages=tuple(packages))


# Docker's limit for a repository name with its registry; the image alone gets 200 of it, so that a
# registry URL of up to 54 characters always fits.
MAX_REPOSITORY = 255
MAX_IMAGE = 200
_IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _package_targets(config: WorkspaceConfig, pkg: str, doc: YamlDocument) -> list[Target]:
    if doc.data is None:
        raise doc.error("the file is empty", (), "declare `apps:` with at least one app")
    errors = validate(doc, "build")
    if errors:
        raise SpecErrors(errors)
    out: list[Target] = []
    seen: dict[str, tuple[str | int, ...]] = {}
    for app_name, app in doc.data["apps"].items():
        app = app or {}
        declared = app.get("targets")
        entries = list(declared.items()) if declared else [(app_name, {})]
        for tname, tspec in entries:
            tspec = tspec or {}
            where: tuple[str | int, ...] = ("apps", app_name, "targets", tname) if declared else ("apps", app_name)
            if tname in seen:
                raise doc.error(
                    f"target name {tname!r} is already used in this package (at {doc.location(seen[tname])})",
                    where, "target names are unique within a package; rename one of them")
            seen[tname] = where
            out.append(_resolve(config, pkg, doc, app_name, app, tname, tspec, where))
    return out


def _resolve(config: WorkspaceConfig, pkg: str, doc: YamlDocument, app_name: str, app: dict[str, Any],
             tname: str, tspec: dict[str, Any], where: tuple[str | int, ...]) -> Target:
    root = config.root
    pkg_dir = root / pkg

    def pick(key: str, default: Any = None) -> tuple[Any, tuple[str | int, ...]]:
        if key in tspec:
            return tspec[key], where + (key,)
        if key in app:
            return app[key], ("apps", app_name, key)
        return default, where

    def merged(key: str, base: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        d = dict(base)
        d.update(string_pairs(app.get(key)))
        d.update(string_pairs(tspec.get(key)))
        return tuple(sorted(d.items()))

    # Files: paths are relative to the package directory and must stay inside the workspace.
    ctx_text, ctx_path = pick("context", ".")
    context = _inside(root, pkg_dir / ctx_text, doc, ctx_path, "context")
    df_text, df_path = pick("dockerfile", "Dockerfile")
    dockerfile = _inside(root, pkg_dir / df_text, doc, df_path, "dockerfile")

    # A target of `targets:` gets its own repository (`<app image>-<target>`) unless it names one,
    # so the test and runtime images of one app never fight over the same tags.
    image = tspec.get("image")
    if image is None:
        base_image = app.get("image", app_name)
        image = base_image if tname == app_name or not app.get("targets") else f"{base_image}-{tname}"
    if not _IMAGE_RE.match(image):
        raise doc.error(f"image name {image!r} (from the app/target name) is not a valid repository name",
                        where, "set `image:` to lowercase letters, digits and . _ - separators")
    if len(image) > MAX_IMAGE:
        raise doc.error(f"image name {image[:20]}...{image[-8:]} (from the app/target name) is {len(image)} "
                        f"characters long; at most {MAX_IMAGE} are allowed", where, "set a shorter `image:`")

    deps: dict[str, Label] = {}
    dep_locations: dict[str, object] = {}
    for src in (app.get("deps") or {}, tspec.get("deps") or {}):
        for arg, text in src.items():
            path = (where + ("deps", arg)) if src is tspec.get("deps") else ("apps", app_name, "deps", arg)
            try:
                deps[arg] = Label.parse(text, current_package=pkg)
                dep_locations[arg] = doc.location(path, value=True)
            except LabelError as exc:
                raise doc.error(str(exc), path, "write //package:target or :target (same package)",
                                value=True) from None

    cache, cache_path = pick("cache", config.defaults.cache)
    policies = [p.name for p in config.cache_policies]
    if cache is not None and cache not in policies:
        raise doc.error(f"unknown cache policy {cache!r}", cache_path, unknown_hint(cache, policies, "cache_policies"),
                        value=True)

    regs = next((r for r in (registry_names(tspec), registry_names(app)) if r is not None),
                config.defaults.registries)
    known_regs = [r.name for r in config.registries]
    for name in regs:
        if name not in known_regs:
            _, rpath = pick("registries" if ("registries" in tspec or "registries" in app) else "registry")
            if rpath[-1] == "registries":
                rpath = rpath + (regs.index(name),)
            raise doc.error(f"unknown registry {name!r}", rpath, unknown_hint(name, known_regs, "registries"),
                            value=True)
        repository = f"{config.registry(name).url}/{image}"
        if len(repository) > MAX_REPOSITORY:
            raise doc.error(f"{repository[:30]}...{repository[-8:]} is {len(repository)} characters long; Docker "
                            f"allows at most {MAX_REPOSITORY} for a repository with its registry", where,
                            "set a shorter `image:`")

    secrets_raw, _ = pick("secrets", [])
    secrets = tuple(Secret(id=s["id"], src=s.get("src"), env=s.get("env")) for s in secrets_raw)
    for i, s in enumerate(secrets):
        if s.src is not None and not s.src.startswith(("/", "~")):
            _inside(root, root / s.src, doc, pick("secrets")[1] + (i, "src"), "secret file")
    ids = [s.id for s in secrets]
    for s in secrets:
        if ids.count(s.id) > 1:
            raise doc.error(f"secret id {s.id!r} is declared twice", pick("secrets")[1])
    build_args = merged("build_args", config.defaults.build_args)
    clash = sorted(set(dict(build_args)) & set(deps) | set(dict(build_args)) & set(ids))
    if clash:
        raise doc.error(f"{clash[0]!r} is both a build arg and a dependency or secret", where,
                        "a deps entry and a secret each provide their own value; remove the build arg")
    tags, tags_path = pick("tags", config.defaults.tags)
    for i, template in enumerate(tags if tags_path != where else ()):  # defaults: checked with imgbuild.yaml
        try:
            check_template(template)
        except TemplateError as exc:
            raise doc.error(str(exc).split(" (known")[0], tags_path + (i,), "see specs/README.md#tags",
                            value=True) from None
    stage, _ = pick("stage", tname if app.get("targets") else None)
    return Target(
        label=Label(pkg, tname),
        app=app_name,
        spec_file=doc.display,
        location=doc.location(where),
        dockerfile=dockerfile,
        context=context,
        stage=stage,
        image=image,
        build_args=build_args,
        deps=tuple(sorted(deps.items())),
        cache=cache,
        tags=tuple(tags),
        push=bool(pick("push", config.defaults.push)[0]),
        load=bool(pick("load", config.defaults.load)[0]),
        registries=tuple(regs),
        platforms=tuple(pick("platforms", config.defaults.platforms)[0]),
        secrets=secrets,
        labels=merged("labels", config.defaults.labels),
        dep_locations=tuple(sorted(dep_locations.items())),  # type: ignore[arg-type]
        check_ignore=tuple(sorted(set(config.defaults.check_ignore).union(
            *((s.get("check") or {}).get("ignore", ()) for s in (app, tspec))))),
    )


def _inside(root: Path, path: Path, doc: YamlDocument, key_path: tuple[str | int, ...], what: str) -> Path:
    resolved = inside_workspace(root, path)
    if resolved is None:
        real, norm = os.path.realpath(path), os.path.normpath(path)
        shown = norm if real == norm else f"{path} (through a symbolic link, to {real})"
        raise doc.error(f"{what} {shown} is outside the workspace {root}", key_path,
                        f"a {what} must be the package directory or inside the workspace", value=True)
    return resolved


def load(workspace_dir: Path | None, cwd: Path) -> tuple[Workspace, str]:
    """The workspace (from ``workspace_dir`` or found above ``cwd``) and cwd's package path in it."""
    from imgbuild.specfiles.workspace import find_root

    root = (workspace_dir.resolve() if workspace_dir else find_root(cwd))
    if not (root / WORKSPACE_FILE).is_file():
        raise ImgbuildError(f"{root} is not a workspace: it has no {WORKSPACE_FILE}")
    ws = load_workspace(root)
    try:
        rel = cwd.resolve().relative_to(root).as_posix()
        current = "" if rel == "." else rel
    except ValueError:
        current = ""
    return ws, current
