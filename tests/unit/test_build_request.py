"""The engine request is data: compared by equality, its argv exact."""

from __future__ import annotations

from datetime import datetime, timezone

from imgbuild.builds.request import BuildRequest, context_name, plan_request
from imgbuild.git import GitInfo
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
GIT = GitInfo(sha="0123456789abcdef0123456789abcdef01234567", branch="main",
              remote_url="https://github.com/acme/mono.git")


def test_request_for_a_target_with_deps_secrets_and_labels(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "base/BUILD.yaml": "apps: {base: {}}\n",
        "api/BUILD.yaml": """
            apps:
              api:
                deps: {BASE_IMAGE: //base}
                build_args: {PORT: 8080}
                platforms: [linux/amd64, linux/arm64]
                labels: {org.opencontainers.image.title: API}
                secrets:
                  - {id: npmrc, src: secrets/npmrc}
                  - {id: token, env: API_TOKEN}
                  - {id: unset, env: NOT_SET_ANYWHERE}
                targets:
                  runtime: {stage: runtime}
        """,
    })
    ws = load_workspace(root)
    t = ws.targets[Label("api", "runtime")]
    req = plan_request(t, ws, dep_refs={"BASE_IMAGE": "base:imgbuild-abc"}, git=GIT, created=NOW,
                       tags=("api-runtime:dev",), environ={"API_TOKEN": "s3cr3t-value"}, builder="ci")
    assert req == BuildRequest(
        label="//api:runtime",
        context=str(root / "api"),
        dockerfile=str(root / "api" / "Dockerfile"),
        target="runtime",
        build_args=(("BASE_IMAGE", "base:imgbuild-abc"), ("PORT", "8080")),
        build_contexts=(("base-image", "docker-image://base:imgbuild-abc"),),
        platforms=("linux/amd64", "linux/arm64"),
        secrets=(f"id=npmrc,src={root}/secrets/npmrc", "id=token,env=API_TOKEN"),
        labels=(
            ("dev.imgbuild.label", "//api:runtime"),
            ("org.opencontainers.image.created", "2026-11-28T12:00:00Z"),
            ("org.opencontainers.image.revision", GIT.sha),
            ("org.opencontainers.image.source", "https://github.com/acme/mono.git"),
            ("org.opencontainers.image.title", "API"),
        ),
        tags=("api-runtime:dev",),
        builder="ci",
    )
    argv = req.argv()
    assert argv[:6] == ("buildx", "build", "--progress", "plain", "--builder", "ci")
    assert argv[-2:] == ("--load", str(root / "api"))
    assert ("--platform", "linux/amd64,linux/arm64") == argv[argv.index("--platform"):argv.index("--platform") + 2]
    # The secret's value never appears in the request: only its id and where it comes from.
    assert not any("s3cr3t-value" in a for a in argv)


def test_context_name() -> None:
    assert context_name("BASE_IMAGE") == "base-image"
    assert context_name("api") == "api"


def test_credentials_never_reach_the_source_label() -> None:
    from imgbuild.git import _public_url

    assert _public_url("https://x-access-token:ghp_123@github.com/acme/mono.git") == "https://github.com/acme/mono.git"
    assert _public_url("git@github.com:acme/mono.git") == "git@github.com:acme/mono.git"


def test_no_cache_reaches_buildkit() -> None:
    from dataclasses import replace

    req = BuildRequest(label="//a:a", context="/ws/a", dockerfile="/ws/a/Dockerfile", target=None, build_args=(),
                       build_contexts=(), platforms=(), secrets=(), labels=(), tags=("a:dev",))
    assert "--no-cache" not in req.argv()
    assert replace(req, no_cache=True).argv()[-3:] == ("--no-cache", "--load", "/ws/a")
    # Stages whose secrets changed; --no-cache covers them already.
    filtered = replace(req, no_cache_filter=("deps", "fetch"))
    assert filtered.argv()[-6:] == ("--no-cache-filter", "deps", "--no-cache-filter", "fetch", "--load", "/ws/a")
    assert replace(filtered, no_cache=True).argv()[-3:] == ("--no-cache", "--load", "/ws/a")
