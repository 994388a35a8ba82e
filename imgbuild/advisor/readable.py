"""IB001: what keeps BuildKit from reading a Dockerfile at all, found without raising."""

from __future__ import annotations

from imgbuild.advisor.findings import Finding
from imgbuild.dockerfile import Source

KEYWORDS = frozenset({"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                      "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"})


def read_text(data: bytes, file: str) -> tuple[str | None, Finding | None]:
    """The Dockerfile's text, or the finding that says at which line it is not UTF-8."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, unreadable(file, line, "", f"byte {exc.start} is not UTF-8 text",
                                "save the file as UTF-8")


def unreadable(file: str, line: int, instruction: str, message: str, fix: str) -> Finding:
    return Finding(code="IB001", file=file, line=line, instruction=instruction, message=message,
                   cost="the target cannot be built", fix=fix)


def problems(source: Source, file: str, stage: str | None) -> list[Finding]:
    """The first of: an unknown instruction, an instruction before the first FROM, FROM without an image;
    else a missing FROM or stage. Empty when BuildKit can read the file."""
    out: list[Finding] = []
    seen_from = False
    stages: list[str] = []
    for ins in source.instructions:
        text = f"{ins.keyword} {ins.args}".strip()
        if ins.keyword not in KEYWORDS:
            out.append(unreadable(file, ins.line, text[:120], f"unknown instruction {ins.keyword!r}",
                                  "fix the spelling, or end the previous line with the escape character "
                                  f"({source.escape}) if this line continues it"))
        elif ins.keyword == "FROM":
            seen_from = True
            words = ins.body.split()
            if not words:
                out.append(unreadable(file, ins.line, text, "FROM without an image", "name the base image"))
            elif len(words) >= 3 and words[1].lower() == "as":
                stages.append(words[2].lower())
        elif not seen_from and ins.keyword != "ARG":
            out.append(unreadable(file, ins.line, text[:120], f"{ins.keyword} before the first FROM",
                                  "only ARG may come before the first FROM"))
    if not seen_from and not out:
        out.append(unreadable(file, 1, "", "no FROM instruction", "start the build stage with FROM IMAGE"))
    if seen_from and stage is not None and stage.lower() not in stages and not out:
        out.append(unreadable(file, 1, "", f"stage {stage!r} is not in the file",
                              f"name a stage of the file ({', '.join(stages) or 'none is named'}) as `stage:`"))
    return out[:1]  # BuildKit stops at the first: so does the report, and the file is one finding
