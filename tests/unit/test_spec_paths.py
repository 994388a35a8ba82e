"""Paths in specs stay in the workspace after symbolic links are resolved (issue #14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgbuild.cli import main
from imgbuild.digest import Hasher
from imgbuild.dockerignore import DockerignoreError
from imgbuild.errors import SpecErrors
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory, write_files


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    return write_files(tmp_path / "outside", {"Dockerfile": "FROM scratch\n", "secret.txt": "s3cr3t\n",
                                              ".dockerignore": "*.txt\n", "id_rsa": "private\n"})


def only_error(root: Path) -> tuple[str, tuple[str | int, ...], str]:
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    return str(err.location), err.key_path, err.message


def test_a_context_linked_to_a_directory_outside_is_refused(make_ws: WorkspaceFactory, outside: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc:\n    context: ctx\n", "pkg/Dockerfile": "FROM scratch\n"})
    (root / "pkg" / "ctx").symlink_to(outside)
    assert main(["validate", "-w", str(root)]) == 2
    assert "error: pkg/BUILD.yaml:3:14: apps -> svc -> context: context" in capsys.readouterr().err
    where, key, message = only_error(root)
    assert where == "pkg/BUILD.yaml:3:14" and key == ("apps", "svc", "context")
    assert message == (f"context {root}/pkg/ctx (through a symbolic link, to {outside}) "
                       f"is outside the workspace {root}")


def test_a_dockerfile_linked_outside_is_refused(make_ws: WorkspaceFactory, outside: Path) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc: {}\n"})
    (root / "pkg" / "Dockerfile").symlink_to(outside / "Dockerfile")
    where, key, message = only_error(root)
    assert where == "pkg/BUILD.yaml:2:8" and key == ("apps", "svc")
    assert message == (f"dockerfile {root}/pkg/Dockerfile (through a symbolic link, to {outside}/Dockerfile) "
                       f"is outside the workspace {root}")


def test_a_relative_secret_src_linked_outside_is_refused_an_explicit_one_is_not(
        make_ws: WorkspaceFactory, outside: Path) -> None:
    build = "apps:\n  svc:\n    secrets:\n      - {id: a, src: /etc/hostname}\n      - {id: b, src: SRC}\n"
    root = make_ws({"pkg/BUILD.yaml": build.replace("SRC", "~/.npmrc"), "pkg/Dockerfile": "FROM scratch\n"})
    assert Label("pkg", "svc") in load_workspace(root).targets
    (root / ".secrets").symlink_to(outside)
    (root / "pkg" / "BUILD.yaml").write_text(build.replace("SRC", ".secrets/secret.txt"))
    where, key, message = only_error(root)
    assert where == "pkg/BUILD.yaml:5:22" and key == ("apps", "svc", "secrets", 1, "src")
    assert message.startswith(f"secret file {root}/.secrets/secret.txt (through a symbolic link, to {outside}/")


def test_links_that_stay_inside_the_workspace_are_fine(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc:\n    context: ctx\n", "pkg/Dockerfile": "FROM scratch\n",
                    "shared/app.py": "print()\n"})
    (root / "pkg" / "ctx").symlink_to(root / "shared")
    assert load_workspace(root).targets[Label("pkg", "svc")].context == root / "shared"


@pytest.mark.parametrize(("section", "key_path"), [
    ("cache_policies:\n  local: {backend: local, path: PATH}\n", ("cache_policies", "local", "path")),
    ("history: {backend: sqlite, path: PATH}\n", ("history", "path")),
])
def test_store_paths_may_leave_the_workspace_only_when_absolute(
        make_ws: WorkspaceFactory, tmp_path: Path, section: str, key_path: tuple[str, ...]) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\n" + section.replace("PATH", str(tmp_path / "shared"))})
    load_workspace(root)  # an absolute path is an explicit choice: a cache shared between checkouts
    for written in ("../shared", "state/db"):
        (root / "imgbuild.yaml").write_text("version: 1\n" + section.replace("PATH", written))
        if written == "state/db":
            (root / "state").symlink_to(tmp_path / "shared", target_is_directory=True)
        where, key, message = only_error(root)
        assert where.startswith(("imgbuild.yaml:2:", "imgbuild.yaml:3:")) and key == key_path
        assert message.startswith(f"{written} is outside the workspace {root} (it resolves to {tmp_path}/shared")


def test_a_dockerignore_linked_outside_is_not_read(make_ws: WorkspaceFactory, outside: Path) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc: {}\n", "pkg/Dockerfile": "FROM scratch\n"})
    (root / "pkg" / ".dockerignore").symlink_to(outside / ".dockerignore")
    ws = load_workspace(root)
    graph = TargetGraph.build(ws)
    with pytest.raises(DockerignoreError) as exc:
        Hasher(ws, stat_cache=None, environ={}).compute(graph, [Label("pkg", "svc")])
    assert exc.value.message == (f"{root}/pkg/.dockerignore is a symbolic link to {os.path.realpath(outside)}"
                                 f"/.dockerignore, outside the workspace {root}")


def test_dot_dot_after_a_link_is_taken_where_the_link_leads(make_ws: WorkspaceFactory, outside: Path) -> None:
    # `lnk/..` is the directory above the link's target, as the kernel sees it, not the package directory
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc:\n    context: lnk/..\n", "pkg/Dockerfile": "FROM scratch\n"})
    (root / "pkg" / "lnk").symlink_to(outside)
    where, key, message = only_error(root)
    assert where == "pkg/BUILD.yaml:3:14"
    assert message.startswith(f"context {root}/pkg/lnk/.. (through a symbolic link, to {outside.parent}) is outside")
