"""Which buildx builder a run uses, and its driver: that decides how dependencies reach their dependants.

The ``docker`` driver builds inside the engine, so a dependency's image in the engine's store is a valid
``FROM``. Every other driver (``docker-container``, ``remote``, ``kubernetes``) runs BuildKit elsewhere and
does not see that store (issue #13): there, dependencies go as OCI layouts (:mod:`imgbuild.builds.handoff`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from imgbuild import proc
from imgbuild.errors import EngineUnavailable

DOCKER_DRIVER = "docker"


@dataclass(frozen=True, kw_only=True)
class Builder:
    name: str | None  # None: the engine's own builder, picked without asking buildx
    driver: str

    @property
    def sees_engine_images(self) -> bool:
        """Whether an image in the engine's store can be a ``FROM`` of this builder's builds."""
        return self.driver == DOCKER_DRIVER


def selected_name(builder: str | None, environ: dict[str, str]) -> str | None:
    """The builder buildx will use: ``--builder``, else ``BUILDX_BUILDER``, else the one ``docker buildx use``
    made current for this engine; None for the engine's own builder."""
    return builder or environ.get("BUILDX_BUILDER") or _current(environ)


def resolve(builder: str | None, environ: dict[str, str], docker: str = "docker") -> Builder:
    """The builder and its driver. No process for the engine's own builder, the usual case on a workstation;
    ``docker buildx use`` (GitHub Actions' setup-buildx-action runs it) makes another one current."""
    name = selected_name(builder, environ)
    if name is None or name == "default":
        return Builder(name=None, driver=DOCKER_DRIVER)
    argv = [docker, "buildx", "inspect", *([name] if name else [])]
    code, out, err = proc.run_unchecked(argv, timeout=60)
    if "Cannot connect to the Docker daemon" in err + out:
        host = environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnavailable(f"cannot reach a Docker engine at {host} (builder {name!r})\n"
                                "  hint: start one (in this repository: `eval \"$(scripts/dev-services up)\"`), "
                                "or point DOCKER_HOST at a running engine")
    if code != 0:
        shown = f"builder {name!r}" if name else "the current buildx builder"
        raise EngineUnavailable(f"cannot use {shown}: {(err or out).strip()[:300]}\n"
                                "  hint: `docker buildx ls` lists the builders; pick one with --builder NAME "
                                "(or create one with `docker buildx create`)")
    driver = parse_driver(out)
    if not driver:
        raise EngineUnavailable(f"`{' '.join(argv[1:])}` named no driver\n  hint: check `docker buildx ls`")
    return Builder(name=name, driver=driver)


def parse_driver(inspect_output: str) -> str:
    """The ``Driver:`` of ``docker buildx inspect``'s output (the builder's, listed before its nodes)."""
    for line in inspect_output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Driver":
            return value.strip()
    return ""


def _current(environ: dict[str, str]) -> str | None:
    """The builder in buildx's ``current`` file when it was chosen for this engine (buildx keys it by the
    engine's endpoint, and writes an empty name for the engine's own builder)."""
    config = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        doc = json.loads((Path(config) / "buildx" / "current").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not doc.get("Name"):
        return None
    endpoint = environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if doc.get("Key") and not environ.get("DOCKER_CONTEXT") and doc["Key"] != endpoint:
        return None  # chosen for another engine
    return str(doc["Name"])

