"""Images the engine had at the end of the last run, trusted while its event log says nothing touched them.

Asking the engine whether a cached image is still there costs ~10-15 ms per image on the containerd
image store, whatever the API (bench_cache.py: a 500-target no-op spent seconds on it). The engine's
event log answers the same question for every image at once: after a run, the images it used and
their tags are written to the state directory's ``engine-trust.json`` with an anchor (the newest engine event
when the run began); the next run reads the events since that anchor and trusts every image no
event deleted, untagged or re-tagged (:func:`imgbuild.engine_events.untrusted`). If the anchor is
gone from the log (a daemon restart, more than 256 events since) nothing is trusted and every image
is inspected as before. The file is only a speed-up: unreadable means empty.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from imgbuild import engine_events
from imgbuild.engine_gateway import EngineGateway
from imgbuild.builds.images import Images

FORMAT = 1
MAX_REFS = 20_000  # the newest are kept


class TrustingImages(Images):
    """:class:`Images` that answers :meth:`inspect_many` for trusted images without asking the engine."""

    def __init__(self, path: Path, environ: dict[str, str], engine: EngineGateway | None = None) -> None:
        super().__init__(engine if engine is not None else EngineGateway(environ=environ))
        self.path = path
        self.socket = engine_events.socket_path(environ)
        self.anchor: engine_events.Event | None = None
        self.trusted: dict[str, str] = {}  # ref -> image id
        if self.socket is None:
            return
        try:
            self.anchor = engine_events.anchor(self.socket)  # first: events from here on are checked next time
        except engine_events.EventsUnavailable:
            return
        self.trusted = self._load(self.socket)

    def _load(self, socket: str) -> dict[str, str]:
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("format") != FORMAT or doc.get("socket") != socket:
                return {}
            images = {str(k): str(v) for k, v in doc["images"].items()}
            since = engine_events.since_anchor(socket, doc["anchor"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, engine_events.EventsUnavailable):
            return {}
        if since is None:
            return {}
        gone = engine_events.untrusted(since, images)
        return {ref: image_id for ref, image_id in images.items() if image_id not in gone}

    def inspect_many(self, refs: list[str]) -> dict[str, frozenset[str]]:
        names: dict[str, set[str]] = {}
        for name, known in self.trusted.items():
            names.setdefault(known, set()).add(name)
        out: dict[str, frozenset[str]] = {}
        for ref in refs:
            image_id: str | None = ref if ref in names else self.trusted.get(engine_events.normal_ref(ref))
            if image_id is not None and image_id in names:
                out[ref] = frozenset(names[image_id])
        rest = [ref for ref in refs if ref not in out]
        if rest:
            out.update(super().inspect_many(rest))
        return out

    def remember(self, images: dict[str, str]) -> None:
        """After a run: ``images`` (ref -> image id) are in the engine now. Best effort."""
        if self.anchor is None or self.socket is None:
            return
        merged = {**self.trusted, **{engine_events.normal_ref(r): i for r, i in images.items()}}
        if len(merged) > MAX_REFS:
            merged = dict(list(merged.items())[-MAX_REFS:])
        doc = {"format": FORMAT, "socket": self.socket, "anchor": self.anchor, "images": merged}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            pass
