"""What a build run produced, per target; the build report (``--json FILE``, schema specs/report.schema.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def write_report(result: RunResult, path: Path) -> None:
    doc = {
        "version": REPORT_VERSION,
        "started": result.started,
        "duration_s": round(result.duration, 3),
        "interrupted": result.interrupted,
        "targets": [t.to_json() for t in result.targets],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
