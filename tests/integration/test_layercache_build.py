"""`imgbuild build` with an S3 layer-cache policy on a wiped host: dependency layers come from S3."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from imgbuild.statedir import for_workspace

from tests.conftest import write_files
from tests.integration.conftest import docker, imgbuild, run_in_image

# On the `docker` driver the layers go through imgbuild's own S3 sync; on the others, BuildKit's own S3 cache.
pytestmark = pytest.mark.usefixtures("engine", "builder")


def test_app_change_on_fresh_runner_reuses_dependency_layers(tmp_path: Path, prefix: str, bucket: str,
                                                             s3_endpoint: str, aws_env: None) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{cache: ci, tags: [dev]}}
            cache_policies:
              ci: {{backend: s3, bucket: {bucket}, prefix: mono/, endpoint_url: '{s3_endpoint}',
                    use_path_style: true, mode: max, scope: main}}
        """,
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n",
        "app/Dockerfile": f"""
            FROM busybox:1.36
            WORKDIR /app
            COPY deps.txt .
            RUN sleep 3 && echo "installed $(cat deps.txt) {prefix} $RANDOM$RANDOM" > /app/vendor.txt
            COPY . .
            RUN cat main.txt > /app/built.txt
        """,
        "app/deps.txt": "left-pad==1.3.0\n",
        "app/main.txt": "v1\n",
    })
    r = imgbuild("build", "//...", "--progress", "plain", cwd=root)
    assert r.code == 0, r.err
    installed = run_in_image(f"{prefix}-app:dev", "cat", "/app/vendor.txt")  # holds the time it ran

    # A fresh single-use runner: no images, no BuildKit cache, no local caches.
    docker("image", "rm", "-f", f"{prefix}-app:dev")
    docker("buildx", "prune", "-af")
    subprocess.run(["rm", "-rf", str(for_workspace(root).cache)], check=True)
    (root / "app/main.txt").write_text("v2\n")  # application code changed, dependencies did not

    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    report = json.loads((root / "report.json").read_text())["targets"][0]
    assert report["status"] == "built"  # its inputs changed: the target cache cannot help
    log = Path(report["log"]).read_text()
    steps = dict(re.findall(r"^(#\d+) \[\d+/\d+\] (.*)$", log, re.MULTILINE))
    by_text = {text: num for num, text in steps.items()}
    dep_step = next(n for t, n in by_text.items() if t.startswith("RUN sleep 3"))
    app_step = next(n for t, n in by_text.items() if t.startswith("RUN cat main.txt"))
    # Not run again: its layer came from the S3 cache. (BuildKit prints that step `CACHED` when its result
    # is in the builder, and as a download of the cached layer when the builder imports it from S3.)
    assert run_in_image(f"{prefix}-app:dev", "cat", "/app/vendor.txt") == installed
    assert re.search(rf"^{dep_step} (CACHED$|sha256:)", log, re.MULTILINE), log
    assert re.search(rf"^{app_step} DONE", log, re.MULTILINE), log
    assert run_in_image(f"{prefix}-app:dev", "cat", "/app/built.txt") == "v2\n"
    assert "--cache-from" in log.splitlines()[0] and "--cache-to" in log.splitlines()[0]
