"""Benchmark a fresh CI runner: one app changed, ``--push``, S3 caches warm; imgbuild against ``docker buildx bake``.

Run: python bench/bench_ci.py [--targets 20] [--runs 3] [--builder imgbuild-container] [-j 8] [--sleep 2]
                              [--deps-kb 256] [--rev HEAD] [--keep]

What it measures (issue #13, "Performance"). A generated git workspace (in a temporary directory) of
``--targets`` N targets: one base (``FROM busybox:1.36``) and N-1 apps ``FROM`` it, each app with a slow
dependency-install step (``COPY deps.txt`` then ``RUN sleep S`` writing ``--deps-kb`` of vendored
bytes) and then its code (``COPY main.txt`` and a ``RUN`` over it). Both tools build the same
Dockerfiles on the same buildx builder (``--builder``, a ``docker-container`` one by default, as
GitHub Actions' setup-buildx-action creates) and push all N images to the local registry
(``localhost:5000``), each tool under its own repository names, new for every run:

* ``imgbuild build //... --push --no-load``, with one ``backend: s3`` cache policy (``mode: max``): its
  S3 target cache and BuildKit's own S3 layer cache, in a bucket the bench creates on
  ``$IMGBUILD_TEST_S3_ENDPOINT`` (``http://127.0.0.1:9000``; path-style, region us-east-1, credentials
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``testing`` when unset);
* ``docker buildx bake --push`` over a generated ``docker-bake.hcl`` (the apps get the base as
  ``contexts = { base-image = "target:base" }``) with BuildKit's S3 cache on every target:
  ``cache-from``/``cache-to`` ``type=s3,...,mode=max`` in the same bucket, another prefix.

Each run, for each tool (the order alternates between runs):

1. warm-up (untimed): the tool builds the current commit and pushes it to this run's repositories, so
   the registry holds every target's current digest and the S3 caches are warm, as after a build of
   ``main``; a registry that already has the unchanged images is what a real CI runner meets too, and
   both tools meet the same one;
2. one app's ``main.txt`` changes (a new line; committed; the app changes from run to run);
3. fresh runner: the bench's images are removed from the engine, the builder's cache is pruned
   (``docker buildx prune -af --builder B``) and imgbuild's state directory is deleted
   (``$IMGBUILD_STATE_DIR``, which the bench points at a directory of its own; and ``.imgbuild/`` in the
   workspace, where a ``--rev`` from before imgbuild/statedir.py keeps it);
4. timed: the tool builds and pushes all N targets again (wall-clock time of the whole command), then
   the bench checks through the registry's API that every target's tag is there and that the changed
   app's digest is new (the build was real). A run that fails either way is shown as DISCARDED and
   done again (``--retries``): the engine is shared.

A first, untimed round builds everything cold with both tools (it fills the S3 caches). It prints each
run, the medians and the ratio bake / imgbuild (the issue's goal: >= 1 at 20 targets, >= 3 at 100:
imgbuild's cost should follow the changed targets, bake's the total), imgbuild's target statuses and
where its time goes (setup before the report's clock starts, the build, the push), and the CPU each
tool used. Needs the services of ``scripts/dev-services up`` (engine, the builder, registry, S3).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_build import (  # noqa: E402
    REPO, S3_ENDPOINT, S3_REGION, RunFailed, builder_driver, create_bucket, delete_bucket, docker, export_rev,
    load, run_logged,
)

REGISTRY = os.environ.get("IMGBUILD_TEST_REGISTRY", "localhost:5000")
CONTEXT_NAME = "base-image"
TOOLS = ("imgbuild", "bake")


@dataclass(frozen=True)
class Workspace:
    root: Path
    prefix: str  # every repository, image and bucket of this bench starts with it
    apps: tuple[str, ...]
    builder: str
    bucket: str
    jobs: int
    src: Path  # the imgbuild tree measured
    state: Path  # imgbuild's state directory (IMGBUILD_STATE_DIR), deleted with the runner

    @property
    def targets(self) -> tuple[str, ...]:
        return ("base", *self.apps)

    def namespace(self, tool: str, n: int) -> str:
        """The registry path under which ``tool`` pushes in run ``n`` (new per run: nothing is there
        before that run's warm-up)."""
        return f"{self.prefix}/{'ib' if tool == 'imgbuild' else 'bake'}-r{n}"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-C", str(root),
                    *args], check=True, capture_output=True)


def write_workspace(ws: Workspace, *, sleep: float, deps_kb: int) -> None:
    root = ws.root
    (root / "base").mkdir(parents=True)
    (root / "base" / "BUILD.yaml").write_text("apps:\n  base:\n    image: base\n")
    (root / "base" / "Dockerfile").write_text(f"FROM busybox:1.36\nRUN echo {ws.prefix} > /base.txt\n")
    for app in ws.apps:
        d = root / "apps" / app
        d.mkdir(parents=True)
        (d / "BUILD.yaml").write_text(f"apps:\n  {app}:\n    image: {app}\n    deps:\n      BASE_IMAGE: //base\n")
        (d / "Dockerfile").write_text(
            "ARG BASE_IMAGE\n"
            "FROM ${BASE_IMAGE}\n"
            "WORKDIR /app\n"
            "COPY deps.txt .\n"
            f"RUN sleep {sleep:g} && head -c {deps_kb * 1024} /dev/urandom > vendor.bin && cp deps.txt deps.installed\n"
            "COPY main.txt .\n"
            "RUN cat main.txt > built.txt\n")
        (d / "deps.txt").write_text(f"{app} dependencies, version 1\n")
        (d / "main.txt").write_text(f"{app} code\n")
    (root / ".gitignore").write_text(".imgbuild/\ndocker-bake.hcl\n")
    git(root, "init", "-q", "-b", "main")


def write_run_files(ws: Workspace, n: int) -> None:
    """imgbuild.yaml (committed: --push wants a clean tree) and docker-bake.hcl, both naming run ``n``'s
    repositories."""
    endpoint = json.dumps(S3_ENDPOINT)
    (ws.root / "imgbuild.yaml").write_text(
        "version: 1\n"
        f"concurrency: {ws.jobs}\n"
        "registries:\n"
        f"  ci: {{url: {REGISTRY}/{ws.namespace('imgbuild', n)}, insecure: true}}\n"
        "cache_policies:\n"
        f"  ci: {{backend: s3, bucket: {ws.bucket}, prefix: ib/, endpoint_url: {endpoint}, region: {S3_REGION},"
        " use_path_style: true, mode: max, scope: main}\n"
        "defaults:\n"
        "  registry: ci\n"
        "  push: true\n"
        "  cache: ci\n"
        "  tags: [latest]\n")
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-q", "--allow-empty", "-m", f"run {n}")
    q = json.dumps
    blocks = [f"group \"default\" {{\n  targets = [{', '.join(q(t) for t in ws.targets)}]\n}}\n"]
    for t in ws.targets:
        s3 = (f"type=s3,region={S3_REGION},bucket={ws.bucket},prefix=bake/,name={t},endpoint_url={S3_ENDPOINT},"
              "use_path_style=true")
        dep = (f"  contexts   = {{ {q(CONTEXT_NAME)} = \"target:base\" }}\n"
               f"  args       = {{ BASE_IMAGE = {q(CONTEXT_NAME)} }}\n") if t != "base" else ""
        blocks.append(
            f"target {q(t)} {{\n"
            f"  context    = {q('base' if t == 'base' else 'apps/' + t)}\n"
            f"  dockerfile = \"Dockerfile\"\n"
            + dep +
            f"  tags       = [{q(REGISTRY + '/' + ws.namespace('bake', n) + '/' + t + ':latest')}]\n"
            f"  cache-from = [{q(s3)}]\n"
            f"  cache-to   = [{q(s3 + ',mode=max,ignore-error=true')}]\n"
            f"}}\n")
    (ws.root / "docker-bake.hcl").write_text("\n".join(blocks))


def change_app(ws: Workspace, app: str) -> None:
    with (ws.root / "apps" / app / "main.txt").open("a") as f:
        f.write(f"change {secrets.token_hex(4)}\n")
    git(ws.root, "commit", "-q", "-am", f"change {app}")


def remove_engine_images(prefix: str) -> None:
    """Every engine image whose reference holds ``prefix`` (the tools' pushes may leave some, by tag or name)."""
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False)  # a shared engine may hiccup
    refs = [r for r in listed.stdout.split() if prefix in r]
    if refs:
        docker("image", "rm", "--force", *refs, check=False)


def fresh_runner(ws: Workspace) -> None:
    """What a new CI runner has: no image of the bench in the engine, an empty builder cache, no imgbuild
    state. Only the registry and the S3 bucket (the shared, remote things) keep what they hold."""
    remove_engine_images(ws.prefix)
    docker("buildx", "prune", "-af", "--builder", ws.builder)
    shutil.rmtree(ws.root / ".imgbuild", ignore_errors=True)
    shutil.rmtree(ws.state, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# The tools


@dataclass(frozen=True)
class Timing:
    tool: str
    wall: float
    report: dict[str, Any] | None
    cpu: tuple[float, float] | None


def run_tool(ws: Workspace, tool: str, logs: Path, name: str) -> Timing:
    env = dict(os.environ, IMGBUILD_STATE_DIR=str(ws.state),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ws.src), os.environ.get("PYTHONPATH")])))
    if tool == "imgbuild":
        report = logs / f"{name}.json"
        argv = [sys.executable, "-m", "imgbuild", "build", "//...", "--push", "--no-load", "--builder", ws.builder,
                "-j", str(ws.jobs), "--progress", "plain", "--json", str(report)]
        wall, cpu = run_logged(argv, cwd=ws.root, log=logs / f"{name}.log", env=env)
        return Timing(tool, wall, json.loads(report.read_text()), cpu)
    argv = ["docker", "buildx", "bake", "--builder", ws.builder, "--file", "docker-bake.hcl", "--push",
            "--progress", "plain"]
    wall, cpu = run_logged(argv, cwd=ws.root, log=logs / f"{name}.log", env=env)
    return Timing(tool, wall, None, cpu)


ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def registry_digest(repo: str, tag: str = "latest") -> str | None:
    host, _, path = f"{REGISTRY}/{repo}".partition("/")
    req = urllib.request.Request(f"http://{host}/v2/{path}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def pushed(ws: Workspace, tool: str, n: int) -> dict[str, str | None]:
    ns = ws.namespace(tool, n)
    return {t: registry_digest(f"{ns}/{t}") for t in ws.targets}


def verify(ws: Workspace, tool: str, n: int, changed: str | None, before: dict[str, str | None]) -> dict[str, str | None]:
    """Every target is in the registry; ``changed`` (when given) got a new digest."""
    now = pushed(ws, tool, n)
    missing = [t for t, d in now.items() if d is None]
    if missing:
        raise RunFailed(f"{tool} left {len(missing)} targets out of the registry: {', '.join(missing[:5])}")
    if changed is not None and now[changed] == before.get(changed):
        raise RunFailed(f"{tool}: {changed} still has its old digest {now[changed]}: it was not rebuilt")
    return now


def statuses(report: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for t in report["targets"]:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=20, help="targets: one base and N-1 apps (default: 20)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (default: 3)")
    ap.add_argument("--builder", default="imgbuild-container",
                    help="the buildx builder both tools use; not the docker driver, whose BuildKit has no S3 "
                         "cache (default: imgbuild-container)")
    ap.add_argument("-j", "--jobs", type=int, default=8, help="imgbuild -j (default: 8)")
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each app's dependency step sleeps (default: 2)")
    ap.add_argument("--deps-kb", type=int, default=256, help="KiB each app's dependency step writes (default: 256)")
    ap.add_argument("--rev", metavar="REV", help="measure imgbuild as committed at REV instead of the work tree")
    ap.add_argument("--retries", type=int, default=2, help="a failed or wrong run is done again this often (default: 2)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace, logs and bucket (printed)")
    args = ap.parse_args()
    if args.targets < 2 or args.runs < 1 or args.jobs < 1 or args.retries < 0:
        ap.error("--targets must be at least 2, --runs and -j at least 1, --retries at least 0")

    if docker("info", "--format", "{{.ServerVersion}}", check=False).returncode != 0:
        sys.exit('bench: no Docker engine (in this repository: eval "$(scripts/dev-services up)")')
    driver = builder_driver(args.builder)
    if driver == "docker":
        ap.error(f"{args.builder!r} has the docker driver, whose BuildKit has no S3 cache for bake; "
                 "use a docker-container or remote builder")
    print(f"engine {docker('info', '--format', '{{.ServerVersion}}').stdout.strip()}, "
          f"{docker('buildx', 'version').stdout.strip()}; {os.cpu_count()} CPUs, {load()}")

    tmp = Path(tempfile.mkdtemp(prefix="imgbench-ci-"))
    prefix = f"imgci-{secrets.token_hex(3)}"
    src = export_rev(args.rev, tmp / "src") if args.rev else REPO
    ws = Workspace(root=tmp / "ws", prefix=prefix, apps=tuple(f"app{i:03d}" for i in range(1, args.targets)),
                   builder=args.builder, bucket=prefix, jobs=args.jobs, src=src, state=tmp / "state")
    logs = tmp / "logs"
    logs.mkdir()
    create_bucket(ws.bucket)
    write_workspace(ws, sleep=args.sleep, deps_kb=args.deps_kb)
    print(f"workspace {ws.root}: {args.targets} targets (base + {len(ws.apps)} apps, dependency step sleeps "
          f"{args.sleep:g}s, {args.deps_kb} KiB); builder {args.builder} ({driver} driver) for both tools; "
          f"imgbuild -j {args.jobs}; registry {REGISTRY}/{prefix}/; bucket {ws.bucket} at {S3_ENDPOINT}")
    print(f"imgbuild from {src}" + (f" (git archive {args.rev})" if args.rev else ""))
    try:
        # Untimed: both tools build everything cold once; this fills the S3 caches.
        write_run_files(ws, 0)
        for tool in TOOLS:
            fresh_runner(ws)
            t = run_tool(ws, tool, logs, f"{tool}-cold")
            verify(ws, tool, 0, None, {})
            print(f"  cold   {tool:<8} {t.wall:6.2f}s  ok: {args.targets} images in the registry"
                  + (f" ({statuses(t.report)})" if t.report else ""), flush=True)

        results: list[tuple[int, str, Timing]] = []
        for n in range(1, args.runs + 1):
            app = ws.apps[(n - 1) % len(ws.apps)]
            write_run_files(ws, n)
            order = TOOLS if n % 2 else TOOLS[::-1]
            warm: dict[str, dict[str, str | None]] = {}
            for tool in order:  # both warm-ups push the same commit, before the change
                fresh_runner(ws)
                run_tool(ws, tool, logs, f"{tool}-warm-{n}")
                warm[tool] = verify(ws, tool, n, None, {})
            change_app(ws, app)
            for tool in order:
                timing = timed(ws, tool, n, app, logs, warm[tool], args.retries)
                results.append((n, app, timing))
                extra = ""
                if timing.report is not None:
                    extra = f"  ({statuses(timing.report)}; setup {timing.wall - timing.report['duration_s']:.2f}s)"
                print(f"  run {n}  {tool:<8} {timing.wall:6.2f}s  {app} changed{extra}", flush=True)
        print_table(results, args.targets)
        print(load())
    finally:
        remove_engine_images(prefix)
        if args.keep:
            print(f"kept {tmp} and the bucket {ws.bucket}")
        else:
            delete_bucket(ws.bucket)
            shutil.rmtree(tmp, ignore_errors=True)


def timed(ws: Workspace, tool: str, n: int, app: str, logs: Path, before: dict[str, str | None],
          retries: int) -> Timing:
    """The fresh runner and the timed, checked build; a failed one is shown and done again. (A retry of
    imgbuild finds the changed app in its target cache: it is shown, so a reader can discount it.)"""
    for attempt in range(retries + 1):
        fresh_runner(ws)
        try:
            timing = run_tool(ws, tool, logs, f"{tool}-{n}-{attempt}")
            verify(ws, tool, n, app, before)
            return timing
        except RunFailed as exc:
            if attempt == retries:
                sys.exit(f"bench: {exc}")
            lines = str(exc).splitlines()
            why = [ln.strip() for ln in lines[1:] if "ERROR" in ln or "error" in ln][-2:]
            print(f"  run {n}  {tool:<8} DISCARDED (retry {attempt + 1}): {' / '.join(why or lines[:1])}",
                  flush=True)
    raise AssertionError("unreachable")


def print_table(results: list[tuple[int, str, Timing]], n_targets: int) -> None:
    print()
    print(f"{'run':>3}  {'tool':<8}  {'wall':>7}  changed   imgbuild: setup   build+push  statuses")
    for n, app, t in results:
        extra = ""
        if t.report is not None:
            extra = f"   {t.wall - t.report['duration_s']:14.2f}s  {t.report['duration_s']:9.2f}s  {statuses(t.report)}"
        print(f"{n:>3}  {t.tool:<8}  {t.wall:6.2f}s  {app}{extra}")
    med = {tool: statistics.median(t.wall for _, _, t in results if t.tool == tool) for tool in TOOLS}
    print()
    for tool in TOOLS:
        walls = [t.wall for _, _, t in results if t.tool == tool]
        print(f"median {tool:<8}  {med[tool]:6.2f}s  (min {min(walls):.2f}s, max {max(walls):.2f}s)")
    for tool in TOOLS:
        cpus = [t.cpu for _, _, t in results if t.tool == tool and t.cpu is not None]
        if cpus:
            print(f"cpu {tool:<8}     {statistics.median(c[0] for c in cpus):6.2f}s in its own processes, "
                  f"{statistics.median(c[1] for c in cpus):6.2f}s in dockerd + containerd (medians; BuildKit in "
                  "its container not counted)")
    speedup = med["bake"] / med["imgbuild"]
    goal = 1.0 if n_targets <= 20 else 3.0
    print(f"speed-up bake/imgbuild {speedup:.2f}x at {n_targets} targets  "
          f"({'OK' if speedup >= goal else 'BELOW the goal'}: goal >= {goal:g}x; the issue asks >= 1x at 20 "
          "targets, >= 3x at 100)")


if __name__ == "__main__":
    main()
