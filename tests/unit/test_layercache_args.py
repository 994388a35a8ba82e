"""--cache-from / --cache-to values: exact tuples for every backend and driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imgbuild import proc
from imgbuild.labels import Label
from imgbuild.statedir import StateDirs
from imgbuild.layercache.args import (cache_args, cache_name, detect_driver, local_dir_for, native_s3_prefix,
                                      needs_sync, scope_dir, target_name)
from imgbuild.builds.builders import parse_driver
from imgbuild.layercache.scope import LayerScope
from imgbuild.model import CachePolicy

BRANCH = LayerScope(write_scope="feat-x", read_scopes=("feat-x", "main"), period=None)
READ_ONLY = LayerScope(write_scope=None, read_scopes=("feat-x", "main"), period=None)
LOCAL = Path("/ws/.imgbuild/layers/shared")
T = "apps-api-api"


def s3(**kw: Any) -> CachePolicy:
    base: dict[str, Any] = dict(name="shared", backend="s3", bucket="acme-cache", region="eu-west-1",
                                prefix="monorepo/", mode="max")
    return CachePolicy(**{**base, **kw})


def test_target_names() -> None:
    assert target_name(Label("apps/api", "api")) == "apps-api-api"
    assert target_name("//apps/web:runtime") == "apps-web-runtime"
    assert target_name(Label("", "tool")) == "tool"


def test_long_cache_names_are_cut_and_stay_unique() -> None:
    a, b = cache_name("t" * 100, "s" * 40 + "a"), cache_name("t" * 100, "s" * 40 + "b")
    assert len(a) == len(b) == 128 and a != b
    assert cache_name("apps-api-api", "main") == "apps-api-api-main"


def test_s3_native_on_a_docker_container_builder() -> None:
    p = s3(endpoint_url="http://127.0.0.1:9000", use_path_style=True)
    common = "type=s3,region=eu-west-1,bucket=acme-cache,prefix=monorepo/layers/buildkit/"
    end = "endpoint_url=http://127.0.0.1:9000,use_path_style=true"
    assert cache_args(p, T, BRANCH, driver="docker-container", local_dir=None) == (
        (f"{common},name=apps-api-api-feat-x,{end}", f"{common},name=apps-api-api-main,{end}"),
        (f"{common},name=apps-api-api-feat-x,{end},mode=max,ignore-error=true",),
    )


@pytest.mark.parametrize("driver", ["remote", "kubernetes"])
def test_s3_native_on_other_standalone_drivers_without_endpoint_or_region(driver: str) -> None:
    p = s3(region=None, prefix="", mode="min")
    assert cache_args(p, T, READ_ONLY, driver=driver, local_dir=None) == (
        ("type=s3,bucket=acme-cache,prefix=layers/buildkit/,name=apps-api-api-feat-x",
         "type=s3,bucket=acme-cache,prefix=layers/buildkit/,name=apps-api-api-main"),
        (),
    )
    assert native_s3_prefix(s3(prefix="/a/b/")) == "a/b/layers/buildkit/"


@pytest.mark.parametrize("driver", ["docker", ""])
def test_s3_on_the_docker_driver_goes_through_synced_local_directories(driver: str) -> None:
    p = s3()
    assert needs_sync(p, driver) and not needs_sync(p, "docker-container")
    assert cache_args(p, T, BRANCH, driver=driver, local_dir=LOCAL) == (
        ("type=local,src=/ws/.imgbuild/layers/shared/feat-x/apps-api-api",
         "type=local,src=/ws/.imgbuild/layers/shared/main/apps-api-api"),
        ("type=local,dest=/ws/.imgbuild/layers/shared/feat-x/apps-api-api,mode=max,ignore-error=true",),
    )


def test_synced_s3_reads_only_the_scopes_that_were_pulled() -> None:
    assert cache_args(s3(), T, BRANCH, driver="docker", local_dir=LOCAL, available={"main"}) == (
        ("type=local,src=/ws/.imgbuild/layers/shared/main/apps-api-api",),
        ("type=local,dest=/ws/.imgbuild/layers/shared/feat-x/apps-api-api,mode=max,ignore-error=true",),
    )
    assert cache_args(s3(write=False), T, READ_ONLY, driver="docker", local_dir=LOCAL, available=()) == ((), ())


def test_synced_s3_needs_a_local_directory() -> None:
    with pytest.raises(ValueError, match="needs a local directory"):
        cache_args(s3(), T, BRANCH, driver="docker", local_dir=None)


def test_registry() -> None:
    p = CachePolicy(name="reg", backend="registry", ref="localhost:5000/build-cache", mode="max")
    assert cache_args(p, T, BRANCH, driver="docker", local_dir=None) == (
        ("type=registry,ref=localhost:5000/build-cache:apps-api-api-feat-x",
         "type=registry,ref=localhost:5000/build-cache:apps-api-api-main"),
        ("type=registry,ref=localhost:5000/build-cache:apps-api-api-feat-x,mode=max,image-manifest=true,"
         "oci-mediatypes=true,ignore-error=true",),
    )
    # The same on every driver; read-only writes nothing.
    assert cache_args(p, T, READ_ONLY, driver="docker-container", local_dir=None) == (
        ("type=registry,ref=localhost:5000/build-cache:apps-api-api-feat-x",
         "type=registry,ref=localhost:5000/build-cache:apps-api-api-main"),
        (),
    )


def test_local_backend_under_the_policy_path() -> None:
    p = CachePolicy(name="local", backend="local", path=".cache/x")
    root = Path("/ws")
    state = StateDirs(workspace=root, cache=Path("/c/ws-1"), records=Path("/s/ws-1"))
    local = local_dir_for(p, root, state)
    assert local == Path("/ws/.cache/x/layers")
    assert local_dir_for(CachePolicy(name="l", backend="local"), root, state) == Path("/c/ws-1/cache/layers")
    assert local_dir_for(s3(), root, state) == Path("/c/ws-1/layers/shared")
    assert local_dir_for(CachePolicy(name="g", backend="gha"), root, state) is None
    scope = LayerScope(write_scope="main", read_scopes=("main",), period=None)
    assert cache_args(p, T, scope, driver="docker", local_dir=local) == (
        ("type=local,src=/ws/.cache/x/layers/main/apps-api-api",),
        ("type=local,dest=/ws/.cache/x/layers/main/apps-api-api,mode=min,ignore-error=true",),
    )


def test_inline() -> None:
    p = CachePolicy(name="inline", backend="inline", mode="max")
    assert cache_args(p, T, BRANCH, driver="docker", local_dir=None, image_ref="ghcr.io/acme/api:main") == (
        ("type=registry,ref=ghcr.io/acme/api:main",),
        ("type=inline",),
    )
    assert cache_args(p, T, READ_ONLY, driver="docker", local_dir=None) == ((), ())


def test_gha_never_carries_the_token() -> None:
    p = CachePolicy(name="gha", backend="gha", mode="max")
    assert cache_args(p, T, BRANCH, driver="docker", local_dir=None) == (
        ("type=gha,scope=apps-api-api-feat-x", "type=gha,scope=apps-api-api-main"),
        ("type=gha,scope=apps-api-api-feat-x,mode=max,ignore-error=true",),
    )


def test_write_false_gives_no_cache_to_on_any_backend() -> None:
    policies = [s3(), CachePolicy(name="r", backend="registry", ref="r/c"), CachePolicy(name="l", backend="local"),
                CachePolicy(name="i", backend="inline"), CachePolicy(name="g", backend="gha")]
    for p in policies:
        for driver in ("docker", "docker-container"):
            _, to = cache_args(p, T, READ_ONLY, driver=driver, local_dir=LOCAL, image_ref="r/i:t")
            assert to == (), (p.backend, driver)


def test_values_with_commas_are_quoted_for_buildx_csv() -> None:
    p = CachePolicy(name="l", backend="local")
    scope = LayerScope(write_scope="main", read_scopes=("main",), period=None)
    assert cache_args(p, T, scope, driver="docker", local_dir=Path("/a,b")) == (
        ('type=local,"src=/a,b/main/apps-api-api"',),
        ('type=local,"dest=/a,b/main/apps-api-api",mode=min,ignore-error=true',),
    )


def test_scope_dir() -> None:
    assert scope_dir(LOCAL, "main", T) == LOCAL / "main" / T


INSPECT = """Name:          ci
Driver:        docker-container
Last Activity: 2026-11-28 01:13:41 +0000 UTC

Nodes:
Name:      ci0
Endpoint:  unix:///var/run/docker.sock
Driver Options: image="moby/buildkit:v0.13.2"
Status:    running
"""


def test_parse_driver() -> None:
    assert parse_driver(INSPECT) == "docker-container"
    assert parse_driver("Name: default\nDriver: docker\n") == "docker"
    assert parse_driver("garbage") == ""


def test_detect_driver_asks_buildx(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kw: Any) -> str:
        calls.append(list(argv))
        if argv[-1] == "missing":
            raise proc.ProcessError(argv, 1, "no builder")
        return INSPECT

    monkeypatch.setattr(proc, "run", run)
    assert detect_driver("ci") == "docker-container"
    assert detect_driver(None) == "docker-container"
    assert detect_driver("missing") == ""
    assert calls == [["docker", "buildx", "inspect", "ci"], ["docker", "buildx", "inspect"],
                     ["docker", "buildx", "inspect", "missing"]]
