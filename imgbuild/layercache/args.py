"""The ``--cache-from`` / ``--cache-to`` values of a target, per cache backend and buildx driver.

Pure (no I/O) except :func:`detect_driver`. Every cache is named ``<target>-<scope>`` (a BuildKit
cache name, a registry tag or a GitHub Actions scope), so targets and scopes never overwrite each other.

=========  ============================================================================================
backend    arguments
=========  ============================================================================================
s3         drivers with BuildKit's own S3 cache (``docker-container``, ``remote``, ``kubernetes``):
           ``type=s3`` under ``<prefix>layers/buildkit/``, one ``--cache-from`` per read scope.
           Any other driver (the ``docker`` driver's embedded BuildKit answers ``unknown cache
           exporter: "s3"``): ``type=local`` directories under ``local_dir``, which
           :mod:`imgbuild.layercache.s3sync` fills from S3 before the build and uploads after it.
registry   ``type=registry,ref=<ref>:<target>-<scope>``; written as an OCI image manifest
           (``image-manifest=true,oci-mediatypes=true``, accepted by buildx 0.13 here) so registries
           that refuse BuildKit's bare cache index take it.
local      ``type=local`` directories under the policy's ``path`` (``<path>/layers``).
inline     ``--cache-to type=inline`` (the cache travels in the image); ``--cache-from`` the image.
gha        ``type=gha,scope=<target>-<scope>``; buildx reads the cache URL and token from the
           Actions environment (``ACTIONS_CACHE_URL``, ``ACTIONS_RUNTIME_TOKEN``): never in the argv.
=========  ============================================================================================

Every exporter except ``inline`` gets ``ignore-error=true``: a cache that cannot be written costs the
next build time, it must not fail this one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Collection

from imgbuild import proc
from imgbuild.builds.builders import parse_driver
from imgbuild.labels import Label, file_name
from imgbuild.layercache.scope import LayerScope
from imgbuild.model import CachePolicy
from imgbuild.statedir import StateDirs

# Drivers whose BuildKit runs standalone and has the s3 cache backend compiled in.
NATIVE_S3_DRIVERS = frozenset({"docker-container", "remote", "kubernetes"})

MAX_NAME = 128  # a registry tag's limit, which the other backends' names also keep

Args = tuple[tuple[str, ...], tuple[str, ...]]


def target_name(label: Label | str) -> str:
    """The label as a name usable in tags, keys and paths: ``//apps/api:api`` -> ``apps-api-api``.

    Two labels can give one name (``//a/b:c`` and ``//a:b-c``); they then share a cache and mostly miss
    it, but never build wrongly: BuildKit's cache keys are content addresses.
    """
    text = str(label).lstrip("/")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-")


def cache_name(target: str, scope: str) -> str:
    """``<target>-<scope>``, cut to 128 characters with a hash of the whole when longer (still unique)."""
    name = f"{target}-{scope}"
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:MAX_NAME - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def scope_dir(local_dir: Path, scope: str, target: str) -> Path:
    """The directory of one target's cache in one scope: ``<local_dir>/<scope>/<target>``.

    One per target: BuildKit's local exporter replaces the directory's ``index.json``, so targets sharing
    a directory would overwrite each other's cache.
    """
    return local_dir / file_name(scope) / file_name(target)


def local_dir_for(policy: CachePolicy, root: Path, state: StateDirs) -> Path | None:
    """Where a policy's local layer caches live for the workspace at ``root``; None if it has none.

    Beside the target cache (``layers/`` in the policy's ``path``, or in the state directory's target
    cache); S3 policies keep synced copies in the state directory, one directory per policy.
    """
    if policy.backend == "local":
        return (root / policy.path if policy.path else state.target_cache) / "layers"
    if policy.backend == "s3":
        return state.layer_sync / policy.name
    return None


def needs_sync(policy: CachePolicy, driver: str) -> bool:
    """True when the S3 cache goes through local directories and :mod:`~imgbuild.layercache.s3sync`."""
    return policy.backend == "s3" and driver not in NATIVE_S3_DRIVERS


def cache_args(policy: CachePolicy, target_name: str, scope: LayerScope, *, driver: str, local_dir: Path | None,
               image_ref: str | None = None, available: Collection[str] | None = None,
               region: str | None = None) -> Args:
    """The ``--cache-from`` values and the ``--cache-to`` values of one target, in a fixed order.

    ``local_dir`` is the policy's directory of local caches (:func:`local_dir_for`), needed by the
    ``local`` backend and by ``s3`` on drivers without native S3. ``image_ref`` is the target's image in
    a registry, read by the ``inline`` backend. ``available`` limits the local read scopes to those
    present (for synced S3, the scope :func:`~imgbuild.layercache.s3sync.pull_scopes` fetched); None
    means every read scope. ``region`` is BuildKit's S3 region when the policy names none (BuildKit reads
    only ``AWS_REGION`` and fails without it, where boto3 also takes ``AWS_DEFAULT_REGION``). A missing directory would only cost buildx a warning, but no argument is
    clearer in the log.
    """
    backend = policy.backend
    if backend == "s3" and driver in NATIVE_S3_DRIVERS:
        return _s3(policy, target_name, scope, region)
    if backend in ("s3", "local"):
        if local_dir is None:
            raise ValueError(f"cache policy {policy.name!r} ({backend}, driver {driver!r}) needs a local directory")
        return _local(policy, target_name, scope, local_dir, available)
    if backend == "registry":
        if not policy.ref:
            raise ValueError(f"cache policy {policy.name!r} (registry) has no ref")
        ref = policy.ref
        return (
            tuple(_csv("type=registry", f"ref={ref}:{cache_name(target_name, s)}") for s in scope.read_scopes),
            _to(scope, lambda s: _csv("type=registry", f"ref={ref}:{cache_name(target_name, s)}", f"mode={policy.mode}",
                                      "image-manifest=true", "oci-mediatypes=true", "ignore-error=true")),
        )
    if backend == "inline":
        # The cache is the image's own config: only the final stage's layers (mode=min) can be in it.
        return (
            (_csv("type=registry", f"ref={image_ref}"),) if image_ref else (),
            _to(scope, lambda s: "type=inline"),
        )
    if backend == "gha":
        return (
            tuple(_csv("type=gha", f"scope={cache_name(target_name, s)}") for s in scope.read_scopes),
            _to(scope, lambda s: _csv("type=gha", f"scope={cache_name(target_name, s)}", f"mode={policy.mode}",
                                      "ignore-error=true")),
        )
    raise ValueError(f"cache policy {policy.name!r}: unknown backend {backend!r}")


def native_s3_prefix(policy: CachePolicy) -> str:
    """BuildKit's own S3 layout (``blobs/sha256:<hex>``, ``manifests/<name>``) lives here, apart from the
    synced layout (``layers/blobs/sha256/<hex>``, ``layers/scopes/...``), which it cannot read."""
    root = policy.prefix.strip("/")  # as the S3 stores read a prefix
    return f"{root}/layers/buildkit/" if root else "layers/buildkit/"


def _s3(policy: CachePolicy, target: str, scope: LayerScope, region: str | None = None) -> Args:
    if not policy.bucket:
        raise ValueError(f"cache policy {policy.name!r} (s3) has no bucket")

    def fields(s: str) -> list[str]:
        out = ["type=s3"]
        if policy.region or region:  # else BuildKit takes AWS_REGION from the builder's environment
            out.append(f"region={policy.region or region}")
        out += [f"bucket={policy.bucket}", f"prefix={native_s3_prefix(policy)}", f"name={cache_name(target, s)}"]
        if policy.endpoint_url:
            out.append(f"endpoint_url={policy.endpoint_url}")
        if policy.use_path_style:
            out.append("use_path_style=true")
        return out

    # Credentials are not arguments: buildx passes the client's AWS environment to the builder.
    return (
        tuple(_csv(*fields(s)) for s in scope.read_scopes),
        _to(scope, lambda s: _csv(*fields(s), f"mode={policy.mode}", "ignore-error=true")),
    )


def _local(policy: CachePolicy, target: str, scope: LayerScope, local_dir: Path,
           available: Collection[str] | None) -> Args:
    reads = [s for s in scope.read_scopes if available is None or s in available]
    return (
        tuple(_csv("type=local", f"src={scope_dir(local_dir, s, target)}") for s in reads),
        _to(scope, lambda s: _csv("type=local", f"dest={scope_dir(local_dir, s, target)}", f"mode={policy.mode}",
                                  "ignore-error=true")),
    )


def _to(scope: LayerScope, make: Callable[[str], str]) -> tuple[str, ...]:
    return (make(scope.write_scope),) if scope.write_scope is not None else ()


def _csv(*fields: str) -> str:
    """buildx parses these values as one CSV record: a field holding ``,`` or ``"`` must be quoted."""
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if ("," in f or '"' in f) else f for f in fields)


def detect_driver(builder: str | None) -> str:
    """The buildx driver of ``builder`` (the current builder if None): ``docker``, ``docker-container``...

    "" when buildx cannot tell; callers then take the path that works with every driver (no native S3).
    """
    argv = ["docker", "buildx", "inspect", *([builder] if builder else [])]
    try:
        out = proc.run(argv, timeout=30)
    except proc.ProcessError:
        return ""
    return parse_driver(out)
