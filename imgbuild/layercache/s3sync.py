"""BuildKit layer caches in S3 for builders without BuildKit's own S3 cache (the ``docker`` driver).

BuildKit exports the cache to a directory (``--cache-to type=local,dest=DIR``) as an OCI layout::

    DIR/index.json               {"manifests": [<descriptor of the cache manifest>]}, ref name "latest"
    DIR/oci-layout
    DIR/blobs/sha256/<hex>       the cache manifest (an OCI image index listing every layer and the
                                 application/vnd.buildkit.cacheconfig.v0 blob), the cache config, layers

(as exported by dockerd 26.1's BuildKit here). The exporter adds blobs and replaces ``index.json`` on
every export and never deletes a blob, so only the blobs reachable from ``index.json`` are the cache.

In the bucket, under ``<policy prefix>layers/``::

    blobs/sha256/<hex>                  every blob, content addressed: stored once, shared by all targets
                                        and scopes (the target cache's S3 store keeps them so too)
    scopes/<scope>/<target>/index.json  the layout's index.json: the only object ever overwritten

:func:`push_scope` uploads the reachable blobs the bucket does not have (a HEAD first), children before
the manifests that name them, then ``index.json`` last: a reader never finds an index whose blobs are
missing. A second export without changes therefore uploads only ``index.json`` (~250 bytes).
:func:`pull_scope` does the reverse into a directory that ``--cache-from type=local,src=DIR`` reads,
verifying every blob's sha256 and writing ``index.json`` last, so the directory is always consistent.

Nothing here fails a build: the store is a :class:`~imgbuild.cache.store.GuardedStore` (the target
cache's: one warning, then no more calls once S3 is unreachable) extended with the scope indexes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol


from imgbuild.cache.s3 import S3Store, read_object
from imgbuild.cache.store import CacheError, CacheStore, GuardedStore, digest_hex
from imgbuild.layercache.args import scope_dir
from imgbuild.model import CachePolicy

LAYERS = "layers/"
PARALLEL = 4  # blob transfers at once (boto3 clients are thread-safe)

_INDEXES = frozenset({"application/vnd.oci.image.index.v1+json",
                      "application/vnd.docker.distribution.manifest.list.v2+json"})
_MANIFESTS = frozenset({"application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"})
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # scope and target names become key and path parts
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class LayerIndexStore(CacheStore, Protocol):
    """A blob store (the target cache's interface) that also keeps one ``index.json`` per scope and target."""

    def get_index(self, scope: str, target: str) -> bytes | None: ...

    def put_index(self, scope: str, target: str, data: bytes) -> None: ...


class S3LayerStore(S3Store):
    """The target cache's S3 store (client, timeouts, bucket check, error translation) rooted at
    ``<prefix>layers/``, plus the scope indexes."""

    def __init__(self, bucket: str, *, prefix: str = "", region: str | None = None, endpoint_url: str | None = None,
                 use_path_style: bool = False, client: Any = None) -> None:
        root = f"{prefix.strip('/')}/{LAYERS}" if prefix.strip("/") else LAYERS
        super().__init__(bucket, prefix=root, region=region, endpoint_url=endpoint_url,
                         use_path_style=use_path_style, client=client)

    @classmethod
    def for_policy(cls, policy: CachePolicy) -> S3LayerStore:
        if policy.backend != "s3" or not policy.bucket:
            raise ValueError(f"cache policy {policy.name!r} is not an s3 policy with a bucket")
        return cls(policy.bucket, prefix=policy.prefix, region=policy.region, endpoint_url=policy.endpoint_url,
                   use_path_style=policy.use_path_style)

    def index_key(self, scope: str, target: str) -> str:
        for part in (scope, target):
            if not _NAME.match(part):
                raise ValueError(f"not a scope or target name: {part!r}")
        return f"{self.prefix}scopes/{scope}/{target}/index.json"

    def get_index(self, scope: str, target: str) -> bytes | None:
        key = self.index_key(scope, target)
        with self._errors("reading a layer-cache index"):
            return read_object(self._ready(), self.bucket, key)

    def put_index(self, scope: str, target: str, data: bytes) -> None:
        key = self.index_key(scope, target)
        with self._errors("writing a layer-cache index"):
            # Overwritten on each export: S3 replaces an object whole, so readers see the old or the new one.
            self._ready().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")


class GuardedLayerStore(GuardedStore):
    """:class:`GuardedStore` (never raises; one warning; no calls after S3 failed; read-only) with indexes."""

    def __init__(self, store: LayerIndexStore, *, warn: Callable[[str], None], read_only: bool = False) -> None:
        super().__init__(store, warn=warn, read_only=read_only)
        self.layers = store

    def get_index(self, scope: str, target: str) -> bytes | None:
        """The scope's index.json, or None (none yet, or the store is unavailable: warned once)."""
        try:
            return self._call(lambda: self.layers.get_index(scope, target), None)
        except CacheError as exc:
            self._warn_once(f"index:{scope}/{target}", f"layer cache {self.name}: {exc}")
            return None

    def put_index(self, scope: str, target: str, data: bytes) -> bool:
        if self.read_only or not self.available:
            return False
        def put() -> bool:
            self.layers.put_index(scope, target, data)
            return True

        try:
            return self._call(put, False)
        except CacheError as exc:
            self._warn_once(f"put-index:{scope}/{target}", f"layer cache {self.name}: {exc}")
            return False

    def note(self, message: str) -> None:
        """A warning through the run's callback (for problems found outside the store)."""
        self._warn(message)


def open_store(policy: CachePolicy, *, warn: Callable[[str], None], read_only: bool = False) -> GuardedLayerStore:
    """The guarded layer store of an ``s3`` policy; one per policy and run, shared by the build threads."""
    return GuardedLayerStore(S3LayerStore.for_policy(policy), warn=warn, read_only=read_only or not policy.write)


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, kw_only=True)
class PushResult:
    pushed: bool  # the scope's index.json was written (so the cache is readable)
    blobs: int  # blobs the exported cache references
    blobs_uploaded: int  # of them, uploaded by this call (the others were in the bucket)
    layers_uploaded: int  # of those, filesystem layers (the rest: the cache manifest and config, ~2 KB each)
    bytes_uploaded: int  # bytes of the uploaded blobs plus index.json


def push_scope(store: GuardedLayerStore, local_dir: Path, scope: str, target: str) -> PushResult:
    """Upload the cache BuildKit exported to ``scope_dir(local_dir, scope, target)``. Never raises.

    Blobs the bucket has are not uploaded again; index.json goes last, and only if every blob it
    reaches is in the bucket.
    """
    nothing = PushResult(pushed=False, blobs=0, blobs_uploaded=0, layers_uploaded=0, bytes_uploaded=0)
    if store.read_only or not store.available:
        return nothing
    folder = scope_dir(local_dir, scope, target)
    try:
        index = (folder / "index.json").read_bytes()
        order = _post_order(index, lambda d: _blob_path(folder, d).read_bytes())
    except (OSError, ValueError) as exc:
        store.note(f"layer cache of {target} not uploaded: {folder} is not a complete cache export ({_why(exc)})")
        return nothing
    missing = [d for d in order if not _blob_path(folder, d).is_file()]
    if missing:
        store.note(f"layer cache of {target} not uploaded: blob {missing[0].digest} is missing from {folder}")
        return nothing

    uploaded: list[Descriptor] = []

    def put(d: Descriptor) -> bool:
        """Make sure the bucket has the blob; True if it has it now."""
        if store.put_blob(d.digest, _blob_path(folder, d)):
            uploaded.append(d)  # list.append is atomic: safe from the pool's threads
            return True
        return store.has_blob(d.digest)  # known from put_blob's look unless it failed (then warned)

    # Layers first, in parallel; then the manifests, children before parents, each only if all it names
    # is in the bucket.
    parents = [d for d in order if d.media_type in _INDEXES | _MANIFESTS]
    leaves = [d for d in order if d.media_type not in _INDEXES | _MANIFESTS]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        complete = all(list(pool.map(put, leaves)))
    complete = complete and all(put(d) for d in parents)  # all() stops at the first failure
    sent = sum(d.size for d in uploaded)
    pushed = complete and store.put_index(scope, target, index)
    return PushResult(pushed=pushed, blobs=len(order), blobs_uploaded=len(uploaded),
                      layers_uploaded=sum(1 for d in uploaded if _is_layer(d.media_type)),
                      bytes_uploaded=sent + (len(index) if pushed else 0))


def pull_scope(store: GuardedLayerStore, local_dir: Path, scope: str, target: str) -> bool:
    """Fetch a scope's cache into ``scope_dir(local_dir, scope, target)``; True if it is there now.

    False when the scope has no cache yet (silently), or the store is unavailable or the cache damaged
    (one warning). Blobs already in the directory (same size) are not fetched again; every fetched one is
    checked against its sha256; index.json is replaced last, so the directory always holds a whole cache.
    """
    if not store.available:
        return False
    index = store.get_index(scope, target)
    if index is None:
        return False
    folder = scope_dir(local_dir, scope, target)

    def fetch(d: Descriptor) -> bool:
        path = _blob_path(folder, d)
        with contextlib.suppress(OSError):
            if path.stat().st_size == d.size:
                return True
        return store.get_blob(d.digest, path)

    def read(d: Descriptor) -> bytes:
        if not fetch(d):
            raise _Unfetched(d.digest)
        return _blob_path(folder, d).read_bytes()

    try:
        order = _post_order(index, read)  # fetches the manifests on the way
        leaves = [d for d in order if d.media_type not in _INDEXES | _MANIFESTS]
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            if not all(pool.map(fetch, leaves)):
                return False  # the guard has warned
        _write_atomic(folder / "oci-layout", _OCI_LAYOUT)
        _write_atomic(folder / "index.json", index)
    except _Unfetched:
        return False
    except (OSError, ValueError) as exc:
        store.note(f"layer cache {scope}/{target} in {store.name} not used: {_why(exc)}")
        return False
    return True


def pull_scopes(store: GuardedLayerStore, local_dir: Path, scopes: Iterable[str], target: str) -> str | None:
    """Pull the first of ``scopes`` (own scope, then fallbacks) that has a cache; which one, or None.

    The fallbacks are read only when the own scope has no cache yet (``fallback_scopes`` in the
    workspace reference). None after one warning when no scope has a cache for the target.
    """
    tried = []
    for scope in scopes:
        tried.append(scope)
        if pull_scope(store, local_dir, scope, target):
            return scope
    if store.available and tried:
        store.note(f"no layer cache for {target} in {store.name} yet (scopes {', '.join(tried)}); "
                   "building without it")
    return None


# -- the OCI layout -------------------------------------------------------------------------------------


class _Unfetched(Exception):
    pass


def _post_order(index_json: bytes, read: Callable[[Descriptor], bytes]) -> list[Descriptor]:
    """Every blob reachable from index.json, each once, children before the index or manifest naming them."""
    seen: set[str] = set()
    out: list[Descriptor] = []

    def visit(d: Descriptor, depth: int) -> None:
        if d.digest in seen:
            return
        seen.add(d.digest)
        if d.media_type in _INDEXES | _MANIFESTS:
            if depth > 8:
                raise ValueError("manifests nested too deep")
            for child in _children(read(d)):
                visit(child, depth + 1)
        out.append(d)

    for d in _children(index_json):
        visit(d, 0)
    return out


def _children(data: bytes) -> Iterator[Descriptor]:
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("a manifest is not a JSON object")
    items = list(doc.get("manifests") or ())
    if isinstance(doc.get("config"), dict):
        items.append(doc["config"])
    items += list(doc.get("layers") or ())
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("malformed descriptor")
        digest, size, media = item.get("digest"), item.get("size"), item.get("mediaType", "")
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0 \
                or not isinstance(media, str):
            raise ValueError(f"malformed descriptor {item!r:.100}")
        digest_hex(digest)  # ValueError unless sha256:<hex>: it becomes a path and a key
        yield Descriptor(digest=digest, size=size, media_type=media)


def _is_layer(media_type: str) -> bool:
    # application/vnd.oci.image.layer.v1.tar+gzip, application/vnd.docker.image.rootfs.diff.tar.gzip ...
    return ".layer." in media_type or ".rootfs." in media_type


def _blob_path(folder: Path, d: Descriptor) -> Path:
    return folder / "blobs" / "sha256" / digest_hex(d.digest)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
    return str(exc)
