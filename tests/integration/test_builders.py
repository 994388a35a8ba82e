"""Builders that do not see the engine's images (docker-container, remote): images that go only where asked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from imgbuild.statedir import for_workspace

from tests.integration.conftest import docker, imgbuild
from tests.integration.test_push import REGISTRY, registry_digest, report, workspace

pytestmark = pytest.mark.usefixtures("engine")


def pulled_files(ref: str, *paths: str) -> str:
    """The files, as an image the registry holds has them (pulled, run, removed again)."""
    docker("pull", "-q", ref)
    try:
        return docker("run", "--rm", ref, "cat", *paths)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)


def test_no_load_pushes_what_the_engine_never_held(tmp_path: Path, prefix: str, outside_builder: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    for _ in range(2):  # built, then cached: both push from the OCI layouts, not from the engine
        r = imgbuild("build", "//...", "--push", "--no-load", "--allow-dirty", "--progress", "plain",
                     "--json", "report.json", cwd=root)
        assert r.code == 0, r.err
        rep = report(root)
        api = rep["//api:api"]
        assert registry_digest(f"{prefix}/api", "v1") == api["image_id"]
        assert api["pushed"] == [f"{REGISTRY}/{prefix}/api@{api['image_id']}"]
        assert docker("image", "ls", "-q", "--filter", f"reference=*{prefix}*").strip() == ""
    # What the registry holds is the dependant built on its dependency.
    assert pulled_files(f"{REGISTRY}/{prefix}/api:v1", "/base.txt", "/app.txt") == "base\nv1\n"


def test_load_false_in_the_spec_keeps_one_target_out_of_the_engine(tmp_path: Path, prefix: str,
                                                                   outside_builder: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    (root / "web/BUILD.yaml").write_text("apps:\n  web: {load: false}\n")
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", cwd=root)
    assert r.code == 0, r.err
    rep = report(root)
    assert subprocess.run(["docker", "image", "inspect", rep["//web:web"]["image_id"]],
                          capture_output=True).returncode != 0
    api = rep["//api:api"]["image_id"]
    assert json.loads(docker("image", "inspect", api))[0]["Id"] == api
    assert docker("run", "--rm", api, "cat", "/base.txt", "/app.txt") == "base\nv1\n"


def test_unknown_builder_is_exit_3_naming_buildx_ls(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//...", "--builder", f"no-such-{prefix}", cwd=root)
    assert r.code == 3, r.err
    assert f"no-such-{prefix}" in r.err and "docker buildx ls" in r.err and "Traceback" not in r.err


def test_fresh_runner_push_fetches_only_what_a_build_needs(tmp_path: Path, prefix: str, outside_builder: str,
                                                           bucket: str, s3_endpoint: str, aws_env: None) -> None:
    """A single-use CI runner, S3 target cache warm, one app changed, `--push --no-load`: the changed app is
    built on its dependency's layout (downloaded), the unchanged app the registry already holds is only
    checked there (nothing downloaded), and the engine is never used."""
    root = workspace(tmp_path / "ws", prefix)
    policy = f"{{backend: s3, bucket: {bucket}, prefix: ci/, endpoint_url: '{s3_endpoint}', use_path_style: true}}"
    config = (root / "imgbuild.yaml").read_text().replace("push: true}", "push: true, cache: ci}")
    (root / "imgbuild.yaml").write_text(config + f"cache_policies:\n  ci: {policy}\n")
    args = ("build", "//...", "--push", "--no-load", "--allow-dirty", "--progress", "plain", "--json", "report.json")
    r = imgbuild(*args, cwd=root)
    assert r.code == 0, r.err
    first = report(root)

    subprocess.run(["rm", "-rf", str(for_workspace(root).cache)], check=True)
    docker("buildx", "prune", "-af")
    (root / "api/app.txt").write_text("v2\n")
    r = imgbuild(*args, cwd=root)
    assert r.code == 0, r.err
    rep = report(root)
    assert {label: t["status"] for label, t in rep.items()} == {
        "//base:base": "restored", "//api:api": "built", "//web:web": "cached"}
    web = rep["//web:web"]["image_id"]
    assert web == first["//web:web"]["image_id"] and registry_digest(f"{prefix}/web", "v1") == web
    assert not (for_workspace(root).oci_layouts / web.split(":")[1]).exists()  # never downloaded
    api = rep["//api:api"]["image_id"]
    assert registry_digest(f"{prefix}/api", "v1") == api != first["//api:api"]["image_id"]
    assert docker("image", "ls", "-q", "--filter", f"reference=*{prefix}*").strip() == ""
    assert pulled_files(f"{REGISTRY}/{prefix}/api:v1", "/base.txt", "/app.txt") == "base\nv2\n"


@pytest.fixture
def own_builder(tmp_path: Path, engine: None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A remote builder on a BuildKit daemon of the test's own, which the test may kill."""
    import os
    import shlex
    import time

    command = os.environ.get("IMGBUILD_TEST_BUILDKITD")
    if not command:
        pytest.fail("IMGBUILD_TEST_BUILDKITD is not set (scripts/dev-services env prints it)", pytrace=False)
    import shutil
    import tempfile

    # Its state outside tmp_path: a killed buildkitd leaves mounts behind, unmounted below.
    state = Path(tempfile.mkdtemp(prefix="imgbuild-test-buildkitd-"))
    sock = f"unix://{state}/buildkitd.sock"
    daemon = subprocess.Popen([*shlex.split(command), "--root", str(state / "root"), "--addr", sock],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    name = f"it-{tmp_path.name[-20:].replace('_', '-')}-{os.getpid()}"
    try:
        docker("buildx", "create", "--name", name, "--driver", "remote", sock)
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "buildx", "inspect", "--bootstrap", name],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the test's buildkitd did not start"
            time.sleep(0.5)
        yield name, daemon
    finally:
        daemon.kill()
        daemon.wait()
        subprocess.run(["docker", "buildx", "rm", "-f", name], capture_output=True)
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(state))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def test_a_builder_that_stops_mid_run_fails_its_targets_and_records_nothing(
        tmp_path: Path, prefix: str, own_builder: tuple[str, subprocess.Popen[bytes]]) -> None:
    import threading
    import time

    name, daemon = own_builder
    root = workspace(tmp_path / "ws", prefix)
    (root / "base/Dockerfile").write_text(f"FROM busybox:1.36\nRUN echo {prefix} && sleep 60 && echo base > /base.txt\n")
    log = for_workspace(root).logs / "base" / "base.log"

    def kill_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.exists() and "sleep 60" in log.read_text(errors="replace"):
                daemon.kill()
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    r = imgbuild("build", "//...", "--builder", name, "--progress", "plain", "--json", "report.json", cwd=root,
                 timeout=240)
    killer.join()
    assert r.code == 1, r.err
    assert "Traceback" not in r.err
    rep = report(root)
    assert rep["//base:base"]["status"] == "failed"
    assert "error reading from server" in rep["//base:base"]["error"]  # the builder's reason, attributed
    assert rep["//api:api"]["status"] == "skipped" and rep["//api:api"]["error"] == "dependency failed: //base:base"
    # Nothing half-recorded: the target cache holds no entry for what did not finish.
    entries = for_workspace(root).target_cache / "entries"
    assert not entries.exists() or len(list(entries.iterdir())) <= 1  # at most web's, which finished
    oci = for_workspace(root).oci_layouts
    assert not oci.exists() or not [p for p in oci.iterdir() if p.name.startswith(".out-")]
