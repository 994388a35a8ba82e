from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild import dockerfile


def test_stages_bases_and_global_args(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE_IMAGE=busybox:1.36\n"
        "ARG OTHER\n"
        "FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS Build\n"
        "RUN echo a \\\n"
        "  && echo b\n"
        "RUN <<EOF\n"
        "FROM not-a-stage\n"
        "EOF\n"
        "FROM build as test\n"
        "FROM busybox:1.36\n"
        "FROM scratch AS final\n"
    )
    df = dockerfile.parse(p)
    assert [s.name for s in df.stages] == ["build", "test", None, "final"]
    assert df.global_args == ("BASE_IMAGE", "OTHER")
    assert df.stage("BUILD") is not None and df.stage("BUILD").line == 4  # type: ignore[union-attr]
    assert df.external_bases() == ("busybox:1.36",)


def test_escape_directive(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text("# escape=`\nFROM busybox:1.36 `\n  AS one\n")
    assert dockerfile.parse(p).stage_names() == ("one",)


def test_no_from_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text("RUN echo\n")
    with pytest.raises(dockerfile.DockerfileError, match="no FROM"):
        dockerfile.parse(p)
