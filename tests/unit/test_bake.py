"""The bake definition of a batch says what each build request says; bake's output splits per target."""

from __future__ import annotations

from imgbuild.builds.bake import LogSplitter, _Member, bake_definition
from imgbuild.builds.request import BuildRequest


def _request(label: str, **kw: object) -> BuildRequest:
    base: dict[str, object] = dict(label=label, context="/ws/a", dockerfile="/ws/a/Dockerfile", target=None,
                                   build_args=(), build_contexts=(), platforms=(), secrets=(), labels=(), tags=())
    base.update(kw)
    return BuildRequest(**base)  # type: ignore[arg-type]


def test_every_field_of_the_request_reaches_the_bake_target() -> None:
    r = _request("//a:a", target="prod", build_args=(("BASE", "img:imgbuild-1"), ("X", "1")),
                 build_contexts=(("base", "docker-image://img:imgbuild-1"),), platforms=("linux/amd64",),
                 secrets=("id=tok,env=TOKEN",), labels=(("k", "v"),), tags=("a:dev", "a:imgbuild-run-1"),
                 cache_from=("type=local,src=/c",), cache_to=("type=local,dest=/c,mode=max",),
                 no_cache_filter=("deps",))
    assert bake_definition([("t0", r)]) == {"target": {"t0": {
        "context": "/ws/a", "dockerfile": "/ws/a/Dockerfile", "target": "prod",
        "args": {"BASE": "img:imgbuild-1", "X": "1"}, "contexts": {"base": "docker-image://img:imgbuild-1"},
        "platforms": ["linux/amd64"], "secret": ["id=tok,env=TOKEN"], "labels": {"k": "v"},
        "tags": ["a:dev", "a:imgbuild-run-1"], "cache-from": ["type=local,src=/c"],
        "cache-to": ["type=local,dest=/c,mode=max"], "no-cache-filter": ["deps"], "output": ["type=docker"]}}}


def test_no_cache_wins_and_no_load_means_no_docker_output() -> None:
    r = _request("//a:a", no_cache=True, no_cache_filter=("deps",), load=False, outputs=("type=oci,dest=/o",))
    t = bake_definition([("t0", r)])["target"]["t0"]
    assert t["no-cache"] is True and "no-cache-filter" not in t
    assert t["output"] == ["type=oci,dest=/o"]


def test_template_characters_are_escaped_so_values_reach_buildkit_as_written() -> None:
    r = _request("//a:a", build_args=(("V", "${HOME} %{if x}y%{endif} $$ $${Z} $PATH"),))
    assert bake_definition([("t0", r)])["target"]["t0"]["args"]["V"] == (
        "$${HOME} %%{if x}y%%{endif} $$ $$${Z} $PATH")


def _batch() -> tuple[list[_Member], dict[str, list[str]]]:
    logs: dict[str, list[str]] = {"a": [], "b": []}
    members = [_Member(request=_request(f"//{n}:{n}"), log=logs[n].append, name=f"ib1-{n}") for n in ("a", "b")]
    return members, logs


def test_each_vertex_goes_to_its_target_without_bakes_prefix() -> None:
    members, logs = _batch()
    split = LogSplitter(members)
    for line in [
        '#0 building with "default" instance using docker driver',
        "",
        "#1 [ib1-a internal] load build definition from Dockerfile",
        "#1 DONE 0.0s",
        "",
        "#2 [ib1-b deps 2/3] RUN make",
        "#3 [ib1-a 2/2] RUN echo a",
        "#2 0.31 compiling",
        "#3 CACHED",
        "#2 DONE 1.0s",
        "",
        "#4 [ib1-b] exporting to image",
        "#4 DONE 0.1s",
    ]:
        split.line(line)
    assert logs["a"] == ['#0 building with "default" instance using docker driver', "",
                         "#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s", "",
                         "#3 [2/2] RUN echo a", "#3 CACHED"]
    assert logs["b"] == ['#0 building with "default" instance using docker driver', "",
                         "#2 [deps 2/3] RUN make", "#2 0.31 compiling", "#2 DONE 1.0s", "",
                         "#4 exporting to image", "#4 DONE 0.1s"]
    assert not any(m.failed for m in members)


def test_a_failed_step_marks_its_target_and_the_summary_reaches_all() -> None:
    members, logs = _batch()
    split = LogSplitter(members)
    for line in ["#5 [ib1-b 2/2] RUN exit 3", "#5 ERROR: process did not complete successfully: exit code: 3",
                 "#6 [ib1-a 2/2] RUN sleep 9", "#6 CANCELED", "------",
                 "ERROR: failed to solve: process did not complete successfully: exit code: 3"]:
        split.line(line)
    assert [m.failed for m in members] == [False, True]
    assert logs["b"][-1].startswith("ERROR: failed to solve") and logs["a"][-1].startswith("ERROR: failed to solve")
    assert "#5 ERROR: process did not complete successfully: exit code: 3" in members[1].tail
