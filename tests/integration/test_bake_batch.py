"""On the ``docker`` driver, leaf targets that start together are built by one ``docker buildx bake``
(imgbuild/builds/bake.py): each still gets its own image, log, step report and error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import _use_builder, imgbuild, run_in_image


@pytest.fixture
def docker_driver(engine: None, monkeypatch: pytest.MonkeyPatch) -> str:
    return _use_builder("default", monkeypatch)


# A value bake would read as a template if it were not escaped; it must reach the image as written.
TRICKY = "${HOME} and %{if true}x%{endif} and $$ and $${X}"


def _workspace(root: Path, prefix: str, *, failing: str | None = None) -> Path:
    files = {
        "imgbuild.yaml": "version: 1\nconcurrency: 8\ndefaults:\n  tags: [dev]\n",
        "base/BUILD.yaml": f"apps:\n  base:\n    image: {prefix}-base\n",
        "base/Dockerfile": f"FROM busybox:1.36\nRUN echo base > /base.txt && echo {prefix} > /run.txt\n",
    }
    for app in ("one", "two", "three"):
        step = "RUN echo broken && exit 3" if app == failing else f'RUN echo "$V" > /v.txt && echo {app} > /app.txt && echo {prefix} > /run.txt'
        files[f"apps/{app}/BUILD.yaml"] = (
            f"apps:\n  {app}:\n    image: {prefix}-{app}\n    deps: {{BASE_IMAGE: //base}}\n"
            f"    build_args: {{V: {json.dumps(TRICKY)}}}\n")
        files[f"apps/{app}/Dockerfile"] = f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nARG V\n{step}\n"
    return write_files(root, files)


def _report(ws: Path) -> dict[str, dict[str, object]]:
    return {t["label"]: t for t in json.loads((ws / "report.json").read_text())["targets"]}


def test_leaves_built_together_each_get_their_image_log_and_steps(tmp_path: Path, prefix: str,
                                                                     docker_driver: str) -> None:
    ws = _workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", cwd=ws)
    assert r.code == 0, r.err
    report = _report(ws)
    for app in ("one", "two", "three"):
        t = report[f"//apps/{app}:{app}"]
        assert t["status"] == "built"
        assert run_in_image(f"{prefix}-{app}:dev", "cat", "/base.txt", "/app.txt").split() == ["base", app]
        assert run_in_image(f"{prefix}-{app}:dev", "cat", "/v.txt") == TRICKY + "\n"
        log = Path(str(t["log"])).read_text()
        others = [f"//apps/{o}:{o}" for o in ("one", "two", "three") if o != app]
        assert "built in one `docker buildx bake` with 2 other target(s)" in log
        assert all(o in log for o in others)
        # Its own steps, without bake's target prefix (the step report reads them as its own build's)
        assert f"echo {app} > /app.txt" in log
        assert not any(f"echo {o} > /app.txt" in log for o in ("one", "two", "three") if o != app)
        steps = t["steps"]
        assert isinstance(steps, dict)
        assert [s["status"] for s in steps["steps"] if "/app.txt" in s["instruction"]] == ["ran"]
    # The base feeds the apps: it is built alone, so they start as soon as it is done.
    assert "docker buildx bake" not in Path(str(report["//base:base"]["log"])).read_text()


def test_a_failing_leaf_fails_alone_and_the_others_still_build(tmp_path: Path, prefix: str,
                                                                docker_driver: str) -> None:
    ws = _workspace(tmp_path / "ws", prefix, failing="two")
    r = imgbuild("build", "//...", "--keep-going", "--progress", "plain", "--json", "report.json", cwd=ws)
    assert r.code == 1, r.err
    report = _report(ws)
    failed = report["//apps/two:two"]
    assert failed["status"] == "failed"
    assert "exit code: 3" in str(failed["error"])
    assert "echo broken" in Path(str(failed["log"])).read_text()
    for app in ("one", "three"):
        assert report[f"//apps/{app}:{app}"]["status"] == "built"
        assert run_in_image(f"{prefix}-{app}:dev", "cat", "/app.txt").strip() == app
