"""Builds and pushes leave records in the history (S3 here), and secrets reach none of the outputs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from imgbuild.statedir import for_workspace

from tests.conftest import write_files
from tests.integration.conftest import imgbuild, list_keys, read_object

pytestmark = pytest.mark.usefixtures("engine")
SECRET = "sk_live_51ZzTopSecretValue"


def test_records_in_s3_history_for_build_and_push(tmp_path: Path, prefix: str, bucket: str, s3_endpoint: str,
                                                  aws_env: None) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": f"""
            version: 1
            defaults: {{registry: local, tags: [v1], push: true}}
            registries: {{local: {{url: localhost:5000/{prefix}, insecure: true}}}}
            history: {{backend: s3, bucket: {bucket}, prefix: audit/, endpoint_url: '{s3_endpoint}'}}
        """,
        "svc/BUILD.yaml": "apps:\n  svc:\n    build_args: {MODE: prod}\n    secrets: [{id: token, env: API_TOKEN}]\n",
        "svc/Dockerfile": "FROM busybox:1.36\nARG MODE\nRUN --mount=type=secret,id=token wc -c /run/secrets/token "
                          "> /len && echo $MODE > /mode\n",
    })
    r = imgbuild("build", "//...", "--push", "--progress", "plain", cwd=root, env={"API_TOKEN": SECRET})
    assert r.code == 0, r.err
    keys = [k for k in list_keys(bucket, "audit/records/")]
    records = [json.loads(read_object(bucket, k)) for k in keys]
    kinds = sorted(rec["kind"] for rec in records)
    assert kinds == ["build", "push"]
    push = next(rec for rec in records if rec["kind"] == "push")
    assert push["label"] == "//svc:svc" and push["pushed"] == [f"localhost:5000/{prefix}/svc@{push['image_id']}"]
    assert push["build_args"] == {"MODE": "prod"} and push["secret_ids"] == ["token"]
    assert push["input_digest"].startswith("sha256:") and push["version"] == 1

    r = imgbuild("history", "//svc:svc", "--json", cwd=root)
    assert r.code == 0, r.err
    assert {rec["id"] for rec in json.loads(r.out)} == {rec["id"] for rec in records}
    assert SECRET not in "".join(k for k in keys) + json.dumps(records)


def test_secret_value_reaches_no_log_tag_report_or_history(tmp_path: Path, prefix: str) -> None:
    root = write_files(tmp_path / "ws", {
        "imgbuild.yaml": "version: 1\ndefaults: {tags: ['{env.API_TOKEN_NAME}', dev]}\n",
        "svc/BUILD.yaml": f"apps:\n  svc:\n    image: {prefix}-svc\n    secrets: [{{id: token, env: API_TOKEN}}]\n",
        "svc/Dockerfile": "FROM busybox:1.36\nRUN --mount=type=secret,id=token wc -c /run/secrets/token > /len\n",
    })
    r = imgbuild("build", "//...", "--progress", "plain", "--json", "report.json", "--metadata-file", "meta.json",
                 cwd=root, env={"API_TOKEN": SECRET, "API_TOKEN_NAME": "named"})
    assert r.code == 0, r.err
    # The secret did reach the build (its length is in the image) ...
    from tests.integration.conftest import run_in_image

    assert run_in_image(f"{prefix}-svc:dev", "cat", "/len").split()[0] == str(len(SECRET))
    # ... and nothing imgbuild wrote or printed contains it.
    texts = [r.out, r.err, (root / "report.json").read_text(), (root / "meta.json").read_text()]
    state = for_workspace(root)
    texts += [p.read_text(errors="replace") for d in (state.cache, state.records) for p in d.rglob("*")
              if p.is_file() and p.suffix in (".log", ".json")]
    db = state.history_db
    texts += ["".join(map(str, row)) for row in sqlite3.connect(db).execute("select * from records")]
    from tests.integration.conftest import docker

    texts.append(docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"))
    texts.append(docker("image", "inspect", f"{prefix}-svc:dev"))
    assert all(SECRET not in t for t in texts)
    assert len(texts) > 6
