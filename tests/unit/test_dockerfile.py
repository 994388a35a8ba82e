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


def test_comment_and_empty_lines_inside_a_continuation_do_not_end_it() -> None:
    text = "FROM busybox\nRUN echo a \\\n    # a comment\n\n    && echo b\nCOPY x /x\n"
    assert dockerfile.instructions(text) == [(1, "FROM", "busybox"), (2, "RUN", "echo a && echo b"),
                                             (6, "COPY", "x /x")]


def test_here_strings_and_shifts_are_not_heredocs() -> None:
    text = 'FROM busybox\nRUN cat <<< "str" && echo $((1<<2))\nCOPY x /x\n'
    assert [w for _, w, _ in dockerfile.instructions(text)] == ["FROM", "RUN", "COPY"]


def test_read_keeps_flags_heredoc_bodies_directives_and_line_spans() -> None:
    src = dockerfile.read(
        "# syntax=docker/dockerfile:1\n"
        "# check=skip=all\n"
        "FROM --platform=$BUILDPLATFORM node:20 AS build\n"
        "COPY --chmod=755 --link <<one <<-two /dest/\n"
        "first\n"
        "one\n"
        "\tsecond\n"
        "\ttwo\n"
        'RUN ["npm", "ci"]\n'
    )
    assert src.directives == (("syntax", "docker/dockerfile:1"), ("check", "skip=all"))
    frm, copy, run = src.instructions
    assert frm.flags == ("--platform=$BUILDPLATFORM",) and frm.body == "node:20 AS build"
    assert copy.flags == ("--chmod=755", "--link") and copy.flag("link") == "" and copy.flag("chmod") == "755"
    assert copy.heredocs == ("first", "second") and (copy.line, copy.end_line) == (4, 8)
    assert run.body == '["npm", "ci"]' and run.line == 9
