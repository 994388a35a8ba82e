"""One S3 endpoint that stops answering costs a run one timeout: the first request that times out is not
tried again, and every other S3 store of the run on that endpoint gives up without sending anything.

No network: the stall is a ``before-send`` handler (botocore's hook for answering a request in place of
the server) that raises what botocore raises when the read timeout expires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from imgbuild.cache.s3 import S3Store, _make_client
from imgbuild.cache.store import CacheUnavailable, GuardedStore
from imgbuild.history.record import HistoryRecord, utc_now
from imgbuild.history.s3 import S3History
from imgbuild.history.store import GuardedHistory

STALLED = "http://127.0.0.1:9"
OTHER = "http://127.0.0.2:9"
KEY = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def stalled_client(endpoint: str, sent: list[str], error: type[Exception] = ReadTimeoutError) -> Any:
    """A real client (retries as imgbuild configures them) whose requests time out, counted in ``sent``."""
    client = _make_client(region=None, endpoint_url=endpoint, path_style=True)

    def stall(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise error(endpoint_url=request.url)

    client.meta.events.register_last("before-send.s3", stall)
    return client


def test_the_first_timeout_marks_the_endpoint_down_for_every_store_of_the_run(tmp_path: Path) -> None:
    sent: dict[str, list[str]] = {"targets": [], "layers": [], "history": [], "elsewhere": []}
    warnings: list[str] = []
    targets = GuardedStore(S3Store("b", prefix="t/", endpoint_url=STALLED,
                                   client=stalled_client(STALLED, sent["targets"])), warn=warnings.append)
    assert targets.get(KEY) is None
    assert len(sent["targets"]) == 1  # not tried again
    assert warnings == [f"cache s3://b/t unavailable: {STALLED} did not answer in time; "
                        "continuing without it (targets are rebuilt)"]

    skipped = f"{STALLED} did not answer in time; not asked again in this run"
    layers = S3Store("b", prefix="layers/", endpoint_url=STALLED, client=stalled_client(STALLED, sent["layers"]))
    with pytest.raises(CacheUnavailable) as caught:
        layers.has_blob(KEY)
    assert str(caught.value) == skipped

    history = GuardedHistory(S3History("b", prefix="h/", endpoint_url=STALLED,
                                       client=stalled_client(STALLED, sent["history"])),
                             tmp_path / "spool", warnings.append)
    record = HistoryRecord(kind="build", time=utc_now(), label="//a:a", input_digest=KEY, image_id=KEY)
    history.append(record)
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [f"{record.hex}.json"]  # nothing lost
    assert warnings[1] == (f"history s3://b/h unavailable ({skipped}); records are kept in {tmp_path / 'spool'} "
                           "and uploaded when it can be reached again")
    assert sent["layers"] == sent["history"] == []  # nothing was sent to the stalled endpoint again

    # Another endpoint is not affected.
    elsewhere = S3Store("b", endpoint_url=OTHER, client=stalled_client(OTHER, sent["elsewhere"]))
    with pytest.raises(CacheUnavailable, match="did not answer in time"):
        elsewhere.get(KEY)
    assert len(sent["elsewhere"]) == 1


def test_a_refused_connection_also_marks_the_endpoint_down() -> None:
    sent: list[str] = []
    first = S3Store("b", endpoint_url=STALLED, client=stalled_client(STALLED, sent, EndpointConnectionError))
    with pytest.raises(CacheUnavailable, match=f"cannot connect to {STALLED}"):
        first.get(KEY)
    second = S3Store("b", endpoint_url=STALLED, client=stalled_client(STALLED, sent, EndpointConnectionError))
    with pytest.raises(CacheUnavailable, match=f"cannot connect to {STALLED}; not asked again in this run"):
        second.get(KEY)
    assert len(sent) == 1


def test_an_endpoint_that_answers_with_an_error_is_not_marked_down(s3_stub: Any) -> None:
    client, stubber = s3_stub
    stubber.add_client_error("head_bucket", service_error_code="AccessDenied", http_status_code=403)
    stubber.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    stubber.add_client_error("head_bucket", service_error_code="NoSuchBucket", http_status_code=404)
    with pytest.raises(CacheUnavailable, match="access denied"):
        S3Store("b", client=client).get(KEY)
    with pytest.raises(CacheUnavailable, match="does not exist"):
        S3Store("c", client=client).get(KEY)
