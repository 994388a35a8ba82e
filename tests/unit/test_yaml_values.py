"""YAML values reach Docker as the text the user wrote, and aliases cannot blow a spec up (issue #14)."""

from __future__ import annotations

import pytest

from imgbuild.cli import main
from imgbuild.errors import SpecError, SpecErrors
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from imgbuild.yamlsource import MAX_ALIAS_VALUES
from tests.conftest import WorkspaceFactory

BUILD = """
    apps:
      svc:
        build_args:
          PYTHON_VERSION: 3.10
          MODE: 0755
          DEBUG: yes
          WORKERS: 4
          QUOTED: "3.10"
        labels: {created: 2024-01-01 10:00:00, flag: True}
        tags: [1.0, "{git.short_sha}"]
        push: false
"""


def test_string_positions_keep_the_text_as_written(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "imgbuild.yaml": "version: 1\nconcurrency: 2\ndefaults:\n  build_args: {GO: 1.20}\n  platforms: [linux/amd64]\n",
        "pkg/BUILD.yaml": BUILD,
    })
    ws = load_workspace(root)
    t = ws.targets[Label("pkg", "svc")]
    assert dict(t.build_args) == {"GO": "1.20", "PYTHON_VERSION": "3.10", "MODE": "0755", "DEBUG": "yes",
                                  "WORKERS": "4", "QUOTED": "3.10"}
    assert dict(t.labels) == {"created": "2024-01-01 10:00:00", "flag": "True"}
    assert t.tags == ("1.0", "{git.short_sha}")
    # positions that are not strings keep YAML's reading
    assert t.push is False and ws.config.concurrency == 2


@pytest.mark.parametrize(("value", "shown", "write"), [
    ("", "an empty value", 'PYTHON_VERSION: ""'),
    ("~", "'~'", 'PYTHON_VERSION: "~"'),
    ("null", "'null'", 'PYTHON_VERSION: "null"'),
])
def test_a_null_where_a_string_belongs_is_refused_with_the_quoted_form(
        make_ws: WorkspaceFactory, value: str, shown: str, write: str) -> None:
    root = make_ws({"pkg/BUILD.yaml": f"apps:\n  svc:\n    build_args:\n      PYTHON_VERSION: {value}\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    assert str(err.location).startswith("pkg/BUILD.yaml:4:")
    assert err.key_path == ("apps", "svc", "build_args", "PYTHON_VERSION")
    assert err.message == f"{shown} is null in YAML, and a string is expected here"
    assert err.hint == f"write `{write}` for that text, or remove the key"


def test_a_null_list_item_gets_the_quoted_item_form(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\ndefaults:\n  tags:\n    - latest\n    - ~\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    assert str(err.location) == "imgbuild.yaml:5:7" and err.hint == 'write `- "~"` for that text'


def test_validate_accepts_the_text_and_plan_shows_it(make_ws: WorkspaceFactory,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({"pkg/BUILD.yaml": BUILD, "pkg/Dockerfile": "FROM scratch\n"})
    assert main(["validate", "-w", str(root)]) == 0
    assert main(["plan", "-w", str(root), "--json", "//..."]) == 0
    out = capsys.readouterr().out
    assert '"PYTHON_VERSION": "3.10"' in out and '"MODE": "0755"' in out and '"DEBUG": "yes"' in out


def test_validate_refuses_a_null_build_arg(make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  svc:\n    build_args: {DEBUG: }\n", "pkg/Dockerfile": "FROM scratch\n"})
    assert main(["validate", "-w", str(root)]) == 2
    err = capsys.readouterr().err
    assert "pkg/BUILD.yaml:3:25: apps -> svc -> build_args -> DEBUG: an empty value is null in YAML" in err
    assert 'hint: write `DEBUG: ""` for that text' in err


def bomb(levels: int = 9) -> str:
    lines = ["version: 1", 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"x{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_where_it_explodes(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": bomb()})
    with pytest.raises(SpecError) as exc:
        load_workspace(root)
    assert exc.value.message == f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?)"
    # the aliases of x1..x4 stand for ~75,000 values; x5's first one (~66,000 more) passes the limit
    assert str(exc.value.location) == "imgbuild.yaml:7:5" and exc.value.key_path == ("x5", 0)


def test_shared_settings_blocks_are_fine(make_ws: WorkspaceFactory) -> None:
    apps = "\n".join(f"  app{i}:\n    tags: *tags\n    build_args: *args" for i in range(1, 300))
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  app0:\n    tags: &tags [a, b, c]\n"
                                      f"    build_args: &args {{A: 1.10, B: yes}}\n{apps}\n"})
    ws = load_workspace(root)
    t = ws.targets[Label("pkg", "app299")]
    assert t.tags == ("a", "b", "c") and dict(t.build_args) == {"A": "1.10", "B": "yes"}


def test_an_alias_inside_its_own_anchor_is_refused(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"pkg/BUILD.yaml": "apps:\n  a:\n    tags: &t [x, *t]\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    [err] = exc.value.errors
    assert err.message == "an alias refers to a value that contains it (a cycle)"
    assert str(err.location) == "pkg/BUILD.yaml:3:11"
