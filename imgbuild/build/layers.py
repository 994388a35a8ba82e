"""BuildKit layer caches during a run: which --cache-from/--cache-to each target gets, and the S3 sync.

The target cache skips targets whose inputs did not change at all; this makes the other common case
fast: the application changed but its dependency layers did not, on a runner that never saw them.
Where the builder cannot talk to S3 (the ``docker`` driver), the cache is exported to a local directory
and its blobs are synced with S3 by :mod:`imgbuild.layercache.s3sync` before and after each build.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Callable

from imgbuild.git import GitInfo
from imgbuild.layercache.args import cache_args, detect_driver, local_dir_for, needs_sync, target_name
from imgbuild.layercache.scope import LayerScope, layer_scope
from imgbuild.model import CachePolicy, Target, Workspace

Args = tuple[tuple[str, ...], tuple[str, ...]]


class LayerCaches:
    """One per run, shared by the build threads. Never fails a build: sync problems are warnings."""

    def __init__(self, ws: Workspace, *, git: GitInfo, now: datetime, read_only: bool, builder: str | None,
                 environ: dict[str, str], warn: Callable[[str], None],
                 driver: Callable[[str | None], str] = detect_driver) -> None:
        self.ws = ws
        self.git = git
        self.now = now
        self.read_only = read_only
        self.builder = builder
        self.environ = environ
        self.warn = warn
        self._detect = driver
        self._driver: str | None = None
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def policy(self, target: Target) -> CachePolicy | None:
        return self.ws.config.cache_policy(target.cache) if target.cache else None

    def scope(self, policy: CachePolicy) -> LayerScope:
        return layer_scope(policy, git=self.git, now=self.now, read_only=self.read_only, environ=self.environ)

    def period(self, target: Target) -> tuple[tuple[str, str], ...]:
        """What the input digest must include: the invalidation period of the target's policy, if any."""
        policy = self.policy(target)
        if policy is None or not policy.invalidate_every:
            return ()
        period = self.scope(policy).period
        return (("layer_cache_period", period),) if period else ()

    def driver(self) -> str:
        with self._lock:
            if self._driver is None:
                self._driver = self._detect(self.builder) or "docker"
            return self._driver

    def _store(self, policy: CachePolicy) -> Any:
        with self._lock:
            if policy.name not in self._stores:
                from imgbuild.layercache import s3sync  # boto3: only when an S3 layer cache is in use

                read_only = self.read_only or not policy.write
                self._stores[policy.name] = s3sync.open_store(policy, warn=self.warn, read_only=read_only)
            return self._stores[policy.name]

    def before(self, target: Target, image_ref: str | None = None) -> Args:
        """Fetch the target's scope from S3 if needed; its ``--cache-from`` and ``--cache-to`` values."""
        policy = self.policy(target)
        if policy is None:
            return (), ()
        scope = self.scope(policy)
        driver = self.driver()
        local = local_dir_for(policy, self.ws.root)
        name = target_name(target.label)
        available = None
        if needs_sync(policy, driver) and local is not None:
            from imgbuild.layercache import s3sync

            pulled = s3sync.pull_scopes(self._store(policy), local, scope.read_scopes, name)
            available = {pulled} if pulled else set()
        try:
            region = self.environ.get("AWS_REGION") or self.environ.get("AWS_DEFAULT_REGION") or (
                "us-east-1" if policy.endpoint_url else None)  # S3-compatible servers: boto3's default too
            return cache_args(policy, name, scope, driver=driver, local_dir=local, image_ref=image_ref,
                              available=available, region=region)
        except ValueError as exc:
            self.warn(f"{target.label}: layer cache not used: {exc}")
            return (), ()

    def after(self, target: Target) -> str | None:
        """Upload what the build exported (only blobs S3 lacks), for the synced S3 backend; a log line."""
        policy = self.policy(target)
        if policy is None:
            return None
        scope = self.scope(policy)
        local = local_dir_for(policy, self.ws.root)
        if scope.write_scope is None or local is None or not needs_sync(policy, self.driver()):
            return None
        from imgbuild.layercache import s3sync

        res = s3sync.push_scope(self._store(policy), local, scope.write_scope, target_name(target.label))
        return (f"# layer cache: scope {scope.write_scope}: uploaded {res.bytes_uploaded} bytes "
                f"({res.blobs_uploaded} of {res.blobs} blobs, {res.layers_uploaded} layers)"
                + ("" if res.pushed else " - not complete, see the warning"))
