"""Parse YAML once, keeping where every key and value was written.

Every later check (schema, labels, files) reports ``file:line:col`` and the key path through the
:class:`YamlDocument` it got from here, so errors point at what the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imgbuild.errors import Location, SpecError

try:  # libyaml's parser is ~10x faster; the constructor is Python either way
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml built without libyaml
    _Loader = yaml.SafeLoader

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its data, and the position of each key path (1-based line/col)."""

    path: Path
    display: str  # the path as shown to the user (relative to the workspace)
    data: Any
    text: str = field(repr=False)
    positions: dict[KeyPath, tuple[int, int]] = field(repr=False, compare=False)
    value_positions: dict[KeyPath, tuple[int, int]] = field(repr=False, compare=False, default_factory=dict)

    def location(self, key_path: KeyPath, *, value: bool = False) -> Location:
        """Where ``key_path``'s key (or, with ``value``, its value) was written; else the closest enclosing key."""
        if value and tuple(key_path) in self.value_positions:
            line, col = self.value_positions[tuple(key_path)]
            return Location(file=self.display, line=line, col=col)
        for n in range(len(key_path), -1, -1):
            pos = self.positions.get(tuple(key_path[:n]))
            if pos is not None:
                return Location(file=self.display, line=pos[0], col=pos[1])
        return Location(file=self.display)

    def snippet(self, key_path: KeyPath, *, value: bool = False) -> str:
        loc = self.location(key_path, value=value)
        lines = self.text.splitlines()
        if not loc.line or loc.line > len(lines):
            return ""
        src = lines[loc.line - 1]
        return f"  {loc.line:>4} | {src}\n       | {' ' * (loc.col - 1)}^"

    def error(self, message: str, key_path: KeyPath, hint: str | None = None, *, value: bool = False) -> SpecError:
        """A :class:`SpecError` at ``key_path``: its key, or its value when the value is what is wrong."""
        return SpecError(
            message,
            location=self.location(key_path, value=value),
            key_path=key_path,
            hint=hint,
            snippet=self.snippet(key_path, value=value) or None,
        )


def load_yaml(path: Path, display: str) -> YamlDocument:
    """Read and parse one YAML file; malformed YAML becomes a :class:`SpecError` with its position."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror}", location=Location(file=display)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.start})",
            location=Location(file=display),
            hint="save the file as UTF-8",
        ) from None
    return parse_yaml(text, path=path, display=display)


def parse_yaml(text: str, *, path: Path, display: str) -> YamlDocument:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file=display, line=mark.line + 1, col=mark.column + 1) if mark else Location(file=display)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", location=loc, hint="fix the YAML syntax at this position") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", location=Location(file=display)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # pyyaml's constructors raise these for e.g. a timestamp out of range or deep nesting
        raise SpecError(f"invalid YAML value: {exc}", location=Location(file=display)) from None
    finally:
        loader.dispose()
    positions: dict[KeyPath, tuple[int, int]] = {}
    values: dict[KeyPath, tuple[int, int]] = {}
    if node is not None:
        _index(node, (), positions, values, display)
    return YamlDocument(path=path, display=display, data=data, text=text, positions=positions, value_positions=values)


def _index(node: yaml.Node, path: KeyPath, out: dict[KeyPath, tuple[int, int]],
           values: dict[KeyPath, tuple[int, int]], display: str) -> None:
    """Record positions of every key path; reject duplicate keys, which YAML loaders silently drop."""
    values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    out.setdefault(path, values[path])
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # the schema rejects non-string keys
            key = key_node.value
            if key_node.tag != "tag:yaml.org,2002:str" and key != "<<":
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise SpecError(
                    f"key {key!r} is not a string",
                    location=Location(file=display, line=line, col=col),
                    key_path=path,
                    hint="quote the key, e.g. \"" + key + "\":",
                )
            if key in seen and key != "<<":
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise SpecError(
                    f"duplicate key {key!r}",
                    location=Location(file=display, line=line, col=col),
                    key_path=path,
                    hint="each key may appear once in a mapping; remove or rename one of them",
                )
            seen.add(key)
            child = path + (key,)
            out[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _index(value_node, child, out, values, display)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), out, values, display)
