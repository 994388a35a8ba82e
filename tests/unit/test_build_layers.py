"""A run's layer caches: a cache whose local directory cannot be used is left out of the build's arguments."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from imgbuild.builds.layers import LayerCaches
from imgbuild.git import GitInfo
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory


def layers(root: Path, warnings: list[str], *, read_only: bool = False) -> LayerCaches:
    return LayerCaches(load_workspace(root), git=GitInfo(branch="main"), now=datetime.now(timezone.utc),
                       read_only=read_only, builder=None, environ={}, warn=warnings.append,
                       driver=lambda builder: "docker")


def files(path: str) -> dict[str, str]:
    return {
        "imgbuild.yaml": f"version: 1\ncache_policies: {{local: {{backend: local, path: {path}}}}}\n"
                         "defaults: {cache: local}\n",
        "a/BUILD.yaml": "apps: {a: {}, b: {}}\n",
        "a/Dockerfile": "FROM busybox:1.36\n",
    }


def test_a_local_cache_path_that_is_a_file_gives_no_cache_arguments(make_ws: WorkspaceFactory) -> None:
    root = make_ws({**files("cachefile"), "cachefile": "a file\n"})
    warnings: list[str] = []
    caches = layers(root, warnings)
    ws = caches.ws
    for name in ("a", "b"):
        assert caches.before(ws.targets[Label("a", name)]) == ((), ())
        assert caches.after(ws.targets[Label("a", name)]) is None
    assert warnings == [f"layer cache local unavailable: cannot create {root / 'cachefile/layers'}: Not a directory; "
                        "continuing without it (targets build without a layer cache)"]
    assert (root / "cachefile").read_text() == "a file\n"


def test_a_cache_path_under_proc_gives_no_cache_arguments(make_ws: WorkspaceFactory) -> None:
    warnings: list[str] = []
    caches = layers(make_ws(files("/proc/self")), warnings)
    assert caches.before(caches.ws.targets[Label("a", "a")]) == ((), ())
    assert len(warnings) == 1 and "/proc/self/layers" in warnings[0]


def test_a_usable_local_cache_directory_is_written_and_read_once_it_exists(make_ws: WorkspaceFactory) -> None:
    root = make_ws(files(".cache"))
    warnings: list[str] = []
    caches = layers(root, warnings)
    target = caches.ws.targets[Label("a", "a")]
    dest = root / ".cache/layers/main/a-a"
    assert caches.before(target) == ((), (f"type=local,dest={dest},mode=min,ignore-error=true",))
    dest.mkdir(parents=True)  # what BuildKit's export leaves
    assert caches.before(target)[0] == (f"type=local,src={dest}",)
    assert warnings == []


def test_a_read_only_run_reads_no_missing_directory_and_warns_not(make_ws: WorkspaceFactory) -> None:
    root = make_ws({**files("cachefile"), "cachefile": "a file\n"})
    warnings: list[str] = []
    caches = layers(root, warnings, read_only=True)
    assert caches.before(caches.ws.targets[Label("a", "a")]) == ((), ())
    assert warnings == []


def test_builders_own_s3_cache_is_left_out_once_its_endpoint_failed_in_this_run(make_ws: WorkspaceFactory) -> None:
    from imgbuild.cache.outages import OUTAGES

    root = make_ws({
        "imgbuild.yaml": "version: 1\ndefaults: {cache: ci}\ncache_policies:\n"
                         "  ci: {backend: s3, bucket: b, endpoint_url: 'http://127.0.0.1:9000', use_path_style: true}\n",
        "a/BUILD.yaml": "apps: {a: {}}\n",
        "a/Dockerfile": "FROM busybox:1.36\n",
    })
    warnings: list[str] = []
    caches = LayerCaches(load_workspace(root), git=GitInfo(branch="main"), now=datetime.now(timezone.utc),
                         read_only=False, builder="container", environ={}, warn=warnings.append,
                         driver=lambda builder: "docker-container")
    target = caches.ws.targets[Label("a", "a")]
    assert caches.before(target)[0][0].startswith("type=s3,")

    # The target cache's lookup timed out on the endpoint: BuildKit would wait for it too.
    OUTAGES.trip("http://127.0.0.1:9000", "http://127.0.0.1:9000 did not answer in time")
    assert caches.before(target) == ((), ())
    assert caches.before(target) == ((), ())
    assert warnings == ["layer cache ci unavailable: http://127.0.0.1:9000 did not answer in time; not asked again "
                        "in this run; continuing without it (targets build without a layer cache)"]
