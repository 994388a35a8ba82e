"""Copying images by digest through the Registry v2 API: a new tag in the same repository, or a whole image
(index, manifests, config and layers) into another repository or registry. Nothing is rebuilt or re-encoded:
the manifests are copied byte for byte, so the digest is the same everywhere.

Why not ``docker buildx imagetools create --tag DEST SRC@DIGEST``: it does the same and works for
``localhost`` registries, but it reaches other plain-HTTP (``insecure: true``) registries only through
the builder's own configuration, not the workspace's; this module uses the workspace's ``insecure`` hosts
(and the docker CLI's logins, through :class:`imgbuild.registry.Authorizer`), and needs no process.

Blobs go the cheapest way: already there (HEAD), mounted from the source repository when both are on the
same host (``POST .../blobs/uploads/?mount=...&from=...``), else streamed from the source to the
destination without touching the disk. Redirects of blob downloads (registries on S3) are followed
without our Authorization header, which presigned URLs refuse.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, TypeVar

from imgbuild.connections import Connections, Opened, Send, retry_after
from imgbuild.registry import MANIFEST_TYPES, Authorizer, Reference, RegistryError, base_url

_T = TypeVar("_T")
_R = TypeVar("_R")


def is_manifest(blob_dir: Path, digest: str) -> bool:
    """Whether ``blob_dir`` holds ``digest`` as an image manifest or index (and not, say, a config blob:
    on the classic image store an image id is its config's digest)."""
    try:
        doc = json.loads((blob_dir / digest.split(":", 1)[-1]).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and ("manifests" in doc or "layers" in doc)


# A blob this small (a config, an attestation) costs less to send than to ask about: a round trip fewer
# when it is new, which it nearly always is, and a few kilobytes more when the registry had it already.
SEND_WITHOUT_ASKING = 64 * 1024


class BlobMounts(dict[tuple[str, str], str]):
    """(host, blob digest) -> a repository on that host known to hold the blob, shared by parallel pushes.

    Images pushed at once to different repositories share their base layers: without coordination each
    push would send them in full. Here one push uploads a blob while the others wait for it and then
    mount it (a cross-repository mount: no bytes sent); if that upload fails, the next waiter uploads.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._uploading: dict[tuple[str, str], threading.Event] = {}

    def claim(self, key: tuple[str, str]) -> str | None:
        """The repository to mount the blob from, once any upload of it in progress ended; None: the caller
        pushes it itself, and must :meth:`release` it afterwards."""
        while True:
            with self._lock:
                if key in self:
                    return self[key]
                busy = self._uploading.get(key)
                if busy is None:
                    self._uploading[key] = threading.Event()
                    return None
            busy.wait(timeout=600)

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            busy = self._uploading.pop(key, None)
        if busy is not None:
            busy.set()


@dataclass(frozen=True, kw_only=True)
class Repository:
    """``host[:port]/path/name``: where an image lives, without tag or digest."""

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"

    @classmethod
    def of(cls, ref: Reference) -> Repository:
        return cls(host=ref.host, path=ref.repository)

    @classmethod
    def parse(cls, text: str) -> Repository:
        """``localhost:5000/team/api`` (a trailing ``:tag`` or ``@digest`` is dropped)."""
        ref = Reference.parse(text.split("@", 1)[0])
        return cls(host=ref.host, path=ref.repository)

    def tagged(self, tag: str) -> Reference:
        return Reference(self.host, self.path, tag)

    def by_digest(self, digest: str) -> str:
        return f"{self}@{digest}"


@dataclass(frozen=True, kw_only=True)
class Manifest:
    media_type: str
    body: bytes
    digest: str


@dataclass(kw_only=True)
class CopyStats:
    """What a copy had to do (for the user and the tests): blobs sent, mounted, found; manifests put."""

    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_put: int = 0
    tags_put: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # tags put whose answer named the manifest's digest

    def add(self, other: CopyStats) -> None:
        self.blobs_sent += other.blobs_sent
        self.bytes_sent += other.bytes_sent
        self.blobs_mounted += other.blobs_mounted
        self.blobs_present += other.blobs_present
        self.manifests_put += other.manifests_put
        self.tags_put += other.tags_put
        self.confirmed += other.confirmed


class Copier:
    """Registry v2 writes: tag a manifest, copy an image between repositories. Raises :class:`RegistryError`."""

    def __init__(self, *, insecure_hosts: frozenset[str] = frozenset(), timeout: float = 60.0,
                 send: Send | None = None, workers: int = 32, auth: Authorizer | None = None) -> None:
        self.insecure = insecure_hosts
        self._send = send or Connections(timeout).send
        self.auth = auth or Authorizer(self._send)
        self.workers = workers  # blobs and manifests of one image sent at once
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- the operations -----------------------------------------------------------------------------------

    def tag(self, repo: Repository, digest: str, tags: tuple[str, ...], stats: CopyStats | None = None) -> CopyStats:
        """Point each of ``tags`` in ``repo`` at the manifest ``digest`` that ``repo`` already holds."""
        stats = stats or CopyStats()
        manifest = self.manifest(repo, digest)
        if manifest is None:
            raise RegistryError(f"{repo.by_digest(digest)} does not exist: nothing to tag")
        for tag in tags:
            self._put_manifest(repo, tag, manifest)
            stats.tags_put.append(str(repo.tagged(tag)))
        return stats

    def copy(self, src: Repository, dst: Repository, digest: str, tags: tuple[str, ...] = ()) -> CopyStats:
        """Copy the image ``src@digest`` (and everything it refers to) into ``dst``, then tag it there."""
        stats = CopyStats()
        self._copy_manifest(src, dst, digest, stats)
        return self.tag(dst, digest, tags, stats)

    def push_blobs(self, blob_dir: Path, dst: Repository, digest: str, tags: tuple[str, ...],
                   mounts: BlobMounts | None = None) -> CopyStats:
        """Push the image ``digest`` from a directory of its blobs (``sha256/<hex>`` files: an OCI layout's
        or the target cache's), then tag it: no engine involved.

        ``mounts`` maps (host, blob digest) to a repository on that host known to hold the blob (filled in
        as this pusher goes), so layers shared between images are mounted, not sent again, also by pushes
        running at the same time (see :class:`BlobMounts`).

        Round trips are what a push to a distant registry waits for, so: every blob of every manifest
        (an index's image and attestation manifests alike) goes at once, then the manifests, deepest first,
        each level at once; the index's child manifests are not asked for one by one (each of their blobs
        is, and putting a manifest the registry already holds changes nothing); and with tags, the top
        manifest is put by its tags only, which stores it by digest too.
        """
        mounts = mounts if mounts is not None else BlobMounts()
        stats = CopyStats()
        manifest = _local_manifest(blob_dir, digest)
        levels: list[list[Manifest]] = []
        if not self._exists(dst, f"manifests/{digest}"):
            levels = _manifest_levels(blob_dir, manifest, dst)
            blobs = dict(blob for level in levels for m in level for blob in _references(m, dst)[1])
            for part in self._at_once(lambda b: self._push_blob_from(blob_dir, dst, b[0], b[1], mounts), blobs.items()):
                stats.add(part)
            for level in reversed(levels[1:]):
                self._at_once(lambda m: self._put_manifest(dst, m.digest, m), level)
                stats.manifests_put += len(level)
            if not tags:
                self._put_manifest(dst, digest, manifest)
                stats.manifests_put += 1
        for tag in tags:
            if self._put_manifest(dst, tag, manifest):
                stats.confirmed.append(str(dst.tagged(tag)))
            stats.tags_put.append(str(dst.tagged(tag)))
        if tags and levels:
            stats.manifests_put += 1  # the top manifest, put by its tags
        return stats

    def _at_once(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """``fn`` over ``items`` on the copier's threads (the first error is raised once all have ended)."""
        items = list(items)
        if len(items) < 2:
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="imgbuild-blobs")
        futures = [self._pool.submit(fn, item) for item in items]
        wait(futures)
        return [f.result() for f in futures]

    def _push_blob_from(self, blob_dir: Path, dst: Repository, digest: str, size: int, mounts: BlobMounts) -> CopyStats:
        key = (dst.host, digest)
        stats = CopyStats()
        source = mounts.claim(key)
        try:
            self._push_blob(blob_dir, dst, digest, size, stats, mounts, source)
        finally:
            if source is None:
                mounts.release(key)
        return stats

    def _push_blob(self, blob_dir: Path, dst: Repository, digest: str, size: int, stats: CopyStats,
                   mounts: BlobMounts, source: str | None) -> None:
        push = f"repository:{dst.path}:pull,push"
        path = blob_dir / digest.split(":", 1)[1]
        size = size or path.stat().st_size
        if source and source != dst.path:
            query = urllib.parse.urlencode({"mount": digest, "from": source})
            with self._call("POST", dst.host, f"{dst.path}/blobs/uploads/?{query}",
                            f"{push} repository:{source}:pull") as resp:
                if resp.status == 201:
                    stats.blobs_mounted += 1
                    return
        elif size > SEND_WITHOUT_ASKING and self._exists(dst, f"blobs/{digest}"):
            stats.blobs_present += 1
            mounts.setdefault((dst.host, digest), dst.path)
            return
        with self._call("POST", dst.host, f"{dst.path}/blobs/uploads/", push) as resp:
            _expect(resp, (202,), dst.host, f"start an upload to {dst}")
            location = self._location(dst.host, resp)
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with path.open("rb") as stream, self._call(
                "PUT", dst.host, f"{location}{sep}digest={urllib.parse.quote(digest)}", push,
                headers=headers, data=stream) as resp:
            _expect(resp, (201,), dst.host, f"upload {digest} to {dst}")
        stats.blobs_sent += 1
        stats.bytes_sent += size
        mounts[(dst.host, digest)] = dst.path

    def manifest(self, repo: Repository, reference: str) -> Manifest | None:
        """The manifest ``reference`` (a tag or digest) of ``repo``, checked against its digest; None if absent."""
        scope = f"repository:{repo.path}:pull"
        with self._call("GET", repo.host, f"{repo.path}/manifests/{reference}", scope,
                        headers={"Accept": MANIFEST_TYPES}) as resp:
            if resp.status == 404:
                return None
            _expect(resp, (200,), repo.host, f"GET manifest {repo}:{reference}")
            body = resp.read()
            media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and actual != reference:
            raise RegistryError(f"{repo.by_digest(reference)}: the registry sent a manifest whose digest is {actual}")
        return Manifest(media_type=media_type or _media_type(body), body=body, digest=actual)

    # -- internals ----------------------------------------------------------------------------------------

    def _copy_manifest(self, src: Repository, dst: Repository, digest: str, stats: CopyStats) -> None:
        if self._exists(dst, f"manifests/{digest}"):
            return
        manifest = self.manifest(src, digest)
        if manifest is None:
            raise RegistryError(f"{src.by_digest(digest)} does not exist: nothing to copy")
        children, blobs = _references(manifest, src)
        for child in children:  # an index: its platform (and attestation) manifests first
            self._copy_manifest(src, dst, child, stats)
        for blob, size in blobs:
            self._copy_blob(src, dst, blob, size, stats)
        self._put_manifest(dst, digest, manifest)
        stats.manifests_put += 1

    def _copy_blob(self, src: Repository, dst: Repository, digest: str, size: int, stats: CopyStats) -> None:
        if self._exists(dst, f"blobs/{digest}"):
            stats.blobs_present += 1
            return
        push = f"repository:{dst.path}:pull,push"
        if src.host == dst.host:
            query = urllib.parse.urlencode({"mount": digest, "from": src.path})
            scope = f"{push} repository:{src.path}:pull"
            with self._call("POST", dst.host, f"{dst.path}/blobs/uploads/?{query}", scope) as resp:
                if resp.status == 201:
                    stats.blobs_mounted += 1
                    return
                _expect(resp, (202,), dst.host, f"mount {digest} into {dst}")
                location = self._location(dst.host, resp)
        else:
            with self._call("POST", dst.host, f"{dst.path}/blobs/uploads/", push) as resp:
                _expect(resp, (202,), dst.host, f"start an upload to {dst}")
                location = self._location(dst.host, resp)
        with self._download(src, digest) as (stream, length):
            size = size or length
            sep = "&" if "?" in location else "?"
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            with self._call("PUT", dst.host, f"{location}{sep}digest={urllib.parse.quote(digest)}", push,
                            headers=headers, data=stream) as resp:
                _expect(resp, (201,), dst.host, f"upload {digest} to {dst}")
        stats.blobs_sent += 1
        stats.bytes_sent += size

    @contextmanager
    def _download(self, repo: Repository, digest: str) -> Iterator[tuple[IO[bytes], int]]:
        scope = f"repository:{repo.path}:pull"
        with self._call("GET", repo.host, f"{repo.path}/blobs/{digest}", scope) as resp:
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("location"):
                url = urllib.parse.urljoin(self._base(repo.host), resp.headers["location"])
                # The redirect target (often a presigned storage URL) gets no Authorization of ours.
                found = self._send("GET", url, {}, None)
                try:
                    _expect(found, (200,), repo.host, f"download {digest} from {repo}")
                    yield found.stream or _empty(), int(found.headers.get("content-length", "0"))
                finally:
                    found.close()
                return
            _expect(resp, (200,), repo.host, f"download {digest} from {repo}")
            yield resp.stream or _empty(), int(resp.headers.get("content-length", "0"))

    def _put_manifest(self, repo: Repository, reference: str, manifest: Manifest) -> bool:
        """Put ``manifest`` under ``reference``; True if the registry's answer confirmed its digest."""
        scope = f"repository:{repo.path}:pull,push"
        with self._call("PUT", repo.host, f"{repo.path}/manifests/{reference}", scope,
                        headers={"Content-Type": manifest.media_type}, data=manifest.body) as resp:
            _expect(resp, (200, 201), repo.host, f"put manifest {repo}:{reference}")
            stored = resp.headers.get("docker-content-digest")
        if stored and stored != manifest.digest:
            raise RegistryError(f"{repo}:{reference}: the registry stored {stored}, not {manifest.digest}")
        return stored == manifest.digest

    def _exists(self, repo: Repository, path: str) -> bool:
        headers = {"Accept": MANIFEST_TYPES} if path.startswith("manifests/") else {}
        with self._call("HEAD", repo.host, f"{repo.path}/{path}", f"repository:{repo.path}:pull",
                        headers=headers) as resp:
            if resp.status == 404:
                return False
            _expect(resp, (200,), repo.host, f"HEAD {repo}/{path}")
            return True

    def _base(self, host: str) -> str:
        return base_url(host, self.insecure)

    def _location(self, host: str, resp: Opened) -> str:
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{host}: an upload was started without a Location")
        return urllib.parse.urljoin(self._base(host), location)

    @contextmanager
    def _call(self, method: str, host: str, path: str, scope: str, *, headers: dict[str, str] | None = None,
              data: bytes | IO[bytes] | None = None) -> Iterator[Opened]:
        """One request (``path`` relative to ``/v2/``, or an absolute URL), authenticated for ``scope``."""
        url = path if "://" in path else self._base(host) + path
        resp = self.auth.send(method, url, host=host, scope=scope, headers=headers, data=data)
        try:
            yield resp
        finally:
            resp.close()


def _expect(resp: Opened, ok: tuple[int, ...], host: str, what: str) -> None:
    if resp.status in ok:
        return
    detail = ""
    try:
        errors = json.loads(resp.read() or b"{}").get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, OSError, RegistryError):  # the body only adds detail
        pass
    # A request sent again after its connection dropped, then refused (an upload session the first one used
    # up): the push is tried again from the start, like a dropped connection.
    dropped = resp.replayed and 400 <= resp.status < 500 and resp.status not in (401, 403)
    raise RegistryError(f"{host}: {what}: HTTP {resp.status}{f' ({detail})' if detail else ''}"
                        f"{' after its connection dropped and it was sent again' if dropped else ''}",
                        status=resp.status, transient=True if dropped else None, retry_after=retry_after(resp.headers))


def _references(manifest: Manifest, repo: Repository) -> tuple[list[str], list[tuple[str, int]]]:
    """The child manifests (of an index) and the blobs with their sizes (of an image) ``manifest`` refers to.

    Foreign (non-distributable) layers, which carry ``urls``, live elsewhere by design and are not copied.
    """
    try:
        doc = json.loads(manifest.body)
        children = [str(m["digest"]) for m in doc.get("manifests") or ()]
        descriptors = ([doc["config"]] if isinstance(doc.get("config"), dict) else []) + list(doc.get("layers") or ())
        blobs = [(str(b["digest"]), int(b.get("size") or 0)) for b in descriptors if not b.get("urls")]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegistryError(f"{repo.by_digest(manifest.digest)}: not a manifest imgbuild can copy ({exc!r})") from None
    return children, blobs


def _manifest_levels(blob_dir: Path, top: Manifest, repo: Repository) -> list[list[Manifest]]:
    """``top``, then its child manifests, then theirs...: one list per depth, each manifest once."""
    levels, seen = [[top]], {top.digest}
    while True:
        children = []
        for digest in (c for m in levels[-1] for c in _references(m, repo)[0]):
            if digest not in seen:
                seen.add(digest)
                children.append(_local_manifest(blob_dir, digest))
        if not children:
            return levels
        levels.append(children)


def _local_manifest(blob_dir: Path, digest: str) -> Manifest:
    try:
        body = (blob_dir / digest.split(":", 1)[1]).read_bytes()
    except OSError as exc:
        raise RegistryError(f"blob {digest} is not in {blob_dir}: {exc.strerror}") from None
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise RegistryError(f"blob {digest} in {blob_dir} is corrupt (its digest is {actual})")
    return Manifest(media_type=_media_type(body), body=body, digest=digest)


def _media_type(body: bytes) -> str:
    """The media type a manifest declares (a registry always sends Content-Type; this is the fallback)."""
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return str(declared or "application/vnd.oci.image.manifest.v1+json")


def _empty() -> IO[bytes]:
    import io

    return io.BytesIO(b"")
