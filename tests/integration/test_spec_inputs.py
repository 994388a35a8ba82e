"""What users write reaches the image as written, and hostile specs and contexts fail cleanly (issue #14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import imgbuild, run_in_image
from tests.unit.test_yaml_values import bomb


@pytest.mark.usefixtures("engine")
def test_an_unquoted_version_build_arg_reaches_the_image_as_written(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path, {
        "imgbuild.yaml": "version: 1\n",
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n    tags: [dev]\n"
                          "    build_args: {PYTHON_VERSION: 3.10, MODE: 0755, DEBUG: yes}\n",
        "app/Dockerfile": "FROM busybox:1.36\nARG PYTHON_VERSION MODE DEBUG\n"
                          "RUN echo $PYTHON_VERSION $MODE $DEBUG > /v\n",
    })
    run = imgbuild("build", "//...", cwd=root)
    assert run.code == 0, run.err
    assert run_in_image(f"{prefix}-app:dev", "cat", "/v") == "3.10 0755 yes\n"


@pytest.mark.usefixtures("engine")
def test_a_context_file_named_in_bytes_builds_and_explains(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path, {
        "imgbuild.yaml": "version: 1\n",
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n    tags: [dev]\n",
        "app/Dockerfile": "FROM busybox:1.36\nCOPY . /ctx\n",
    })
    bad = os.path.join(os.fsencode(root / "app"), b"bad\xffname")
    with open(bad, "wb") as f:
        f.write(b"one\n")
    run = imgbuild("build", "//...", cwd=root)
    assert run.code == 0 and "Traceback" not in run.err, run.err
    # (a glob: the engine's API takes a command as UTF-8 text, and the name is not)
    assert run_in_image(f"{prefix}-app:dev", "sh", "-c", "cat /ctx/bad*name") == "one\n"
    for _ in range(2):  # cached, then answered by the no-op journal, which lists the context too
        again = imgbuild("build", "//...", cwd=root)
        assert again.code == 0 and "//app:app  cached" in again.err, again.err
    with open(bad, "wb") as f:
        f.write(b"two\n")
    run = imgbuild("plan", "--explain", "//...", cwd=root)
    assert run.code == 0, run.err
    assert "    file changed (content): bad\\xffname\n" in run.out


def test_validate_refuses_an_alias_bomb_at_once_in_little_memory(tmp_path: Path) -> None:
    root = write_files(tmp_path, {"imgbuild.yaml": bomb(9)})
    # A parent of its own runs the CLI, so its children's peak memory is the CLI's alone.
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run([sys.executable, '-m', 'imgbuild', 'validate'], capture_output=True, text=True)\n"
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.stderr.write(p.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60,
                          env=os.environ)
    code, max_rss_kib = map(int, proc.stdout.split())
    assert code == 2
    assert proc.stderr.startswith("error: imgbuild.yaml:7:5: x5 -> 0: aliases expand to more than 100,000 values")
    assert max_rss_kib < 100 * 1024
