"""Bazel-style labels (``//apps/api:api``) and target patterns (``//apps/...``, ``-//apps/legacy/...``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

from imgbuild.errors import LabelError

MAX_NAME = 128  # app and target names (the specs' schema says so too): a registry tag's limit
MAX_FILE_NAME = 255  # bytes in one file name on common Linux file systems

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME_RE = re.compile(rf"^{_NAME}$")
_PKG_RE = re.compile(rf"^({_NAME}(/{_NAME})*)?$")


@dataclass(frozen=True, order=True)
class Label:
    """A target's address: package path (``apps/api``, ``""`` for the root) and target name."""

    package: str
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    @classmethod
    def parse(cls, text: str, *, current_package: str = "") -> Label:
        """Parse ``//pkg:name``, ``//pkg`` (name = last path part) or ``:name`` (in ``current_package``)."""
        raw = text.strip()
        if raw.startswith(":"):
            package, name = current_package, raw[1:]
        elif raw.startswith("//"):
            body = raw[2:]
            package, sep, name = body.partition(":")
            if not sep:
                name = package.rsplit("/", 1)[-1]
        else:
            raise LabelError(f"label {text!r} must start with // (absolute) or : (in this package)")
        package = package.rstrip("/")
        if not _PKG_RE.match(package):
            raise LabelError(f"label {text!r}: {package!r} is not a valid package path")
        if not name or not _NAME_RE.match(name):
            raise LabelError(f"label {text!r}: {name!r} is not a valid target name")
        return cls(package, name)


@dataclass(frozen=True)
class Pattern:
    """One pattern word: ``//pkg:name``, ``//pkg:all``, ``//pkg/...``; ``exclude`` when written ``-...``."""

    package: str
    name: str | None  # None: every target of the package(s)
    recursive: bool
    exclude: bool = False
    text: str = ""

    def matches(self, label: Label) -> bool:
        if self.recursive:
            if self.package and not (label.package == self.package or label.package.startswith(self.package + "/")):
                return False
            return True
        if label.package != self.package:
            return False
        return self.name is None or label.name == self.name

    @classmethod
    def parse(cls, text: str, *, current_package: str = "") -> Pattern:
        """Parse a pattern; relative forms (``:api``, ``api/...``, ``...``) are taken from ``current_package``."""
        raw = text.strip()
        exclude = raw.startswith("-")
        if exclude:
            raw = raw[1:]
        if not raw:
            raise LabelError(f"empty pattern {text!r}")
        if raw.startswith(":"):
            body = f"{current_package}{raw}"
        elif raw.startswith("//"):
            body = raw[2:]
        else:  # relative to the current package, as in Bazel: `api/...`, `...`, `api:all`
            body = f"{current_package}/{raw}" if current_package else raw
        pkg, sep, name = body.partition(":")
        recursive = pkg == "..." or pkg.endswith("/...")
        if recursive:
            if sep and name not in ("all", "*"):
                raise LabelError(f"pattern {text!r}: after /... only :all may follow")
            pkg = pkg[: -len("...")].rstrip("/")
            name = ""
        pkg = pkg.rstrip("/")
        if not _PKG_RE.match(pkg):
            raise LabelError(f"pattern {text!r}: {pkg!r} is not a valid package path")
        target: str | None
        if recursive or name in ("all", "*"):
            target = None
        elif not sep:
            if not pkg:
                raise LabelError(f"pattern {text!r}: name a target (//:name) or use //...")
            target = pkg.rsplit("/", 1)[-1]
        else:
            target = name
            if not _NAME_RE.match(target):
                raise LabelError(f"pattern {text!r}: {target!r} is not a valid target name")
        return cls(pkg, target, recursive, exclude, text)

    @property
    def is_single_label(self) -> bool:
        return not self.recursive and self.name is not None


def file_name(name: str, suffix: str = "") -> str:
    """``name + suffix`` as one file name: as it is when it fits, else cut, with a hash of the whole
    name so that it stays unique. Names made from labels (logs, cache directories) can be longer than
    a file system allows although every part of the label is valid."""
    if len((name + suffix).encode()) <= MAX_FILE_NAME:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    keep = MAX_FILE_NAME - len(suffix.encode()) - len(digest) - 1
    head = name.encode()[:keep].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


def parse_patterns(texts: Iterable[str], *, current_package: str = "") -> tuple[Pattern, ...]:
    pats = tuple(Pattern.parse(t, current_package=current_package) for t in texts)
    if pats and all(p.exclude for p in pats):
        raise LabelError("only exclusions were given; add what to include first, e.g. //... -//apps/legacy/...")
    return pats


def select(labels: Iterable[Label], patterns: tuple[Pattern, ...]) -> list[Label]:
    """Labels matched by the patterns, applied left to right (``-`` removes), in sorted order."""
    chosen: set[Label] = set()
    universe = sorted(labels)
    for pat in patterns:
        hits = {lb for lb in universe if pat.matches(lb)}
        chosen = chosen - hits if pat.exclude else chosen | hits
    return sorted(chosen)
