"""Two targets of one Dockerfile that share an expensive stage run that stage once (issue #13, Performance).

The shared stage appends a line to a file in a BuildKit cache mount (an id unique to the test, so no
other build touches it) each time it runs; each target's own stage then copies the number of lines into
its image. Whether the two builds run at once (BuildKit merges the identical step of both solves) or one
after the other (the second finds the step in the builder's cache), the stage must have run exactly
once: a second run would show as 2 in the image of the target whose shared step ran last.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import imgbuild, run_in_image

pytestmark = pytest.mark.usefixtures("engine", "builder")


def test_a_stage_two_targets_share_runs_once(tmp_path: Path, prefix: str) -> None:
    mount = f"--mount=type=cache,target=/count,id={prefix}-runs"
    ws = write_files(tmp_path / "ws", {
        "imgbuild.yaml": "version: 1\ndefaults:\n  tags: [dev]\nconcurrency: 2\n",
        "svc/BUILD.yaml": f"""
            apps:
              svc:
                targets:
                  api: {{image: {prefix}-api}}
                  worker: {{image: {prefix}-worker}}
        """,
        # The sleep keeps the shared step running while the other target's build reaches it.
        "svc/Dockerfile": f"""
            FROM busybox:1.36 AS deps
            RUN {mount} echo {prefix} >> /count/runs && sleep 3 && echo installed > /deps.txt
            FROM deps AS api
            RUN {mount} wc -l < /count/runs > /runs.txt && echo api > /role.txt
            FROM deps AS worker
            RUN {mount} wc -l < /count/runs > /runs.txt && echo worker > /role.txt
        """,
    })
    r = imgbuild("build", "//svc:all", "--progress", "plain", "--json", "report.json", cwd=ws)
    assert r.code == 0, r.err
    report = json.loads((ws / "report.json").read_text())
    assert sorted((t["label"], t["status"]) for t in report["targets"]) == [
        ("//svc:api", "built"), ("//svc:worker", "built")]
    for role in ("api", "worker"):
        assert run_in_image(f"{prefix}-{role}:dev", "cat", "/role.txt", "/deps.txt", "/runs.txt").split() == [
            role, "installed", "1"], f"the shared stage ran more than once (seen from {role})"
