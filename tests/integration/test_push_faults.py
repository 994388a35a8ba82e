"""A registry connection dropped in the middle of `imgbuild build --push` (issue #14's fault injection: "failed
after 1 attempt(s): Remote end closed connection without response"): through a TCP proxy in front of the
real registry that cuts a connection as the registry answers, the push is tried again and lands, on both
ways a push goes (HTTP from the target cache's blobs, and `docker push`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.integration.conftest import digest_of, imgbuild
from tests.integration.dropping_proxy import DroppingProxy

pytestmark = pytest.mark.usefixtures("engine")
REGISTRY = ("127.0.0.1", 5000)


def workspace(root: Path, url: str) -> Path:
    root = write_files(root, {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: flaky, tags: [v1, latest], push: true}}
            registries:
              flaky: {{url: {url}, insecure: true}}
        """,
        "web/BUILD.yaml": "apps:\n  web: {}\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY data.bin /srv/\n",
    })
    (root / "web/data.bin").write_bytes(os.urandom(200_000))  # a layer large enough to be asked about first
    return root


@pytest.mark.parametrize("after", [0, 4000], ids=["first-answer", "mid-push"])
@pytest.mark.parametrize("docker_push", [False, True], ids=["http", "docker-push"])
def test_a_dropped_registry_connection_is_retried_and_the_push_lands(tmp_path: Path, prefix: str, after: int,
                                                                     docker_push: bool) -> None:
    with DroppingProxy(REGISTRY, drops=1, after=after) as proxy:
        host = f"127.0.0.1:{proxy.port}"
        root = workspace(tmp_path / "ws", f"{host}/{prefix}")
        try:
            r = imgbuild("build", "//web", "--push-as-ready" if docker_push else "--push", "--allow-dirty",
                         "--progress", "plain", "--json", "report.json", cwd=root)
        finally:
            for tag in ("v1", "latest"):
                subprocess.run(["docker", "image", "rm", f"{host}/{prefix}/web:{tag}"], capture_output=True)
        assert proxy.dropped == 1  # the fault happened
    assert r.code == 0, r.out + r.err
    web = next(t for t in json.loads((root / "report.json").read_text())["targets"] if t["label"] == "//web:web")
    assert web["pushed"] == [f"{host}/{prefix}/web@{web['image_id']}"]
    for tag in ("v1", "latest"):  # asked of the registry itself, not through the proxy
        assert digest_of(f"localhost:5000/{prefix}/web", tag) == web["image_id"]
