"""A cache entry: the record of one built image under its input digest, stored as verified canonical JSON.

The stored form is canonical JSON (sorted keys, compact) with an ``entry_digest``: the sha256 of the
canonical JSON of every other field. It catches truncation, bit rot and hand edits. It does not stop a
writer who recomputes it: who may write a store is decided by the store's permissions (and untrusted
builds open it read-only), and every blob an entry names is checked against its own sha256 on download.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from imgbuild.cache.store import CorruptEntry, digest_hex
from imgbuild.canonical import canonical_json

ENTRY_VERSION = 1

_FIELDS = frozenset({"version", "key", "label", "created", "image_id", "manifest_digest", "config_digest",
                     "blobs", "oci_index", "inputs", "pushed"})
# Entries recorded before build metadata was kept lack it; they stay valid (an empty metadata).
_OPTIONAL_FIELDS = frozenset({"build_metadata"})
_BLOB_FIELDS = frozenset({"digest", "size", "media_type"})


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Blob:
    digest: str  # sha256:<hex>
    size: int
    media_type: str = ""

    def __post_init__(self) -> None:
        digest_hex(self.digest)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"blob {self.digest}: size must be a non-negative integer, not {self.size!r}")


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    key: str  # the input digest
    label: str  # e.g. "//apps/api:api"
    created: str  # RFC 3339 UTC
    image_id: str  # engine image id "sha256:..."
    manifest_digest: str | None
    config_digest: str | None
    blobs: tuple[Blob, ...]  # every blob `docker load` needs, from `docker save`'s OCI layout
    oci_index: str  # the OCI layout's index.json text, to rebuild the tar
    inputs: str  # canonical JSON of the inputs that made the key ("why did it rebuild")
    pushed: tuple[str, ...] = ()  # "repo@sha256:..." references it was pushed as
    # buildx's metadata of the build that recorded it, canonical JSON without image.name ("" if none): what a
    # cached target reports in --metadata-file (buildx.build.ref, buildx.build.provenance, ...)
    build_metadata: str = ""
    version: int = ENTRY_VERSION

    def __post_init__(self) -> None:
        digest_hex(self.key)
        # Blobs are a set (the index says how they fit) and pushed refs too: sorted, the same image always
        # gives the same bytes.
        object.__setattr__(self, "blobs", tuple(sorted({b.digest: b for b in self.blobs}.values(),
                                                       key=lambda b: b.digest)))
        object.__setattr__(self, "pushed", tuple(sorted(set(self.pushed))))

    def _payload(self) -> dict[str, Any]:
        optional = {"build_metadata": self.build_metadata} if self.build_metadata else {}
        return {
            **optional,
            "version": self.version,
            "key": self.key,
            "label": self.label,
            "created": self.created,
            "image_id": self.image_id,
            "manifest_digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "blobs": [{"digest": b.digest, "size": b.size, "media_type": b.media_type} for b in self.blobs],
            "oci_index": self.oci_index,
            "inputs": self.inputs,
            "pushed": list(self.pushed),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON of every field plus ``entry_digest``, the sha256 of the canonical JSON of the rest."""
        payload = self._payload()
        return canonical_json({**payload, "entry_digest": _sha256(canonical_json(payload))})

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_key: str) -> CacheEntry:
        """Parse and verify a stored entry; :class:`CorruptEntry` unless it is intact and is ``expected_key``'s."""
        try:
            doc = json.loads(data)
        except ValueError as exc:  # also bad UTF-8
            raise CorruptEntry(f"not JSON ({exc})", key=expected_key) from None
        if not isinstance(doc, dict):
            raise CorruptEntry("not a JSON object", key=expected_key)
        label = doc.get("label") if isinstance(doc.get("label"), str) else None

        def corrupt(reason: str) -> CorruptEntry:
            return CorruptEntry(reason, key=expected_key, label=label)

        if doc.get("version") != ENTRY_VERSION:  # first: another version may seal its entries differently
            raise CorruptEntry(f"entry version {doc.get('version')!r}, this imgbuild reads {ENTRY_VERSION}",
                               key=expected_key, label=label, repairable=False)
        claimed = doc.pop("entry_digest", None)
        if not isinstance(claimed, str):
            raise corrupt("no entry_digest")
        if _sha256(canonical_json(doc)) != claimed:
            raise corrupt("entry_digest does not match the content (modified or truncated)")
        if not _FIELDS <= set(doc) <= _FIELDS | _OPTIONAL_FIELDS:
            extra, missing = sorted(set(doc) - _FIELDS - _OPTIONAL_FIELDS), sorted(_FIELDS - set(doc))
            raise corrupt(f"fields differ from version {ENTRY_VERSION} (unexpected {extra}, missing {missing})")
        try:
            entry = cls(
                key=_str(doc, "key"),
                label=_str(doc, "label"),
                created=_str(doc, "created"),
                image_id=_str(doc, "image_id"),
                manifest_digest=_opt_str(doc, "manifest_digest"),
                config_digest=_opt_str(doc, "config_digest"),
                blobs=tuple(_blob(b) for b in _list(doc, "blobs")),
                oci_index=_str(doc, "oci_index"),
                inputs=_str(doc, "inputs"),
                pushed=tuple(_as_str(p, "pushed") for p in _list(doc, "pushed")),
                build_metadata=_as_str(doc.get("build_metadata", ""), "build_metadata"),
                version=ENTRY_VERSION,
            )
        except ValueError as exc:
            raise corrupt(str(exc)) from None
        if entry.key != expected_key:
            raise corrupt(f"it holds the entry of {entry.key}")
        return entry


def _as_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} is {type(value).__name__}, not a string")
    return value


def _str(doc: dict[str, Any], name: str) -> str:
    return _as_str(doc[name], name)


def _opt_str(doc: dict[str, Any], name: str) -> str | None:
    return None if doc[name] is None else _str(doc, name)


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc[name]
    if not isinstance(value, list):
        raise ValueError(f"{name} is {type(value).__name__}, not a list")
    return value


def _blob(value: Any) -> Blob:
    if not isinstance(value, dict) or set(value) != _BLOB_FIELDS:
        raise ValueError(f"malformed blob {value!r:.80}")
    return Blob(digest=_as_str(value["digest"], "blob digest"), size=value["size"],
                media_type=_as_str(value["media_type"], "blob media_type"))
