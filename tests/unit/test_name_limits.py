"""Names have a documented maximum where specs are checked, and paths made from labels always fit (issue #14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild.builds.run import log_path
from imgbuild.cli import main
from imgbuild.errors import Location, SpecErrors
from imgbuild.labels import MAX_FILE_NAME, Label, file_name
from imgbuild.layercache.args import scope_dir, target_name
from imgbuild.model import Target
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory

LONG = "a" * 300


def test_validate_refuses_a_300_character_app_name(make_ws: WorkspaceFactory,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({"pkg/BUILD.yaml": f"apps:\n  {LONG}:\n    tags: [dev]\n", "pkg/Dockerfile": "FROM scratch\n"})
    assert main(["validate", "-w", str(root)]) == 2
    err = capsys.readouterr().err
    assert (f"error: pkg/BUILD.yaml:2:3: apps -> {LONG}: name '{'a' * 20}...{'a' * 8}' is 300 characters long; "
            "at most 128 are allowed") in err
    assert "hint: shorten it" in err


def test_a_derived_image_name_too_long_for_docker_is_refused(make_ws: WorkspaceFactory) -> None:
    app, tgt = "b" * 128, "c" * 100
    root = make_ws({"pkg/BUILD.yaml": f"apps:\n  {app}:\n    targets:\n      {tgt}: {{}}\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    assert str(err.location) == "pkg/BUILD.yaml:4:7"
    assert err.message == (f"image name {'b' * 20}...{'c' * 8} (from the app/target name) is 229 characters long; "
                           "at most 200 are allowed")


def test_an_image_too_long_with_its_registry_is_refused(make_ws: WorkspaceFactory) -> None:
    url = "registry.example.com/" + "team/" * 30
    root = make_ws({"imgbuild.yaml": f"version: 1\nregistries:\n  r: {{url: {url}}}\n",
                    "pkg/BUILD.yaml": f"apps:\n  {'d' * 128}:\n    registry: r\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    assert str(err.location) == "pkg/BUILD.yaml:2:3"
    assert err.message == (f"registry.example.com/team/team...{'d' * 8} is 299 characters long; "
                           "Docker allows at most 255 for a repository with its registry")


def long_target(name: str, package: str = "pkg") -> Target:
    return Target(label=Label(package, name), app=name, spec_file="pkg/BUILD.yaml", location=Location(file="x"),
                  dockerfile=Path("/ws/pkg/Dockerfile"), context=Path("/ws/pkg"), stage=None, image="x",
                  build_args=(), deps=(), cache=None, tags=(), push=False, registries=(), platforms=(),
                  secrets=(), labels=())


def test_log_and_cache_paths_fit_whatever_the_label(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    short, long1, long2 = (log_path(logs, long_target(n)) for n in ("api", "e" * 300, "e" * 299 + "f"))
    assert short == logs / "pkg" / "api.log"  # names that fit are kept
    assert long1.name.endswith(".log") and long1.name.startswith("e" * 200) and long1 != long2
    for path in (long1, long2):
        assert len(path.name.encode()) <= MAX_FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("log\n")  # the file the failure message names can be written
    deep = long_target("g" * 128, package="/".join(["p" * 60] * 4))
    folder = scope_dir(tmp_path / "layers", "main", target_name(deep.label))
    folder.mkdir(parents=True)
    assert folder.is_dir() and len(folder.name) <= MAX_FILE_NAME


def test_file_name_cuts_on_a_character_boundary() -> None:
    name = file_name("é" * 200, ".log")
    assert len(name.encode()) <= MAX_FILE_NAME and name.endswith(".log")
    assert file_name("é" * 200, ".log") == name != file_name("é" * 199 + "e", ".log")
