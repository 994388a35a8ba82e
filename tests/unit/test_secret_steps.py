"""A changed secret runs the steps that mount it again (BuildKit's cache keys never see its value)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from imgbuild import dockerfile
from imgbuild.builds.progress import PlainProgress
from imgbuild.builds.request import BuildRequest
from imgbuild.builds.results import RunResult
from imgbuild.builds.run import BuildOptions, execute
from imgbuild.builds.secret_steps import Bypass, bypass_for, changed_secrets
from imgbuild.cache.targets import TargetCache
from imgbuild.digest import Hasher
from imgbuild.git import GitInfo
from imgbuild.graph import TargetGraph
from imgbuild.labels import parse_patterns
from imgbuild.plan import make_plan
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory
from tests.unit.fakes import FakeExecutor, FakeImages

TOKENS = ("tok-value-1", "tok-value-2")
DOCKERFILE = """\
FROM busybox:1.36 AS fetch
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /out
FROM busybox:1.36 AS other
RUN --mount=type=secret,id=unrelated true
FROM busybox:1.36
COPY --from=fetch /out /out
"""


def build(root: Path, token: str, images: FakeImages) -> tuple[BuildRequest, RunResult]:
    """One run of ``imgbuild build //...`` with the secret's value ``token``: the request and the result."""
    ws = load_workspace(root)
    graph = TargetGraph.build(ws)
    plan = make_plan(graph, parse_patterns(["//..."]))
    environ = {"TOK": token}
    inputs = Hasher(ws, stat_cache=None, environ=environ).compute(graph, [s.target.label for s in plan.steps])
    executor = FakeExecutor()
    result = execute(plan, ws, executor, images=images,
                     options=BuildOptions(parallelism=1, logs_dir=root / ".imgbuild/logs"), git=GitInfo(),
                     environ=environ, stop=threading.Event(), progress=PlainProgress(io.StringIO()),
                     inputs={str(lb): i for lb, i in inputs.items()}, cache=TargetCache(ws, images, warn=print))
    return executor.requests[0], result


def test_the_stage_mounting_a_changed_secret_bypasses_buildkits_cache(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "a/BUILD.yaml": "apps: {a: {secrets: [{id: tok, env: TOK}, {id: unrelated, env: NOT_SET}]}}\n",
        "a/Dockerfile": DOCKERFILE,
    })
    images = FakeImages()
    first, _ = build(root, TOKENS[0], images)  # no entry yet: BuildKit's cache is trusted
    assert "--no-cache-filter" not in first.argv() and not first.no_cache

    second, result = build(root, TOKENS[1], images)
    assert second.no_cache_filter == ("fetch",) and not second.no_cache
    assert "--no-cache-filter fetch" in " ".join(second.argv())
    log = Path(result.targets[0].log_path or "").read_text()
    assert ("# secret(s) tok changed since the target's previous cache entry: the steps of stage(s) fetch run "
            "without BuildKit's cache") in log
    assert all(t not in log for t in TOKENS)

    # The same value again, with another change: nothing to bypass.
    (root / "a/Dockerfile").write_text(DOCKERFILE + "LABEL v=2\n")
    third, _ = build(root, TOKENS[1], images)
    assert third.no_cache_filter == () and not third.no_cache


def test_an_unnamed_stage_mounting_it_bypasses_the_cache_of_every_step(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "a/BUILD.yaml": "apps: {a: {secrets: [{id: tok, env: TOK}]}}\n",
        "a/Dockerfile": "FROM busybox:1.36\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok > /o\n",
    })
    images = FakeImages()
    build(root, TOKENS[0], images)
    second, _ = build(root, TOKENS[1], images)
    assert second.no_cache and "--no-cache" in second.argv()


def test_secret_mounts_per_stage(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text(
        "FROM busybox:1.36 AS deps\n"
        "RUN --network=none --mount=type=secret,id=npmrc,target=/root/.npmrc \\\n"
        "    --mount=type=cache,target=/cache npm ci --mount=type=secret,id=not-a-flag\n"
        "RUN --mount=type=secret,target=/run/secrets/aws,required=true true\n"
        "RUN --mount=type=secret,id=npmrc true\n"
        "FROM deps AS test\n"
        "RUN --mount=type=secret,id=$TOKEN_ID echo 'RUN --mount=type=secret,id=x'\n"
        "FROM busybox:1.36\n"
        "RUN --mount=type=ssh --mount=type=bind,from=deps,target=/d true\n"
    )
    df = dockerfile.parse(p)
    assert [s.secret_ids for s in df.stages] == [("npmrc", "aws"), ("$TOKEN_ID",), ()]

    assert bypass_for(df, ()) is None
    assert bypass_for(df, ("aws",)) == Bypass(secrets=("aws",), stages=("deps", "test"), everything=False)
    assert bypass_for(df, ("other",)) == Bypass(secrets=("other",), stages=("test",), everything=False)


def test_changed_secrets() -> None:
    assert changed_secrets({"a": "sha256:1", "b": "unset"}, None) == ()  # no previous entry
    assert changed_secrets({"a": "sha256:1", "b": "unset"}, {"a": "sha256:1", "b": "unset"}) == ()
    assert changed_secrets({"a": "sha256:2", "b": "unset"}, {"a": "sha256:1", "b": "unset"}) == ("a",)
    assert changed_secrets({"a": "sha256:1", "b": "unset"}, {"a": "sha256:1"}) == ("b",)  # newly declared
    assert changed_secrets({"a": "sha256:1"}, {}) == ("a",)  # the store could not say
