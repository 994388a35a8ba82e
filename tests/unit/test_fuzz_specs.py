"""Whatever a user writes, the loader answers with a located spec error, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgbuild.errors import ImgbuildError
from imgbuild.graph import TargetGraph
from imgbuild.specfiles.packages import load_workspace

KEYS = ["apps", "api", "targets", "stage", "dockerfile", "context", "deps", "build_args", "cache", "tags",
        "push", "platforms", "secrets", "labels", "image", "registry", "registries", "id", "env", "src",
        "version", "defaults", "cache_policies", "backend", "bucket", "history", "concurrency", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["//a:b", ":x", "..", "../../..", "s3", "local", "{git.sha}", "1"]))
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)),
    max_leaves=25,
)


def _load(root: Path) -> None:
    try:
        TargetGraph.build(load_workspace(root))
    except ImgbuildError as exc:
        assert exc.exit_code == 2
        assert exc.render().startswith("error: ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=values)
def test_random_structures(tmp_path: Path, data: Any) -> None:
    (tmp_path / "imgbuild.yaml").write_text("version: 1\n")
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "BUILD.yaml").write_text(yaml.safe_dump({"apps": data}))
    _load(tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=values)
def test_random_workspace_files(tmp_path: Path, data: Any) -> None:
    (tmp_path / "imgbuild.yaml").write_text(yaml.safe_dump(data))
    _load(tmp_path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("apps:{}[]-&*!|>'\"#%@`\t\n x1:.,?\\\u00e9")), max_size=60))
def test_malformed_yaml_text(tmp_path: Path, text: str) -> None:
    (tmp_path / "imgbuild.yaml").write_text("version: 1\n")
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "BUILD.yaml").write_text(text)
    _load(tmp_path)


def test_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "imgbuild.yaml").write_bytes(b"version: 1\n\xff\xfe")
    _load(tmp_path)
