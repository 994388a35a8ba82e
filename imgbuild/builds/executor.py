"""The executor: the one narrow interface to the container engine (Docker BuildKit through buildx).

``BuildxExecutor`` runs :class:`BuildRequest` values with the docker CLI and reads results back through
python-on-whales. The build itself runs through :func:`imgbuild.proc.stream` rather than
``python_on_whales.docker.buildx.build``: that call offers no handle on its subprocess, and stopping
imgbuild must stop the build tree (issue #3: no orphaned build processes); it also guarantees that
``--dry-run`` prints exactly the command that runs.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol

from imgbuild import proc
from imgbuild.builds.request import BuildRequest
from imgbuild.engine_api import EngineAPIError
from imgbuild.engine_gateway import EngineGateway
from imgbuild.errors import EngineUnavailable

LOG_TAIL_LINES = 25


@dataclass(frozen=True, kw_only=True)
class BuildOutput:
    image_id: str  # what `docker image inspect` calls Id (with the containerd store: the manifest digest)
    digest: str | None  # containerimage.digest from buildx's metadata
    config_digest: str | None
    metadata: str  # buildx's --metadata-file content, canonical JSON


class BuildError(Exception):
    """The engine ran the build and it failed; ``log_tail`` holds its last output lines."""

    def __init__(self, message: str, log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.log_tail = log_tail


class BuildInterrupted(BuildError):
    """The build was stopped (SIGINT/SIGTERM) before it finished."""


class Executor(Protocol):
    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput: ...


@dataclass(frozen=True, kw_only=True)
class EngineInfo:
    server_version: str
    buildx_version: str


class BuildxExecutor:
    def __init__(self, docker: str = "docker", env: dict[str, str] | None = None, *,
                 engine: EngineGateway | None = None) -> None:
        self.docker = docker
        self.env = env
        # The run's way to the engine, for what is asked after every build (the image's id): over its socket,
        # no process each, when the gateway chose it.
        self.engine = engine if engine is not None else EngineGateway(docker, environ=env)

    def _client(self) -> Any:
        from python_on_whales import DockerClient  # slow import, only needed when talking to the engine

        return DockerClient(client_call=[self.docker])

    def check(self) -> EngineInfo:
        """Fail with exit status 3 and what to do when no engine or no buildx is reachable."""
        # Both questions at once: each is a docker CLI process (~50-250 ms on a busy machine), except the
        # engine's own, over its socket when that is local.
        with ThreadPoolExecutor(max_workers=1) as pool:
            buildx = pool.submit(proc.run_unchecked, [self.docker, "buildx", "version"])
            version = self._engine_version()
            code, out, err = buildx.result()
        if code != 0:
            raise EngineUnavailable(
                f"docker buildx is not available: {(err or out).strip()[:300]}\n"
                "  hint: install the buildx plugin (https://github.com/docker/buildx#installing)"
            )
        return EngineInfo(server_version=version, buildx_version=out.strip())

    def _engine_version(self) -> str:
        version = self.engine.version
        if version is not None:
            return version  # the socket answered it when the gateway chose the socket
        from python_on_whales.exceptions import DockerException

        try:
            version = self._client().version()
        except (DockerException, FileNotFoundError) as exc:
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise EngineUnavailable(
                f"cannot reach a Docker engine at {host}: {_first_line(exc)}\n"
                "  hint: start one (in this repository: `eval \"$(scripts/dev-services up)\"`), "
                "or point DOCKER_HOST at a running engine"
            ) from None
        return str(getattr(getattr(version, "server", None), "version", None) or "?")

    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput:
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

        def on_line(line: str) -> None:
            tail.append(line)
            log(line)

        with tempfile.TemporaryDirectory(prefix="imgbuild-") as tmp:
            if request.metadata_file is None:
                request = replace(request, metadata_file=str(Path(tmp) / "metadata.json"))
            meta_path = Path(str(request.metadata_file))
            meta_path.unlink(missing_ok=True)  # what is read after the build is this build's
            argv = command(request, docker=self.docker)
            try:
                code = self._run(argv, tail=tail, on_line=on_line, log=log, stop=stop)
                if stop is not None and stop.is_set():
                    raise BuildInterrupted("interrupted", tuple(tail))
                if code != 0:
                    reason = next((ln for ln in reversed(tail) if ln.startswith("ERROR")), f"exit status {code}")
                    raise BuildError(f"docker buildx build failed: {reason}", tuple(tail))
                meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            finally:
                meta_path.unlink(missing_ok=True)
        return self.output(request, meta)

    def output(self, request: BuildRequest, meta: dict[str, Any]) -> BuildOutput:
        """What a finished build of ``request`` made, from buildx's metadata for it and the engine."""
        digest = meta.get("containerimage.digest")
        return BuildOutput(
            image_id=self._image_id(request, digest),
            digest=digest,
            config_digest=meta.get("containerimage.config.digest"),
            metadata=json.dumps(meta, sort_keys=True, separators=(",", ":")),
        )

    def _run(self, argv: list[str], *, tail: deque[str], on_line: Callable[[str], None], log: Callable[[str], None],
             stop: threading.Event | None) -> int:
        for attempt in (1, 2):
            try:
                code = proc.stream(argv, on_line=on_line, stop=stop, env=self.env)
            except FileNotFoundError:
                raise EngineUnavailable(f"{self.docker}: command not found") from None
            # Two builds loading the same image name at once (two CI jobs on one engine) race in
            # containerd: 'image "...": already exists'. The second try is served from BuildKit's cache.
            if code == 0 or attempt == 2 or not any("already exists" in ln for ln in tail):
                break
            log("# the engine was naming the same image concurrently; trying once more")
        return code

    def _image_id(self, request: BuildRequest, digest: str | None) -> str:
        if not request.load:
            if not digest:
                raise BuildError("the builder reported no image digest")
            return digest  # the image is in no engine: its manifest digest is its identity
        ref = request.tags[0] if request.tags else digest
        if not ref:
            raise BuildError("the engine reported no image (was --load dropped?)")
        api = self.engine.api
        if api is not None:
            try:
                found = api.image_id(ref)
            except EngineAPIError as exc:
                raise BuildError(f"cannot read the built image's id: {exc}") from None
            if found is None:
                raise BuildError(f"the engine has no image {ref} after the build (was --load dropped?)")
            return found
        image = self._client().image.inspect(ref)
        return str(image.id)


def command(request: BuildRequest, *, docker: str = "docker") -> list[str]:
    """The command line that builds ``request``: what the executor runs and ``--dry-run`` prints."""
    return [docker, *request.argv()]


def _first_line(exc: BaseException) -> str:
    found = re.search(r"(Cannot connect to the Docker daemon[^'\n]*|permission denied[^'\n]*)", str(exc))
    if found:
        return found.group(1)
    text = str(exc).strip().splitlines()
    # python-on-whales puts the command first and the daemon's message last
    useful = [ln for ln in text if "Cannot connect" in ln or "error" in ln.lower()]
    return (useful[-1] if useful else (text[-1] if text else type(exc).__name__)).strip()
