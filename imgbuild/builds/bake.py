"""Builds that start together, sent to the engine as one ``docker buildx bake`` (the ``docker`` driver).

On the engine's own ``docker`` driver every ``docker buildx build`` is a client process plus a session,
a context upload and a solve of its own in dockerd: about half a CPU-second each on a small machine,
where one ``docker buildx bake`` of the same targets pays that once (issue #13, #3: the cold build of a
base and eight apps was 1.2-1.3x slower than bake for this reason alone).

:class:`BakeExecutor` stands in front of :class:`BuildxExecutor`. Requests of *leaf* targets (nothing in
the run builds FROM them) that reach it within a short window form one batch, built by one bake of
the same requests (the bake definition says exactly what each ``docker buildx build`` would), and
every member gets its own result, log and error:

* The plain progress output is split per target: bake names each vertex ``[<target> ...]``, which is
  removed again, so each target's log reads like its own build's (the step report reads it). A step
  BuildKit shares between two targets of a batch is printed once, in the log of the first.
* Bake stops every target once one fails. A member whose step failed fails with its own lines; the
  others are built again one by one, from BuildKit's cache for the steps that had finished, so a
  failure stays that target's own and ``--keep-going`` keeps its meaning.
* Only leaves are batched: a batch ends when its slowest member does, and no dependant may wait for
  an unrelated target. A target something depends on is built alone, as before.

A batch of one is the plain ``docker buildx build`` the dry run prints.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from imgbuild import proc
from imgbuild.builds.executor import (
    LOG_TAIL_LINES,
    BuildError,
    BuildInterrupted,
    BuildOutput,
    BuildxExecutor,
)
from imgbuild.builds.request import BuildRequest
from imgbuild.errors import EngineUnavailable

# How long a batch stays open after its last request arrived, and at most in all: the jobs of one
# wave reach the executor within a few milliseconds of each other.
QUIET = 0.05
LONGEST = 0.3

_VERTEX = re.compile(r"^#(\d+) (.*)$")


@dataclass(kw_only=True)
class _Member:
    request: BuildRequest
    log: Callable[[str], None]
    name: str = ""  # the bake target's name
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    failed: bool = False  # one of its own steps failed
    result: Future[BuildOutput | None] = field(default_factory=Future)  # None: build it alone

    def write(self, line: str) -> None:
        self.tail.append(line)
        self.log(line)


class BakeExecutor:
    """An :class:`~imgbuild.builds.executor.Executor` that batches the builds of ``leaves`` into bakes."""

    def __init__(self, single: BuildxExecutor, *, leaves: frozenset[str], quiet: float = QUIET,
                 longest: float = LONGEST) -> None:
        self.single = single
        self.leaves = leaves
        self.quiet = quiet
        self.longest = longest
        self._lock = threading.Lock()
        self._open: list[_Member] | None = None  # the batch still taking members
        self._last = 0.0  # when its last member arrived

    def check(self) -> object:
        return self.single.check()

    def build(self, request: BuildRequest, *, log: Callable[[str], None],
              stop: threading.Event | None) -> BuildOutput:
        if request.label not in self.leaves:
            return self.single.build(request, log=log, stop=stop)
        member = _Member(request=request, log=log)
        with self._lock:
            self._last = time.monotonic()
            if self._open is not None:
                self._open.append(member)
                leader = False
            else:
                self._open = [member]
                leader = True
        if leader:
            self._lead(stop)
        output = member.result.result()
        if output is None:
            return self.single.build(request, log=log, stop=stop)
        return output

    def _lead(self, stop: threading.Event | None) -> None:
        """Keep the batch open until no request came for ``quiet`` seconds, then build it."""
        opened = time.monotonic()
        while True:
            with self._lock:
                now = time.monotonic()
                if now - self._last >= self.quiet or now - opened >= self.longest:
                    batch, self._open = self._open or [], None
                    break
                wait = min(self.quiet - (now - self._last), self.longest - (now - opened))
            time.sleep(max(wait, 0.001))
        if len(batch) == 1:
            batch[0].result.set_result(None)  # the plain build, as the dry run prints it
            return
        try:
            outputs = self._bake(batch, stop)
        except BaseException as exc:  # every member must hear how it ended, whatever happened
            for m in batch:
                if not m.result.done():
                    m.result.set_exception(exc)
            raise
        for m in batch:
            if not m.result.done():
                m.result.set_result(outputs.get(m.name))

    def _bake(self, batch: list[_Member], stop: threading.Event | None) -> dict[str, BuildOutput | None]:
        """Run one bake of ``batch``: each member's output, or None for one to build again alone."""
        token = f"ib{secrets.token_hex(3)}"
        for i, m in enumerate(batch):
            m.name = f"{token}-{i}"
        for m in batch:
            others = ", ".join(o.request.label for o in batch if o is not m)
            m.write(f"# built in one `docker buildx bake` with {len(batch) - 1} other target(s): {others}")
        with tempfile.TemporaryDirectory(prefix="imgbuild-bake-") as tmp:
            definition = Path(tmp) / "docker-bake.json"
            definition.write_text(json.dumps(bake_definition([(m.name, m.request) for m in batch]), indent=1))
            meta_path = Path(tmp) / "metadata.json"
            argv = [self.single.docker, "buildx", "bake", "--progress", "plain", "--file", str(definition),
                    "--metadata-file", str(meta_path)]
            builder = batch[0].request.builder  # one per run: the service resolved it once
            if builder:
                argv += ["--builder", builder]
            argv += [m.name for m in batch]
            split = LogSplitter(batch)
            try:
                code = proc.stream(argv, on_line=split.line, stop=stop, env=self.single.env)
            except FileNotFoundError:
                raise EngineUnavailable(f"{self.single.docker}: command not found") from None
            if stop is not None and stop.is_set():
                for m in batch:
                    m.result.set_exception(BuildInterrupted("interrupted", tuple(m.tail)))
                return {}
            if code != 0:
                for m in batch:
                    if m.failed:
                        reason = next((ln for ln in reversed(m.tail) if ln.startswith("ERROR")),
                                      f"exit status {code}")
                        m.result.set_exception(BuildError(f"docker buildx bake failed: {reason}", tuple(m.tail)))
                    else:
                        m.write("# the bake stopped before this target finished: building it alone")
                return {}
            meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        outputs: dict[str, BuildOutput | None] = {}
        for m in batch:
            own = meta.get(m.name)
            if not isinstance(own, dict):
                outputs[m.name] = None
                continue
            try:
                outputs[m.name] = self.single.output(m.request, own)
            except Exception as exc:  # noqa: BLE001 - this member fails, the others keep their images
                m.result.set_exception(exc if isinstance(exc, BuildError) else BuildError(str(exc), tuple(m.tail)))
        return outputs


class LogSplitter:
    """Route bake's plain progress lines to each member's log, with the target's name taken out.

    A vertex line ``#N [name rest] title`` belongs to member ``name`` (``[name] exporting`` too); its
    later ``#N`` lines follow it, and so does the blank line that ends a group. Lines of no member
    (bake's own vertices, ``#0 building with``, the error summary at the end) go to every member.
    """

    def __init__(self, batch: list[_Member]) -> None:
        self.by_name = {m.name: m for m in batch}
        self.batch = batch
        self.owner: dict[str, _Member | None] = {}
        self.last: _Member | None = None  # who got the last vertex line

    def line(self, line: str) -> None:
        found = _VERTEX.match(line)
        if found is None:
            for m in ([self.last] if self.last is not None and not line.strip() else self.batch):
                m.write(line)
            return
        vertex, rest = found.groups()
        if vertex not in self.owner:
            self.owner[vertex] = self._owner_of(rest)
        member = self.last = self.owner[vertex]
        if member is None:
            for m in self.batch:
                m.write(line)
            return
        if rest.startswith("[" + member.name):
            rest = _unprefix(rest, member.name)
        if rest.startswith("ERROR"):
            member.failed = True
        member.write(f"#{vertex} {rest}")

    def _owner_of(self, title: str) -> _Member | None:
        if not title.startswith("["):
            return None
        name = title[1:].split("]", 1)[0].split(" ", 1)[0]
        return self.by_name.get(name)


def _unprefix(title: str, name: str) -> str:
    """``[name 2/3] RUN x`` -> ``[2/3] RUN x``; ``[name internal] load`` -> ``[internal] load``;
    ``[name] exporting to image`` -> ``exporting to image``."""
    rest = title[len(name) + 1:]
    if rest.startswith("] "):
        return rest[2:]
    return "[" + rest.lstrip(" ")


def bake_definition(requests: list[tuple[str, BuildRequest]]) -> dict[str, Any]:
    """The bake file (JSON) that builds each request as ``docker buildx build`` with its argv would.

    Bake reads its string values as templates (``${...}`` and ``%{...}``): they are escaped, so every
    value reaches BuildKit as the text the user wrote.
    """
    targets: dict[str, Any] = {}
    for name, r in requests:
        t: dict[str, Any] = {
            "context": os.path.abspath(r.context),
            "dockerfile": os.path.abspath(r.dockerfile),
            "args": {k: _literal(v) for k, v in r.build_args},
            "labels": {k: _literal(v) for k, v in r.labels},
            "tags": [_literal(x) for x in r.tags],
        }
        if r.target:
            t["target"] = _literal(r.target)
        if r.build_contexts:
            t["contexts"] = {k: _literal(v) for k, v in r.build_contexts}
        if r.platforms:
            t["platforms"] = list(r.platforms)
        if r.secrets:
            t["secret"] = [_literal(s) for s in r.secrets]
        if r.cache_from:
            t["cache-from"] = [_literal(c) for c in r.cache_from]
        if r.cache_to:
            t["cache-to"] = [_literal(c) for c in r.cache_to]
        if r.no_cache:
            t["no-cache"] = True
        elif r.no_cache_filter:
            t["no-cache-filter"] = list(r.no_cache_filter)
        outputs = [_literal(o) for o in r.outputs]
        if r.load:
            outputs.append("type=docker")
        if outputs:
            t["output"] = outputs
        targets[name] = t
    return {"target": targets}


def _literal(text: str) -> str:
    return text.replace("${", "$${").replace("%{", "%%{")
