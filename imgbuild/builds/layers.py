"""BuildKit layer caches during a run: which --cache-from/--cache-to each target gets, and the S3 sync.

The target cache skips targets whose inputs did not change at all; this makes the other common case
fast: the application changed but its dependency layers did not, on a runner that never saw them.
Where the builder cannot talk to S3 (the ``docker`` driver), the cache is exported to a local directory
and its blobs are synced with S3 by :mod:`imgbuild.layercache.s3sync` before and after each build.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from imgbuild.git import GitInfo
from imgbuild.layercache.args import cache_args, detect_driver, local_dir_for, needs_sync, scope_dir, target_name
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
        self._unusable: dict[str, str | None] = {}  # policy -> why its local directory cannot be used
        self._down_warned: set[str] = set()  # policies whose S3 endpoint is down, warned about
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

    def before(self, target: Target, image_ref: str | None = None, *, fetch: bool = True) -> Args:
        """Fetch the target's scope from S3 if needed; its ``--cache-from`` and ``--cache-to`` values.

        ``fetch=False`` (a dry run) fetches and creates nothing: a synced S3 cache then reads every scope it may
        read.
        """
        policy = self.policy(target)
        if policy is None:
            return (), ()
        scope = self.scope(policy)
        driver = self.driver()
        local = local_dir_for(policy, self.ws.root, self.ws.state)
        name = target_name(target.label)
        available = None
        sync = needs_sync(policy, driver)
        if policy.backend == "s3" and not sync and self._endpoint_down(policy):
            return (), ()  # BuildKit's own S3 client would wait for it, holding the build up
        if local is not None and (policy.backend == "local" or sync):
            # A synced S3 cache is written here by the pull even when the run writes no cache.
            # A dry run (fetch=False) creates nothing: a directory still to be made is then taken as usable.
            writing = fetch and (sync or scope.write_scope is not None)
            if self._check_dir(policy, local, writing=writing) is not None:
                return (), ()
        if policy.backend == "local" and local is not None:
            available = {s for s in scope.read_scopes if scope_dir(local, s, name).is_dir()}
        if fetch and sync and local is not None:
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

    def _check_dir(self, policy: CachePolicy, local: Path, *, writing: bool) -> str | None:
        """Why the policy's local cache directory cannot be used in this run (warned once), or None.

        A path that is a file, or one under ``/proc``, would otherwise still be handed to BuildKit, which
        then fails the target (issue #14): the target cache can only warn and go on without it.
        """
        with self._lock:
            if policy.name in self._unusable:
                return self._unusable[policy.name]
            problem = _unusable_dir(local, writing=writing)
            self._unusable[policy.name] = problem
        if problem is not None:
            self.warn(f"layer cache {policy.name} unavailable: {problem}; continuing without it "
                      "(targets build without a layer cache)")
        return problem

    def _endpoint_down(self, policy: CachePolicy) -> bool:
        """True (warned once per policy) if the policy's S3 endpoint failed earlier in this run, e.g. for
        the target cache's lookups: see :mod:`imgbuild.cache.outages`."""
        from imgbuild.cache.outages import OUTAGES, endpoint_name

        down = OUTAGES.skipped(endpoint_name(policy.endpoint_url)) if policy.endpoint_url else None
        if down is None:
            return False
        with self._lock:
            first = policy.name not in self._down_warned
            self._down_warned.add(policy.name)
        if first:  # the reason up to ";" is the target cache's: the run's warnings say it once
            self.warn(f"layer cache {policy.name} unavailable: {down}; continuing without it "
                      "(targets build without a layer cache)")
        return True

    def after(self, target: Target) -> str | None:
        """Upload what the build exported (only blobs S3 lacks), for the synced S3 backend; a log line."""
        policy = self.policy(target)
        if policy is None:
            return None
        scope = self.scope(policy)
        local = local_dir_for(policy, self.ws.root, self.ws.state)
        if scope.write_scope is None or local is None or not needs_sync(policy, self.driver()):
            return None
        with self._lock:
            if self._unusable.get(policy.name) is not None:
                return None
        from imgbuild.layercache import s3sync

        res = s3sync.push_scope(self._store(policy), local, scope.write_scope, target_name(target.label))
        return (f"# layer cache: scope {scope.write_scope}: uploaded {res.bytes_uploaded} bytes "
                f"({res.blobs_uploaded} of {res.blobs} blobs, {res.layers_uploaded} layers)"
                + ("" if res.pushed else " - not complete, see the warning"))


def _unusable_dir(path: Path, *, writing: bool) -> str | None:
    """Why ``path`` cannot hold layer caches: it cannot be created, is not a directory, or (when this run
    writes caches) is not writable; None when it can."""
    try:
        if writing:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            return None  # nothing to read; nothing will be written
        if not path.is_dir():
            return f"{path} is not a directory"
        if writing and not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
    except OSError as exc:
        return f"cannot create {exc.filename or path}: {exc.strerror or exc}"
    return None
