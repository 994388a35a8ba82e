"""Faults of caches and history on the real engine and S3 server (issue #14): an unusable local cache path,
a changed secret, a corrupt blob in S3, an S3 endpoint that accepts connections and never answers."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import write_files
from tests.integration.conftest import Run, docker, imgbuild, list_keys, run_in_image

pytestmark = pytest.mark.usefixtures("engine")


def build(root: Path, *extra: str, timeout: float = 300) -> tuple[Run, dict[str, Any]]:
    report_path = root / "report.json"
    report_path.unlink(missing_ok=True)
    r = imgbuild("build", "//...", "--progress", "plain", "--json", str(report_path), *extra, cwd=root,
                 timeout=timeout)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return r, {t["label"]: t for t in report.get("targets", [])}


def warnings(r: Run) -> list[str]:
    return [line for line in r.err.splitlines() if line.startswith("warning:")]


def test_local_cache_path_that_is_a_file_is_left_out_of_the_build(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": """
            version: 1
            defaults: {tags: [dev], cache: local}
            cache_policies:
              local: {backend: local, path: cachefile}
        """,
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n",
        "app/Dockerfile": "FROM busybox:1.36\nRUN echo built > /out\n",
        "cachefile": "not a directory\n",
    })
    r, report = build(root)
    assert r.code == 0, r.err
    assert report["//app:app"]["status"] == "built"
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out") == "built\n"
    assert any("cachefile" in w and "continuing without it" in w for w in warnings(r)), r.err
    argv = Path(report["//app:app"]["log"]).read_text().splitlines()[0]
    assert "--cache-to" not in argv and "--cache-from" not in argv, argv
    assert (root / "cachefile").read_text() == "not a directory\n"


def test_changed_secret_runs_the_steps_that_mount_it_again(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": "version: 1\ndefaults: {tags: [dev]}\n",
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n    secrets: [{{id: tok, src: tok.txt}}]\n",
        "app/Dockerfile": """
            FROM busybox:1.36 AS fetch
            RUN echo unrelated > /step
            RUN --mount=type=secret,id=tok cat /run/secrets/tok > /out
            FROM busybox:1.36
            COPY --from=fetch /out /out
        """,
        "tok.txt": "first-token",
    })
    r, first = build(root)
    assert r.code == 0, r.err
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out") == "first-token"

    (root / "tok.txt").write_text("second-token")
    r, second = build(root)
    assert r.code == 0, r.err
    assert second["//app:app"]["status"] == "built"
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out") == "second-token"
    log = Path(second["//app:app"]["log"]).read_text()
    assert "--no-cache-filter fetch" in log.splitlines()[0]
    assert "first-token" not in log and "second-token" not in log + r.err + r.out

    # Unchanged since the last build: BuildKit's cache serves the step again (nothing is forced).
    (root / "app/Dockerfile").write_text((root / "app/Dockerfile").read_text() + "LABEL x=y\n")
    r, third = build(root)
    assert r.code == 0, r.err
    log = Path(third["//app:app"]["log"]).read_text()
    assert "--no-cache" not in log.splitlines()[0]
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out") == "second-token"


def test_corrupt_blob_in_s3_is_repaired_by_the_rebuild(tmp_path: Path, prefix: str, bucket: str, s3_endpoint: str,
                                                       admin: Any) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{tags: [dev], cache: ci}}
            cache_policies:
              ci: {{backend: s3, bucket: {bucket}, endpoint_url: '{s3_endpoint}', use_path_style: true}}
        """,
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n",
        "app/Dockerfile": "FROM busybox:1.36\nRUN echo app-$RANDOM > /out\n",
    })
    r, first = build(root)
    assert r.code == 0, r.err
    entry_key = next(k for k in list_keys(bucket, "targets/entries/"))
    entry = json.loads(admin.get_object(Bucket=bucket, Key=entry_key)["Body"].read())
    # The image's own index blob: a rebuild gives it another digest (the creation time is in the config),
    # so only replacing the entry, not re-uploading the rebuilt image's blobs, can repair the target.
    bad = entry["image_id"].split(":")[1]
    admin.put_object(Bucket=bucket, Key=f"targets/blobs/sha256/{bad}", Body=b"garbage")

    wipe_images(prefix)
    r, report = build(root)
    assert r.code == 0, r.err
    assert report["//app:app"]["status"] == "built"
    assert any("corrupt" in w for w in warnings(r)), r.err

    wipe_images(prefix)
    r, report = build(root)
    assert r.code == 0, r.err
    assert report["//app:app"]["status"] == "restored", r.err
    assert warnings(r) == [], r.err
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out").startswith("app-")


def wipe_images(prefix: str) -> None:
    ids = docker("image", "ls", "-q", "--filter", f"reference={prefix}*").split()
    if ids:
        docker("image", "rm", "-f", *sorted(set(ids)))


@pytest.fixture
def stalled_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections, reads what it is sent and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # kept open, never written to

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_stalled_s3_endpoint_costs_one_timeout_and_spools_history(tmp_path: Path, prefix: str, bucket: str,
                                                                   s3_endpoint: str, stalled_endpoint: str,
                                                                   aws_env: None) -> None:
    def config(endpoint: str) -> str:
        s3 = f"bucket: {bucket}, endpoint_url: '{endpoint}'"
        return f"""
            version: 1
            defaults: {{tags: [dev], cache: targets}}
            cache_policies:
              targets: {{backend: s3, {s3}, use_path_style: true, prefix: t/}}
            history: {{backend: s3, {s3}, prefix: h/}}
        """

    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": config(stalled_endpoint),
        "app/BUILD.yaml": f"apps:\n  app:\n    image: {prefix}-app\n",
        "app/Dockerfile": f"FROM busybox:1.36\nRUN echo {prefix} > /out\n",
    })
    # Caches (target and layer, synced through S3 on the docker driver) and the history all use the stalled
    # endpoint: without a shared breaker each of them waits for its own timeouts (about 90 s in all).
    r, report = build(root, timeout=60)
    assert r.code == 0, r.err
    assert report["//app:app"]["status"] == "built"
    assert run_in_image(f"{prefix}-app:dev", "cat", "/out") == f"{prefix}\n"
    said = warnings(r)
    # One warning for the caches (the layer cache's says the same, "not asked again", and is left out) and
    # one for the history, whose records wait in the spool.
    assert len(said) == 2, r.err
    assert said[0] == (f"warning: cache s3://{bucket}/t/targets unavailable: {stalled_endpoint} did not answer in "
                       "time; continuing without it (targets are rebuilt)")
    history = re.fullmatch(rf"warning: history s3://{bucket}/h unavailable \({re.escape(stalled_endpoint)} did not "
                           r"answer in time; not asked again in this run\); records are kept in (.+) and uploaded "
                           r"when it can be reached again", said[1])
    assert history is not None, said[1]
    spool = Path(history.group(1))
    assert len(list(spool.glob("*.json"))) == 1

    # S3 is back: `history` lists the spooled record with the stored ones, and the next build uploads it.
    (root / "imgbuild.yaml").write_text(config(s3_endpoint))
    r = imgbuild("history", "--json", cwd=root)
    assert r.code == 0, r.err
    assert [rec["label"] for rec in json.loads(r.out)] == ["//app:app"]
    r, _ = build(root)
    assert r.code == 0, r.err
    assert len(list_keys(bucket, "h/records/")) == 2  # the spooled record and this run's
    assert not list(spool.glob("*.json"))
