"""The pusher against small fakes of the engine and the registry: what it records as pushed is what the
registry holds, on either image store (containerd: image id = manifest digest; classic: it is not)."""

from __future__ import annotations

import json
from pathlib import Path

from imgbuild.push import Pusher, PushPlan
from imgbuild.regcopy import Copier, Opened
from imgbuild.registry import Reference, RegistryClient
from tests.unit.fakes import FakeRegistries, sha

IMAGE_ID = "sha256:" + "c" * 64  # on the classic store: the config's digest
MANIFEST = "sha256:" + "d" * 64  # what `docker push` reports and the registry then holds


class FakeRegistry:
    """Tags -> manifest digests (the part of the Registry v2 API the pusher reads: HEAD of a tag)."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def tag_digest(self, ref: Reference) -> str | None:
        return self.tags.get(str(ref))


class FakeEngine:
    """``docker tag`` / ``docker push``: pushing stores ``digest`` under the tag and reports it (or not)."""

    def __init__(self, registry: FakeRegistry, digest: str, *, reports: bool = True) -> None:
        self.registry, self.digest, self.reports = registry, digest, reports
        self.pushed: list[str] = []
        self.names: dict[str, str] = {}  # ref -> image id
        self.repo_digests: dict[str, set[str]] = {}  # image id -> what `docker image inspect` lists as RepoDigests

    def tag(self, image_id: str, ref: str) -> None:
        self.names[ref] = image_id

    def push(self, ref: str) -> str | None:
        self.pushed.append(ref)
        self.registry.tags[ref] = self.digest
        self.repo_digests.setdefault(self.names[ref], set()).add(self.digest)  # the engine remembers it
        return self.digest if self.reports else None

    def known_digests(self, image_id: str) -> frozenset[str]:
        return frozenset(self.repo_digests.get(image_id, ()))


REFS = (Reference.parse("localhost:5000/team/api:v1"), Reference.parse("localhost:5000/team/api:latest"))


def test_classic_store_pushes_are_verified_and_recorded_by_the_digest_the_engine_pushed() -> None:
    registry = FakeRegistry()
    engine = FakeEngine(registry, MANIFEST)
    result = Pusher(engine, registry, sleep=lambda s: None).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS))
    assert result.error is None
    assert result.pushed == (f"localhost:5000/team/api@{MANIFEST}",)  # never repo@<config digest>
    assert set(result.uploaded) == {str(r) for r in REFS}


def test_classic_store_image_already_in_an_immutable_registry_is_recognised_not_refused() -> None:
    """The classic store's image id is its config digest, never the registry's: an image pushed before is
    known by the manifest digest the engine remembers for it (RepoDigests); another one is still refused."""
    registry = FakeRegistry()
    engine = FakeEngine(registry, MANIFEST)
    immutable = frozenset({"localhost:5000"})
    plan = PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS, immutable=immutable)
    first = Pusher(engine, registry, sleep=lambda s: None).push(plan)  # type: ignore[arg-type]
    assert first.error is None and len(engine.pushed) == 2

    again = Pusher(engine, registry, sleep=lambda s: None)  # type: ignore[arg-type]
    assert again.immutable_conflicts([plan]) == []
    result = again.push(plan)
    assert result.error is None and result.uploaded == () and len(engine.pushed) == 2  # nothing pushed again
    assert result.pushed == (f"localhost:5000/team/api@{MANIFEST}",)

    other = PushPlan(label="//api:api", image_id="sha256:" + "e" * 64, refs=REFS, immutable=immutable)
    problems = again.immutable_conflicts([other])
    assert len(problems) == 2 and f"already points at {MANIFEST}" in problems[0]


def test_containerd_store_pushes_are_verified_by_image_id() -> None:
    registry = FakeRegistry()
    engine = FakeEngine(registry, IMAGE_ID, reports=False)  # an engine whose output names no digest
    result = Pusher(engine, registry, sleep=lambda s: None).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS))
    assert result.error is None and result.pushed == (f"localhost:5000/team/api@{IMAGE_ID}",)
    # Already there: nothing is pushed again.
    again = Pusher(engine, registry, sleep=lambda s: None).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS))
    assert again.uploaded == () and again.pushed == result.pushed


def test_a_push_the_registry_does_not_show_is_an_error_not_a_record() -> None:
    registry = FakeRegistry()
    engine = FakeEngine(registry, MANIFEST, reports=False)  # pushed something, said nothing, not our id
    result = Pusher(engine, registry, sleep=lambda s: None).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS))
    assert result.pushed == () and result.error is not None and "after the push" in result.error


def test_cache_blobs_that_are_not_a_manifest_go_through_the_engine(tmp_path: Path) -> None:
    """On the classic store the blob named by the image id is its config: never PUT as a manifest."""
    (tmp_path / IMAGE_ID.split(":")[1]).write_text(json.dumps({"architecture": "amd64", "os": "linux",
                                                               "rootfs": {"type": "layers", "diff_ids": []}}))
    sent: list[str] = []

    def send(method: str, url: str, headers: dict[str, str], data: object) -> Opened:
        sent.append(f"{method} {url}")
        raise AssertionError("the registry must not be written from these blobs")

    registry = FakeRegistry()
    engine = FakeEngine(registry, MANIFEST)
    result = Pusher(engine, registry, sleep=lambda s: None, copier=Copier(send=send)).push(  # type: ignore[arg-type]
        PushPlan(label="//api:api", image_id=IMAGE_ID, refs=REFS, blob_dir=tmp_path))
    assert sent == [] and engine.pushed == [str(r) for r in REFS]
    assert result.error is None and result.pushed == (f"localhost:5000/team/api@{MANIFEST}",)


def _index_on_disk(blob_dir: Path) -> str:
    """An index (image + attestation manifest, as buildx makes them) with its blobs, as the target cache
    keeps them; its digest."""
    children = []
    for name in ("image", "attestation"):
        blobs = [f"{name}-config".encode(), f"{name}-layer".encode()]
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"digest": sha(blobs[0]), "size": len(blobs[0])},
                               "layers": [{"digest": sha(blobs[1]), "size": len(blobs[1])}]}).encode()
        for blob in (*blobs, manifest):
            (blob_dir / sha(blob)[7:]).write_bytes(blob)
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                         "size": len(manifest)})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": children}).encode()
    (blob_dir / sha(index)[7:]).write_bytes(index)
    return sha(index)


def test_a_push_from_cache_blobs_lands_whole_and_asks_the_registry_only_what_it_must(tmp_path: Path) -> None:
    digest = _index_on_disk(tmp_path)
    regs = FakeRegistries()
    pusher = Pusher(FakeEngine(FakeRegistry(), MANIFEST), RegistryClient(send=regs.send), sleep=lambda s: None,
                    copier=Copier(send=regs.send))
    result = pusher.push(PushPlan(label="//api:api", image_id=digest, refs=REFS, blob_dir=tmp_path))
    assert result.error is None and result.pushed == (f"localhost:5000/team/api@{digest}",)
    index = (tmp_path / digest[7:]).read_bytes()
    assert all(regs.manifests[("localhost:5000", "team/api", tag)][1] == index for tag in ("v1", "latest"))
    for child in json.loads(index)["manifests"]:
        assert ("localhost:5000", "team/api", child["digest"]) in regs.manifests
    assert len([k for k in regs.blobs if k[1] == "team/api"]) == 4
    heads = [r for r in regs.requests if r.startswith("HEAD") and "/manifests/" in r]
    # Each tag once before (already there?) and the index once; the children are not asked one by one,
    # and the tags are not asked again afterwards: the registry's answer to each PUT named the digest.
    assert sorted(heads) == sorted([f"HEAD localhost:5000/v2/team/api/manifests/{t}" for t in ("v1", "latest")]
                                   + [f"HEAD localhost:5000/v2/team/api/manifests/{digest}"])
    # Blobs this small are sent without asking first (a round trip fewer for a new one).
    assert not [r for r in regs.requests if r.startswith("HEAD") and "/blobs/" in r]


def test_a_registry_that_does_not_confirm_a_tag_is_asked_again_and_caught(tmp_path: Path) -> None:
    digest = _index_on_disk(tmp_path)
    regs = FakeRegistries()

    def forgetful(method: str, url: str, headers: dict[str, str], data: object) -> Opened:
        answer = regs.send(method, url, headers, data)  # type: ignore[arg-type]
        if method == "PUT" and url.endswith("/manifests/latest"):
            del regs.manifests[("localhost:5000", "team/api", "latest")]  # says 201, keeps nothing
            return Opened(201, {}, None)  # and names no digest
        return answer

    pusher = Pusher(FakeEngine(FakeRegistry(), MANIFEST), RegistryClient(send=regs.send), sleep=lambda s: None,
                    copier=Copier(send=forgetful))
    result = pusher.push(PushPlan(label="//api:api", image_id=digest, refs=REFS, blob_dir=tmp_path))
    assert result.pushed == () and result.error is not None
    assert "localhost:5000/team/api:latest points at nothing after the push" in result.error


def test_a_large_blob_the_registry_has_is_asked_about_and_not_sent_again(tmp_path: Path) -> None:
    """Pushing a new version of an image whose base layer is in the repository already: the layer (over
    the send-without-asking size) is found with a HEAD and never uploaded; the small blobs just go."""
    from imgbuild.regcopy import SEND_WITHOUT_ASKING, Repository

    big = b"b" * (SEND_WITHOUT_ASKING + 1)
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"digest": sha(config), "size": len(config)},
                           "layers": [{"digest": sha(big), "size": len(big)}]}).encode()
    for blob in (big, config, manifest):
        (tmp_path / sha(blob)[7:]).write_bytes(blob)
    regs = FakeRegistries()
    regs.blobs[("localhost:5000", "team/api", sha(big))] = big
    stats = Copier(send=regs.send).push_blobs(tmp_path, Repository(host="localhost:5000", path="team/api"),
                                               sha(manifest), ("v2",))
    assert (stats.blobs_present, stats.blobs_sent) == (1, 1)
    assert f"HEAD localhost:5000/v2/team/api/blobs/{sha(big)}" in regs.requests
    assert len([r for r in regs.requests if r.startswith("PUT") and "/blobs/uploads/" in r]) == 1  # the config
    assert regs.manifests[("localhost:5000", "team/api", "v2")][1] == manifest
    assert regs.blobs[("localhost:5000", "team/api", sha(config))] == config
