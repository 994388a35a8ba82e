"""What BuildKit did per Dockerfile step, read from a build's ``--progress plain`` log.

Every buildx driver (``docker``, ``docker-container``, ``remote``) prints the same vertex lines:
``#7 [deps 2/4] RUN npm ci`` names a vertex, later lines ``#7 CACHED``, ``#7 DONE 1.2s``, ``#7 ERROR: ...``
or ``#7 CANCELED`` end it, and ``#7 ...`` says it continues further down (vertices interleave). Vertex
numbers are per build; a log holding two builds (the executor's one retry) is read from its last
``#0 building with`` line. Only Dockerfile steps (``[stage i/n] INSTRUCTION``) are kept: ``[internal]``
vertices, exporters and the cache importer are not steps, though a failed cache import is noted.

``FROM`` vertices are kept apart (:attr:`BuildLog.bases`): BuildKit reuses one vertex for every stage
with the same base, under whichever stage name it met first (even one of an earlier build on a long-lived
builder), so they say which base digest was used, not which stage it belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_VERTEX = re.compile(r"^#(\d+) (.*)$")
_STEP = re.compile(r"^\[(?P<prefix>[^\]]*?) ?(?P<index>\d+)/(?P<total>\d+)\] (?P<text>.+)$")
_NO_CACHE_FILTER = re.compile(r" --no-cache-filter (\S+)")
# A step whose result a builder imports from a remote layer cache (BuildKit's S3 cache on a pruned builder)
# is not printed CACHED: its lines are the cached layer's download, and it ends DONE without running.
_PULLED = re.compile(r"^(extracting )?sha256:[0-9a-f]{64}\b")
_OUTPUT = re.compile(r"^[0-9]+\.[0-9]+ ")  # what a step that runs prints, time-stamped
_END = re.compile(r"^(CACHED|DONE(?: [0-9.]+s)?|ERROR(?::.*)?|CANCELED(?: .*)?)$")

STATUSES = ("cached", "ran", "failed", "cancelled", "unfinished")


@dataclass(frozen=True, kw_only=True)
class LoggedStep:
    stage: str | None  # BuildKit's stage name: the stage's own name, ``stage-N``, or None in a one-stage file
    index: int  # 1-based, FROM being 1
    total: int  # the stage's step count
    text: str  # the instruction as BuildKit shows it (build args already substituted)
    status: str  # cached | ran | failed | cancelled | unfinished (started, never ended)

    @property
    def name(self) -> str:
        """``[deps 2/4]``: how BuildKit names the step."""
        return f"[{self.stage + ' ' if self.stage else ''}{self.index}/{self.total}]"


@dataclass(frozen=True, kw_only=True)
class BuildLog:
    steps: tuple[LoggedStep, ...]  # in the order BuildKit first printed them
    bases: tuple[str, ...] = ()  # resolved FROM references (``docker.io/library/busybox:1.36@sha256:...``)
    cache_import_errors: tuple[str, ...] = ()  # "importing cache manifest from X: <error>"
    no_cache: bool = False  # the build ran with --no-cache (read from imgbuild's header line)
    cache_from: bool | None = None  # it was given a --cache-from; None when the log has no imgbuild header
    # A changed secret made imgbuild bypass BuildKit's cache (imgbuild.builds.secret_steps, #14): its ids, and
    # the stages given --no-cache-filter (none: --no-cache, every step).
    secrets_changed: tuple[str, ...] = ()
    no_cache_stages: tuple[str, ...] = ()


def parse(text: str) -> BuildLog:
    """The steps of the last build in ``text``; never raises on odd input (unknown lines are skipped)."""
    lines = text.splitlines()
    start = max((i for i, ln in enumerate(lines) if ln.startswith("#0 building with")), default=0)
    header = next((ln for ln in lines[:start + 1] if ln.startswith("# //") and " docker " in ln), "")
    names: dict[int, str] = {}
    ends: dict[int, str] = {}
    pulled: set[int] = set()
    output: set[int] = set()
    for line in lines[start:]:
        m = _VERTEX.match(line)
        if not m:
            continue
        vertex, rest = int(m.group(1)), m.group(2).rstrip()
        if vertex not in names:
            names[vertex] = rest
        elif _END.match(rest):
            ends[vertex] = rest
        elif _PULLED.match(rest):
            pulled.add(vertex)
        elif _OUTPUT.match(rest):
            output.add(vertex)
    steps: dict[tuple[str | None, int], LoggedStep] = {}
    bases: list[str] = []
    import_errors: list[str] = []
    for vertex, name in names.items():
        end = ends.get(vertex, "")
        if name.startswith("importing cache manifest from ") and end.startswith("ERROR"):
            import_errors.append(f"{name}: {end.partition(':')[2].strip() or 'failed'}")
            continue
        m = _STEP.match(name)
        if not m:
            continue
        text = m.group("text")
        if text.startswith("FROM "):
            ref = text.split()[1]
            if ref not in bases:
                bases.append(ref)
            continue
        # A multi-platform build prefixes each step with its platform (``[linux/arm64 deps 2/4]``).
        stage = next((w for w in m.group("prefix").split() if "/" not in w), None)
        step = LoggedStep(stage=stage, index=int(m.group("index")), total=int(m.group("total")), text=text,
                          status="cached" if end.startswith("DONE") and vertex in pulled and vertex not in output
                          else _status(end))
        key = (stage, step.index)
        previous = steps.get(key)
        # Per platform the same step may be cached on one and run on another: the worse one counts.
        if previous is None or STATUSES.index(step.status) > STATUSES.index(previous.status):
            steps[key] = step
    note = next((ln for ln in lines[:start + 1] if ln.startswith("# secret(s) ")), "")
    secrets = tuple(x.strip() for x in note[len("# secret(s) "):].partition(" changed since")[0].split(",")
                    if x.strip()) if note else ()
    return BuildLog(steps=tuple(steps.values()), bases=tuple(bases), cache_import_errors=tuple(import_errors),
                    no_cache=" --no-cache " in header + " ", cache_from=" --cache-from " in header if header else None,
                    secrets_changed=secrets, no_cache_stages=tuple(_NO_CACHE_FILTER.findall(header)))


def read(path: Path) -> BuildLog | None:
    """:func:`parse` of a log file; None if it cannot be read."""
    try:
        return parse(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _status(end: str) -> str:
    if end == "CACHED":
        return "cached"
    if end.startswith("DONE"):
        return "ran"
    if end.startswith("ERROR"):
        return "failed"
    if end.startswith("CANCELED"):
        return "cancelled"
    return "unfinished"
