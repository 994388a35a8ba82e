"""`imgbuild check` learns which build args change between builds from the history that real builds wrote,
in SQLite (read by default) and in S3 (read with --history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import imgbuild

pytestmark = pytest.mark.usefixtures("engine")

# RELEASE's name says nothing; only the history tells that it changes with every build.
DOCKERFILE = "FROM busybox:1.36\nARG RELEASE\nRUN echo slow > /slow\nRUN echo $RELEASE > /release\n"


def test_sqlite_history_names_the_arg_that_changed(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": "version: 1\ndefaults: {tags: [dev]}\n",
        "svc/BUILD.yaml": f"apps:\n  svc:\n    image: {prefix}-svc\n    build_args: {{RELEASE: '0'}}\n",
        "svc/Dockerfile": DOCKERFILE,
    })
    assert imgbuild("check", cwd=root).code == 0  # no history yet: RELEASE's name says nothing
    for release in ("1", "2"):
        (root / "svc" / "BUILD.yaml").write_text(
            f"apps:\n  svc:\n    image: {prefix}-svc\n    build_args: {{RELEASE: '{release}'}}\n")
        r = imgbuild("build", "//...", "--progress", "plain", cwd=root)
        assert r.code == 0, r.err
    r = imgbuild("check", cwd=root)
    assert r.code == 1
    assert ("svc/Dockerfile:2: warning IB102 //svc:svc: ARG RELEASE is declared at line 2 (its value differs "
            "between the target's last two builds); 1 RUN step(s) after it do not use it (line 3)") in r.out
    assert imgbuild("check", "--no-history", cwd=root).code == 0


def test_s3_history_is_read_with_history_flag(tmp_path: Path, prefix: str, bucket: str, s3_endpoint: str,
                                              aws_env: None) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{tags: [dev]}}
            history: {{backend: s3, bucket: {bucket}, prefix: audit/, endpoint_url: '{s3_endpoint}'}}
        """,
        "svc/Dockerfile": DOCKERFILE,
    })
    for release in ("1", "2"):
        (root / "svc" / "BUILD.yaml").write_text(
            f"apps:\n  svc:\n    image: {prefix}-svc\n    build_args: {{RELEASE: '{release}'}}\n")
        r = imgbuild("build", "//...", "--progress", "plain", cwd=root)
        assert r.code == 0, r.err
    assert imgbuild("check", cwd=root).code == 0  # S3 is not read unless asked
    r = imgbuild("check", "--history", "--json", cwd=root)
    assert r.code == 1 and '"code": "IB102"' in r.out and "its value differs" in r.out
