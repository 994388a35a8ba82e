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

# What aliases may add to a document: each alias counts as the number of values it stands for. Real
# specs share a few settings blocks; nine levels of ``&x [*y, *y, ...]`` (the "billion laughs") stand
# for billions, which every later walk (positions, schema) would visit. Documented in specs/README.md.
MAX_ALIAS_VALUES = 100_000

_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its data, and the position of each key path (1-based line/col)."""

    path: Path
    display: str  # the path as shown to the user (relative to the workspace)
    data: Any
    text: str = field(repr=False)
    positions: dict[KeyPath, tuple[int, int]] = field(repr=False, compare=False)
    value_positions: dict[KeyPath, tuple[int, int]] = field(repr=False, compare=False, default_factory=dict)
    # Plain (unquoted) scalars that YAML read as something other than a string: key path -> (tag, the
    # text as written). A string position takes the text (``3.10`` stays "3.10"), see schemas.as_written.
    plain_scalars: dict[KeyPath, tuple[str, str]] = field(repr=False, compare=False, default_factory=dict)

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
        if node is not None and "*" in text:  # no alias without a `*`: most files skip the walk
            _check_aliases(node, display)
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
    plain: dict[KeyPath, tuple[str, str]] = {}
    if node is not None:
        _index(node, (), positions, values, plain, display)
    return YamlDocument(path=path, display=display, data=data, text=text, positions=positions, value_positions=values,
                        plain_scalars=plain)


def _check_aliases(root: yaml.Node, display: str) -> None:
    """Refuse a document whose aliases stand for more than :data:`MAX_ALIAS_VALUES` values, or for themselves.

    Runs on the composed nodes, before anything is constructed: an alias is the very node object its
    anchor names, so each node is sized once (linear in the text) however often it is referred to.
    """
    size: dict[int, int] = {}  # id(node) -> values it stands for, itself included
    open_nodes: set[int] = set()
    through_aliases = 0
    # (node, key path of its first use, mark of the line that uses it, children done?)
    stack: list[tuple[yaml.Node, KeyPath, Any, bool]] = [(root, (), root.start_mark, False)]
    while stack:
        node, path, mark, done = stack.pop()
        nid = id(node)
        if done:
            open_nodes.discard(nid)
            size[nid] = 1 + sum(size[id(child)] for _, child, _ in _children(node))
            continue
        if nid in size:  # a node met again: an alias (or a merge key's) use of it
            through_aliases += size[nid]
            if through_aliases > MAX_ALIAS_VALUES:
                raise SpecError(
                    f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?)",
                    location=Location(file=display, line=mark.line + 1, col=mark.column + 1), key_path=path,
                    hint="write the repeated settings out, or share fewer/smaller blocks with & and *")
            continue
        if nid in open_nodes:
            raise SpecError(
                "an alias refers to a value that contains it (a cycle)",
                location=Location(file=display, line=mark.line + 1, col=mark.column + 1), key_path=path,
                hint="an alias (*name) may only refer to an anchor (&name) outside of it")
        open_nodes.add(nid)
        stack.append((node, path, mark, True))
        for key, child, child_mark in reversed(_children(node)):
            stack.append((child, path + (key,), child_mark, False))


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node, Any]]:
    """A collection's values with their key (mapping keys count as values too) and the mark of their line."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[str | int, yaml.Node, Any]] = []
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            out += [(key, k, k.start_mark), (key, v, k.start_mark)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(i, item, item.start_mark if isinstance(item, yaml.ScalarNode) else node.start_mark)
                for i, item in enumerate(node.value)]
    return []


def _index(node: yaml.Node, path: KeyPath, out: dict[KeyPath, tuple[int, int]],
           values: dict[KeyPath, tuple[int, int]], plain: dict[KeyPath, tuple[str, str]], display: str) -> None:
    """Record positions of every key path; reject duplicate keys, which YAML loaders silently drop."""
    values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    out.setdefault(path, values[path])
    if isinstance(node, yaml.ScalarNode):
        if not node.style and node.tag != _STR_TAG:  # plain: None (pure Python) or "" (libyaml)
            plain[path] = (node.tag, node.value)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # the schema rejects non-string keys
            key = key_node.value
            if key_node.tag != _STR_TAG and key != "<<":
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
            _index(value_node, child, out, values, plain, display)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), out, values, plain, display)
