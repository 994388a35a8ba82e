"""IB201 (a suggestion): a RUN that downloads packages without a BuildKit cache mount.

When the step does rerun (a lock file changed, a cache scope started afresh), a ``--mount=type=cache``
on the package manager's download directory keeps what it fetched before, so only what changed is
downloaded again. System package managers (apt, apk) are left out: their cache mounts need the image's
own clean-up hooks changed, and images usually drop those caches on purpose.
"""

from __future__ import annotations

from imgbuild.advisor.copyorder import command_text
from imgbuild.advisor.ecosystems import downloads
from imgbuild.advisor.findings import Finding
from imgbuild.advisor.stages import StageBlock


def check(file: str, stages: tuple[StageBlock, ...]) -> list[Finding]:
    out: list[Finding] = []
    for st in stages:
        for ins in st.body:
            if ins.keyword != "RUN" or any("type=cache" in m for m in ins.flag_values("mount")):
                continue
            found = downloads(command_text(ins))
            targets = list(dict.fromkeys(t for d in found for t in d.cache_targets))
            if not targets:
                continue
            names = ", ".join(dict.fromkeys(d.ecosystem for d in found if d.cache_targets))
            mounts = " ".join(f"--mount=type=cache,target={t}" for t in targets)
            body = ins.body.replace(" --no-cache-dir", "") if "pip" in names else ins.body
            flags = " ".join((mounts, *ins.flags))
            fix = (f"mount the download cache" + (" (and drop --no-cache-dir)" if body != ins.body else "")
                   + (f"; line {ins.line} becomes:" if ins.end_line == ins.line or ins.heredocs
                      else f"; lines {ins.line}-{ins.end_line} become:"))
            out.append(Finding(
                code="IB201", file=file, line=ins.line, instruction=f"RUN {ins.args}"[:200],
                message=f"{names} downloads in this step start from nothing each time it runs",
                cost="every rerun of the step downloads all its packages again",
                fix=fix, fix_lines=(f"RUN {flags} {body}",)))
    return out
