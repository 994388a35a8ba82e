"""Turning a finished run into manifest-history records: one per target, plus one per pushed target."""

from __future__ import annotations

from imgbuild.builds.results import RunResult, TargetResult
from imgbuild.ci import CIRun
from imgbuild.git import GitInfo
from imgbuild.history.record import HistoryRecord, utc_now
from imgbuild.labels import Label
from imgbuild.model import Workspace

_DONE = ("built", "cached", "restored")


def records_for(result: RunResult, ws: Workspace, *, git: GitInfo, ci: CIRun | None, builder: str | None,
                layers: dict[str, tuple[int, int]]) -> list[HistoryRecord]:
    """Build records for every target that has an image, and push records for those pushed.

    Build args are recorded by value (secrets are never build args in imgbuild); secrets by id only.
    """
    now = utc_now()
    out = []
    for t in result.targets:
        if t.status not in _DONE or not t.image_id:
            continue
        target = ws.targets[Label.parse(t.label)]
        common = dict(
            time=now, label=t.label, input_digest=t.input_digest, image_id=t.image_id,
            manifest_digest=t.digest, git_commit=git.sha or None, git_branch=git.branch or None,
            git_dirty=git.dirty, build_args=target.build_args, secret_ids=tuple(s.id for s in target.secrets),
            builder=builder, cache=t.status, duration_s=None if t.duration is None else round(t.duration, 3),
            layer_count=layers.get(t.label, (None, None))[0], layer_bytes=layers.get(t.label, (None, None))[1],
            ci_provider=ci.provider if ci else None, ci_run_id=ci.run_id if ci else None,
            ci_run_url=ci.run_url if ci else None, workspace=ws.root.name,
        )
        out.append(HistoryRecord(kind="build", tags=t.tags, steps=t.steps, **common))  # type: ignore[arg-type]
        if t.pushed:
            out.append(HistoryRecord(kind="push", tags=_push_tags(t), pushed=t.pushed, **common))  # type: ignore[arg-type]
    return out


def _push_tags(t: TargetResult) -> tuple[str, ...]:
    repos = {ref.split("@", 1)[0] for ref in t.pushed}
    tags = [tag.rpartition(":")[2] for tag in t.tags]
    return tuple(sorted(f"{repo}:{tag}" for repo in repos for tag in tags))
