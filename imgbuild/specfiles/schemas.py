"""The JSON Schemas in ``specs/`` are the one source of truth: the loader validates against them.

Schema errors are turned into :class:`SpecError` values that name the file, line, column and key
path, with "did you mean" suggestions for misspelt keys and values.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from imgbuild import __version__

from imgbuild.errors import SpecError
from imgbuild.yamlsource import YamlDocument

SCHEMA_FILES = {
    "workspace": "workspace.schema.json",
    "build": "build.schema.json",
    "report": "report.schema.json",
    "history-record": "history-record.schema.json",
    "check": "check.schema.json",
}
_BASE_URI = "https://imgbuild.dev/specs/"


def schema_dir() -> Path:
    """Where the schemas are: inside the installed wheel, or ``specs/`` of a source checkout."""
    packaged = Path(str(resources.files("imgbuild"))) / "_specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "specs"


@functools.cache
def load_schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / SCHEMA_FILES[kind]).read_text(encoding="utf-8"))
    return data


def _inline_refs(node: Any, doc: dict[str, Any]) -> Any:
    """Replace every ``$ref`` by what it points to (our schemas are not recursive).

    jsonschema resolves a ``$ref`` on every visit; inlining them once halves validation time, which
    is most of the time of loading a large workspace (issue #2's 5,000-target plan benchmark).
    """
    if isinstance(node, list):
        return [_inline_refs(x, doc) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        file, _, pointer = node["$ref"].partition("#")
        target = load_schema(_KIND_OF[file]) if file else doc
        found: Any = target
        for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
            found = found[part]
        return _inline_refs(found, target)
    return {k: _inline_refs(v, doc) for k, v in node.items() if k != "$defs"}


_KIND_OF = {name: kind for kind, name in SCHEMA_FILES.items()}


@functools.cache
def _inlined(kind: str) -> dict[str, Any]:
    schema = load_schema(kind)
    inlined: dict[str, Any] = _inline_refs(schema, schema)
    return inlined


@functools.cache
def _validator(kind: str) -> Any:
    # Imported here: jsonschema is a slow import and only loading specs needs it.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_inlined(kind))


_NULL_TAG = "tag:yaml.org,2002:null"


def as_written(doc: YamlDocument, kind: str) -> list[SpecError]:
    """Give every string position of ``doc.data`` the text the user wrote, in place.

    YAML 1.1 reads unquoted ``3.10`` as the number 3.1, ``0755`` as 493 and ``yes`` as true; a build
    arg, a label or a tag is a string to Docker, so where the schema allows a string such a scalar is
    taken as written instead. A null (an empty value, ``~``, ``null``) has no text to keep: it is
    refused, with the quoted form to write. Positions that are not strings (``push``, ``concurrency``)
    keep YAML's reading.
    """
    errors: list[SpecError] = []
    for path, (tag, text) in doc.plain_scalars.items():
        types = _types_at(_inlined(kind), path)
        if "string" not in types:
            continue
        if tag == _NULL_TAG:
            if "null" in types:
                continue
            shown = "an empty value" if text == "" else f"{text!r}"
            quoted = f'"{text}"'
            key = path[-1] if path else ""
            write = f"{key}: {quoted}" if isinstance(key, str) else f"- {quoted}"
            errors.append(doc.error(
                f"{shown} is null in YAML, and a string is expected here", path,
                f"write `{write}` for that text" + (", or remove the key" if isinstance(key, str) else ""),
                value=True))
            continue
        _set(doc.data, path, text)
    return errors


def _types_at(schema: dict[str, Any], path: tuple[str | int, ...]) -> list[str]:
    """The JSON types the schema allows at ``path`` ([] when the path leaves the schema)."""
    node: Any = schema
    for part in path:
        if not isinstance(node, dict):
            return []
        if isinstance(part, int):
            node = node.get("items")
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            node = node.get("additionalProperties")
    if not isinstance(node, dict):
        return []
    types = node.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _set(data: Any, path: tuple[str | int, ...], value: str) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


MEMO_FILE = "spec-validated.json"
_MEMO_KEEP = 4096  # documents remembered per workspace (the newest)


class _Memo:
    """Spec documents known to pass their schema: a digest of imgbuild's version, the schema and the
    document's text. Asked first, it spares jsonschema's import and compilation (~70 ms, most of loading
    a small workspace) whenever no spec file changed; it only ever skips a check that passed before on
    exactly the same text. Kept in the state directory's ``spec-validated.json`` (:mod:`imgbuild.statedir`);
    deleting it is always safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
            self.known: dict[str, None] = dict.fromkeys(known if isinstance(known, list) else [])
        except (OSError, ValueError):
            self.known = {}

    def save(self) -> None:
        keys = list(self.known)[-_MEMO_KEEP:]
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(keys), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:  # only a speed-up: the next run validates again
            with contextlib.suppress(OSError):  # the directory itself may be unusable
                tmp.unlink(missing_ok=True)


_memo: _Memo | None = None


@contextlib.contextmanager
def remembered(path: Path) -> Iterator[None]:
    """Within the block, :func:`validate` answers from (and adds to) the memo at ``path``."""
    global _memo
    _memo = _Memo(path)
    try:
        yield
        if _memo.changed:
            _memo.save()
    finally:
        _memo = None


@functools.cache
def _schema_digest(kind: str) -> str:
    return hashlib.sha256((schema_dir() / SCHEMA_FILES[kind]).read_bytes()).hexdigest()


def validate(doc: YamlDocument, kind: str) -> list[SpecError]:
    """All schema problems of ``doc``, most specific first, each located in the file.

    First, string positions take their scalars' text as written (:func:`as_written`), so the schema and
    everything after it see ``"3.10"``, not 3.1.
    """
    written = as_written(doc, kind)
    if written:
        return written
    key = None
    if _memo is not None:
        key = hashlib.sha256(f"{__version__}\0{kind}\0{_schema_digest(kind)}\0{doc.text}".encode()).hexdigest()
        if key in _memo.known:
            return []
    errors = sorted(_validator(kind).iter_errors(doc.data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    out: list[SpecError] = []
    for err in errors:
        out.extend(_to_spec_errors(doc, err))
    # Sort by position in the file so the report reads top to bottom.
    out.sort(key=lambda e: (e.location.line if e.location else 0, e.location.col if e.location else 0))
    if not out and key is not None and _memo is not None:
        _memo.known[key] = None
        _memo.changed = True
    return out


def _describe(value: Any) -> str:
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "empty (null)"}.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) < 40 else text[:37] + '...'}"


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "empty"}


def _to_spec_errors(doc: YamlDocument, err: Any) -> list[SpecError]:
    path: tuple[str | int, ...] = tuple(err.absolute_path)
    v = err.validator
    if v == "additionalProperties" and isinstance(err.instance, dict):
        known = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        out = []
        for key in extra:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"allowed keys here: {', '.join(known)}" if known else None)
            out.append(doc.error(f"unknown key {key!r}", path + (key,), hint))
        return out
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in want if w != "null")
        return [doc.error(f"expected {words}, got {_describe(err.instance)}", path, value=True)]
    if v in ("enum", "const"):
        allowed = err.validator_value if v == "enum" else [err.validator_value]
        close = difflib.get_close_matches(str(err.instance), [str(a) for a in allowed], n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else None
        return [doc.error(f"{_describe(err.instance)} is not allowed here; use one of: "
                          f"{', '.join(repr(a) for a in allowed)}", path, hint, value=True)]
    if v == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        return [doc.error(f"missing required key {', '.join(repr(m) for m in missing)}", path,
                          _REQUIRED_HINTS.get(missing[0]) if missing else None)]
    if v == "not" and isinstance(err.instance, str):
        return [doc.error(f"{err.instance!r} is reserved (it is a pattern word) and cannot be a target name",
                          path + (err.instance,), "pick another name")]
    if v == "oneOf" and isinstance(err.instance, dict) and "id" in err.instance:
        return [doc.error("a secret needs exactly one of 'src' (a file) or 'env' (an environment variable)", path)]
    if v == "pattern":
        if _is_property_name(err):
            return [doc.error(f"key {err.instance!r} has an invalid format (must match {err.validator_value})",
                              path + (err.instance,))]
        return [doc.error(f"value {err.instance!r} has an invalid format (must match {err.validator_value})", path,
                          _PATTERN_HINTS.get(str(path[-1]) if path else "", None), value=True)]
    if v == "uniqueItems":
        return [doc.error("the list has duplicate entries", path)]
    if v == "minLength":
        return [doc.error("must not be empty", path, value=True)]
    if v == "maxLength" and isinstance(err.instance, str):
        what = "name" if _is_property_name(err) else "value"
        shown = f"{err.instance[:20]}...{err.instance[-8:]}"
        where = path + (err.instance,) if what == "name" else path
        return [doc.error(f"{what} {shown!r} is {len(err.instance)} characters long; at most {err.validator_value}"
                          " are allowed", where, "shorten it" if what == "name" else None, value=what == "value")]
    return [doc.error(err.message, path)]


def _is_property_name(err: Any) -> bool:
    return any(part == "propertyNames" for part in err.schema_path)


_REQUIRED_HINTS = {
    "version": "add `version: 1` at the top of imgbuild.yaml",
    "apps": "a BUILD.yaml declares `apps:`, a map of app name -> settings",
    "bucket": "an s3 backend needs `bucket: NAME`",
    "ref": "a registry cache needs `ref: REGISTRY/REPOSITORY`",
    "url": "a registry needs `url: HOST[:PORT][/PATH]`",
    "backend": "name the backend, e.g. `backend: local`",
}
_PATTERN_HINTS = {
    "image": "image names are lowercase letters, digits and . _ - separators, with / between path parts",
}
