"""The one exception root of imgbuild, and the exit codes the CLI maps errors to.

Exit codes (documented in README.md and ``imgbuild --help``):

* 0   success
* 1   a build ran and at least one target failed (or was skipped because a dependency failed)
* 2   bad input: a spec error, an unknown label or pattern, a usage error
* 3   the container engine (Docker with BuildKit/buildx) is not reachable
* 130 interrupted (SIGINT/SIGTERM)
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_ENGINE = 3
EXIT_INTERRUPTED = 130


class ImgbuildError(Exception):
    """Root of every error a user can act on. Anything else reaching the CLI is a bug."""

    exit_code = EXIT_USAGE

    def render(self) -> str:
        return f"error: {self}"


@dataclass(frozen=True, kw_only=True)
class Location:
    """A place in a spec file: path as shown to the user, 1-based line and column."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


class SpecError(ImgbuildError):
    """A problem in imgbuild.yaml or a BUILD.yaml, with where it is and what to do."""

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        key_path: tuple[str | int, ...] = (),
        hint: str | None = None,
        snippet: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.key_path = key_path
        self.hint = hint
        self.snippet = snippet

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        path = f"{format_key_path(self.key_path)}: " if self.key_path else ""
        out = [f"error: {where}{path}{self.message}"]
        if self.snippet:
            out.append(self.snippet)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class SpecErrors(ImgbuildError):
    """Several spec problems found in one pass, reported together."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the build specs")
        self.errors = errors

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


class LabelError(ImgbuildError):
    """A label or pattern that does not parse or matches nothing."""


class EngineUnavailable(ImgbuildError):
    exit_code = EXIT_ENGINE


class BuildFailed(ImgbuildError):
    exit_code = EXIT_BUILD_FAILED


class Interrupted(ImgbuildError):
    exit_code = EXIT_INTERRUPTED


def format_key_path(path: tuple[str | int, ...]) -> str:
    return " -> ".join(str(p) for p in path)
