"""Dependencies handed to their dependants inside BuildKit, as OCI layouts (issue #13).

Builders other than the engine's own (``docker-container``, ``remote``, ``kubernetes``) do not see the
engine's image store, so a dependency tagged there is no ``FROM`` for them. Instead every image such a
builder makes is also exported as an OCI layout (``--output type=oci,tar=false``) into a content-addressed
directory, ``oci/<manifest digest>/`` in the state directory (:mod:`imgbuild.statedir`), and a dependant gets
it as a named build context,
``oci-layout://<dir>@<digest>``, under both names a Dockerfile may use: the exact reference its ``ARG``
receives (``FROM ${BASE_IMAGE}``) and the argument's context name (``FROM base-image``). buildx reads the
layout on the client and sends BuildKit only the blobs its solve asks for.

A dependency that was not built in this run (cached or restored) gets its layout from wherever its blobs
are: a layout already here, the local target cache's blobs (hard links, no copy), the engine, or the cache
store (downloaded). Layouts are immutable once in place; a half-written one is never visible.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from imgbuild.builds.images import SavedImage, read_layout

LAYOUT_MARKER = b'{"imageLayoutVersion":"1.0.0"}'


def top_digest(index_json: str | bytes) -> str:
    """The digest of the (first) image an OCI layout's ``index.json`` names."""
    doc = json.loads(index_json)
    manifests = doc.get("manifests") or []
    if not manifests or not str(manifests[0].get("digest", "")).startswith("sha256:"):
        raise ValueError("the layout's index.json names no image")
    return str(manifests[0]["digest"])


class OciLayouts:
    """The per-workspace store of OCI layouts, one directory per image (manifest or index) digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest.split(":", 1)[-1]

    def get(self, digest: str) -> Path | None:
        path = self.path(digest)
        return path if (path / "index.json").is_file() else None

    def context(self, digest: str) -> str:
        """The named-context value that hands the image to a dependant's build."""
        return f"oci-layout://{self.path(digest)}@{digest}"

    def scratch(self) -> Path:
        """An empty directory for a build's ``type=oci`` output, on the store's file system."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".out-", dir=self.root))

    def adopt(self, out: Path) -> str:
        """Move a finished build's layout into place; its image digest."""
        try:
            digest = top_digest((out / "index.json").read_bytes())
            shutil.rmtree(out / "ingest", ignore_errors=True)  # BuildKit's leftovers
            self._publish(out, digest)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return digest

    def saved(self, digest: str) -> SavedImage:
        path = self.get(digest)
        if path is None:
            raise FileNotFoundError(f"no OCI layout for {digest}")
        return read_layout(path)

    def assemble(self, index_json: str, blobs: Iterable[str], fetch: Callable[[str, Path], bool]) -> str | None:
        """Write the layout of ``index_json`` with each of ``blobs`` fetched by ``fetch(digest, dest)``;
        its digest, or None when a blob could not be had."""
        digest = top_digest(index_json)
        if self.get(digest) is not None:
            return digest
        out = self.scratch()
        try:
            blob_dir = out / "blobs" / "sha256"
            blob_dir.mkdir(parents=True)
            for blob in blobs:
                if not fetch(blob, blob_dir / blob.split(":", 1)[1]):
                    return None
            (out / "index.json").write_text(index_json)
            self._publish(out, digest)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return digest

    def _publish(self, out: Path, digest: str) -> None:
        (out / "oci-layout").write_bytes(LAYOUT_MARKER)
        try:
            os.rename(out, self.path(digest))
        except OSError:
            if self.get(digest) is None:  # not a concurrent twin that got there first
                raise


def link_or_copy(src: Path, dest: Path) -> bool:
    """A blob from a local store into a layout: a hard link when both are on one file system."""
    try:
        os.link(src, dest)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copyfile(src, dest)
        except FileNotFoundError:
            return False
    return True
