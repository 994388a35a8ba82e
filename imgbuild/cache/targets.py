"""The target cache in use: which store a target's policy names, finding, restoring and recording images.

Nothing here can fail a build: stores are wrapped in :class:`GuardedStore` (errors become a miss and one
warning), and a restore that goes wrong is a warning and a rebuild, never a wrong image.
"""

from __future__ import annotations

import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Literal, Protocol

from imgbuild.builds.handoff import OciLayouts, link_or_copy, top_digest
from imgbuild.builds.images import SavedImage, read_layout
from imgbuild.cache.entry import Blob, CacheEntry
from imgbuild.cache.local import LocalStore
from imgbuild.cache.store import CacheError, CacheStore, GuardedStore
from imgbuild.model import CachePolicy, Target, Workspace


class ImageStore(Protocol):
    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]: ...
    def tag(self, image_id: str, ref: str) -> None: ...
    def untag(self, ref: str) -> None: ...
    def save(self, ref: str, workdir: Path) -> SavedImage: ...
    def load(self, index_json: str, blob_dir: Path, name: str, workdir: Path) -> None: ...


def open_store(ws: Workspace, policy: CachePolicy | None) -> CacheStore:
    """The target-cache store of a policy: S3 for ``backend: s3``, else a local directory.

    The BuildKit layer-cache backends (registry, inline, gha) keep whole-target entries locally.
    """
    if policy is not None and policy.backend == "s3" and policy.bucket:
        from imgbuild.cache.s3 import S3Store  # boto3 is a slow import: only when S3 is really used

        return S3Store(policy.bucket, prefix=_join(policy.prefix, "targets/"), region=policy.region,
                       endpoint_url=policy.endpoint_url, use_path_style=policy.use_path_style)
    if policy is not None and policy.backend == "local" and policy.path:
        return LocalStore(ws.root / policy.path)
    return LocalStore(ws.state.target_cache)


def mirror_dir(ws: Workspace, policy_name: str) -> Path:
    """The local mirror of an S3 policy's entries (see :class:`MirroredStore`)."""
    return ws.state.target_cache / "mirrors" / policy_name


class MirroredStore:
    """A remote store with a local mirror of the entries found or written in it.

    Entries are immutable and verified on every read, so a local copy is as good as the remote one:
    the next no-op run answers from disk without opening the remote store at all (no boto3 import, no
    round trip). Blobs stay remote only; a restore fetches them from the remote store.
    """

    def __init__(self, mirror: CacheStore, remote: Callable[[], GuardedStore], *, name: str, read_only: bool) -> None:
        self.mirror = mirror
        self._remote_factory = remote
        self._remote: GuardedStore | None = None
        self._lock = threading.Lock()
        self.name = name
        self.read_only = read_only

    @property
    def available(self) -> bool:
        """False once the remote store failed in this run."""
        return self.remote().available

    def remote(self) -> GuardedStore:
        with self._lock:
            if self._remote is None:
                self._remote = self._remote_factory()
            return self._remote

    def _mirror(self, entry: CacheEntry, *, replace: bool = False) -> None:
        try:
            self.mirror.put(entry, replace=replace)
        except CacheError:
            pass  # the mirror is only a shortcut

    def get(self, key: str, *, label: str | None = None) -> CacheEntry | None:
        replace = False
        try:
            found = self.mirror.get(key)
            if found is not None:
                return found
        except CacheError:
            replace = True  # a damaged mirror copy: take the remote one and overwrite it
        entry = self.remote().get(key, label=label)
        if entry is not None:
            self._mirror(entry, replace=replace)
        return entry

    def put(self, entry: CacheEntry, *, supersede: bool = False) -> bool:
        created = self.remote().put(entry, supersede=supersede)
        if created:
            # Replace whatever the mirror held for this key: it may name an entry the remote store no
            # longer has (cleaned up by `imgbuild cache gc`), whose restore failed and led to this build.
            self._mirror(entry, replace=True)
        return created

    def put_blob(self, digest: str, path: Path) -> bool:
        return self.remote().put_blob(digest, path)

    def mark_unrestorable(self, key: str) -> None:
        self.remote().mark_unrestorable(key)

    def entries_for(self, label: str, *, limit: int | None = None) -> list[CacheEntry]:
        return self.remote().entries_for(label, limit=limit)

    def get_blob(self, digest: str, dest: Path) -> bool:
        return self.remote().get_blob(digest, dest)


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
        self._stores: dict[str | None, GuardedStore | MirroredStore] = {}
        self._lock = threading.Lock()

    def store_for(self, target: Target) -> GuardedStore | MirroredStore:
        with self._lock:
            if target.cache not in self._stores:
                self._stores[target.cache] = self._make(target.cache)
            return self._stores[target.cache]

    def _make(self, name: str | None) -> GuardedStore | MirroredStore:
        policy = self.ws.config.cache_policy(name) if name else None
        read_only = self.read_only or (policy is not None and not policy.write)
        if policy is None or policy.backend != "s3":
            return GuardedStore(self._open(self.ws, policy), warn=self.warn, read_only=read_only)
        mirror = LocalStore(mirror_dir(self.ws, policy.name))
        return MirroredStore(
            mirror,
            lambda: GuardedStore(self._open(self.ws, policy), warn=self.warn, read_only=read_only),
            name=f"s3://{policy.bucket}/{policy.prefix}", read_only=read_only)

    def lookup(self, target: Target, key: str) -> CacheEntry | None:
        return self.store_for(target).get(key, label=str(target.label))

    def local_blobs(self, target: Target, key: str, image_id: str) -> Path | None:
        """A directory holding every blob of the target's entry for ``image_id``, when its store is a local
        one (for pushing straight from the cache, without the engine); None otherwise."""
        store = self.store_for(target)
        backend = getattr(store, "store", None)
        if not isinstance(backend, LocalStore):
            return None
        entry = store.get(key, label=str(target.label))
        if entry is None or entry.image_id != image_id:
            return None  # e.g. a --rebuild with a read-only cache: the entry still names the old image
        if not all((backend.blob_dir / b.digest.split(":", 1)[1]).is_file() for b in entry.blobs):
            return None
        return backend.blob_dir

    def local_blob_dir(self, target: Target) -> Path | None:
        """Where the target's store keeps its blobs on this machine (a local store); None for a remote one."""
        backend = getattr(self.store_for(target), "store", None)
        return backend.blob_dir if isinstance(backend, LocalStore) else None

    def layout(self, target: Target, entry: CacheEntry, layouts: OciLayouts, images: ImageStore, *,
               in_engine: bool) -> tuple[str | None, bool]:
        """The entry's image as an OCI layout in ``layouts`` (for builders that do not see the engine): its
        digest (None, the guard having warned, when it cannot be had) and whether it was downloaded from the
        store. Cheapest first: a layout already there, this machine's store (hard links), the engine."""
        digest = top_digest(entry.oci_index)
        source = self.layout_source(target, entry, layouts, in_engine=in_engine)
        if source == "layout":
            return digest, False
        blobs = [b.digest for b in entry.blobs]
        local = self.local_blob_dir(target)
        if source == "local" and local is not None:
            return layouts.assemble(entry.oci_index, blobs, lambda d, dest: link_or_copy(
                local / d.split(":", 1)[1], dest)), False
        if source == "engine":
            try:
                with tempfile.TemporaryDirectory(prefix="imgbuild-save-", dir=layouts.root) as tmp:
                    saved = images.save(entry.image_id, Path(tmp))
                    found = layouts.assemble(saved.index_json, [d for d, _, _ in saved.blobs],
                                             lambda d, dest: link_or_copy(saved.blob_dir / d.split(":", 1)[1], dest))
                if found is not None:
                    return found, False
            except Exception:  # noqa: BLE001 - the store below is the other source
                pass
        return layouts.assemble(entry.oci_index, blobs, self.store_for(target).get_blob), True

    def layout_source(self, target: Target, entry: CacheEntry, layouts: OciLayouts, *,
                      in_engine: bool) -> Literal["layout", "local", "engine", "store"]:
        """Where :meth:`layout` takes the entry's OCI layout from (only ``store`` downloads): a layout already in
        ``layouts``, this machine's store, the engine, or the entry's store. Files are looked at, nothing is asked."""
        if layouts.get(top_digest(entry.oci_index)) is not None:
            return "layout"
        local = self.local_blob_dir(target)
        if local is not None and all((local / b.digest.split(":", 1)[1]).is_file() for b in entry.blobs):
            return "local"
        return "engine" if in_engine else "store"

    def previous(self, target: Target) -> CacheEntry | None:
        """The newest entry of the same target (for explaining a rebuild), if any."""
        found = self.store_for(target).entries_for(str(target.label), limit=1)
        return found[0] if found else None

    def restore(self, target: Target, entry: CacheEntry, name: str) -> bool:
        """Fetch the entry's blobs and load the image as ``name``; False (with a warning) if it cannot."""
        store = self.store_for(target)
        with tempfile.TemporaryDirectory(prefix="imgbuild-restore-") as tmp:
            blob_dir = Path(tmp) / "blobs"
            blob_dir.mkdir()
            for blob in entry.blobs:
                if not store.get_blob(blob.digest, blob_dir / blob.digest.split(":", 1)[1]):
                    store.mark_unrestorable(entry.key)  # the guard has warned
                    return False
            try:
                self.images.load(entry.oci_index, blob_dir, name, Path(tmp))
            except Exception as exc:  # the engine refused the layout: rebuild rather than fail
                self.warn(f"restoring {entry.label} failed: {exc}; building it instead")
                store.mark_unrestorable(entry.key)
                return False
        return True

    def record(self, target: Target, *, key: str, ref: str, image_id: str, manifest_digest: str | None,
               config_digest: str | None, inputs: str, build_metadata: str = "", supersede: bool = False,
               layout: Path | None = None) -> None:
        """Store the built image's blobs (only those missing) and its entry, from the engine or, when given,
        the OCI ``layout`` the build exported. Never raises."""
        store = self.store_for(target)
        if store.read_only:
            return
        with tempfile.TemporaryDirectory(prefix="imgbuild-save-") as tmp:
            try:
                saved = read_layout(layout) if layout is not None else self.images.save(ref, Path(tmp))
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
                build_metadata=build_metadata,
            )
            store.put(entry, supersede=supersede)
