"""`imgbuild build` on the real engine: images exist and contain what their Dockerfiles put there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from imgbuild.specfiles.schemas import load_schema
from imgbuild.statedir import for_workspace
from tests.conftest import write_files
from tests.integration.conftest import docker, imgbuild, run_in_image

pytestmark = pytest.mark.usefixtures("engine", "builder")


def workspace(root: Path, prefix: str, *, broken: bool = False, slow: bool = False) -> Path:
    """A small monorepo: base <- api <- migrate, base <- worker, a standalone multi-stage web app."""
    return write_files(root, {
        "imgbuild.yaml": "version: 1\ndefaults:\n  tags: [dev]\nconcurrency: 3\n",
        "base/BUILD.yaml": f"apps:\n  base:\n    image: {prefix}-base\n    build_args: {{RELEASE: '7'}}\n",
        "base/Dockerfile": """
            FROM busybox:1.36
            ARG RELEASE
            RUN mkdir -p /etc/acme && echo "base release $RELEASE" > /etc/acme/release
        """,
        "apps/api/BUILD.yaml": f"apps:\n  api:\n    image: {prefix}-api\n    deps: {{BASE_IMAGE: //base}}\n",
        "apps/api/Dockerfile": """
            ARG BASE_IMAGE
            FROM ${BASE_IMAGE}
            COPY requirements.txt /app/requirements.txt
            RUN cat /etc/acme/release /app/requirements.txt > /app/installed.txt
            COPY src/ /app/src/
        """ + ("RUN exit 3\n" if broken else ""),
        "apps/api/requirements.txt": "flask==3.0.0\n",
        "apps/api/src/main.sh": "echo api\n",
        "apps/worker/BUILD.yaml": f"apps:\n  worker:\n    image: {prefix}-worker\n    deps: {{BASE_IMAGE: //base}}\n",
        # The named build context (base-image) resolves to the same exact build as the build arg.
        "apps/worker/Dockerfile": "FROM base-image\nRUN cp /etc/acme/release /worker.txt\n"
                                  + (f"RUN echo {prefix} && sleep 60\n" if slow else ""),
        "tools/migrate/BUILD.yaml": f"apps:\n  migrate:\n    image: {prefix}-migrate\n    deps: {{API: //apps/api}}\n",
        "tools/migrate/Dockerfile": "ARG API\nFROM ${API}\nRUN ls /app/src > /migrate.txt\n",
        "web/BUILD.yaml": f"""
            apps:
              web:
                targets:
                  test: {{stage: test, image: {prefix}-web-test}}
                  runtime: {{stage: runtime, image: {prefix}-web}}
        """,
        "web/Dockerfile": """
            FROM busybox:1.36 AS build
            RUN echo bundle > /bundle.js
            FROM build AS test
            RUN grep -q bundle /bundle.js && echo passed > /report.txt
            FROM busybox:1.36 AS runtime
            COPY --from=build /bundle.js /srv/bundle.js
            LABEL stage=runtime
        """,
    })


def test_builds_everything_in_dependency_order(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    # What each Dockerfile put there, including what came through the dependency chain.
    assert run_in_image(f"{prefix}-api:dev", "cat", "/app/installed.txt") == "base release 7\nflask==3.0.0\n"
    assert run_in_image(f"{prefix}-migrate:dev", "cat", "/migrate.txt") == "main.sh\n"
    assert run_in_image(f"{prefix}-worker:dev", "cat", "/worker.txt") == "base release 7\n"
    assert run_in_image(f"{prefix}-web-test:dev", "cat", "/report.txt") == "passed\n"
    web = json.loads(docker("image", "inspect", f"{prefix}-web:dev"))[0]
    assert web["Config"]["Labels"]["stage"] == "runtime"
    assert web["Config"]["Labels"]["dev.imgbuild.label"] == "//web:runtime"
    assert "org.opencontainers.image.created" in web["Config"]["Labels"]
    # The stage selected by --target: the runtime image has no test report.
    assert subprocess.run(["docker", "run", "--rm", f"{prefix}-web:dev", "test", "-e", "/report.txt"]).returncode == 1

    report = json.loads((root / "report.json").read_text())
    jsonschema.validate(report, load_schema("report"))
    by_label = {t["label"]: t for t in report["targets"]}
    assert set(by_label) == {"//base:base", "//apps/api:api", "//apps/worker:worker", "//tools/migrate:migrate",
                             "//web:test", "//web:runtime"}
    for entry in by_label.values():
        assert entry["status"] == "built"
        assert docker("image", "inspect", "--format", "{{.Id}}", entry["image_id"]).strip() == entry["image_id"]
        assert Path(entry["log"]).read_text().startswith(f"# {entry['label']}: docker buildx build")
    # Dependants used exactly the dependency's build: its image id is what the chain started from.
    api_log = Path(by_label["//apps/api:api"]["log"]).read_text()
    base_id = by_label["//base:base"]["image_id"].split(":")[1]
    assert f"BASE_IMAGE={prefix}-base:imgbuild-{base_id[:16]}" in api_log
    assert "//base:base" in r.err and "built" in r.err  # plain progress and the summary table


def test_failure_reports_log_tail_and_skips_dependants(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, broken=True)
    r = imgbuild("build", "//...", "--keep-going", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 1
    assert "//apps/api:api failed" in r.err and "//apps/api:api | " in r.err and "exit code: 3" in r.err
    report = {t["label"]: t for t in json.loads((root / "report.json").read_text())["targets"]}
    assert report["//apps/api:api"]["status"] == "failed"
    assert report["//tools/migrate:migrate"]["status"] == "skipped"
    assert "dependency failed: //apps/api:api" in report["//tools/migrate:migrate"]["error"]
    # --keep-going: independent targets finished, and the failed target's full log is kept.
    assert report["//apps/worker:worker"]["status"] == "built"
    assert report["//web:runtime"]["status"] == "built"
    assert "RUN exit 3" in Path(report["//apps/api:api"]["log"]).read_text()


def test_missing_dockerfile_or_stage_fails_before_any_build(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    (root / "apps/worker/Dockerfile").unlink()
    (root / "web/BUILD.yaml").write_text(f"apps:\n  web:\n    targets:\n      test: {{stage: tests, image: {prefix}-w}}\n")
    r = imgbuild("build", "//...", "--progress", "plain", cwd=root)
    assert r.code == 2
    assert "//apps/worker:worker: dockerfile apps/worker/Dockerfile cannot be used" in r.err
    assert "stage 'tests' is not in web/Dockerfile" in r.err
    assert docker("image", "ls", "-q", "--filter", f"reference={prefix}*").strip() == ""  # nothing was built


def test_no_engine_exit_3_with_advice(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//base", cwd=root, env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert r.code == 3, r.err
    assert "cannot reach a Docker engine" in r.err and "dev-services up" in r.err
    assert "Traceback" not in r.err


def test_sigterm_stops_builds_without_orphans(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, slow=True)
    proc = subprocess.Popen([sys.executable, "-m", "imgbuild", "build", "//apps/worker", "--progress", "plain",
                             "--json", "report.json"], cwd=root, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    log = for_workspace(root).logs / "apps/worker/worker.log"
    deadline = time.monotonic() + 120
    running = f"RUN echo {prefix} && sleep 60"
    while time.monotonic() < deadline and running not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    assert running in log.read_text(), "the slow step never started"
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    proc.stderr.close()
    assert code == 130, err
    report = {t["label"]: t["status"] for t in json.loads((root / "report.json").read_text())["targets"]}
    assert report == {"//base:base": "built", "//apps/worker:worker": "cancelled"}
    # No build process of ours is left behind.
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).find(str(root)) >= 0]
    assert leftovers == []


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_dry_run_prints_commands_and_builds_nothing(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//tools/migrate", "--dry-run", cwd=root)
    assert r.code == 0
    lines = [ln for ln in r.out.splitlines() if ln.startswith("docker ")]
    assert len(lines) == 3 and all(ln.startswith("docker buildx build ") for ln in lines)
    assert "--build-arg 'API=<image of //apps/api:api>'" in lines[2]
    assert docker("image", "ls", "-q", "--filter", f"reference={prefix}*").strip() == ""
