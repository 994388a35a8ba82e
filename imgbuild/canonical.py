"""Canonical JSON: sorted keys, no spaces, UTF-8, so the same facts always give the same bytes.

Input digests, cache entries and history records are hashed over it. Standard library only: the no-op
journal (:mod:`imgbuild.uptodate`) seals history records with it before anything else is loaded.

A file name that is not UTF-8 reaches Python as a string with surrogate escapes (``"bad\\udcffname"``);
such a string is written back as the bytes it came from, so names are hashed as bytes: distinct names
never collide and UTF-8 names give the bytes they always gave. Only then is the output not UTF-8, so
what is stored rather than only hashed shows such names escaped instead (see
:meth:`imgbuild.digest.Inputs.manifest`).
"""

from __future__ import annotations

import json


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")
