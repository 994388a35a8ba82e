"""The engine API client on the real engine: it sees and changes what the docker CLI sees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imgbuild.builds.images import Images
from imgbuild.engine_gateway import EngineGateway
from imgbuild.engine_api import connect
from tests.integration.conftest import digest_of, docker

pytestmark = pytest.mark.usefixtures("engine")


def test_tag_untag_inspect_and_history_agree_with_the_cli(tmp_path: Path, prefix: str) -> None:
    api = connect()
    assert api is not None, "the dev services' engine listens on a local unix socket"
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN head -c 5000 /dev/urandom > /blob\n")
    subprocess.run(["docker", "buildx", "build", "--load", "-t", f"{prefix}-api:v1", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    cli_id = docker("image", "inspect", "--format", "{{.Id}}", f"{prefix}-api:v1").strip()
    assert api.image_id(f"{prefix}-api:v1") == cli_id
    assert api.image_id(f"{prefix}-api:nothing") is None

    images = Images(EngineGateway.decided(api))
    images.tag(cli_id, f"localhost:5000/{prefix}/api:exact")
    tags = json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}", cli_id))
    assert f"localhost:5000/{prefix}/api:exact" in tags
    images.untag(f"localhost:5000/{prefix}/api:exact")
    tags = json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}", cli_id))
    assert f"localhost:5000/{prefix}/api:exact" not in tags and f"{prefix}-api:v1" in tags  # the image stays

    steps = images.history(cli_id)
    cli_steps = [json.loads(line) for line in docker("image", "history", "--no-trunc", "--human=false",
                                                      "--format", "{{json .}}", cli_id).splitlines()]
    assert [s["CreatedBy"] for s in steps] == [s["CreatedBy"] for s in cli_steps]
    assert [int(s["Size"]) for s in steps] == [int(s["Size"]) for s in cli_steps]
    assert any("head -c 5000" in s["CreatedBy"] for s in steps)


def test_save_over_the_socket_gives_the_layout_docker_save_gives(tmp_path: Path, prefix: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN head -c 7000 /dev/urandom > /blob\n")
    subprocess.run(["docker", "buildx", "build", "--load", "-t", f"{prefix}-web:v1", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    over_socket = Images()
    assert over_socket.engine.via == "socket"
    by_cli = Images(EngineGateway.decided(None))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    saved = over_socket.save(f"{prefix}-web:v1", tmp_path / "a")
    expected = by_cli.save(f"{prefix}-web:v1", tmp_path / "b")
    assert saved.index_json == expected.index_json
    assert saved.blobs == expected.blobs and len(saved.blobs) >= 4  # index or manifest, config, layers
    for digest, _, _ in saved.blobs:
        assert (saved.blob_dir / digest[7:]).read_bytes() == (expected.blob_dir / digest[7:]).read_bytes()


def test_the_engine_remembers_the_digest_it_pushed_an_image_as(tmp_path: Path, prefix: str) -> None:
    """What lets a re-push recognise its image in a registry on either image store (RepoDigests)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN head -c 3000 /dev/urandom > /blob\n")
    ref = f"localhost:5000/{prefix}/pushed:v1"
    subprocess.run(["docker", "buildx", "build", "--load", "-t", ref, str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    image_id = docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
    by_cli = Images(EngineGateway.decided(None))
    # (the containerd store lists a digest for every name already; the classic one only after a push)
    assert Images().known_digests(image_id) == by_cli.known_digests(image_id)
    reported = Images().push(ref)
    in_registry = digest_of(f"localhost:5000/{prefix}/pushed", "v1")
    assert reported is not None and reported == in_registry
    assert in_registry in Images().known_digests(image_id)
    assert Images().known_digests(image_id) == by_cli.known_digests(image_id)
    assert Images().known_digests("sha256:" + "0" * 64) == frozenset()  # no such image: nothing known
