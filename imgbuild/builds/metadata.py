"""buildx's metadata of a target's image (``docker buildx build --metadata-file``), for built and cached targets.

A built target has what buildx wrote for its build: ``buildx.build.ref`` (what ``docker buildx history``
knows it by), ``buildx.build.provenance`` and ``buildx.build.warnings`` (with ``BUILDX_METADATA_*``
set), ``containerimage.digest``, ``containerimage.descriptor``, ``image.name``... Tools downstream read
these keys, so a cached or restored target carries the same ones where they are known: the target
cache entry keeps the metadata of the build that recorded it (without ``image.name``: names are a run's
own), and what an older entry lacks is derived from its OCI index.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from imgbuild.builds.images import qualified_name
from imgbuild.canonical import canonical_json

if TYPE_CHECKING:
    from imgbuild.cache.entry import CacheEntry

NAME_KEY = "image.name"
DIGEST_KEY = "containerimage.digest"
CONFIG_KEY = "containerimage.config.digest"
DESCRIPTOR_KEY = "containerimage.descriptor"


def parse(metadata: str) -> dict[str, Any]:
    """The metadata as a dict; {} for text that is not a JSON object (buildx wrote nothing usable)."""
    try:
        doc = json.loads(metadata or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def without_name(metadata: str, name: str) -> str:
    """buildx's metadata without the run's own claim tag in ``image.name`` (it is removed after the build)."""
    doc = parse(metadata)
    if isinstance(doc.get(NAME_KEY), str):
        tag = ":" + name.rpartition(":")[2]  # buildx may name it in full (docker.io/library/...)
        names = [n for n in doc[NAME_KEY].split(",") if n and not n.endswith(tag)]
        doc[NAME_KEY] = ",".join(names)
        if not names:
            del doc[NAME_KEY]
    return json.dumps(doc, sort_keys=True)


def for_entry(metadata: str) -> str:
    """What a cache entry keeps of a build's metadata: everything but the run's image names (canonical JSON)."""
    doc = parse(metadata)
    doc.pop(NAME_KEY, None)
    return canonical_json(doc).decode() if doc else ""


def from_entry(entry: CacheEntry) -> str:
    """The metadata of a cached or restored target: its build's, completed from the entry's own fields."""
    doc = parse(entry.build_metadata)
    if entry.manifest_digest:
        doc.setdefault(DIGEST_KEY, entry.manifest_digest)
        descriptor = _descriptor(entry.oci_index, entry.manifest_digest)
        if descriptor is not None:
            doc.setdefault(DESCRIPTOR_KEY, descriptor)
    if entry.config_digest:
        doc.setdefault(CONFIG_KEY, entry.config_digest)
    return json.dumps(doc, sort_keys=True)


def image_names(tags: tuple[str, ...]) -> str:
    """``image.name`` as buildx writes it for these ``--tag`` values: fully qualified, comma-separated."""
    return ",".join(qualified_name(t) for t in tags)


def _descriptor(oci_index: str, digest: str) -> dict[str, Any] | None:
    """The descriptor of ``digest`` in a saved layout's index.json (buildx's ``containerimage.descriptor``)."""
    doc = parse(oci_index)
    for m in doc.get("manifests") or ():
        if isinstance(m, dict) and m.get("digest") == digest:
            return {k: v for k, v in m.items() if k != "annotations"}
    return None
