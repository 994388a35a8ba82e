"""The target cache on the real engine and S3 server: skip what did not change, restore on a wiped host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imgbuild.statedir import for_workspace

from tests.conftest import write_files
from tests.integration.conftest import Run, docker, imgbuild, run_in_image

pytestmark = pytest.mark.usefixtures("engine")


def workspace(root: Path, prefix: str, cache: str) -> Path:
    return write_files(root, {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{tags: [dev], cache: main}}
            cache_policies:
              main: {cache}
        """,
        "base/BUILD.yaml": f"apps:\n  base:\n    image: {prefix}-base\n",
        "base/Dockerfile": "FROM busybox:1.36\nRUN echo base-$RANDOM > /base.txt\n",
        "api/BUILD.yaml": f"apps:\n  api:\n    image: {prefix}-api\n    deps: {{BASE_IMAGE: //base}}\n",
        "api/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /app/\nRUN cat /base.txt > /app/base-copy.txt\n",
        "api/main.sh": "echo v1\n",
        "api/notes.md": "ignored\n",
        "api/.dockerignore": "*.md\n",
        "web/BUILD.yaml": f"apps:\n  web:\n    image: {prefix}-web\n",
        "web/Dockerfile": "FROM busybox:1.36\nCOPY index.html /srv/\n",
        "web/index.html": "<h1>hi</h1>\n",
    })


def build(root: Path, *extra: str) -> tuple[Run, dict[str, Any]]:
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", *extra, cwd=root)
    report = json.loads((root / "report.json").read_text()) if (root / "report.json").exists() else {}
    return r, {t["label"]: t for t in report.get("targets", [])}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {label: t["status"] for label, t in report.items()}


def wipe_engine_and_local_cache(root: Path, prefix: str) -> None:
    """What a fresh CI runner looks like to these targets: none of their images, no build cache, no
    local caches (the state directory's cache part; the history stays). (Only this test's images go: the engine is shared, and `docker system prune`
    on a busy engine takes minutes.)"""
    ids = docker("image", "ls", "-q", "--filter", f"reference={prefix}*").split()
    if ids:
        docker("image", "rm", "-f", *sorted(set(ids)))
    subprocess.run(["docker", "buildx", "prune", "-af"], check=True, capture_output=True, timeout=600)
    subprocess.run(["rm", "-rf", str(for_workspace(root).cache)], check=True)


@pytest.mark.usefixtures("builder")
def test_unchanged_targets_are_not_rebuilt(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, "{backend: local}")
    r, first = build(root)
    assert r.code == 0, r.err
    assert set(statuses(first).values()) == {"built"}

    r, second = build(root)
    assert r.code == 0, r.err
    assert set(statuses(second).values()) == {"cached"}
    for label, t in second.items():
        assert t["image_id"] == first[label]["image_id"] and t["rebuilt"] is False
        assert t["input_digest"] == first[label]["input_digest"]

    # An ignored file changes nothing.
    (root / "api/notes.md").write_text("still ignored\n")
    r, third = build(root)
    assert set(statuses(third).values()) == {"cached"}

    # One file in api's context: api and nothing else (base and web are not affected; no dependants).
    (root / "api/main.sh").write_text("echo v2\n")
    r, fourth = build(root)
    assert statuses(fourth) == {"//base:base": "cached", "//api:api": "built", "//web:web": "cached"}
    assert run_in_image(f"{prefix}-api:dev", "cat", "/app/main.sh") == "echo v2\n"
    # The cached base handed to the rebuilt api is the very same image as before.
    assert run_in_image(f"{prefix}-api:dev", "cat", "/app/base-copy.txt") == \
        run_in_image(first["//base:base"]["image_id"], "cat", "/base.txt")

    # The base's Dockerfile: the base and its dependant.
    (root / "base/Dockerfile").write_text("FROM busybox:1.36\nRUN echo base2-$RANDOM > /base.txt\n")
    r, fifth = build(root)
    assert statuses(fifth) == {"//base:base": "built", "//api:api": "built", "//web:web": "cached"}

    r, forced = build(root, "--rebuild", "//web")
    assert statuses(forced) == {"//base:base": "cached", "//api:api": "cached", "//web:web": "built"}
    r, no_cache = build(root, "--no-cache")
    assert set(statuses(no_cache).values()) == {"built"}


@pytest.mark.usefixtures("builder")
def test_fresh_host_restores_everything_from_s3(tmp_path: Path, prefix: str, bucket: str, s3_endpoint: str,
                                                aws_env: None) -> None:
    policy = f"{{backend: s3, bucket: {bucket}, prefix: ci/, endpoint_url: '{s3_endpoint}', use_path_style: true}}"
    root = workspace(tmp_path / "ws", prefix, policy)
    r, first = build(root)
    assert r.code == 0, r.err
    assert set(statuses(first).values()) == {"built"}

    wipe_engine_and_local_cache(root, prefix)
    assert subprocess.run(["docker", "image", "inspect", first["//api:api"]["image_id"]],
                          capture_output=True).returncode != 0

    r, second = build(root)
    assert r.code == 0, r.err
    assert set(statuses(second).values()) == {"restored"}, r.err
    for label, t in second.items():
        assert t["image_id"] == first[label]["image_id"]
        assert t["log"] is None  # no Dockerfile step ran: the engine's build was never invoked
    assert run_in_image(f"{prefix}-api:dev", "cat", "/app/main.sh") == "echo v1\n"
    assert run_in_image(f"{prefix}-web:dev", "cat", "/srv/index.html") == "<h1>hi</h1>\n"

    # Layers shared between images are stored once, content-addressed.
    from tests.integration.conftest import list_keys

    blobs = [k for k in list_keys(bucket, "ci/targets/blobs/")]
    assert len(blobs) == len(set(blobs))


def test_unreachable_s3_warns_once_and_builds(tmp_path: Path, prefix: str, aws_env: None) -> None:
    policy = "{backend: s3, bucket: nowhere, endpoint_url: 'http://127.0.0.1:9', use_path_style: true}"
    root = workspace(tmp_path / "ws", prefix, policy)
    r, report = build(root)
    assert r.code == 0, r.err
    assert set(statuses(report).values()) == {"built"}
    assert r.err.count("warning: cache s3://") == 1, r.err


def test_altered_entry_is_detected_and_rebuilt(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, "{backend: local, path: .cache}")
    r, first = build(root)
    key = first["//web:web"]["input_digest"].split(":")[1]
    entry = root / ".cache" / "entries" / f"{key}.json"
    data = json.loads(entry.read_text())
    data["image_id"] = first["//api:api"]["image_id"]  # a poisoned entry pointing at another image
    entry.write_text(json.dumps(data))
    r, second = build(root)
    assert r.code == 0
    assert statuses(second)["//web:web"] == "built"
    assert second["//web:web"]["image_id"] != first["//api:api"]["image_id"]
    assert "is corrupt" in r.err and "//web:web" in r.err


def test_concurrent_builds_share_one_valid_entry_per_key(tmp_path: Path, prefix: str, bucket: str,
                                                         s3_endpoint: str, aws_env: None) -> None:
    policy = f"{{backend: s3, bucket: {bucket}, endpoint_url: '{s3_endpoint}', use_path_style: true}}"
    roots = [workspace(tmp_path / f"ws{i}", prefix, policy) for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "imgbuild", "build", "//...", "--progress", "plain"],
                              cwd=root, stderr=subprocess.PIPE, text=True) for root in roots]
    outs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    entries = list_keys_of(bucket, "targets/entries/")
    assert len(entries) == 3  # one per target, whoever wrote it first
    from imgbuild.cache.entry import CacheEntry
    from tests.integration.conftest import read_object

    for key in entries:
        hexkey = key.rsplit("/", 1)[1].removesuffix(".json")
        CacheEntry.from_bytes(read_object(bucket, key), expected_key=f"sha256:{hexkey}")


def list_keys_of(bucket: str, prefix: str) -> list[str]:
    from tests.integration.conftest import list_keys

    return list_keys(bucket, prefix)


def test_inspect_shows_layers_of_the_latest_image(tmp_path: Path, prefix: str) -> None:
    root = workspace(tmp_path / "ws", prefix, "{backend: local}")
    r = imgbuild("inspect", "//api", cwd=root)
    assert r.code == 2 and "imgbuild build //api:api" in r.err  # not built yet: says what to do
    build(root)
    r = imgbuild("inspect", "//api", "--json", cwd=root)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    instructions = [s["instruction"] for s in doc["steps"]]
    assert any(i.startswith("COPY . /app/") for i in instructions)
    assert any("cat /base.txt" in i for i in instructions)
    assert doc["layer_count"] >= 3 and doc["total_bytes"] == sum(s["bytes"] for s in doc["steps"])
