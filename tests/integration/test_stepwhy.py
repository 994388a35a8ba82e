"""Which step missed BuildKit's cache and why (#16), on a copy of examples/monorepo, on each builder."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, imgbuild


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                   capture_output=True)


@pytest.fixture
def monorepo(tmp_path: Path, prefix: str, admin: Any) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "monorepo", root)
    config = root / "imgbuild.yaml"
    # Own registry repositories and an own S3 prefix: no other test's cache entries or layers are seen.
    config.write_text(config.read_text().replace("url: localhost:5000/example", f"url: localhost:5000/{prefix}")
                      .replace("prefix: monorepo/", f"prefix: {prefix}/"))
    base = root / "base" / "BUILD.yaml"
    base.write_text(base.read_text().replace("image: example-base", f"image: {prefix}-base"))
    try:
        admin.create_bucket(Bucket="imgbuild-example-cache")
    except admin.exceptions.BucketAlreadyOwnedByYou:
        pass
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the monorepo")
    return root


def _build(root: Path, name: str) -> tuple[dict[str, Any], str]:
    r = imgbuild("build", "//apps/api", "--progress", "plain", "--json", name, cwd=root, timeout=600)
    assert r.code == 0, r.err
    report = json.loads((root / name).read_text())
    return {t["label"]: t for t in report["targets"]}, r.err


def _line(err: str, label: str) -> str:
    return next(ln for ln in err.splitlines() if ln.startswith(f"{label}  ") and "steps cached" in ln)


def test_a_changed_source_file_and_a_changed_build_arg_are_named(monorepo: Path, builder: str) -> None:
    root = monorepo
    _build(root, "first.json")

    # A source file of the app: the dependency install step is reused, the COPY of src/ runs because of it.
    serve = root / "apps" / "api" / "src" / "serve.sh"
    serve.write_text(serve.read_text() + f"# {uuid.uuid4().hex}\n")
    targets, err = _build(root, "second.json")
    api = targets["//apps/api:api"]
    assert api["status"] == "built"
    steps = api["steps"]
    install = next(s for s in steps["steps"] if s["instruction"].startswith("RUN mkdir -p /app/vendor"))
    assert install["status"] == "cached" and install["line"] == 5
    first = next(s for s in steps["steps"] if s["name"] == steps["first_ran"])
    assert first["instruction"] == "COPY src/ /app/src/" and first["line"] == 10
    assert steps["cause"] == "files" and steps["files"] == ["src/serve.sh"]
    assert steps["cached"] == steps["total"] - 1
    line = _line(err, "//apps/api:api")
    assert f"{steps['cached']}/{steps['total']} steps cached" in line
    assert "COPY src/ /app/src/" in line and "src/serve.sh changed" in line
    assert targets["//base:base"]["status"] == "cached" and targets["//base:base"]["steps"] is None

    # The same build, in full, from the history; and inspect's per-step flags of that build.
    r = imgbuild("explain", "//apps/api", cwd=root)
    assert r.code == 0, r.err
    assert "why: src/serve.sh changed" in r.out and "changed: src/serve.sh" in r.out
    assert "first step that ran: " in r.out and "COPY src/ /app/src/ (Dockerfile line 10)" in r.out
    r = imgbuild("inspect", "//apps/api", "--json", cwd=root)
    assert r.code == 0, r.err
    flags = {s["instruction"].split(" ", 1)[0] + " " + s["instruction"].split()[1]: s["cache"]
             for s in json.loads(r.out)["steps"] if s["cache"]}
    assert flags == {"COPY requirements.txt": "cached", "RUN |1": "cached", "COPY src/": "ran"} or \
        flags == {"COPY requirements.txt": "cached", "RUN /bin/sh": "cached", "COPY src/": "ran"}, flags

    # A build argument of the app that only its ENV uses: every step cached, and the summary names it.
    spec = root / "apps" / "api" / "BUILD.yaml"
    spec.write_text(spec.read_text().replace("PORT: 8080", "PORT: 9090"))
    targets, err = _build(root, "port.json")
    api = targets["//apps/api:api"]
    assert api["status"] == "built" and api["steps"]["args"] == ["PORT"]
    assert _line(err, "//apps/api:api").endswith("steps cached (build argument PORT ('8080' -> '9090') changed "
                                                  "only the image's configuration)")

    # A build argument the base's RUN uses: that RUN names it; the app's first step names its moved base.
    spec = root / "base" / "BUILD.yaml"
    spec.write_text(spec.read_text().replace('RELEASE: "2026.11"', f'RELEASE: "{uuid.uuid4().hex[:8]}"'))
    targets, err = _build(root, "third.json")
    base = targets["//base:base"]["steps"]
    assert base["cause"] == "build_arg" and base["args"] == ["RELEASE"]
    assert "build argument RELEASE changed ('2026.11' -> " in _line(err, "//base:base")
    api = targets["//apps/api:api"]["steps"]
    assert api["cause"] == "base" and "BASE_IMAGE" in api["reason"]
    assert api["cached"] == 0

