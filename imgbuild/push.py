"""Pushing built images to their registries: by digest, in parallel, with retries, verified.

Planning (which references each target goes to) is separate from doing; only :class:`Pusher` talks to
the engine and the registries, so it also makes the immutable-tag check, before anything is pushed.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from imgbuild.model import Target, Workspace
from imgbuild.regcopy import BlobMounts, Copier, Repository, is_manifest
from imgbuild.registry import Reference, RegistryClient, RegistryError

# Images pushed at once (not -j, which counts builds): a push waits on round trips to the registry, not on
# this machine, and each image's blobs go at once on the copier's own threads.
PUSH_PARALLELISM = 16

# `docker push` says what went wrong only in text. Its network and server failures worth another try, by
# the phrases Go's net/http and the engine print; anything else (denied, unknown, invalid) is final.
_DOCKER_TRANSIENT = re.compile(
    r"connection reset|connection refused|broken pipe|\bEOF\b|\btimeout\b|timed out|awaiting (response )?headers|"
    r"context deadline exceeded|no route to host|server closed idle connection|"
    r"\b(500 Internal Server Error|502 Bad Gateway|503 Service Unavailable|504 Gateway Timeout|"
    r"429 Too Many Requests)\b|\btoomanyrequests\b", re.IGNORECASE)
# Words that name a place rather than say what happened: URLs, host:port, references, addresses, domains.
_PLACES = re.compile(r"\S*(?:[/@]|:\w|\.\w)\S*")


def docker_push_transient(message: str) -> bool:
    """Whether a failed ``docker push`` (its last error line) may succeed when tried again.

    Only the message's words are read, never the places it names: ``localhost:5000`` or a digest holding
    ``500`` must not make a refusal look like a server error (issue #14).
    """
    return bool(_DOCKER_TRANSIENT.search(_PLACES.sub(" ", message)))


@dataclass(frozen=True, kw_only=True)
class PushPlan:
    label: str
    image_id: str  # with the containerd image store this is the digest the registry will hold
    refs: tuple[Reference, ...]
    immutable: frozenset[str] = frozenset()  # urls (host/path) of the registries whose tags never move
    blob_dir: Path | None = None  # the image's blobs on disk (the target cache): pushed over HTTP, no engine
    # Where blob_dir is None: fetches the blobs (e.g. from the cache store), asked only when a tag is missing.
    fetch_blobs: Callable[[], Path | None] | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class PushResult:
    label: str
    pushed: tuple[str, ...] = ()  # repo@sha256:... verified in the registry
    tags: tuple[str, ...] = ()  # every full reference that now points at the image
    uploaded: tuple[str, ...] = ()  # references this run pushed (the others were already there)
    error: str | None = None


def push_refs(target: Target, ws: Workspace, local_tags: tuple[str, ...]) -> tuple[Reference, ...]:
    """``<registry url>/<image>:<tag>`` for each of the target's registries and rendered tags."""
    tags = [t.rpartition(":")[2] for t in local_tags]
    out = []
    for name in target.registries:
        url = ws.config.registry(name).url
        out += [Reference.parse(f"{url}/{target.image}:{tag}") for tag in tags]
    return tuple(out)


def plan_push(target: Target, ws: Workspace, image_id: str, local_tags: tuple[str, ...],
              blob_dir: Path | None = None) -> PushPlan:
    urls = {ws.config.registry(n).url for n in target.registries if ws.config.registry(n).immutable_tags}
    return PushPlan(label=str(target.label), image_id=image_id, refs=push_refs(target, ws, local_tags),
                    immutable=frozenset(urls), blob_dir=blob_dir)


class Engine(Protocol):
    def tag(self, image_id: str, ref: str) -> None: ...
    def push(self, ref: str) -> str | None: ...  # the manifest digest the engine reports having pushed
    def known_digests(self, image_id: str) -> frozenset[str]: ...  # its manifest digests in registries


class Pusher:
    def __init__(self, engine: Engine, client: RegistryClient, *, attempts: int = 4, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, copier: Copier | None = None) -> None:
        self.engine = engine
        self.client = client
        self.copier = copier
        self.mounts = BlobMounts()  # (host, blob) -> a repository there that holds it
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep

    def immutable_conflicts(self, plans: list[PushPlan]) -> list[str]:
        """Tags in immutable registries that already point at another image (checked before any push)."""
        problems = []
        for plan in plans:
            for ref in plan.refs:
                # Per registry, not per host: two registries may share a host under different paths.
                if not any(str(ref).startswith(url + "/") for url in plan.immutable):
                    continue
                try:
                    current = self._current(ref)
                except PushError as exc:
                    problems.append(f"{plan.label}: cannot check immutable tag {ref}: {exc}")
                    continue
                if current is not None and not self._is_image(current, plan.image_id):
                    problems.append(f"{plan.label}: tag {ref} already points at {current}; this build is "
                                    f"{plan.image_id} and the registry's tags are immutable")
        return problems

    def _is_image(self, digest: str, image_id: str) -> bool:
        """Whether the manifest ``digest`` is the image ``image_id``: its id on the containerd image store;
        on the classic store (the id is the config's digest) a digest the engine's own pushes produced."""
        return digest == image_id or digest in self.engine.known_digests(image_id)

    def push(self, plan: PushPlan) -> PushResult:
        """Push every reference of ``plan`` that does not already point at the image, then verify."""
        uploaded = []
        confirmed: set[str] = set()  # verified: read just now, or named by the registry's answer to the tag's PUT
        try:
            # What each reference must point at afterwards: the image id, which is the manifest digest on
            # the containerd image store; on the classic store (where the id is the config digest) the
            # engine's push reports a manifest digest of its own, and that is what gets verified.
            want = {ref: plan.image_id for ref in plan.refs}
            missing = []
            for ref in plan.refs:
                current = self._current(ref)
                if current is not None and self._is_image(current, plan.image_id):
                    want[ref] = current  # already there (just read): only the missing tags are added
                    confirmed.add(str(ref))
                else:
                    missing.append(ref)
            blob_dir = plan.blob_dir
            if missing and blob_dir is None and plan.fetch_blobs is not None:
                blob_dir = plan.fetch_blobs()
            if missing and blob_dir is not None and self.copier is not None \
                    and is_manifest(blob_dir, plan.image_id):
                # Straight from the target cache's blobs, over HTTP: parallel, layers shared between
                # images mounted rather than sent again, and the engine (which serializes pushes) idle.
                by_repo: dict[tuple[str, str], list[Reference]] = {}
                for ref in missing:
                    by_repo.setdefault((ref.host, ref.repository), []).append(ref)
                for (host, path), refs in by_repo.items():
                    repo = Repository(host=host, path=path)
                    tags = tuple(r.tag for r in refs)
                    self._with_retries(lambda: confirmed.update(self._push_blobs(blob_dir, repo, plan.image_id, tags)),
                                       str(repo))
                    uploaded += [str(r) for r in refs]
                missing = []
            for ref in missing:
                self.engine.tag(plan.image_id, str(ref))
                reported: list[str | None] = []
                self._with_retries(lambda: reported.append(self.engine.push(str(ref))), str(ref))
                want[ref] = reported[-1] or plan.image_id
                uploaded.append(str(ref))
            pushed = set()
            for ref in plan.refs:
                # Nothing is recorded as pushed that the registry does not hold.
                current = want[ref] if str(ref) in confirmed else self._current(ref)
                if current != want[ref]:
                    raise RegistryError(f"{ref} points at {current or 'nothing'} after the push, "
                                        f"not {want[ref]}")
                pushed.add(ref.by_digest(want[ref]))
        except (RegistryError, PushError) as exc:
            return PushResult(label=plan.label, uploaded=tuple(uploaded), error=str(exc))
        return PushResult(label=plan.label, pushed=tuple(sorted(pushed)), tags=tuple(sorted(map(str, plan.refs))),
                          uploaded=tuple(uploaded))

    def _push_blobs(self, blob_dir: Path, repo: Repository, digest: str, tags: tuple[str, ...]) -> list[str]:
        assert self.copier is not None
        return self.copier.push_blobs(blob_dir, repo, digest, tags, self.mounts).confirmed

    def push_all(self, plans: list[PushPlan], parallelism: int = PUSH_PARALLELISM) -> list[PushResult]:
        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            return list(pool.map(self.push, plans))

    def _current(self, ref: Reference) -> str | None:
        result: list[str | None] = []
        self._with_retries(lambda: result.append(self.client.tag_digest(ref)), str(ref))
        return result[-1]

    def _with_retries(self, op: Callable[[], None], what: str) -> None:
        """``op``, tried again (up to ``attempts`` in all) while it fails in a way that can pass: decided by
        the error's kind and status (:attr:`RegistryError.transient`), waiting as long as a ``Retry-After``
        asked (capped) or else backing off exponentially."""
        for attempt in range(1, self.attempts + 1):
            try:
                op()
                return
            except (PushError, RegistryError) as exc:
                if attempt == self.attempts or not exc.transient:
                    raise PushError(f"pushing {what} failed after {attempt} attempt(s): {exc}") from None
                wait = self.backoff * 2 ** (attempt - 1)
                self.sleep(wait if exc.retry_after is None else max(wait, exc.retry_after))


class PushError(Exception):
    """A push that failed; ``transient`` when trying it again may help (see :func:`docker_push_transient`)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after: float | None = None
