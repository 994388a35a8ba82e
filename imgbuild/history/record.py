"""A history record: one target's build, push or release, as verified canonical JSON.

The stored form is canonical JSON (sorted keys, compact) of every field plus ``id``, the sha256 of the
canonical JSON of all the others: a record is addressed by its content, so the same facts always give the
same id and bytes, and no two different records can share an id. Sets (tags, pushed references, secret
ids, build args, platforms) are sorted before hashing, so the order a caller happened to collect them in
does not matter. Times are normalized to UTC with millisecond precision (``2024-05-01T10:00:00.123Z``):
fixed width, so ordering the strings orders the times.

What a record never holds: a secret's value. ``secret_ids`` names the secrets a build was given, and
``build_args`` is what the caller passes (non-secret args only); a build arg named like one of the
secrets is refused, as the likeliest way for a value to slip in.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from imgbuild.canonical import canonical_json
from imgbuild.errors import LabelError
from imgbuild.history.store import CorruptRecord
from imgbuild.labels import Label
from imgbuild.stepwhy import StepReport

RECORD_VERSION = 1
KINDS = ("build", "push", "release")
CACHE_OUTCOMES = ("built", "cached", "restored")

Pairs = tuple[tuple[str, str], ...]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha1 or sha256 repositories, as git prints them
_SECRET_ID = re.compile(r"[A-Za-z0-9._-]+")  # as in specs/build.schema.json

# Every stored key but "id", with the JSON type check that from_bytes applies.
_STR, _OPT_STR, _OPT_NUM, _OPT_INT = "str", "str|null", "number|null", "int|null"
_FIELDS: dict[str, str] = {
    "version": "int", "kind": _STR, "time": _STR, "label": _STR,
    "input_digest": _OPT_STR, "image_id": _OPT_STR, "config_digest": _OPT_STR, "manifest_digest": _OPT_STR,
    "platforms": "map", "pushed": "list", "tags": "list",
    "git_commit": _OPT_STR, "git_branch": _OPT_STR, "git_dirty": "bool",
    "build_args": "map", "secret_ids": "list", "builder": _OPT_STR, "cache": _OPT_STR,
    "duration_s": _OPT_NUM, "layer_count": _OPT_INT, "layer_bytes": _OPT_INT,
    "ci_provider": _OPT_STR, "ci_run_id": _OPT_STR, "ci_run_url": _OPT_STR,
    "release_version": _OPT_STR, "workspace": _OPT_STR,
}
# Keys a record may lack: they came later, and records written before them must stay readable (and keep their
# id, so a record without one is stored without the key rather than with null).
_OPTIONAL = frozenset({"steps"})


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, the one form records use. A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def utc_now() -> str:
    """Now, as a record's ``time``."""
    return format_time(datetime.now(timezone.utc))


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+02:00``) as an aware datetime; ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or "T" not in text:
        raise ValueError(f"time {text!r} is not RFC 3339 with a UTC offset")
    return moment


@dataclass(frozen=True, kw_only=True)
class HistoryRecord:
    """What was built, pushed or released for one target, from which commit, when, with which inputs.

    ``id`` is computed (``sha256:`` of the canonical JSON of every other field); it is not passed in.
    Invalid values raise ValueError: they are a caller's bug, never a user's input.
    """

    kind: str  # build | push | release
    time: str  # RFC 3339 UTC; normalized to millisecond precision
    label: str  # //pkg:name
    input_digest: str | None = None  # the target's cache key
    image_id: str | None = None
    config_digest: str | None = None
    manifest_digest: str | None = None
    platforms: Pairs = ()  # (platform, manifest digest) per platform of a multi-platform image
    pushed: tuple[str, ...] = ()  # "repo@sha256:..." references
    tags: tuple[str, ...] = ()  # full references: "ghcr.io/acme/api:v1.2.3"
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool = False
    build_args: Pairs = ()  # non-secret args only: the caller leaves secrets out
    secret_ids: tuple[str, ...] = ()  # ids only, never values
    builder: str | None = None
    cache: str | None = None  # built | cached | restored
    duration_s: float | None = None
    layer_count: int | None = None
    layer_bytes: int | None = None
    ci_provider: str | None = None
    ci_run_id: str | None = None
    ci_run_url: str | None = None
    release_version: str | None = None  # the release's version (`version` is the record format's)
    workspace: str | None = None
    steps: StepReport | None = None  # a build's per-step cache use and why its first step ran (issue #16)
    version: int = RECORD_VERSION
    id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)  # frozen: normalized values are set once, here
        if self.version != RECORD_VERSION:
            raise ValueError(f"record version {self.version!r}; this imgbuild writes {RECORD_VERSION}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        try:
            set_("time", format_time(parse_time(self.time)))
        except (TypeError, ValueError):
            raise ValueError(f"time must be RFC 3339 with an offset, not {self.time!r}") from None
        try:
            label = Label.parse(self.label)
        except LabelError as exc:
            raise ValueError(str(exc)) from None
        if str(label) != self.label:
            raise ValueError(f"label {self.label!r} is not in canonical form ({label})")
        for name in ("input_digest", "image_id", "config_digest", "manifest_digest"):
            value = getattr(self, name)
            if value is not None and not _DIGEST.fullmatch(value):
                raise ValueError(f"{name} must be sha256:<64 hex>, not {value!r}")
        if self.git_commit is not None and not _COMMIT.fullmatch(self.git_commit):
            raise ValueError(f"git_commit must be a full lowercase commit id, not {self.git_commit!r}")
        set_("platforms", _pairs("platforms", self.platforms))
        for platform, digest in self.platforms:
            if not _DIGEST.fullmatch(digest):
                raise ValueError(f"platform {platform}: manifest digest must be sha256:<64 hex>, not {digest!r}")
        set_("build_args", _pairs("build_args", self.build_args))
        for name in ("pushed", "tags", "secret_ids"):
            set_(name, _string_set(name, getattr(self, name)))
        for secret in self.secret_ids:
            if not _SECRET_ID.fullmatch(secret):
                raise ValueError(f"secret id {secret!r} is not an id ([A-Za-z0-9._-]+)")
        leaked = sorted({k for k, _ in self.build_args} & set(self.secret_ids))
        if leaked:
            raise ValueError(f"build arg(s) {', '.join(leaked)} share a secret's id; secrets are never recorded")
        if self.cache is not None and self.cache not in CACHE_OUTCOMES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_OUTCOMES)}, not {self.cache!r}")
        if self.duration_s is not None:
            if isinstance(self.duration_s, bool) or not isinstance(self.duration_s, (int, float)) \
                    or not math.isfinite(self.duration_s) or self.duration_s < 0:
                raise ValueError(f"duration_s must be a non-negative number, not {self.duration_s!r}")
            set_("duration_s", round(float(self.duration_s), 3))
        for name in ("layer_count", "layer_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if self.steps is not None and not isinstance(self.steps, StepReport):
            raise ValueError(f"steps must be a StepReport, not {type(self.steps).__name__}")
        if not isinstance(self.git_dirty, bool):
            raise ValueError(f"git_dirty must be a boolean, not {self.git_dirty!r}")
        set_("id", _sha256(canonical_json(self._payload())))

    @property
    def hex(self) -> str:
        """The id without ``sha256:``."""
        return self.id[len("sha256:"):]

    def has_tag(self, tag: str) -> bool:
        """True if a full reference equals ``tag`` or its tag part does (``v1`` matches ``ghcr.io/a/api:v1``)."""
        return any(ref == tag or _tag_part(ref) == tag for ref in self.tags)

    def _payload(self) -> dict[str, Any]:
        optional = {} if self.steps is None else {"steps": self.steps.to_dict()}
        return {
            **optional,
            "version": self.version,
            "kind": self.kind,
            "time": self.time,
            "label": self.label,
            "input_digest": self.input_digest,
            "image_id": self.image_id,
            "config_digest": self.config_digest,
            "manifest_digest": self.manifest_digest,
            "platforms": dict(self.platforms),
            "pushed": list(self.pushed),
            "tags": list(self.tags),
            "git_commit": self.git_commit,
            "git_branch": self.git_branch,
            "git_dirty": self.git_dirty,
            "build_args": dict(self.build_args),
            "secret_ids": list(self.secret_ids),
            "builder": self.builder,
            "cache": self.cache,
            "duration_s": self.duration_s,
            "layer_count": self.layer_count,
            "layer_bytes": self.layer_bytes,
            "ci_provider": self.ci_provider,
            "ci_run_id": self.ci_run_id,
            "ci_run_url": self.ci_run_url,
            "release_version": self.release_version,
            "workspace": self.workspace,
        }

    def to_dict(self) -> dict[str, Any]:
        """The stored document: every field and ``id`` (what ``imgbuild history --json`` prints)."""
        return {**self._payload(), "id": self.id}

    def to_bytes(self) -> bytes:
        """Canonical JSON of :meth:`to_dict`: the same facts always give the same bytes."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "") -> HistoryRecord:
        """Parse and verify a stored record; :class:`CorruptRecord` unless it is intact and canonical.

        ``where`` names the object or file in the error.
        """
        try:
            doc = json.loads(data)
        except ValueError as exc:  # also bad UTF-8
            raise CorruptRecord(f"not JSON ({exc})", where=where) from None
        if not isinstance(doc, dict):
            raise CorruptRecord("not a JSON object", where=where)
        claimed = doc.pop("id", None)
        if not isinstance(claimed, str):
            raise CorruptRecord("no id", where=where)
        if doc.get("version") != RECORD_VERSION:  # first: another version may seal its records differently
            raise CorruptRecord(f"record version {doc.get('version')!r}; this imgbuild reads {RECORD_VERSION}",
                                where=where, record_id=claimed)
        if _sha256(canonical_json(doc)) != claimed:
            raise CorruptRecord("its id does not match its content (modified or truncated)", where=where,
                                record_id=claimed)
        if set(doc) - _OPTIONAL != set(_FIELDS):
            extra, missing = sorted(set(doc) - set(_FIELDS) - _OPTIONAL), sorted(set(_FIELDS) - set(doc))
            raise CorruptRecord(f"fields differ from version {RECORD_VERSION} (unexpected {extra}, missing {missing})",
                                where=where, record_id=claimed)
        try:
            for name, kind in _FIELDS.items():
                _check_type(name, doc[name], kind)
            steps = doc.get("steps")
            if steps is not None and not isinstance(steps, dict):
                raise ValueError(f"steps is {type(steps).__name__}, not object")
            try:
                parsed = None if steps is None else StepReport.from_dict(steps)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"steps: malformed ({exc})") from None
            record = cls(**{
                **doc,
                "steps": parsed,
                "platforms": tuple(doc["platforms"].items()),
                "build_args": tuple(doc["build_args"].items()),
                "pushed": tuple(doc["pushed"]),
                "tags": tuple(doc["tags"]),
                "secret_ids": tuple(doc["secret_ids"]),
            })
        except ValueError as exc:
            raise CorruptRecord(str(exc), where=where, record_id=claimed) from None
        if record.id != claimed:  # sealed correctly, but not in the form this imgbuild writes
            raise CorruptRecord("it is not in canonical form", where=where, record_id=claimed)
        return record


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tag_part(ref: str) -> str | None:
    name, sep, tag = ref.rpartition(":")
    return tag if sep and "/" not in tag and name else None


def _pairs(name: str, pairs: Pairs) -> Pairs:
    """Sorted by key; a key given twice is a caller's bug (which value would the record mean?)."""
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError(f"{name}: {pair!r} is not a (str, str) pair")
    out = tuple(sorted(pairs))
    keys = [k for k, _ in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"{name}: {', '.join(dupes)} given more than once")
    return out


def _string_set(name: str, values: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(values, str):  # a bare string would become a set of characters
        raise ValueError(f"{name} must be a tuple of strings, not a string")
    for v in values:
        if not isinstance(v, str) or not v:
            raise ValueError(f"{name}: {v!r} is not a non-empty string")
    return tuple(sorted(set(values)))


def _check_type(name: str, value: Any, kind: str) -> None:
    base, _, nullable = kind.partition("|")
    if nullable and value is None:
        return
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "map": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
    }[base]
    if not ok:
        raise ValueError(f"{name} is {type(value).__name__}, not {kind}")
