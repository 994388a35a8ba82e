"""A target-cache store in an S3 bucket (or any S3-compatible server), through boto3.

The layout is :mod:`imgbuild.cache.local`'s under ``prefix``: ``entries/<hex>.json``,
``labels/<sha256 of label>/<hex>`` (empty markers) and ``blobs/sha256/<hex>``.

* Entries are created with ``If-None-Match: *``: the server refuses (412) a second writer of a key, so
  the first one wins without any lock.
* Timeouts are short and retries few: a cache that does not answer must cost seconds, not minutes; the
  caller (:class:`~imgbuild.cache.store.GuardedStore`) then stops asking.
* Nothing is created implicitly: a missing bucket is :class:`CacheUnavailable` saying so. The bucket is
  checked once, on first use (``HeadObject`` answers a bare 404 for a missing bucket and a missing key
  alike, so without the check a missing bucket would look like an empty cache).
* Every botocore error becomes :class:`CacheUnavailable` with a short message of our own making:
  server messages and URLs are not passed through whole, so no credential can end up in a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                 InvalidRegionError, NoCredentialsError, NoRegionError, PartialCredentialsError,
                                 ReadTimeoutError)

from imgbuild.cache.entry import CacheEntry
from imgbuild.cache.outages import OUTAGES, endpoint_name
from imgbuild.cache.store import (CacheUnavailable, CorruptBlob, MissingBlob, StoreStats, copy_hashing,
                                  digest_hex, download_verified, label_entries)

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 15.0
MAX_ATTEMPTS = 2  # in all: the first try and one retry
MULTIPART_THRESHOLD = 64 << 20

_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                          "TokenRefreshRequired", "AuthorizationHeaderMalformed"})


class S3Store:
    def __init__(self, bucket: str, *, prefix: str = "", region: str | None = None, endpoint_url: str | None = None,
                 use_path_style: bool = False, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.name = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._region = region
        self._endpoint_url = endpoint_url
        self._path_style = use_path_style
        self._client = client
        self._endpoint: str | None = None  # scheme://host:port, known once the client is
        self._bucket_checked = False
        self._conditional_writes = True
        self._lock = threading.Lock()

    # -- the interface ------------------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        with self._errors("reading an entry"):
            data = read_object(self._ready(), self.bucket, self._entry_key(key))
        return None if data is None else CacheEntry.from_bytes(data, expected_key=key)

    def put(self, entry: CacheEntry, *, replace: bool = False) -> bool:
        object_key = self._entry_key(entry.key)
        body = entry.to_bytes()
        with self._errors("writing an entry"):
            client = self._ready()
            created = self._create(client, object_key, body, replace=replace)
            if created:  # after the entry, so a marker never names an entry that was not written
                marker = f"{self._label_prefix(entry.label)}{digest_hex(entry.key)}"
                client.put_object(Bucket=self.bucket, Key=marker, Body=b"")
        return created

    def has_blob(self, digest: str) -> bool:
        object_key = self._blob_key(digest)
        with self._errors("looking up a blob"):
            return self._exists(self._ready(), object_key)

    def put_blob(self, digest: str, path: Path, *, replace: bool = False) -> bool:
        object_key = self._blob_key(digest)
        with open(path, "rb") as src:  # outside the translation: a missing source is the caller's bug
            with self._errors("uploading a blob"):
                client = self._ready()
                if not replace and self._exists(client, object_key):
                    return False
                if copy_hashing(src) != digest_hex(digest):
                    raise CorruptBlob(f"{path} does not hash to it; not stored", digest=digest)
                from boto3.s3.transfer import TransferConfig

                # upload_file goes multipart above the threshold, parts in parallel; a concurrent uploader
                # of the same blob writes the same bytes, so no condition is needed.
                client.upload_file(str(path), self.bucket, object_key,
                                   ExtraArgs={"ContentType": "application/octet-stream"},
                                   Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                                         multipart_chunksize=MULTIPART_THRESHOLD, max_concurrency=4))
        return True

    def get_blob(self, digest: str, dest: Path) -> None:
        object_key = self._blob_key(digest)
        try:
            with self._errors("downloading a blob"):
                client = self._ready()
                try:
                    response = client.get_object(Bucket=self.bucket, Key=object_key)
                except ClientError as exc:
                    if _code(exc) in _MISSING_KEY:
                        raise MissingBlob(digest, store=self.name) from None
                    raise
                # One streamed GET rather than download_file's parallel ranges: the hash needs the bytes
                # in order, and checking it while writing saves reading the file again.
                with contextlib.closing(response["Body"]) as body:
                    download_verified(body, dest, digest)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        with self._errors("listing a target's entries"):
            markers = list(self._list(self._ready(), self._label_prefix(label)))
        # The marker's time approximates the entry's; it picks which entries to read when limited.
        markers.sort(key=lambda o: (o["LastModified"], o["Key"]), reverse=True)
        return label_entries(self.get, ("sha256:" + m["Key"].rsplit("/", 1)[-1] for m in markers), label, limit)

    def stats(self) -> StoreStats:
        with self._errors("listing the cache"):
            client = self._ready()
            entries = [o["Size"] for o in self._list(client, f"{self.prefix}entries/")]
            blobs = [o["Size"] for o in self._list(client, f"{self.prefix}blobs/sha256/")]
        return StoreStats(entries=len(entries), blobs=len(blobs), bytes=sum(entries) + sum(blobs))

    # -- keys ---------------------------------------------------------------------------------------------

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}entries/{digest_hex(key)}.json"

    def _label_prefix(self, label: str) -> str:
        return f"{self.prefix}labels/{hashlib.sha256(label.encode()).hexdigest()}/"

    def _blob_key(self, digest: str) -> str:
        return f"{self.prefix}blobs/sha256/{digest_hex(digest)}"

    # -- S3 -----------------------------------------------------------------------------------------------

    def _ready(self) -> Any:
        """The client, made on first use (so that making a store never fails), after checking the bucket."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = _make_client(region=self._region, endpoint_url=self._endpoint_url,
                                                path_style=self._path_style)
                except InvalidRegionError:
                    raise  # a ValueError too, explained by _errors
                except ValueError:  # botocore's "Invalid endpoint: ..."
                    raise CacheUnavailable("the endpoint URL is not a valid http(s) URL") from None
            client = self._client
            if self._endpoint is None:
                self._endpoint = _display_endpoint(self._endpoint_url, client)
                _watch(client, self._endpoint)
            endpoint = self._endpoint
        down = OUTAGES.skipped(endpoint)
        if down is not None:  # another store of this run waited for it already
            raise CacheUnavailable(down)
        if self._bucket_checked:
            return client
        # Not under the lock: threads arriving together check in parallel, so a server that does not
        # answer costs them one timeout, not one each in turn.
        try:
            client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # 403: the credentials may lack s3:ListBucket yet be allowed the objects; the object calls
            # will tell.
            if _code(exc) not in {"403", "AccessDenied", "Forbidden"}:
                raise
        self._bucket_checked = True
        return client

    def _create(self, client: Any, object_key: str, body: bytes, *, replace: bool) -> bool:
        if replace:
            client.put_object(Bucket=self.bucket, Key=object_key, Body=body, ContentType="application/json")
            return True
        if not self._conditional_writes:
            # A server without conditional writes: look, then write. Two writers racing here can both
            # write; each writes a complete, valid entry for the key, so the last one simply stays.
            if self._exists(client, object_key):
                return False
            client.put_object(Bucket=self.bucket, Key=object_key, Body=body, ContentType="application/json")
            return True
        for attempt in range(3):
            try:
                client.put_object(Bucket=self.bucket, Key=object_key, Body=body, ContentType="application/json",
                                  IfNoneMatch="*")
                return True
            except ClientError as exc:
                code = _code(exc)
                if code in {"PreconditionFailed", "412"}:
                    return False
                if code in {"ConditionalRequestConflict", "409"} and attempt < 2:
                    # AWS: another conditional write of the key is in flight; asking again settles who won.
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if code in {"NotImplemented", "501"}:
                    self._conditional_writes = False
                    return self._create(client, object_key, body, replace=False)
                raise
        raise AssertionError("unreachable")

    def _exists(self, client: Any, object_key: str) -> bool:
        try:
            client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                return False
            raise
        return True

    def _list(self, client: Any, prefix: str) -> Iterator[dict[str, Any]]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                if obj["Key"] != prefix:
                    yield obj

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn every botocore/boto3/socket error into :class:`CacheUnavailable` with a message of our own."""
        from boto3.exceptions import S3UploadFailedError  # boto3 itself is imported only when S3 is used

        try:
            yield
        except ClientError as exc:
            raise CacheUnavailable(self._client_error_reason(exc, doing)) from exc
        except S3UploadFailedError as exc:
            # boto3 raises it while handling the ClientError (no explicit cause), which is the one that says why.
            inner = exc.__cause__ or exc.__context__
            reason = self._client_error_reason(inner, doing) if isinstance(inner, ClientError) else f"{doing} failed"
            raise CacheUnavailable(reason) from exc
        except BotoCoreError as exc:
            raise CacheUnavailable(self._botocore_reason(exc, doing)) from exc
        except OSError as exc:  # local files (the download's temporary file), or a socket error not wrapped
            raise CacheUnavailable(f"{doing} failed: {exc.strerror or type(exc).__name__}") from exc

    def _client_error_reason(self, exc: ClientError, doing: str) -> str:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (code in {"404", "NotFound"} and not self._bucket_checked):
            return f"bucket '{self.bucket}' does not exist (imgbuild creates no bucket)"
        if code in {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}:
            return f"access denied {doing} in bucket '{self.bucket}' (check the credentials' permissions)"
        if code in _CREDENTIALS:
            return f"the server rejected the credentials ({code})"
        if code in {"SlowDown", "503", "ServiceUnavailable", "RequestTimeout", "InternalError", "500"}:
            return f"the server is overloaded or failing ({code}) {doing}"
        return f"{doing} failed: {code} (HTTP {status})"

    def _botocore_reason(self, exc: Exception, doing: str) -> str:
        where = _display_endpoint(self._endpoint_url, self._client)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return "no AWS credentials found (environment, ~/.aws or an instance role)"
        if isinstance(exc, NoRegionError):
            return "no AWS region configured (set the cache policy's region or AWS_DEFAULT_REGION)"
        if isinstance(exc, InvalidRegionError):
            return f"{self._region!r} is not a valid AWS region name"
        return _outage(exc, where) or f"{doing} failed: {type(exc).__name__}"


def _make_client(*, region: str | None, endpoint_url: str | None, path_style: bool) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},  # ("max_attempts" counts retries)
        s3={"addressing_style": "path" if path_style else "auto"},
        max_pool_connections=32,  # build threads, each upload using up to 4 more
        # botocore >= 1.36 adds CRC checksums to every upload, which many S3-compatible servers reject
        # (boto/boto3#4392); blobs are checked against their sha256 anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="imgbuild",
    )
    # A session per store: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def _watch(client: Any, endpoint: str) -> None:
    """Share the client's endpoint failures with every S3 store of the run (:mod:`imgbuild.cache.outages`).

    A request that times out or cannot connect marks the endpoint down and is not tried again: a stalled
    endpoint would most likely stall the retry too, and the build must not wait for more than one
    timeout. Requests to an endpoint that is down fail before they are sent, retries in flight included.
    """

    def refuse(**_: Any) -> None:
        down = OUTAGES.skipped(endpoint)
        if down is not None:
            raise CacheUnavailable(down)  # botocore hands it back as the attempt's error; not retried

    def give_up(caught_exception: BaseException | None = None, **_: Any) -> bool | None:
        reason = _outage(caught_exception, endpoint)
        if reason is None:
            return None  # botocore's retry handler decides
        OUTAGES.trip(endpoint, reason)
        return False  # no retry: the first answer of the needs-retry handlers decides

    client.meta.events.register("before-send.s3", refuse)
    client.meta.events.register_first("needs-retry.s3", give_up)


def _outage(exc: BaseException | None, where: str) -> str | None:
    """Why the endpoint ``where`` is down for the rest of the run, if ``exc`` says it is."""
    if isinstance(exc, ConnectTimeoutError):
        return f"connecting to {where} timed out"
    if isinstance(exc, ReadTimeoutError):
        return f"{where} did not answer in time"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to {where}"
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _display_endpoint(endpoint_url: str | None, client: Any) -> str:
    url = endpoint_url or (client.meta.endpoint_url if client is not None else None)
    return endpoint_name(url) if url else "S3"


def read_object(client: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object (other errors propagate)."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in _MISSING_KEY:
            return None
        raise
    with contextlib.closing(response["Body"]) as body:
        data: bytes = body.read()
    return data
