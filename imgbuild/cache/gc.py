"""Cache clean-up (``imgbuild cache gc``): old target-cache entries and layer caches go, then every blob
that no kept entry or layer cache references.

Three steps, and only the last one deletes:

1. a *snapshot* of one store (:func:`snapshot_targets`, :func:`snapshot_layers`, :func:`snapshot_layer_dirs`):
   its objects listed, its entries or layer-cache ``index.json`` files read, and the manifests these reach;
2. a *plan* (:func:`plan_targets`, :func:`plan_mirror`, :func:`plan_layers`): pure, from the snapshot and
   the :class:`Rules`;
3. :func:`execute`: references first (markers, entries, indexes), then blobs; the blobs of a reference
   whose deletion failed are held back. ``--dry-run`` stops after the plan.

The rules (specs/README.md, "Cache clean-up"):

* target cache: an entry goes when its ``created`` is older than ``older_than``, unless it is one of the
  ``keep`` newest usable entries of its label; its label marker goes with it;
* layer cache: a scope's cache of a target (its ``index.json``) goes when it was last written before
  ``older_than``, unless it is one of the ``keep`` most recently written usable caches of that target;
* a blob goes when no kept entry or index reaches it;
* the grace period (:data:`GRACE`, 1 h): a blob, index, unlisted marker, unusable entry or temporary file
  written less than ``grace`` before the gc started is never deleted, and ``older_than`` is never taken
  to be shorter. A build uploads blobs before it writes the entry or index naming them, so a fresh
  unreferenced blob may be named a moment later;
* unusable objects go once past the grace period, whatever ``older_than`` says: an entry that does not
  verify or names a blob the store lacks (only a build of its target that happens to run replaces it), an index
  whose manifests or layers are missing, a local layer directory without ``index.json``. An intact entry
  of another format version is never deleted, and while one is in a store no blob of that store is (its
  references cannot be read).

Stores are listed in the reverse of the order builds write them: label markers, entries, blobs (layer
caches: indexes, blobs). So a blob that a listed entry or index names was listed too unless it is really
missing, and a marker whose entry was not listed was written after the entries were.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol, Sequence

from botocore.exceptions import ClientError

from imgbuild.cache.entry import CacheEntry
from imgbuild.cache.local import _TMP, LocalStore
from imgbuild.cache.s3 import S3Store, _code
from imgbuild.cache.store import CacheError, CacheUnavailable, CorruptEntry, digest_hex
from imgbuild.cache.targets import mirror_dir, open_store
from imgbuild.layercache.args import local_dir_for
from imgbuild.layercache.s3sync import LAYERS, Descriptor, _post_order
from imgbuild.model import CachePolicy, Workspace

GRACE = timedelta(hours=1)
READERS = 8  # entries and manifests read at once
DELETE_BATCH = 1000  # S3 DeleteObjects' limit

_HEX = re.compile(r"[0-9a-f]{64}")
_AGE = re.compile(r"([0-9]{1,6})([hdw])")
_HOURS = {"h": 1, "d": 24, "w": 168}
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_ORDER = ("marker", "entry", "index", "blob", "file", "leftover")  # references before what they reference


def parse_age(text: str) -> timedelta:
    """``30d`` -> 30 days; ``12h``, ``2w``; ``0d`` is allowed (everything but the kept newest)."""
    m = _AGE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"invalid age {text!r}: expected a number followed by h, d or w (12h, 30d, 2w)")
    return timedelta(hours=int(m.group(1)) * _HOURS[m.group(2)])


def format_age(age: timedelta) -> str:
    hours, rest = divmod(int(age.total_seconds()), 3600)
    if rest:
        return f"{int(age.total_seconds())}s"
    for unit in ("w", "d"):
        if hours and hours % _HOURS[unit] == 0:
            return f"{hours // _HOURS[unit]}{unit}"
    return f"{hours}h"


@dataclass(frozen=True, kw_only=True)
class Rules:
    now: datetime  # when the gc started (timezone-aware)
    older_than: timedelta = timedelta(days=30)
    keep: int = 1  # newest entries kept per label, newest layer caches per target
    grace: timedelta = GRACE

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if self.keep < 0 or self.older_than < timedelta(0) or self.grace < timedelta(0):
            raise ValueError("keep, older_than and grace must not be negative")

    @property
    def cutoff(self) -> datetime:
        """Older than this goes (unless kept as one of the newest); never less than the grace period."""
        return self.now - max(self.older_than, self.grace)

    @property
    def fresh_after(self) -> datetime:
        """Written after this: never deleted."""
        return self.now - self.grace


# -- the stores, as objects under a root ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoredObject:
    key: str  # relative to the store's root, "/"-separated
    size: int
    modified: datetime  # S3 LastModified or the file's mtime, UTC


class ObjectStore(Protocol):
    """Listing, reading and deleting a store's objects. Raises :class:`CacheUnavailable`."""

    @property
    def name(self) -> str: ...

    def listing(self, folder: str) -> list[StoredObject]:
        """Every object under ``folder`` (a key prefix ending in ``/``, or "" for all), sorted by key."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None if there is none."""
        ...

    def delete(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        """Delete the objects (a missing one counts as deleted); the ``(key, reason)`` of those that failed."""
        ...


class LocalObjects:
    """A store directory. ``prune`` removes the directories that deleting leaves empty (layer caches:
    a target store's folders stay, since a build may be creating a file in one at this moment)."""

    def __init__(self, root: Path, *, prune: bool = False) -> None:
        self.root = Path(root)
        self.name = f"local:{self.root}"
        self.prune = prune

    def listing(self, folder: str) -> list[StoredObject]:
        base = self.root / folder
        out: list[StoredObject] = []
        try:
            if not base.is_dir():
                return []
            for dirpath, _dirs, files in os.walk(base, onerror=_raise):
                for name in files:
                    path = Path(dirpath, name)
                    try:
                        st = path.lstat()
                    except FileNotFoundError:  # deleted since the directory was read
                        continue
                    if stat.S_ISREG(st.st_mode):
                        out.append(StoredObject(key=path.relative_to(self.root).as_posix(), size=st.st_size,
                                                modified=datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        except OSError as exc:
            raise CacheUnavailable(f"cannot read {base}: {exc.strerror or exc}") from exc
        return sorted(out, key=lambda o: o.key)

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc

    def delete(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        parents: set[Path] = set()
        for key in keys:
            path = self.root / key
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                failed.append((key, exc.strerror or type(exc).__name__))
                continue
            parents.add(path.parent)
        if self.prune:
            for folder in sorted(parents, key=lambda p: len(p.parts), reverse=True):
                while folder != self.root and folder.is_relative_to(self.root):
                    try:
                        folder.rmdir()
                    except OSError:  # not empty (or gone): stop climbing
                        break
                    folder = folder.parent
        return failed


def _raise(exc: OSError) -> None:
    raise exc


class S3Objects(S3Store):
    """The objects under a prefix of a bucket, through the target cache's S3 store: its client, timeouts,
    bucket check and error translation (every botocore error becomes :class:`CacheUnavailable`)."""

    @classmethod
    def for_policy(cls, policy: CachePolicy, part: str) -> S3Objects:
        """The ``targets/`` or ``layers/`` part of an ``s3`` policy's prefix, as its stores root it."""
        if not policy.bucket:
            raise ValueError(f"cache policy {policy.name!r} has no bucket")
        root = policy.prefix.strip("/")
        return cls(policy.bucket, prefix=f"{root}/{part}" if root else part, region=policy.region,
                   endpoint_url=policy.endpoint_url, use_path_style=policy.use_path_style)

    def listing(self, folder: str) -> list[StoredObject]:
        with self._errors("listing the cache"):
            found = [StoredObject(key=o["Key"][len(self.prefix):], size=int(o["Size"]),
                                  modified=o["LastModified"].astimezone(timezone.utc))
                     for o in self._list(self._ready(), self.prefix + folder)]
        return sorted(found, key=lambda o: o.key)

    def read(self, key: str) -> bytes | None:
        with self._errors("reading the cache"):
            client = self._ready()
            try:
                response = client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            body = response["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return data

    def delete(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        with self._errors("deleting from the cache"):
            client = self._ready()
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start:start + DELETE_BATCH]
                response = client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.prefix + k} for k in batch], "Quiet": True})
                for error in response.get("Errors", ()):
                    failed.append((str(error.get("Key", ""))[len(self.prefix):], str(error.get("Code", "failed"))))
        return failed


# -- snapshots: what a store holds (reads only) ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EntryObject:
    obj: StoredObject
    key: str  # sha256:<hex>
    entry: CacheEntry | None  # None: it cannot be read
    problem: str | None = None  # why it cannot be read
    foreign: bool = False  # intact, but of another format version: its blobs are unknown


@dataclass(frozen=True, kw_only=True)
class TargetSnapshot:
    entries: tuple[EntryObject, ...]
    markers: tuple[StoredObject, ...]  # labels/<label hash>/<hex>
    blobs: tuple[StoredObject, ...]  # blobs/sha256/<hex>
    leftovers: tuple[StoredObject, ...] = ()  # temporary files of interrupted local writes


@dataclass(frozen=True, kw_only=True)
class IndexObject:
    """One scope's layer cache of one target: its ``index.json`` and the blobs it reaches."""

    scope: str
    target: str
    index: StoredObject | None  # None: a local directory without one (an interrupted export or pull)
    blob_prefix: str  # where its blobs are: "blobs/sha256/" (shared, S3) or "<scope>/<target>/blobs/sha256/"
    refs: frozenset[str]  # hex digests reachable from index.json
    refs_known: bool = True  # False when a manifest could not be read (or there is no index.json)
    problem: str | None = None  # unusable: why
    files: tuple[StoredObject, ...] = ()  # a local directory's other files (its own blobs, oci-layout)

    @property
    def ident(self) -> str:
        return f"{self.scope}/{self.target}"

    @property
    def modified(self) -> datetime:
        """When it was last written: index.json's time, or the newest file of a local directory."""
        times = [o.modified for o in (*([self.index] if self.index else []), *self.files)]
        return max(times) if times else datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, kw_only=True)
class LayerSnapshot:
    indexes: tuple[IndexObject, ...]
    blobs: tuple[StoredObject, ...] = ()  # the shared blobs/sha256/ of an S3 layer store (none locally)


def snapshot_targets(objects: ObjectStore) -> TargetSnapshot:
    """List and read a target-cache store (or an S3 store's local mirror)."""
    markers, leftovers = _split_tmp(objects.listing("labels/"))
    listed, tmp = _split_tmp(objects.listing("entries/"))
    leftovers += tmp
    named = [(o, o.key[len("entries/"):-len(".json")]) for o in listed if o.key.endswith(".json")]
    named = [(o, h) for o, h in named if _HEX.fullmatch(h)]  # anything else is not the cache's

    def read(item: tuple[StoredObject, str]) -> EntryObject | None:
        obj, hexd = item
        data = objects.read(obj.key)
        if data is None:  # deleted since it was listed
            return None
        key = f"sha256:{hexd}"
        try:
            return EntryObject(obj=obj, key=key, entry=CacheEntry.from_bytes(data, expected_key=key))
        except CorruptEntry as exc:
            return EntryObject(obj=obj, key=key, entry=None, problem=exc.reason, foreign=not exc.repairable)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        entries = tuple(e for e in pool.map(read, named) if e is not None)
    blobs, tmp = _split_tmp(objects.listing("blobs/sha256/"))  # last: see the module's docstring
    return TargetSnapshot(entries=entries, markers=tuple(m for m in markers if _marker_hex(m.key)),
                          blobs=tuple(b for b in blobs if _HEX.fullmatch(_basename(b.key))),
                          leftovers=tuple(leftovers + tmp))


def snapshot_layers(objects: ObjectStore) -> LayerSnapshot:
    """List an S3 layer store (``scopes/<scope>/<target>/index.json``, shared ``blobs/sha256/``) and walk
    every index to the blobs it reaches, reading the manifests on the way."""
    found = [(o, o.key.split("/")) for o in objects.listing("scopes/")]
    listed = [(o, parts[1], parts[2]) for o, parts in found if len(parts) == 4 and parts[3] == "index.json"]

    def walk(item: tuple[StoredObject, str, str]) -> IndexObject | None:
        obj, scope, target = item
        data = objects.read(obj.key)
        if data is None:
            return None
        refs, problem = _reach(objects, "blobs/sha256/", data)
        return IndexObject(scope=scope, target=target, index=obj, blob_prefix="blobs/sha256/", refs=refs,
                           refs_known=problem is None, problem=problem)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        indexes = [ix for ix in pool.map(walk, listed) if ix is not None]
    blobs = tuple(b for b in objects.listing("blobs/sha256/") if _HEX.fullmatch(_basename(b.key)))
    present = {_basename(b.key) for b in blobs}
    return LayerSnapshot(indexes=tuple(_check_present(ix, present) for ix in indexes), blobs=blobs)


def snapshot_layer_dirs(objects: ObjectStore) -> LayerSnapshot:
    """List local layer caches: ``<scope>/<target>/`` directories, each an OCI layout with its own blobs."""
    groups: dict[tuple[str, str], list[StoredObject]] = defaultdict(list)
    for obj in objects.listing(""):
        parts = obj.key.split("/", 2)
        if len(parts) == 3:
            groups[(parts[0], parts[1])].append(obj)
    indexes: list[IndexObject] = []
    for (scope, target), objs in sorted(groups.items()):
        prefix = f"{scope}/{target}/blobs/sha256/"
        index = next((o for o in objs if o.key == f"{scope}/{target}/index.json"), None)
        files = tuple(o for o in objs if o is not index)
        data = objects.read(index.key) if index is not None else None
        if index is None or data is None:
            indexes.append(IndexObject(scope=scope, target=target, index=None, blob_prefix=prefix, refs=frozenset(),
                                       refs_known=False, files=files,
                                       problem="no index.json (an interrupted export or pull)"))
            continue
        refs, problem = _reach(objects, prefix, data)
        present = {o.key[len(prefix):] for o in files if o.key.startswith(prefix)}
        indexes.append(_check_present(IndexObject(scope=scope, target=target, index=index, blob_prefix=prefix,
                                                  refs=refs, refs_known=problem is None, problem=problem,
                                                  files=files), present))
    return LayerSnapshot(indexes=tuple(indexes))


class _Unreadable(Exception):
    pass


def _reach(objects: ObjectStore, prefix: str, index_json: bytes) -> tuple[frozenset[str], str | None]:
    """The hex digests an index.json reaches, walked as s3sync's push and pull walk it (so gc keeps exactly
    what a pull fetches), and what went wrong if a manifest cannot be read."""

    def read(d: Descriptor) -> bytes:
        hexd = digest_hex(d.digest)
        data = objects.read(f"{prefix}{hexd}")
        if data is None:
            raise _Unreadable(f"manifest {d.digest} is missing")
        if hashlib.sha256(data).hexdigest() != hexd:
            raise _Unreadable(f"manifest {d.digest} is corrupt")
        return data

    try:
        return frozenset(digest_hex(d.digest) for d in _post_order(index_json, read)), None
    except (_Unreadable, ValueError) as exc:  # ValueError: malformed JSON or descriptors
        return frozenset(), str(exc)


def _check_present(ix: IndexObject, present: set[str]) -> IndexObject:
    missing = sorted(ix.refs - present)
    if ix.problem is None and missing:
        return replace(ix, problem=f"blob sha256:{missing[0]} is missing")
    return ix


def _split_tmp(objs: list[StoredObject]) -> tuple[list[StoredObject], list[StoredObject]]:
    return ([o for o in objs if not _basename(o.key).startswith(_TMP)],
            [o for o in objs if _basename(o.key).startswith(_TMP)])


def _basename(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _marker_hex(key: str) -> str | None:
    parts = key.split("/")
    ok = len(parts) == 3 and _HEX.fullmatch(parts[1]) and _HEX.fullmatch(parts[2])
    return parts[2] if ok else None


# -- plans (pure) --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Deletion:
    kind: str  # marker | entry | index | blob | file | leftover
    key: str  # relative to the store's root
    size: int
    reason: str
    subject: str = ""  # the entry's label, the index's scope/target
    refs: frozenset[str] = frozenset()  # keys to hold back if this cannot be deleted (what it names)


@dataclass(frozen=True, kw_only=True)
class GcPlan:
    store: str
    deletions: tuple[Deletion, ...]  # in execution order: references before what they reference
    kept: tuple[str, ...]  # entry keys, or scope/target of layer caches, sorted
    kept_blobs: int
    kept_bytes: int  # entries or indexes and blobs that stay
    notes: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.deletions)

    def count(self, kind: str) -> int:
        return sum(1 for d in self.deletions if d.kind == kind)


def _created(e: EntryObject) -> datetime:
    assert e.entry is not None
    try:
        when = datetime.fromisoformat(e.entry.created.replace("Z", "+00:00"))
    except ValueError:
        return e.obj.modified
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _newest(groups: dict[str, list[tuple[datetime, str]]], rules: Rules) -> set[str]:
    """The idents kept: per group the ``keep`` newest, and any newer than the cutoff."""
    kept: set[str] = set()
    for items in groups.values():
        for i, (when, ident) in enumerate(sorted(items, reverse=True)):
            if i < rules.keep or when >= rules.cutoff:
                kept.add(ident)
    return kept


def _ordered(deletions: list[Deletion]) -> tuple[Deletion, ...]:
    return tuple(sorted(deletions, key=lambda d: (_ORDER.index(d.kind), d.key)))


def plan_targets(snap: TargetSnapshot, rules: Rules, *, store: str) -> GcPlan:
    """Which entries, markers and blobs of a target-cache store go (see the module's docstring)."""
    age = format_age(rules.older_than)
    present = {_basename(b.key) for b in snap.blobs}
    missing = {e.key: next((b.digest for b in e.entry.blobs if digest_hex(b.digest) not in present), None)
               for e in snap.entries if e.entry is not None}
    usable = [e for e in snap.entries if e.entry is not None and missing[e.key] is None]
    groups: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for e in usable:
        assert e.entry is not None
        groups[e.entry.label].append((_created(e), e.key))
    chosen = _newest(groups, rules)

    deletions: list[Deletion] = []
    kept: list[EntryObject] = []
    for e in snap.entries:
        if e.foreign:
            kept.append(e)
            continue
        label = e.entry.label if e.entry is not None else ""
        if e.entry is not None and missing[e.key] is None:
            if e.key in chosen:
                kept.append(e)
                continue
            reason = f"created {e.entry.created}, older than {age}"
        elif e.obj.modified >= rules.fresh_after:
            kept.append(e)  # unusable, but just written: leave it to the next gc
            continue
        elif e.entry is None:
            reason = f"corrupt: {e.problem}"
        else:
            reason = f"names blob {missing[e.key]}, which the store lacks"
        refs = frozenset(f"blobs/sha256/{digest_hex(b.digest)}" for b in (e.entry.blobs if e.entry else ()))
        deletions.append(Deletion(kind="entry", key=e.obj.key, size=e.obj.size, reason=reason, subject=label,
                                  refs=refs))

    deletions += _markers(snap, kept, rules)
    notes: list[str] = []
    foreign = [e for e in kept if e.foreign]
    referenced = {digest_hex(b.digest) for e in kept if e.entry is not None for b in e.entry.blobs}
    kept_blobs = list(snap.blobs)
    if foreign:
        notes.append(f"no blob deleted: {len(foreign)} entr{'y is' if len(foreign) == 1 else 'ies are'} of another "
                     f"format version ({foreign[0].problem}); the imgbuild that wrote them can collect them")
    else:
        kept_blobs = []
        for b in snap.blobs:
            if _basename(b.key) in referenced or b.modified >= rules.fresh_after:
                kept_blobs.append(b)
            else:
                deletions.append(Deletion(kind="blob", key=b.key, size=b.size, reason="no kept entry names it"))
    deletions += _leftovers(snap.leftovers, rules)
    kept_bytes = sum(e.obj.size for e in kept) + sum(b.size for b in kept_blobs)
    return GcPlan(store=store, deletions=_ordered(deletions), kept=tuple(sorted(e.key for e in kept)),
                  kept_blobs=len(kept_blobs), kept_bytes=kept_bytes, notes=tuple(notes))


def plan_mirror(snap: TargetSnapshot, rules: Rules, *, store: str, remote: str,
                remote_kept: frozenset[str]) -> GcPlan:
    """An S3 store's local mirror: an entry goes when its S3 store does not keep it.

    A mirror entry is found before the S3 store is asked: one whose S3 entry and blobs are gone would be
    restored from blobs that are not there, on every run, since entries are never overwritten.
    """
    deletions: list[Deletion] = []
    kept: list[EntryObject] = []
    for e in snap.entries:
        if e.key in remote_kept or e.obj.modified >= rules.fresh_after:
            kept.append(e)
        else:
            deletions.append(Deletion(kind="entry", key=e.obj.key, size=e.obj.size, reason=f"not kept in {remote}",
                                      subject=e.entry.label if e.entry is not None else ""))
    deletions += _markers(snap, kept, rules)
    deletions += _leftovers(snap.leftovers, rules)
    kept_bytes = sum(e.obj.size for e in kept) + sum(b.size for b in snap.blobs)
    return GcPlan(store=store, deletions=_ordered(deletions), kept=tuple(sorted(e.key for e in kept)),
                  kept_blobs=len(snap.blobs), kept_bytes=kept_bytes)


def plan_layers(snap: LayerSnapshot, rules: Rules, *, store: str) -> GcPlan:
    """Which layer caches (an index.json; locally its whole directory) and which blobs go."""
    age = format_age(rules.older_than)
    groups: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for ix in snap.indexes:
        if ix.problem is None:
            groups[ix.target].append((ix.modified, ix.ident))
    chosen = _newest(groups, rules)

    deletions: list[Deletion] = []
    kept: list[IndexObject] = []
    for ix in snap.indexes:
        if ix.ident in chosen or (ix.problem is not None and ix.modified >= rules.fresh_after):
            kept.append(ix)
            continue
        reason = (f"unusable: {ix.problem}" if ix.problem else
                  f"last written {ix.modified.strftime('%Y-%m-%dT%H:%M:%SZ')}, older than {age}")
        if ix.index is not None:
            refs = frozenset(f"{ix.blob_prefix}{h}" for h in ix.refs) | {o.key for o in ix.files}
            deletions.append(Deletion(kind="index", key=ix.index.key, size=ix.index.size, reason=reason,
                                      subject=ix.ident, refs=refs))
        deletions += [Deletion(kind="blob" if o.key.startswith(ix.blob_prefix) else "file", key=o.key, size=o.size,
                               reason="its layer cache goes", subject=ix.ident) for o in ix.files]

    kept_objs: list[StoredObject] = []
    for ix in kept:  # a kept local directory: the blobs of earlier exports that its index.json no longer reaches
        for o in ix.files:
            if ix.refs_known and o.key.startswith(ix.blob_prefix) and o.modified < rules.fresh_after \
                    and o.key[len(ix.blob_prefix):] not in ix.refs:
                deletions.append(Deletion(kind="blob", key=o.key, size=o.size,
                                          reason="its layer cache does not reach it", subject=ix.ident))
            else:
                kept_objs.append(o)
    notes: list[str] = []
    unknown = [ix for ix in kept if not ix.refs_known]
    if unknown and snap.blobs:
        notes.append(f"no blob deleted: {unknown[0].ident} is kept and what it reaches is unknown "
                     f"({unknown[0].problem})")
        kept_objs += snap.blobs
    else:
        referenced = {h for ix in kept for h in ix.refs}
        for b in snap.blobs:
            if _basename(b.key) in referenced or b.modified >= rules.fresh_after:
                kept_objs.append(b)
            else:
                deletions.append(Deletion(kind="blob", key=b.key, size=b.size, reason="no kept layer cache reaches it"))
    kept_bytes = sum(ix.index.size for ix in kept if ix.index) + sum(o.size for o in kept_objs)
    return GcPlan(store=store, deletions=_ordered(deletions), kept=tuple(sorted(ix.ident for ix in kept)),
                  kept_blobs=sum(1 for o in kept_objs if "blobs/sha256/" in o.key), kept_bytes=kept_bytes,
                  notes=tuple(notes))


def _markers(snap: TargetSnapshot, kept: Sequence[EntryObject], rules: Rules) -> list[Deletion]:
    """A marker goes with its entry; one whose entry was not listed goes once past the grace period (its
    entry may have been written after the listing: markers are listed first)."""
    listed = {digest_hex(e.key) for e in snap.entries}
    kept_hex = {digest_hex(e.key) for e in kept}
    out: list[Deletion] = []
    for m in snap.markers:
        hexd = _marker_hex(m.key)
        if hexd in kept_hex:
            continue
        if hexd in listed:
            out.append(Deletion(kind="marker", key=m.key, size=m.size, reason="its entry goes"))
        elif m.modified < rules.fresh_after:
            out.append(Deletion(kind="marker", key=m.key, size=m.size, reason="names no entry"))
    return out


def _leftovers(objs: Sequence[StoredObject], rules: Rules) -> list[Deletion]:
    return [Deletion(kind="leftover", key=o.key, size=o.size, reason="temporary file of an interrupted write")
            for o in objs if o.modified < rules.fresh_after]


# -- execution -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GcResult:
    deleted: tuple[Deletion, ...]
    failures: tuple[str, ...]  # "key: reason", or why execution stopped
    held_back: int  # deletions not attempted: a reference to them could not be deleted

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.deleted)


def execute(plan: GcPlan, objects: ObjectStore) -> GcResult:
    """Delete what ``plan`` lists, one kind at a time in its order. A reference that cannot be deleted
    keeps what it names; a store that becomes unavailable stops everything after it (no blob is deleted
    while an entry naming it may still be there)."""
    done: list[Deletion] = []
    failures: list[str] = []
    held: set[str] = set()
    held_back = 0
    for kind in _ORDER:
        batch = [d for d in plan.deletions if d.kind == kind]
        todo = [d for d in batch if d.key not in held]
        held_back += len(batch) - len(todo)
        if not todo:
            continue
        try:
            failed: dict[str, str] = dict(objects.delete([d.key for d in todo]))
        except CacheError as exc:
            failures.append(f"stopped deleting: {exc}")
            held_back += sum(1 for d in plan.deletions if _ORDER.index(d.kind) > _ORDER.index(kind))
            break
        for d in todo:
            if d.key in failed:
                failures.append(f"{d.key}: {failed[d.key]}")
                held |= d.refs
            else:
                done.append(d)
    return GcResult(deleted=tuple(done), failures=tuple(failures), held_back=held_back)


# -- a workspace's stores ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Source:
    """One store to clean."""

    cache: str  # targets | mirror | layers
    policy: str  # the policy's name, or "(default)"
    objects: ObjectStore
    remote: str | None = None  # a mirror's S3 store
    local_dirs: bool = False  # layer caches as local OCI layouts, one directory per scope and target

    @property
    def name(self) -> str:
        return self.objects.name


def sources(ws: Workspace) -> tuple[list[Source], list[str]]:
    """The stores of the workspace's cache policies, each once, a mirror after its S3 store; and the
    policies left alone (``write: false``)."""
    out: list[Source] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def add(src: Source) -> None:
        if src.name not in seen:
            seen.add(src.name)
            out.append(src)

    for policy in (None, *ws.config.cache_policies):
        pname = policy.name if policy is not None else "(default)"
        if policy is not None and not policy.write:
            skipped.append(f"cache policy {policy.name}: write: false")
            continue
        store = open_store(ws, policy)
        if isinstance(store, LocalStore):
            add(Source(cache="targets", policy=pname, objects=LocalObjects(store.root)))
        elif policy is not None:
            remote = S3Objects.for_policy(policy, "targets/")
            add(Source(cache="targets", policy=pname, objects=remote))
            mirror = mirror_dir(ws, policy.name)
            if mirror.is_dir():
                add(Source(cache="mirror", policy=pname, objects=LocalObjects(mirror), remote=remote.name))
        if policy is None:
            continue
        if policy.backend == "s3" and policy.bucket:
            add(Source(cache="layers", policy=pname, objects=S3Objects.for_policy(policy, LAYERS)))
        local = local_dir_for(policy, ws.root, ws.state)
        if local is not None and local.is_dir():
            add(Source(cache="layers", policy=pname, objects=LocalObjects(local, prune=True), local_dirs=True))
    return out, skipped


@dataclass(frozen=True, kw_only=True)
class StoreReport:
    source: Source
    plan: GcPlan | None  # None: the store could not be read
    result: GcResult | None  # None: a dry run, or no plan
    error: str | None = None


def plan_source(src: Source, rules: Rules, *, kept: dict[str, frozenset[str]]) -> GcPlan:
    """Snapshot and plan one store; ``kept`` holds the entries kept by the target stores planned before
    (a mirror needs its S3 store's). Raises :class:`CacheError` when the store cannot be read."""
    if src.cache == "layers":
        snap = snapshot_layer_dirs(src.objects) if src.local_dirs else snapshot_layers(src.objects)
        return plan_layers(snap, rules, store=src.name)
    if src.cache == "mirror":
        assert src.remote is not None
        if src.remote not in kept:
            raise CacheUnavailable(f"not cleaned: its S3 store {src.remote} could not be read")
        return plan_mirror(snapshot_targets(src.objects), rules, store=src.name, remote=src.remote,
                           remote_kept=kept[src.remote])
    return plan_targets(snapshot_targets(src.objects), rules, store=src.name)


def run(srcs: Sequence[Source], rules: Rules, *, dry_run: bool) -> list[StoreReport]:
    """Clean every store in turn (plan only when ``dry_run``). One store's failure does not stop the others."""
    kept: dict[str, frozenset[str]] = {}
    reports: list[StoreReport] = []
    for src in srcs:
        try:
            plan = plan_source(src, rules, kept=kept)
        except CacheError as exc:
            reports.append(StoreReport(source=src, plan=None, result=None, error=str(exc)))
            continue
        if src.cache == "targets":
            kept[src.name] = frozenset(plan.kept)
        result = None if dry_run else execute(plan, src.objects)
        reports.append(StoreReport(source=src, plan=plan, result=result))
    return reports
