"""Reports that tools downstream read, on the real engine: the metadata file and the dry run's commands."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files
from tests.integration.conftest import docker, imgbuild, run_in_image

pytestmark = pytest.mark.usefixtures("engine", "builder")

RUN_KEYS = ("imgbuild.status", "imgbuild.rebuilt", "imgbuild.duration_s", "imgbuild.log")


def workspace(root: Path, prefix: str) -> Path:
    return write_files(root, {
        "imgbuild.yaml": """
            version: 1
            defaults: {tags: [dev], cache: layers}
            cache_policies: {layers: {backend: local, path: .layer-cache}}
        """,
        "base/BUILD.yaml": f"apps: {{base: {{image: {prefix}-base}}}}\n",
        "base/Dockerfile": f"FROM busybox:1.36\nRUN echo {prefix} > /base.txt\n",
        "api/BUILD.yaml": f"apps: {{api: {{image: {prefix}-api, deps: {{BASE: //base}}}}}}\n",
        "api/Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY app.txt /\n",
        "api/app.txt": "v1\n",
    })


def read(path: Path) -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return doc


def buildx_keys(tmp_path: Path, prefix: str, context: Path) -> set[str]:
    """The keys `docker buildx build --metadata-file` itself writes for this build, on this engine and buildx."""
    out = tmp_path / "buildx-meta.json"
    subprocess.run(["docker", "buildx", "build", "--progress", "plain", "--metadata-file", str(out),
                    "--tag", f"{prefix}-reference:x", "--load", str(context)], check=True, capture_output=True)
    return set(json.loads(out.read_text()))


def test_metadata_file_has_every_key_buildx_writes_built_cached_restored_and_in_ci(tmp_path: Path,
                                                                                  prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    reference = buildx_keys(tmp_path, prefix, root / "base")
    assert {"buildx.build.ref", "containerimage.digest", "image.name"} <= reference

    r = imgbuild("build", "//...", "--progress", "plain", "--metadata-file", "out/meta.json", cwd=root)
    assert r.code == 0, r.err
    built = read(root / "out/meta.json")
    assert [built[lb]["imgbuild.status"] for lb in ("//base:base", "//api:api")] == ["built", "built"]
    for label, entry in built.items():
        assert reference <= set(entry), f"{label} lacks {reference - set(entry)}"
    assert built["//api:api"]["image.name"] == f"docker.io/library/{prefix}-api:dev"  # not the run's own tag
    assert built["//api:api"]["buildx.build.ref"] != built["//base:base"]["buildx.build.ref"]
    assert built["//api:api"]["containerimage.digest"] == built["//api:api"]["imgbuild.image_id"]

    # Nothing changed: cached, and the same keys with the same values (those of the build that made the image).
    r = imgbuild("build", "//...", "--progress", "plain", "--metadata-file", "out/meta.json", cwd=root)
    assert r.code == 0, r.err
    cached = read(root / "out/meta.json")
    assert {lb: e["imgbuild.status"] for lb, e in cached.items()} == {"//base:base": "cached", "//api:api": "cached"}
    assert _without_run_keys(cached) == _without_run_keys(built)

    # A fresh engine: the images come back from the target cache's blobs, still with their build's keys.
    docker("image", "rm", "-f", *sorted({e["imgbuild.image_id"] for e in built.values()}))
    r = imgbuild("ci", "--all", "--no-push", "--metadata-file", "out/ci-meta.json", "--json", "out/report.json",
                 "--junit", "out/junit.xml", cwd=root, env={"CI": "true"})
    assert r.code == 0, r.err
    restored = read(root / "out/ci-meta.json")
    assert {lb: e["imgbuild.status"] for lb, e in restored.items()} == {"//base:base": "restored",
                                                                        "//api:api": "restored"}
    assert _without_run_keys(restored) == _without_run_keys(built)
    assert run_in_image(f"{prefix}-api:dev", "cat", "/base.txt", "/app.txt").split() == [prefix, "v1"]


def _without_run_keys(doc: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {lb: {k: v for k, v in e.items() if k not in RUN_KEYS} for lb, e in doc.items()}


def test_a_dry_run_command_run_by_hand_builds_what_imgbuild_would(tmp_path: Path, prefix: str,
                                                                  state_home: Path) -> None:
    root = workspace(tmp_path / "ws", prefix)
    r = imgbuild("build", "//base", "--dry-run", cwd=root)
    assert r.code == 0, r.err
    [line] = [ln for ln in r.out.splitlines() if ln.startswith("docker ")]
    argv = shlex.split(line)
    # nothing ran, nothing was written: no image, no cache, no log, no history
    assert docker("image", "ls", "-q", "--filter", f"reference={prefix}*").strip() == ""
    assert not (root / ".layer-cache").exists()
    assert not (root / ".imgbuild").exists()
    written = sorted(p.name for p in state_home.rglob("*") if p.is_file())
    assert written in ([], ["spec-validated.json"]), written

    cache_to = argv[argv.index("--cache-to") + 1]
    dest = Path(cache_to.split(",")[1].removeprefix("dest="))
    assert cache_to.startswith(f"type=local,dest={root}/.layer-cache/layers/") and dest.name == "base-base"
    metadata = Path(argv[argv.index("--metadata-file") + 1])
    try:
        subprocess.run(line, shell=True, check=True, capture_output=True, cwd=tmp_path)  # as a user pastes it
        assert json.loads(metadata.read_text())["image.name"].startswith(f"docker.io/library/{prefix}-base:dev,")
    finally:
        metadata.unlink(missing_ok=True)
    assert run_in_image(f"{prefix}-base:dev", "cat", "/base.txt").strip() == prefix
    assert (dest / "index.json").is_file()  # the layer cache it named was written


def test_ci_with_nothing_to_build_writes_an_empty_metadata_file(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *argv], cwd=root, check=True)
    r = imgbuild("ci", "--since", "HEAD", "--no-push", "--metadata-file", "out/meta.json", cwd=root,
                 env={"CI": "true"})
    assert r.code == 0, r.err
    assert "nothing to build" in r.err and read(root / "out/meta.json") == {}
