"""What a build run produced, per target; the build report (``--json FILE``, schema specs/report.schema.json)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgbuild.stepwhy import StepReport

REPORT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class TargetResult:
    label: str
    status: str  # built | cached | restored | failed | skipped | cancelled
    duration: float | None = None
    image_id: str | None = None
    digest: str | None = None
    tags: tuple[str, ...] = ()
    log_path: str | None = None
    error: str | None = None
    log_tail: tuple[str, ...] = ()
    input_digest: str | None = None
    pushed: tuple[str, ...] = ()  # repo@sha256:... references verified in the registries
    metadata: str = "{}"  # buildx's metadata of the build (JSON), "{}" when not built here
    steps: StepReport | None = None  # per step: cached or ran, and why the first one ran (built or failed here)

    @property
    def ok(self) -> bool:
        return self.status in ("built", "cached", "restored")

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "status": self.status,
            "input_digest": self.input_digest,
            "rebuilt": self.status == "built",
            "duration_s": None if self.duration is None else round(self.duration, 3),
            "image_id": self.image_id,
            "digest": self.digest,
            "tags": list(self.tags),
            "log": self.log_path,
            "error": self.error,
            "pushed": list(self.pushed),
            "steps": None if self.steps is None else self.steps.to_dict(),
        }


@dataclass(frozen=True, kw_only=True)
class RunResult:
    targets: tuple[TargetResult, ...]
    interrupted: bool
    started: str  # RFC 3339, UTC
    duration: float

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(t.ok for t in self.targets)


def with_push(result: RunResult, pushes: dict[str, tuple[tuple[str, ...], str | None]]) -> RunResult:
    """``result`` with each target's pushed references, and a push error as a failure of that target."""
    from dataclasses import replace

    out = []
    for t in result.targets:
        if t.label in pushes:
            pushed, error = pushes[t.label]
            t = replace(t, pushed=pushed)
            if error:
                t = replace(t, status="failed", error=f"push failed: {error}")
        out.append(t)
    return replace(result, targets=tuple(out))


def write_metadata(result: RunResult, path: Path) -> None:
    """Every key buildx wrote for each target's build (``docker buildx build --metadata-file``), plus imgbuild's,
    keyed by label. Cached and restored targets carry what their cache entry knows of the build that made them."""
    from imgbuild.builds import metadata

    doc: dict[str, Any] = {}
    for t in result.targets:
        entry = metadata.parse(t.metadata)
        if t.digest:
            entry.setdefault(metadata.DIGEST_KEY, t.digest)
        if metadata.NAME_KEY not in entry and t.tags:
            entry[metadata.NAME_KEY] = metadata.image_names(t.tags)  # as buildx names a build with these tags
        elif metadata.NAME_KEY not in entry and t.pushed:
            entry[metadata.NAME_KEY] = t.pushed[0]
        entry.update({"imgbuild.label": t.label, "imgbuild.status": t.status, "imgbuild.input_digest": t.input_digest,
                      "imgbuild.rebuilt": t.status == "built", "imgbuild.image_id": t.image_id,
                      "imgbuild.tags": list(t.tags), "imgbuild.pushed": list(t.pushed),
                      "imgbuild.duration_s": None if t.duration is None else round(t.duration, 3),
                      "imgbuild.log": t.log_path})
        doc[t.label] = entry
    _write_atomically(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def write_report(result: RunResult, path: Path) -> None:
    doc = {
        "version": REPORT_VERSION,
        "started": result.started,
        "duration_s": round(result.duration, 3),
        "interrupted": result.interrupted,
        "targets": [t.to_json() for t in result.targets],
    }
    _write_atomically(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one: a temporary file beside it, then os.replace.

    The temporary name is unique, so two runs writing the same report do not write into each other's; it is
    created with the umask's permissions (not mkstemp's 0600), as the file it replaces would be.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
