"""Reading BuildKit's plain progress per step, on logs recorded from each buildx driver (tests/data/buildkit-logs).

The logs were captured with ``docker buildx build --progress plain`` of tests/data/buildkit-logs/Dockerfile.multi
(and Dockerfile.single) on the ``docker``, ``docker-container`` and ``remote`` drivers: a first build, a
changed source file (docker only; the others found it unchanged), a changed build argument, a change to the
dependency manifest and a build argument of another stage at once (vertices interleave), a failing ``RUN``,
a failed layer-cache import, and a one-stage file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild.builds.steps import parse, read

DATA = Path(__file__).resolve().parents[1] / "data" / "buildkit-logs"
DRIVERS = ("docker", "docker-container", "remote")
BASE = "docker.io/library/busybox:1.36@sha256:17e123df7fcc04d8a9843d196ac2b3b2522ff9b1aab5f2c2528929177a0caf8e"


def statuses(driver: str, name: str) -> dict[str, str]:
    log = read(DATA / driver / name)
    assert log is not None
    return {s.name: s.status for s in log.steps}


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_changed_build_arg_reruns_only_the_run_that_has_it_in_scope(driver: str) -> None:
    found = statuses(driver, "3-arg.log")
    assert found.pop("[stage-2 5/5]") == "ran"
    assert set(found) == {"[deps 2/4]", "[deps 3/4]", "[deps 4/4]", "[tools 2/2]", "[stage-2 2/5]",
                          "[stage-2 3/5]", "[stage-2 4/5]"}
    assert set(found.values()) == {"cached"}
    log = read(DATA / driver / "3-arg.log")
    assert log is not None and log.bases == (BASE,) and log.cache_import_errors == ()
    step = next(s for s in log.steps if s.name == "[stage-2 5/5]")
    # BuildKit substitutes the build argument in what it prints (the Dockerfile says ${BUILD_REV}).
    assert (step.stage, step.index, step.total) == ("stage-2", 5, 5)
    assert step.text == 'RUN echo "rev 2" > /app/rev  && cat /app/src/main.sh > /dev/null'


def test_a_changed_source_file_reruns_its_copy_and_what_follows() -> None:
    found = statuses("docker", "2-src.log")
    assert [n for n, s in found.items() if s == "ran"] == ["[stage-2 4/5]", "[stage-2 5/5]"]
    assert all(s == "cached" for n, s in found.items() if n not in ("[stage-2 4/5]", "[stage-2 5/5]"))


@pytest.mark.parametrize("driver", DRIVERS)
def test_interleaved_vertices_take_their_last_state(driver: str) -> None:
    """``#6 ...`` leaves a vertex for another; its ``DONE`` comes after other vertices' lines."""
    text = (DATA / driver / "4-interleaved.log").read_text()
    if driver == "docker-container":
        assert "#6 ...\n" in text  # this capture did interleave
    found = statuses(driver, "4-interleaved.log")
    assert found == {"[deps 2/4]": "cached", "[deps 3/4]": "ran", "[deps 4/4]": "ran", "[tools 2/2]": "ran",
                     "[stage-2 2/5]": "ran", "[stage-2 3/5]": "ran", "[stage-2 4/5]": "ran", "[stage-2 5/5]": "ran"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failed_step_is_failed_and_its_error_is_not_a_step(driver: str) -> None:
    found = statuses(driver, "5-failed.log")
    assert found.pop("[stage-2 5/5]") == "failed"
    assert set(found.values()) == {"cached"} and len(found) == 7


@pytest.mark.parametrize("driver", ("docker", "docker-container"))
def test_a_failed_cache_import_is_noted_not_counted(driver: str) -> None:
    log = read(DATA / driver / "6-import-failed.log")
    assert log is not None
    assert len(log.cache_import_errors) == 1
    assert log.cache_import_errors[0].startswith("importing cache manifest from localhost:5000/stepwhy/nothing:cache:")
    assert log.cache_import_errors[0].endswith("not found")
    assert all(s.stage in ("deps", "tools", "stage-2") for s in log.steps)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_one_stage_file_has_no_stage_names(driver: str) -> None:
    """On the remote driver the FROM vertex carries a stage name of an earlier build: FROM is never a step."""
    log = read(DATA / driver / "7-single.log")
    assert log is not None
    assert [(s.stage, s.name, s.text, s.status) for s in log.steps] == [
        (None, "[2/3]", "COPY a.txt /a.txt", "ran"), (None, "[3/3]", "RUN cat /a.txt > /b.txt", "ran")]
    assert log.bases == (BASE,)


def test_only_the_last_build_of_a_retried_log_counts_and_no_cache_comes_from_the_header() -> None:
    text = ("# //apps/api:api: docker buildx build --progress plain --no-cache -f Dockerfile .\n"
            "#0 building with \"default\" instance using docker driver\n"
            "#5 [2/3] COPY a /a\n#5 ERROR: image already exists\n"
            "# the engine was naming the same image concurrently; trying once more\n"
            "#0 building with \"default\" instance using docker driver\n"
            "#5 [2/3] COPY a /a\n#5 CACHED\n#6 [3/3] RUN make\n#6 0.2 output line\n")
    log = parse(text)
    assert [(s.name, s.status) for s in log.steps] == [("[2/3]", "cached"), ("[3/3]", "unfinished")]
    assert log.no_cache


def test_per_platform_steps_are_one_step_and_the_worse_state_wins() -> None:
    text = ("#7 [linux/amd64 build 2/3] RUN make\n#8 [linux/arm64 build 2/3] RUN make\n"
            "#7 CACHED\n#8 DONE 3.0s\n#9 [linux/amd64 build 3/3] COPY x /x\n#9 CANCELED\n")
    log = parse(text)
    assert [(s.name, s.status) for s in log.steps] == [("[build 2/3]", "ran"), ("[build 3/3]", "cancelled")]


def test_garbage_is_no_step() -> None:
    assert parse("").steps == ()
    assert parse("#x [1/2] RUN\n#3 [internal] load build context\n#4 exporting to image\n#4 DONE 0.1s\n"
                 "random text\n#3 DONE\n").steps == ()
    assert read(DATA / "nonexistent.log") is None


def test_a_step_imported_from_a_remote_layer_cache_counts_as_cached() -> None:
    """On a pruned docker-container or remote builder, BuildKit's S3 cache hands back the install step's layer:
    the log shows its download and DONE, not CACHED (seen on the remote builder, BuildKit 0.17). A step
    that really runs prints time-stamped output instead."""
    hexes = [c * 64 for c in "abcd"]
    log = parse("\n".join([
        "#0 building with \"imgbuild-remote\" instance using remote driver",
        "#7 [2/5] WORKDIR /app", "#7 CACHED",
        "#9 [3/5] RUN sleep 3 && echo installed > /app/vendor.txt",
        f"#9 sha256:{hexes[0]} 167B / 167B 0.0s done",
        f"#9 sha256:{hexes[1]} 1.07MB / 1.07MB 0.0s done",
        f"#9 extracting sha256:{hexes[1]} 0.1s done",
        "#9 DONE 0.1s",
        "#10 [4/5] RUN cat main.txt && cp main.txt /app/",
        "#10 0.112 v2",
        "#10 DONE 0.2s",
        "#11 [5/5] COPY . .", "#11 DONE 0.0s",
    ]))
    assert {s.text.split()[0] + str(s.index): s.status for s in log.steps} == {
        "WORKDIR2": "cached", "RUN3": "cached", "RUN4": "ran", "COPY5": "ran"}
