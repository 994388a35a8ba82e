"""Input digests: everything that can change a target's image, and nothing else, hashed.

The key of a target is ``sha256`` over canonical JSON (sorted keys, compact) of its :class:`Inputs`:
the Dockerfile's bytes, the stage, build args, platforms, the user's OCI labels (not volatile ones
such as the creation time), each secret's id and a salted hash of its value (never the value), the
context's files after ``.dockerignore`` (path, mode, content digest), the ignore rules themselves, the
input digests of its dependencies, the external base images it starts from, and the key scheme version.
A change to any of them changes the key; anything else (time, machine, checkout path) does not.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from imgbuild import dockerfile
from imgbuild.canonical import canonical_json
from imgbuild.dockerignore import load_rules
from imgbuild.fileset import FileEntry, context_files
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.model import Target, Workspace
from imgbuild.statcache import StatCache

# Bump when what goes into a key changes meaning: old entries then simply stop matching.
KEY_SCHEME = 1


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Inputs:
    label: str
    dockerfile: str  # workspace-relative path
    dockerfile_digest: str
    stage: str | None
    build_args: tuple[tuple[str, str], ...]
    platforms: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    secrets: tuple[tuple[str, str], ...]  # (id, salted hash of the value or "unset")
    ignore_rules: str
    files: tuple[FileEntry, ...]
    deps: tuple[tuple[str, str], ...]  # (build arg, dependency's input digest)
    bases: tuple[str, ...]
    extra: tuple[tuple[str, str], ...] = ()  # e.g. the cache policy's invalidation period
    scheme: int = KEY_SCHEME

    def manifest(self) -> dict[str, Any]:
        """JSON-ready and deterministic; stored with each cache entry to explain later rebuilds.

        File names that are not UTF-8 are shown escaped (``bad\\xffname``); the key hashes their bytes.
        """
        return self._document(shown_name)

    def _document(self, name: Callable[[str], str]) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "label": self.label,
            "dockerfile": {"path": self.dockerfile, "digest": self.dockerfile_digest},
            "stage": self.stage,
            "build_args": dict(self.build_args),
            "platforms": list(self.platforms),
            "labels": dict(self.labels),
            "secrets": dict(self.secrets),
            "ignore_rules": self.ignore_rules,
            "files": {name(f.path): [f.mode, f.digest] for f in self.files},
            "deps": dict(self.deps),
            "bases": list(self.bases),
            "extra": dict(self.extra),
        }

    def key(self) -> str:
        # Neither the label nor where the Dockerfile lies is part of the key: two targets with the same
        # inputs build the same image, and moving a package does not invalidate it.
        m = self._document(lambda path: path)  # names as the OS gave them: canonical_json writes their bytes
        del m["label"]
        m["dockerfile"] = m["dockerfile"]["digest"]
        return sha256_text(canonical_json(m))


def shown_name(path: str) -> str:
    """A context path as text: bytes that are not UTF-8 escaped as ``\\xNN`` (``bad\\xffname``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace") if not path.isprintable() else path


def secret_identity(secret_id: str, value: bytes | None) -> str:
    """A salted hash, so a changed secret rebuilds while the value itself is never stored or logged."""
    if value is None:
        return "unset"
    return sha256_text(b"imgbuild-secret-v1\0" + secret_id.encode() + b"\0" + value)


_ARG_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def external_bases(df: dockerfile.Dockerfile, args: dict[str, str], dep_args: frozenset[str]) -> tuple[str, ...]:
    """The base images a Dockerfile starts from, with build args substituted.

    Earlier stages, ``scratch`` and bases that come from a dependency (their own digest counts) are left out.
    """
    values = {**dict(df.arg_defaults), **args}
    stages: set[str] = set()
    out: list[str] = []
    for s in df.stages:
        refs = set(_ARG_REF.findall(s.base))
        base = _ARG_REF.sub(lambda m: values.get(m.group(1), ""), s.base)
        if not (refs & dep_args) and base and base.lower() != "scratch" and base.lower() not in stages \
                and base not in out:
            out.append(base)
        if s.name:
            stages.add(s.name)
    return tuple(out)


def native_platform() -> str:
    """What an unset ``platforms:`` builds for: amd64 and arm64 runners must not share entries."""
    import platform

    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"


class Hasher:
    """Computes input digests for the targets of a workspace, sharing work between targets."""

    def __init__(self, ws: Workspace, *, stat_cache: StatCache | None, environ: dict[str, str],
                 extra: Callable[[Target], tuple[tuple[str, str], ...]] | None = None) -> None:
        self.ws = ws
        self.stat_cache = stat_cache
        self.environ = environ
        self.extra = extra
        self._files: dict[tuple[Path, Path], tuple[str, tuple[FileEntry, ...]]] = {}
        self._dockerfiles: dict[Path, tuple[str, dockerfile.Dockerfile]] = {}
        self.inputs: dict[Label, Inputs] = {}

    def _context(self, t: Target) -> tuple[str, tuple[FileEntry, ...]]:
        k = (t.context, t.dockerfile)
        if k not in self._files:
            rules = load_rules(t.context, t.dockerfile, root=self.ws.root)
            own = frozenset(str(p) for p in self.ws.state.inside_workspace())
            self._files[k] = (rules.text, context_files(t.context, rules, self.stat_cache, skip=own))
        return self._files[k]

    def _dockerfile(self, path: Path) -> tuple[str, dockerfile.Dockerfile]:
        if path not in self._dockerfiles:
            data = path.read_bytes()
            self._dockerfiles[path] = (sha256_text(data), dockerfile.parse(path))
        return self._dockerfiles[path]

    def _secret_value(self, t: Target, i: int) -> bytes | None:
        s = t.secrets[i]
        if s.env is not None:
            v = self.environ.get(s.env)
            return None if v is None else v.encode()
        if s.src is not None:
            p = Path(os.path.expanduser(s.src))
            p = p if p.is_absolute() else self.ws.root / p
            try:
                return p.read_bytes()
            except OSError:
                return None
        return None

    def compute(self, graph: TargetGraph, labels: list[Label]) -> dict[Label, Inputs]:
        """Inputs of ``labels`` (in build order, so dependencies' digests are known first)."""
        for lb in labels:
            if lb in self.inputs:
                continue
            t = graph.target(lb)
            rules_text, files = self._context(t)
            df_digest, df = self._dockerfile(t.dockerfile)
            dep_digests = tuple((arg, self.inputs[dep].key()) for arg, dep in t.deps)
            self.inputs[lb] = Inputs(
                label=str(lb),
                dockerfile=self.ws.relpath(t.dockerfile),
                dockerfile_digest=df_digest,
                stage=t.stage,
                build_args=t.build_args,
                platforms=t.platforms or (f"default:{native_platform()}",),
                labels=t.labels,
                secrets=tuple((s.id, secret_identity(s.id, self._secret_value(t, i))) for i, s in enumerate(t.secrets)),
                ignore_rules=rules_text,
                files=files,
                deps=dep_digests,
                bases=external_bases(df, dict(t.build_args), frozenset(arg for arg, _ in t.deps)),
                extra=self.extra(t) if self.extra else (),
            )
        return self.inputs
