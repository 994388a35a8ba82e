"""Loading imgbuild.yaml and BUILD.yaml: resolution of settings and errors that point at the input."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild.errors import ImgbuildError, SpecError, SpecErrors
from imgbuild.statedir import for_workspace
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from imgbuild.specfiles.workspace import find_root
from tests.conftest import EXAMPLES, WorkspaceFactory

WORKSPACE = """
version: 1
defaults:
  registry: main
  cache: local
  tags: ["{git.short_sha}"]
  platforms: [linux/amd64]
  build_args: {A: from-defaults, B: from-defaults, C: from-defaults}
  labels: {team: platform}
registries:
  main: {url: registry.example.com/acme/}
  other: {url: localhost:5000, insecure: true}
cache_policies:
  local: {backend: local}
  shared: {backend: s3, bucket: b, endpoint_url: "http://127.0.0.1:9000", fallback_scopes: [main]}
"""


def errors_of(exc: pytest.ExceptionInfo[ImgbuildError]) -> list[SpecError]:
    e = exc.value
    return e.errors if isinstance(e, SpecErrors) else [e]  # type: ignore[list-item]


def test_example_monorepo_loads() -> None:
    ws = load_workspace(EXAMPLES / "monorepo")
    assert len(ws.targets) >= 6
    assert len({lb.package for lb in ws.targets}) >= 4
    web_test = ws.targets[Label("apps/web", "test")]
    assert web_test.stage == "test"
    assert ws.targets[Label("apps/api", "api")].deps == (("BASE_IMAGE", Label("base", "base")),)
    backends = {p.backend for p in ws.config.cache_policies}
    assert {"local", "s3"} <= backends


def test_settings_resolve_target_over_app_over_defaults(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "imgbuild.yaml": WORKSPACE,
        "pkg/BUILD.yaml": """
            apps:
              svc:
                build_args: {B: from-app, C: from-app}
                cache: shared
                registries: [other, main]
                targets:
                  build: {}
                  runtime:
                    stage: final
                    build_args: {C: 3}
                    tags: [v1]
                    push: true
                    image: svc
              plain:
                dockerfile: docker/Dockerfile.plain
                context: ..
        """,
    })
    ws = load_workspace(root)
    build = ws.targets[Label("pkg", "build")]
    runtime = ws.targets[Label("pkg", "runtime")]
    plain = ws.targets[Label("pkg", "plain")]
    assert dict(runtime.build_args) == {"A": "from-defaults", "B": "from-app", "C": "3"}
    assert dict(build.build_args) == {"A": "from-defaults", "B": "from-app", "C": "from-app"}
    assert build.stage == "build" and runtime.stage == "final" and plain.stage is None
    assert runtime.tags == ("v1",) and build.tags == ("{git.short_sha}",)
    assert runtime.push and not build.push
    assert build.cache == "shared" and plain.cache == "local"
    assert build.registries == ("other", "main") and plain.registries == ("main",)
    assert build.image == "svc-build" and runtime.image == "svc" and plain.image == "plain"
    assert build.platforms == ("linux/amd64",)
    assert dict(build.labels) == {"team": "platform"}
    assert plain.context == root and plain.dockerfile == root / "pkg/docker/Dockerfile.plain"
    assert ws.config.registry("main").url == "registry.example.com/acme"


def test_workspace_found_walking_up(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/b/BUILD.yaml": "apps: {x: {}}\n"})
    assert find_root(root / "a" / "b") == root


def test_no_workspace(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no imgbuild.yaml"):
        find_root(tmp_path)


def test_unknown_key_has_location_and_suggestion(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"apps/api/BUILD.yaml": "apps:\n  api:\n    dockerfle: Dockerfile\n"})
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    (err,) = errors_of(exc)
    assert str(err.location) == "apps/api/BUILD.yaml:3:5"
    assert err.key_path == ("apps", "api", "dockerfle")
    assert "did you mean 'dockerfile'" in err.render()


def test_wrong_type_names_expected_type(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"p/BUILD.yaml": "apps:\n  api:\n    push: maybe\n    tags: latest\n"})
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    rendered = [e.render() for e in errors_of(exc)]
    assert any("p/BUILD.yaml:3:11" in r and "expected true or false" in r for r in rendered), rendered
    assert any("p/BUILD.yaml:4:11" in r and "expected a list" in r for r in rendered), rendered


def test_s3_policy_needs_bucket(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\ncache_policies:\n  ci:\n    backend: s3\n"})
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    (err,) = errors_of(exc)
    assert "missing required key 'bucket'" in err.message
    assert str(err.location) == "imgbuild.yaml:3:3"


def test_unknown_backend_suggests(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\ncache_policies:\n  ci:\n    backend: s4\n    bucket: b\n"})
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    (err,) = errors_of(exc)
    assert "did you mean 's3'" in err.render() and str(err.location) == "imgbuild.yaml:4:14"


@pytest.mark.parametrize(
    ("files", "message", "where"),
    [
        ({"p/BUILD.yaml": "apps:\n  a:\n    cache: shraed\n"}, "unknown cache policy 'shraed'", "p/BUILD.yaml:3:12"),
        ({"p/BUILD.yaml": "apps:\n  a:\n    registry: nope\n"}, "unknown registry 'nope'", "p/BUILD.yaml:3:15"),
        ({"p/BUILD.yaml": "apps:\n  a:\n    context: ../..\n"}, "outside the workspace", "p/BUILD.yaml:3:14"),
        ({"p/BUILD.yaml": "apps:\n  a:\n  a:\n"}, "duplicate key 'a'", "p/BUILD.yaml:3:3"),
        ({"p/BUILD.yaml": "apps:\n  a: {}\n  b:\n    targets:\n      a: {}\n"}, "already used", "p/BUILD.yaml:5:7"),
        ({"p/BUILD.yaml": ""}, "empty", "p/BUILD.yaml"),
        ({"p/BUILD.yaml": "apps:\n  a:\n    deps: {BASE: 'apps/x'}\n"}, "invalid format", "p/BUILD.yaml:3:18"),
        ({"p/BUILD.yaml": "apps:\n  all: {}\n"}, "reserved", "p/BUILD.yaml:2:3"),
        ({"p/BUILD.yaml": "apps:\n  a:\n    secrets: [{id: s}]\n"}, "exactly one of 'src'", "p/BUILD.yaml:3:15"),
        ({"p/BUILD.yaml": "apps:\n  a: [\n"}, "invalid YAML", "p/BUILD.yaml:3:1"),
        ({"p/BUILD.yaml": "apps:\n  1: {}\n"}, "not a string", "p/BUILD.yaml:2:3"),
        ({"p/BUILD.yaml": "apps:\n  a:\n    build_args: {X: 1}\n    deps: {X: '//p:b'}\n  b: {}\n"},
         "both a build arg and a dependency", "p/BUILD.yaml:2:3"),
        ({"imgbuild.yaml": "version: 2\n"}, "not allowed", "imgbuild.yaml:1:10"),
        ({"imgbuild.yaml": "defaults: {}\n"}, "missing required key 'version'", "imgbuild.yaml:1:1"),
    ],
)
def test_spec_errors_point_at_the_input(make_ws: WorkspaceFactory, files: dict[str, str], message: str,
                                        where: str) -> None:
    root = make_ws({"imgbuild.yaml": "version: 1\nregistries: {main: {url: r.io}}\n"
                                     "cache_policies: {shared: {backend: local}}\n", **files})
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    errs = errors_of(exc)
    assert any(message in e.message and str(e.location) == where for e in errs), [e.render() for e in errs]
    assert exc.value.exit_code == 2


def test_all_problems_reported_together(make_ws: WorkspaceFactory) -> None:
    root = make_ws({"a/BUILD.yaml": "apps: {x: {cahce: local}}\n", "b/BUILD.yaml": "apps: {y: {pus: true}}\n"})
    with pytest.raises(SpecErrors) as exc:
        load_workspace(root)
    assert [str(e.location) for e in exc.value.errors] == ["a/BUILD.yaml:1:12", "b/BUILD.yaml:1:12"]


def test_nested_workspace_and_hidden_dirs_are_not_packages(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "a/BUILD.yaml": "apps: {x: {}}\n",
        ".git/BUILD.yaml": "apps: {hidden: {}}\n",
        "node_modules/m/BUILD.yaml": "apps: {m: {}}\n",
        "vendor/other/imgbuild.yaml": "version: 1\n",
        "vendor/other/p/BUILD.yaml": "apps: {v: {}}\n",
    })
    assert list(load_workspace(root).targets) == [Label("a", "x")]


@pytest.mark.parametrize(
    ("files", "where"),
    [
        ({"p/BUILD.yaml": "apps:\n  a:\n    tags: [ok, '{git.shrot_sha}']\n"}, "p/BUILD.yaml:3:16"),
        ({"imgbuild.yaml": "version: 1\ndefaults:\n  tags: ['{gti.sha}']\n", "p/BUILD.yaml": "apps: {a: {}}\n"},
         "imgbuild.yaml:3:10"),
    ],
)
def test_unknown_tag_placeholder(make_ws: WorkspaceFactory, files: dict[str, str], where: str) -> None:
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(make_ws(files))
    (err,) = errors_of(exc)
    assert "unknown placeholder" in err.message and str(err.location) == where
    assert "did you mean {git." in err.message


def test_known_good_specs_are_not_validated_again_and_a_bad_edit_is_still_caught(make_ws: WorkspaceFactory) -> None:
    from imgbuild.specfiles import schemas

    root = make_ws({"apps/api/BUILD.yaml": "apps:\n  api:\n    image: team/api\n",
                    "apps/web/BUILD.yaml": "apps:\n  web:\n    image: team/web\n"})
    load_workspace(root)
    assert for_workspace(root).spec_memo.is_file()
    asked = schemas._validator.cache_info()
    assert len(load_workspace(root).targets) == 2
    assert schemas._validator.cache_info() == asked  # no schema was consulted: every text was known good

    (root / "apps/web/BUILD.yaml").write_text("apps:\n  web:\n    image: team/web\n    tagz: [v1]\n")
    with pytest.raises(ImgbuildError) as exc:
        load_workspace(root)
    (err,) = errors_of(exc)
    assert str(err.location) == "apps/web/BUILD.yaml:4:5" and err.key_path == ("apps", "web", "tagz")

    for_workspace(root).spec_memo.write_text("{not json")  # a damaged memo is just unknown
    (root / "apps/web/BUILD.yaml").write_text("apps:\n  web:\n    image: team/web\n")
    assert len(load_workspace(root).targets) == 2
