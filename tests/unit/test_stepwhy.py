"""Why the first step ran: recorded BuildKit logs of each driver, tests/data/buildkit-logs/Dockerfile.multi, and
the target's input manifests before and after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from imgbuild.builds.steps import parse, read
from imgbuild.specfiles.schemas import schema_dir
from imgbuild.stepwhy import StepReport, explain_build, image_flags

DATA = Path(__file__).resolve().parents[1] / "data" / "buildkit-logs"
MULTI = DATA / "Dockerfile.multi"
DRIVERS = ("docker", "docker-container", "remote")
BUSYBOX = "docker.io/library/busybox:1.36"


def manifest(*, files: dict[str, str] | None = None, args: dict[str, str] | None = None,
             deps: dict[str, str] | None = None, dockerfile: str = "sha256:df") -> dict[str, Any]:
    return {"dockerfile": {"path": "Dockerfile", "digest": dockerfile},
            "build_args": args or {"TOOL_VERSION": "1", "BUILD_REV": "1"},
            "files": {p: ["0644", d] for p, d in (files or {"requirements.txt": "r1", "src/main.sh": "m1",
                                                            "README.md": "x1"}).items()},
            "deps": deps or {}, "bases": [BUSYBOX], "ignore_rules": ""}


def explain(driver: str, log: str, new: dict[str, Any], old: dict[str, Any] | None, *,
            dockerfile: Path = MULTI, previous_bases: tuple[str, ...] = ()) -> StepReport:
    found = read(DATA / driver / log)
    assert found is not None
    return explain_build(found, dockerfile=dockerfile, new=new, old=old, previous_bases=previous_bases)


def test_a_changed_source_file_is_named_for_its_copy() -> None:
    old = manifest()
    new = manifest(files={"requirements.txt": "r1", "src/main.sh": "m2", "README.md": "x2"})
    report = explain("docker", "2-src.log", new, old)
    assert (report.cached, report.total, report.first_ran) == (6, 8, "[stage-2 4/5]")
    assert report.cause == "files" and report.files == ("src/main.sh",)  # README.md is not copied there
    assert report.short() == ("6/8 steps cached; ran from [stage-2 4/5] COPY src/ /app/src/ (line 15): "
                              "src/main.sh changed")
    # Dockerfile order, with the line of each step
    assert [(s.name, s.line) for s in report.steps] == [
        ("[deps 2/4]", 3), ("[deps 3/4]", 4), ("[deps 4/4]", 5), ("[tools 2/2]", 9), ("[stage-2 2/5]", 13),
        ("[stage-2 3/5]", 14), ("[stage-2 4/5]", 15), ("[stage-2 5/5]", 16)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_changed_build_arg_is_named_for_the_run_after_it(driver: str) -> None:
    old = manifest()
    new = manifest(args={"TOOL_VERSION": "1", "BUILD_REV": "2"},
                   files={"requirements.txt": "r1", "src/main.sh": "m1", "README.md": "x2"})
    report = explain(driver, "3-arg.log", new, old)
    assert report.first_ran == "[stage-2 5/5]" and report.first() is not None and report.first().line == 16  # type: ignore[union-attr]
    assert report.cause == "build_arg" and report.args == ("BUILD_REV",)
    assert report.reason == "build argument BUILD_REV changed ('1' -> '2')"
    assert report.short().startswith("7/8 steps cached; ran from [stage-2 5/5] RUN echo \"rev 2\"")


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_first_step_in_dockerfile_order_counts_not_the_first_printed(driver: str) -> None:
    """tools' RUN (TOOL_VERSION changed) may print before deps' COPY; deps comes first in the Dockerfile."""
    old = manifest()
    new = manifest(args={"TOOL_VERSION": "2", "BUILD_REV": "1"},
                   files={"requirements.txt": "r2", "src/main.sh": "m1", "README.md": "x1"})
    report = explain(driver, "4-interleaved.log", new, old)
    assert report.first_ran == "[deps 3/4]" and report.cause == "files" and report.files == ("requirements.txt",)


def test_a_failed_cache_import_or_a_first_build_is_no_layer_cache() -> None:
    same = manifest()
    report = explain("docker-container", "6-import-failed.log", same, same)
    assert report.cause == "no_layer_cache"
    assert report.reason.startswith("no layer cache available: the cache import failed (importing cache manifest "
                                    "from localhost:5000/stepwhy/nothing:cache")
    first = explain("remote", "1-first.log", same, None)
    assert first.cause == "no_layer_cache" and first.cached == 0
    assert first.reason == "no layer cache available: first build of this target on record"
    # Unchanged inputs, nothing cached and nothing failed: the builder had nothing.
    pruned = explain("remote", "1-first.log", same, same)
    assert pruned.cause == "no_layer_cache" and "never built it or its cache was pruned" in pruned.reason
    header = "# //a:a: docker buildx build --progress plain -f Dockerfile .\n"
    bare = explain_build(parse(header + (DATA / "remote" / "1-first.log").read_text()), dockerfile=MULTI, new=same,
                         old=same)
    assert bare.reason == ("no layer cache available: its inputs did not change, this builder had none and there "
                           "was none to import (no cache policy, or its scope is empty)")


def test_no_cache_and_a_changed_dockerfile() -> None:
    log = parse("# //a:a: docker buildx build --progress plain --no-cache .\n#0 building with x\n"
                "#6 [2/3] COPY a.txt /a.txt\n#6 DONE 0.1s\n")
    report = explain_build(log, dockerfile=DATA / "Dockerfile.single", new=manifest(), old=manifest())
    assert report.reason == "no layer cache available: built with --no-cache"
    ran = read(DATA / "docker" / "7-single.log")
    assert ran is not None
    report = explain_build(ran, dockerfile=DATA / "Dockerfile.single", new=manifest(dockerfile="sha256:new"),
                           old=manifest())
    assert report.cause == "dockerfile" and report.first_ran == "[2/3]"


def test_a_moved_base_image_is_named() -> None:
    moved = (f"{BUSYBOX}@sha256:{'0' * 64}",)
    report = explain("docker", "7-single.log", manifest(), manifest(), dockerfile=DATA / "Dockerfile.single",
                     previous_bases=moved)
    assert report.cause == "base"
    assert report.reason == f"base image {BUSYBOX} moved (sha256:000000000000 -> sha256:17e123df7fcc)"


def test_a_changed_dependency_base_or_copy_source_is_named(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text("ARG BASE\nFROM ${BASE}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n")
    report = explain("docker", "7-single.log", manifest(deps={"BASE": "sha256:2"}), manifest(deps={"BASE": "sha256:1"}),
                     dockerfile=df)
    assert report.cause == "base" and report.reason == "its base image (dependency BASE) changed"
    df.write_text("ARG TOOLS\nFROM busybox AS build\nRUN true\nFROM busybox\nCOPY --from=${TOOLS} /t /t\n"
                  "COPY --from=build /x /x\n")
    log = parse("#4 [build 2/2] RUN true\n#4 CACHED\n#5 [stage-1 2/3] COPY --from=tools:imgbuild-1a2b /t /t\n"
                "#5 DONE 0.1s\n"
                "#6 [stage-1 3/3] COPY --from=build /x /x\n#6 DONE 0.1s\n")
    report = explain_build(log, dockerfile=df, new=manifest(deps={"TOOLS": "sha256:2"}),
                           old=manifest(deps={"TOOLS": "sha256:1"}))
    assert (report.first_ran, report.cause, report.reason) == ("[stage-1 2/3]", "dependency",
                                                               "dependency TOOLS changed")


def test_copy_sources_match_files_directories_and_patterns(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text('FROM busybox\nCOPY ["package.json", "*.lock", "/app/"]\nCOPY ./lib /app/lib\nCOPY . /app\n')
    old = manifest(files={"package.json": "1", "yarn.lock": "1", "lib/a/b.js": "1", "docs/x.md": "1"})

    def first(files: dict[str, str], ran: str) -> StepReport:
        steps = {"[2/4]": "CACHED", "[3/4]": "CACHED", "[4/4]": "CACHED"}
        steps[ran] = "DONE 0.1s"
        texts = {"[2/4]": 'COPY ["package.json", "*.lock", "/app/"]', "[3/4]": "COPY ./lib /app/lib",
                 "[4/4]": "COPY . /app"}
        text = "".join(f"#{i} {n} {texts[n]}\n#{i} {s}\n" for i, (n, s) in enumerate(steps.items(), 5))
        return explain_build(parse(text), dockerfile=df, new=manifest(files=files), old=old)

    assert first({**dict.fromkeys(old["files"], "1"), "yarn.lock": "2"}, "[2/4]").files == ("yarn.lock",)
    assert first({**dict.fromkeys(old["files"], "1"), "lib/a/c.js": "1"}, "[3/4]").files == ("lib/a/c.js",)
    assert first({"package.json": "1", "yarn.lock": "1", "lib/a/b.js": "1"}, "[4/4]").reason == "docs/x.md changed"


def test_every_step_cached_has_no_first_step() -> None:
    report = explain("remote", "2-src.log", manifest(), manifest())
    assert (report.first_ran, report.cause, report.short()) == (None, "none", "8/8 steps cached")
    # A build argument only ENV uses: every step cached, and the summary still names it.
    report = explain("remote", "2-src.log", manifest(args={"TOOL_VERSION": "1", "BUILD_REV": "1", "PORT": "9090"}),
                     manifest(args={"TOOL_VERSION": "1", "BUILD_REV": "1", "PORT": "8080"}))
    assert (report.cause, report.args) == ("none", ("PORT",))
    assert report.short() == ("8/8 steps cached (build argument PORT ('8080' -> '9090') changed only the image's "
                              "configuration)")


def test_the_report_round_trips_and_fits_the_schemas() -> None:
    report = explain("docker", "2-src.log", manifest(files={"src/main.sh": "m2"}), manifest())
    doc = report.to_dict()
    assert StepReport.from_dict(json.loads(json.dumps(doc))) == report
    for name in ("report.schema.json", "history-record.schema.json"):
        schema = json.loads((schema_dir() / name).read_text())
        validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/step_report"})
        assert [e.message for e in validator.iter_errors(doc)] == []
        assert list(validator.iter_errors({**doc, "cause": "magic"}))


def test_inspect_flags_pair_the_final_stage_with_the_image_history() -> None:
    report = explain("docker", "2-src.log", manifest(files={"src/main.sh": "m2"}), manifest())
    history = ["(Imported from -)", "ARG BUILD_REV=1", "COPY /app/deps.txt /app/deps.txt # buildkit",
               "COPY /tool /tool # buildkit", "COPY src/ /app/src/ # buildkit",
               "RUN |1 BUILD_REV=1 /bin/sh -c echo \"rev ${BUILD_REV}\" > /app/rev", "ENV PORT=8080", "CMD [\"sh\"]"]
    assert image_flags(report, history) == [None, None, "cached", "cached", "ran", "ran", None, None]
    assert image_flags(report, ["(Imported from -)"]) == [None]  # an image that does not match: no flags


def test_a_base_from_a_named_context_shifts_the_numbering() -> None:
    """On builders outside the engine a dependency is an OCI-layout named context: no FROM vertex, and
    BuildKit numbers the stage's steps from 1 (examples/monorepo's api after its base changed)."""
    old = manifest(args={"PORT": "8080"}, deps={"BASE_IMAGE": "sha256:1"})
    new = manifest(args={"PORT": "8080"}, deps={"BASE_IMAGE": "sha256:2"})
    report = explain("docker-container", "8-named-context-base.log", new, old, dockerfile=DATA / "Dockerfile.api")
    assert [(s.name, s.line, s.status) for s in report.steps] == [
        ("[1/4]", 4, "ran"), ("[2/4]", 5, "ran"), ("[3/4]", 10, "ran")]
    assert (report.first_ran, report.cause) == ("[1/4]", "base")
    assert report.reason == "its base image (dependency BASE_IMAGE) changed"


def test_a_changed_secret_names_its_id_for_the_stage_that_bypassed_the_cache() -> None:
    header = ("# //a:a: docker buildx build --progress plain --secret id=npm_token,env=NPM_TOKEN "
              "--no-cache-filter deps -f Dockerfile .\n# input digest sha256:1\n"
              "# secret(s) npm_token changed since the target's previous cache entry: the steps of stage(s) deps "
              "run without BuildKit's cache\n")
    log = parse(header + (DATA / "docker" / "4-interleaved.log").read_text())
    assert (log.secrets_changed, log.no_cache_stages, log.no_cache) == (("npm_token",), ("deps",), False)
    report = explain_build(log, dockerfile=MULTI, new=manifest(), old=manifest())
    assert (report.first_ran, report.cause) == ("[deps 3/4]", "secret")
    assert report.reason == "secret npm_token changed: the steps that mount it ran without BuildKit's cache"
