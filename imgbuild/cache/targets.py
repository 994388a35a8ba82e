"""The target cache in use: which store a target's policy names, finding, restoring and recording images.

Nothing here can fail a build: stores are wrapped in :class:`GuardedStore` (errors become a miss and one
warning), and a restore that goes wrong is a warning and a rebuild, never a wrong image.
"""

from __future__ import annotations

import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from imgbuild.build.images import SavedImage
from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.local import LocalStore
from imgbuild.cache.s3 import S3Store
from imgbuild.cache.store import CacheStore, GuardedStore
from imgbuild.model import CachePolicy, Target, Workspace

DEFAULT_LOCAL_PATH = ".imgbuild/cache"


class ImageStore(Protocol):
    def list_tags(self) -> dict[str, str]: ...
    def tag(self, image_id: str, ref: str) -> None: ...
    def save(self, ref: str, workdir: Path) -> SavedImage: ...
    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None: ...


def open_store(ws: Workspace, policy: CachePolicy | None) -> CacheStore:
    """The target-cache store of a policy: S3 for ``backend: s3``, else a local directory.

    The BuildKit layer-cache backends (registry, inline, gha) keep whole-target entries locally.
    """
    if policy is not None and policy.backend == "s3" and policy.bucket:
        return S3Store(policy.bucket, prefix=_join(policy.prefix, "targets/"), region=policy.region,
                       endpoint_url=policy.endpoint_url, use_path_style=policy.use_path_style)
    path = policy.path if policy is not None and policy.backend == "local" and policy.path else DEFAULT_LOCAL_PATH
    return LocalStore(ws.root / path)


def _join(prefix: str, rest: str) -> str:
    return f"{prefix.rstrip('/')}/{rest}" if prefix else rest


class TargetCache:
    """One per run: the stores of the policies in use, shared by the build threads."""

    def __init__(self, ws: Workspace, images: ImageStore, *, warn: Callable[[str], None], read_only: bool = False,
                 open_store: Callable[[Workspace, CachePolicy | None], CacheStore] = open_store) -> None:
        self.ws = ws
        self.images = images
        self.warn = warn
        self.read_only = read_only
        self._open = open_store
        self._stores: dict[str | None, GuardedStore] = {}
        self._lock = threading.Lock()

    def store_for(self, target: Target) -> GuardedStore:
        with self._lock:
            if target.cache not in self._stores:
                policy = self.ws.config.cache_policy(target.cache) if target.cache else None
                read_only = self.read_only or (policy is not None and not policy.write)
                self._stores[target.cache] = GuardedStore(self._open(self.ws, policy), warn=self.warn,
                                                          read_only=read_only)
            return self._stores[target.cache]

    def lookup(self, target: Target, key: str) -> CacheEntry | None:
        return self.store_for(target).get(key, label=str(target.label))

    def restore(self, target: Target, entry: CacheEntry, name: str) -> bool:
        """Fetch the entry's blobs and load the image as ``name``; False (with a warning) if it cannot."""
        store = self.store_for(target)
        with tempfile.TemporaryDirectory(prefix="imgbuild-restore-") as tmp:
            blob_dir = Path(tmp) / "blobs"
            blob_dir.mkdir()
            for blob in entry.blobs:
                if not store.get_blob(blob.digest, blob_dir / blob.digest.split(":", 1)[1]):
                    return False  # the guard has warned
            try:
                self.images.load(entry.oci_index, blob_dir, name, Path(tmp))
            except Exception as exc:  # the engine refused the layout: rebuild rather than fail
                self.warn(f"restoring {entry.label} failed: {exc}; building it instead")
                return False
        return True

    def record(self, target: Target, *, key: str, ref: str, image_id: str, manifest_digest: str | None,
               config_digest: str | None, inputs: str) -> None:
        """Store the built image's blobs (only those missing) and its entry. Never raises."""
        store = self.store_for(target)
        if store.read_only:
            return
        with tempfile.TemporaryDirectory(prefix="imgbuild-save-") as tmp:
            try:
                saved = self.images.save(ref, Path(tmp))
            except Exception as exc:
                self.warn(f"cannot export {target.label} for the cache: {exc}")
                return
            for digest, _size, _ in saved.blobs:
                store.put_blob(digest, saved.blob_dir / digest.split(":", 1)[1])
            entry = CacheEntry(
                key=key,
                label=str(target.label),
                created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                image_id=image_id,
                manifest_digest=manifest_digest,
                config_digest=config_digest,
                blobs=tuple(Blob(digest=d, size=s, media_type=m) for d, s, m in saved.blobs),
                oci_index=saved.index_json,
                inputs=inputs,
            )
            store.put(entry)
