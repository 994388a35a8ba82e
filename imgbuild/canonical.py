"""Canonical JSON: sorted keys, no spaces, UTF-8, so the same facts always give the same bytes.

Input digests, cache entries and history records are hashed over it. Standard library only: the no-op
journal (:mod:`imgbuild.uptodate`) seals history records with it before anything else is loaded.
"""

from __future__ import annotations

import json


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
