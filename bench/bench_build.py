"""Benchmark a cold ``imgbuild build`` against ``docker buildx bake`` on the same small image graph.

Run: python bench/bench_build.py [--runs 3] [-j J] [--apps 8] [--sleep 2] [--builder NAME]
                                 [--layer-cache none|local|s3] [--rev HEAD] [--keep]

What it measures. A generated workspace (in a temporary directory) holds one base image and
``--apps`` apps built ``FROM`` it. Every Dockerfile has a real ``RUN`` step that sleeps ``--sleep``
seconds and writes a file (``/base.txt`` in the base, ``/out`` in each app), so the build does real
work in BuildKit; each app writes its own name, so BuildKit cannot merge the apps' steps into one.
The same graph is built two ways, on the same buildx builder (``--builder``; default: ``default``, the
engine's own ``docker`` driver), both loading the results into the engine's image store:

* ``imgbuild build //... -j J``: the workspace's ``imgbuild.yaml`` and ``BUILD.yaml`` files (each app
  has ``deps: {BASE_IMAGE: //base}``), one ``docker buildx build --load`` per target (on a builder
  that does not see the engine's images, the base also goes to the apps as an OCI layout, imgbuild's
  hand-off there);
* ``docker buildx bake``: a generated ``docker-bake.hcl`` with the base target and one target per app
  that depends on it the bake way (``contexts = { "base-image" = "target:base" }``, the name the
  app's ``FROM ${BASE_IMAGE}`` resolves to), all with ``output = ["type=docker"]`` (on a
  ``docker-container`` or ``remote`` builder too: buildx then loads each image into the engine, as
  imgbuild's default does). Bake has no parallelism limit: it starts every target at once, so ``-j``
  defaults to apps + 1 for imgbuild.

``--layer-cache`` makes both tools export the same layer caches (default ``none``: neither does):
``local``, a ``type=local`` cache per target in a directory of the bench (imgbuild: a ``backend:
local`` cache policy; bake: ``cache-from``/``cache-to`` ``type=local,...,mode=min``); ``s3``, on a
non-docker builder, BuildKit's own S3 cache against ``$IMGBUILD_TEST_S3_ENDPOINT`` in a bucket the
bench creates (imgbuild: a ``backend: s3`` policy, which is also its target cache; bake: ``type=s3``).
The caches are wiped before every run, so they are exported, never read: the runs stay cold.

Every measured build is cold: before it, the bench's images are removed, the build cache is wiped
(``docker buildx prune -af --builder NAME``), so is the workspace's cache directory (imgbuild's target cache and stat
cache), and a new cache-busting build arg ``BUST`` is written into both tools' files (every ``RUN``
echoes it; it is also one of imgbuild's target inputs, so its target cache cannot hit). Only
``busybox:1.36`` stays in the engine. The tools run alternately (imgbuild, bake, imgbuild, bake,
...), ``--runs`` times each, timed as the wall-clock time of the whole command. A first, untimed
round builds with each tool and checks the result, so the timing never measures a no-op; after
every timed run the images are checked again: each one exists, and one app, run as a container,
prints this run's ``BUST`` from its own and its base's layer. A run that fails either way is shown as
DISCARDED and done again (``--retries``): on a shared engine someone else's ``docker system prune``
or ``buildx prune`` can break a build. At the end the bench's images are removed.

It prints each run, the medians and the ratio imgbuild / bake (goal: <= 1.0), the critical-path
lower bound (the sleeps alone, one base step then the apps in waves of J), and where imgbuild's
time goes, from its ``--json`` report: "setup", the wall time minus the report's duration (process
start, imports, loading the specs, git, what runs before the first build starts), the base target,
and the apps (from the base's end to the last app's). Then the CPU time each tool used, in its own
processes (the tool and its children: for imgbuild, Python and one buildx client per target) and in
the engine (dockerd and containerd, read from ``/proc`` around the run; short-lived shims not
counted). The machine's load average is printed too: the engine is shared, and a busy machine slows
both tools.

Needs a Docker engine with buildx (``docker info``; in this repository:
``eval "$(scripts/dev-services up)"``) and ``busybox:1.36`` available to it. It touches only images
named ``imgbench-<random>-...``, plus the builder's cache (``docker buildx prune -af --builder NAME``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgbuild.statedir import for_workspace

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE_FROM = "busybox:1.36"
CONTEXT_NAME = "base-image"  # the name an app's FROM ${BASE_IMAGE} resolves to under bake
S3_ENDPOINT = os.environ.get("IMGBUILD_TEST_S3_ENDPOINT", "http://127.0.0.1:9000")
S3_REGION = "us-east-1"
CACHE_DIR = ".bench-cache"  # the layer caches of --layer-cache local (outside every build context)


# ---------------------------------------------------------------------------------------------------
# The workspace


@dataclass(frozen=True)
class Bench:
    root: Path  # the generated workspace
    prefix: str  # every image this bench makes starts with it
    apps: tuple[str, ...]
    sleep: float
    src: Path  # the directory holding the imgbuild package that is measured
    builder: str = "default"  # the buildx builder both tools use
    imgbuild_args: tuple[str, ...] = ()  # more arguments for `imgbuild build` (--imgbuild-arg), for profiling
    layer_cache: str = "none"  # none, local or s3: the layer caches both tools export
    bucket: str = ""  # the S3 bucket of --layer-cache s3

    def image(self, tool: str, target: str) -> str:
        """The repository name ``tool`` ("ib" or "bake") gives ``target`` ("base" or an app)."""
        return f"{self.prefix}-{tool}-{target}"

    def refs(self, tool: str) -> list[str]:
        return [f"{self.image(tool, t)}:latest" for t in ("base", *self.apps)]


def write_workspace(root: Path, *, prefix: str, n_apps: int, sleep: float, src: Path, builder: str = "default",
                    layer_cache: str = "none", bucket: str = "") -> Bench:
    """Write the Dockerfiles and BUILD.yaml files shared by both tools (the BUST files come per run)."""
    apps = tuple(f"app{i:02d}" for i in range(1, n_apps + 1))
    bench = Bench(root=root, prefix=prefix, apps=apps, sleep=sleep, src=src, builder=builder,
                  layer_cache=layer_cache, bucket=bucket)
    (root / "base").mkdir(parents=True)
    (root / "base" / "BUILD.yaml").write_text(
        f"apps:\n  base:\n    image: {bench.image('ib', 'base')}\n")
    (root / "base" / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE_FROM}\n"
        "ARG BUST\n"
        f'RUN sleep {sleep:g} && echo "base ${{BUST}}" > /base.txt\n')
    for app in apps:
        d = root / "apps" / app
        d.mkdir(parents=True)
        (d / "BUILD.yaml").write_text(
            f"apps:\n  {app}:\n    image: {bench.image('ib', app)}\n"
            "    deps:\n      BASE_IMAGE: //base\n")
        (d / "Dockerfile").write_text(
            "ARG BASE_IMAGE\n"
            "FROM ${BASE_IMAGE}\n"
            "ARG BUST\n"
            f'RUN sleep {sleep:g} && echo "{app} ${{BUST}}" > /out\n')
    return bench


def imgbuild_cache_policy(bench: Bench, bust: str) -> str:
    """The ``cache_policies`` entry named ``lc`` of ``--layer-cache`` (empty for ``none``). Each run
    writes under its own path or prefix, so no run reads what an earlier one exported."""
    if bench.layer_cache == "local":
        return f"  lc: {{backend: local, path: {CACHE_DIR}/ib-{bust}, scope: bench, mode: min}}\n"
    if bench.layer_cache == "s3":
        return (f"  lc: {{backend: s3, bucket: {bench.bucket}, prefix: ib-{bust}/, endpoint_url: '{S3_ENDPOINT}',"
                f" region: {S3_REGION}, use_path_style: true, scope: bench, mode: min}}\n")
    return ""


def bake_cache(bench: Bench, bust: str, target: str) -> str:
    """The ``cache-from``/``cache-to`` lines of a bake target for ``--layer-cache`` (the same caches,
    mode and scope as imgbuild's policy gives it)."""
    if bench.layer_cache == "local":
        ref = f"{bench.root / CACHE_DIR}/bake-{bust}/{target}"
        src, dest = f"type=local,src={ref}", f"type=local,dest={ref}"
    elif bench.layer_cache == "s3":
        ref = (f"type=s3,region={S3_REGION},bucket={bench.bucket},prefix=bake-{bust}/,name={target}-bench,"
               f"endpoint_url={S3_ENDPOINT},use_path_style=true")
        src, dest = ref, ref
    else:
        return ""
    q = json.dumps
    return (f"  cache-from = [{q(src)}]\n"
            f"  cache-to   = [{q(dest + ',mode=min,ignore-error=true')}]\n")


def write_run_files(bench: Bench, bust: str) -> None:
    """The files that change every run: the workspace file and the bake file, both carrying ``bust``."""
    policy = imgbuild_cache_policy(bench, bust)
    (bench.root / "imgbuild.yaml").write_text(
        "version: 1\n"
        f"concurrency: {len(bench.apps) + 1}\n"
        + (f"cache_policies:\n{policy}" if policy else "")
        + "defaults:\n"
        "  tags: [latest]\n"
        + ("  cache: lc\n" if policy else "")
        + f"  build_args:\n    BUST: {json.dumps(bust)}\n")
    q = json.dumps  # an HCL string literal is a JSON string here (no "${" inside)
    names = ["base", *bench.apps]
    blocks = [f"group \"default\" {{\n  targets = [{', '.join(q(n) for n in names)}]\n}}\n",
              f"target \"base\" {{\n"
              f"  context    = \"base\"\n"
              f"  dockerfile = \"Dockerfile\"\n"
              f"  args       = {{ BUST = {q(bust)} }}\n"
              f"  tags       = [{q(bench.image('bake', 'base') + ':latest')}]\n"
              f"  output     = [\"type=docker\"]\n"
              + bake_cache(bench, bust, "base") +
              f"}}\n"]
    for app in bench.apps:
        blocks.append(
            f"target {q(app)} {{\n"
            f"  context    = {q('apps/' + app)}\n"
            f"  dockerfile = \"Dockerfile\"\n"
            f"  contexts   = {{ {q(CONTEXT_NAME)} = \"target:base\" }}\n"
            f"  args       = {{ BASE_IMAGE = {q(CONTEXT_NAME)}, BUST = {q(bust)} }}\n"
            f"  tags       = [{q(bench.image('bake', app) + ':latest')}]\n"
            f"  output     = [\"type=docker\"]\n"
            + bake_cache(bench, bust, app) +
            f"}}\n")
    (bench.root / "docker-bake.hcl").write_text("\n".join(blocks))


# ---------------------------------------------------------------------------------------------------
# The engine


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def bench_images(prefix: str) -> list[str]:
    out = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return [ref for ref in out if ref.startswith(prefix + "-")]


def remove_images(prefix: str) -> None:
    refs = bench_images(prefix)
    if refs:
        docker("image", "rm", "--force", *refs, check=False)


def make_cold(bench: Bench, bust: str) -> None:
    """No image, no build cache, no imgbuild state and a new BUST: nothing the next build could reuse."""
    remove_images(bench.prefix)
    docker("buildx", "prune", "-af", "--builder", bench.builder)
    shutil.rmtree(for_workspace(bench.root).cache, ignore_errors=True)  # imgbuild's target cache, stat cache, logs
    shutil.rmtree(bench.root / ".imgbuild", ignore_errors=True)  # where a --rev older than statedir.py keeps them
    shutil.rmtree(bench.root / CACHE_DIR, ignore_errors=True)  # --layer-cache local (s3: a new prefix per run)
    write_run_files(bench, bust)


# ---------------------------------------------------------------------------------------------------
# The tools


@dataclass(frozen=True)
class Timing:
    tool: str
    wall: float
    report: dict[str, Any] | None = None  # imgbuild's --json report
    cpu: tuple[float, float] | None = None  # CPU seconds: (the tool's processes, dockerd + containerd)


ENGINE_PROCESSES = frozenset({"dockerd", "containerd"})


def engine_cpu() -> float | None:
    """CPU seconds used so far by the engine's long-lived processes (None where /proc does not show them)."""
    ticks, found = 0, False
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() not in ENGINE_PROCESSES:
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


class RunFailed(Exception):
    """A build failed or its result is wrong (on a shared engine, maybe someone else's prune)."""


def run_logged(argv: list[str], *, cwd: Path, log: Path,
               env: dict[str, str] | None = None) -> tuple[float, tuple[float, float] | None]:
    """Run ``argv``, output to ``log``; its wall time and CPU time (the tool's own processes, and the
    engine's during the run). A failure raises :class:`RunFailed`."""
    with log.open("w") as out:
        engine0, own0 = engine_cpu(), os.times()
        t0 = time.perf_counter()
        code = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=env).returncode
        wall = time.perf_counter() - t0
        engine1, own1 = engine_cpu(), os.times()
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RunFailed(f"{' '.join(argv[:4])} ... exited with {code}; last lines of {log}:\n" + "\n".join(tail))
    own = (own1.children_user + own1.children_system) - (own0.children_user + own0.children_system)
    return wall, ((own, engine1 - engine0) if engine0 is not None and engine1 is not None else None)


def export_rev(rev: str, dest: Path) -> Path:
    """``rev`` of this repository as a plain source tree in ``dest`` (``git archive``: the work tree is untouched)."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "imgbuild", "specs"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # Byte code, as an installed imgbuild has it (PYTHONDONTWRITEBYTECODE=1 would make every run compile).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest / "imgbuild")], check=True)
    return dest


def run_imgbuild(bench: Bench, jobs: int, logs: Path, n: int) -> Timing:
    report = logs / f"imgbuild-{n}.json"
    src = str(bench.src)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "imgbuild", "build", "//...", "-j", str(jobs), "--progress", "plain",
            "--builder", bench.builder, "--json", str(report), *bench.imgbuild_args]
    wall, cpu = run_logged(argv, cwd=bench.root, log=logs / f"imgbuild-{n}.log", env=env)
    return Timing("imgbuild", wall, json.loads(report.read_text()), cpu)


def run_bake(bench: Bench, jobs: int, logs: Path, n: int) -> Timing:
    argv = ["docker", "buildx", "bake", "--builder", bench.builder, "--file", "docker-bake.hcl", "--progress", "plain"]
    wall, cpu = run_logged(argv, cwd=bench.root, log=logs / f"bake-{n}.log")
    return Timing("bake", wall, cpu=cpu)


TOOLS = {"imgbuild": ("ib", run_imgbuild), "bake": ("bake", run_bake)}


def verify(bench: Bench, tool: str, bust: str, app: str, timing: Timing) -> None:
    """Every image exists, and ``app`` carries this run's base and app layers: the build was real."""
    short = TOOLS[tool][0]
    inspect = docker("image", "inspect", "--format", "{{.Id}}", *bench.refs(short), check=False)
    if inspect.returncode != 0:
        raise RunFailed(f"{tool} did not produce every image: {inspect.stderr.strip()}")
    ref = f"{bench.image(short, app)}:latest"
    got = docker("run", "--rm", ref, "cat", "/base.txt", "/out", check=False).stdout.split("\n")[:2]
    want = [f"base {bust}", f"{app} {bust}"]
    if got != want:
        raise RunFailed(f"{ref} holds {got}, expected {want}: the build did not run this time")
    if timing.report is not None:
        built = [t for t in timing.report["targets"] if t["status"] == "built"]
        if len(built) != len(bench.apps) + 1:
            raise RunFailed(f"imgbuild's report lists {len(built)} targets built, expected {len(bench.apps) + 1}")


def measure(bench: Bench, tool: str, *, jobs: int, logs: Path, n: int, check_app: str, retries: int) -> Timing:
    """One cold, timed, checked build; a failed one is shown, discarded and done again (``retries`` times)."""
    for attempt in range(retries + 1):
        bust = secrets.token_hex(4)
        make_cold(bench, bust)
        try:
            timing = TOOLS[tool][1](bench, jobs, logs, n)
            verify(bench, tool, bust, check_app, timing)
            return timing
        except RunFailed as exc:
            if attempt == retries:
                sys.exit(f"bench: {exc}")
            lines = str(exc).splitlines()
            why = [ln.strip() for ln in lines[1:] if "ERROR" in ln or "FAILED" in ln or "failed" in ln][-2:]
            print(f"  run {n}  {tool:<8} DISCARDED, doing it again: {' / '.join(why or lines[:1])}", flush=True)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------
# Reporting


def builder_driver(name: str) -> str:
    """The driver of buildx builder ``name`` (``docker buildx inspect --bootstrap``); exits when unusable."""
    out = docker("buildx", "inspect", "--bootstrap", name, check=False)
    for line in out.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Driver":
            return value.strip()
    sys.exit(f"bench: buildx builder {name!r} is not usable (see `docker buildx ls`): "
             f"{(out.stderr or out.stdout).strip()[:300]}")


def s3_client() -> Any:
    import boto3  # imgbuild's own dependency: the bench runs in its environment

    return boto3.client("s3", endpoint_url=S3_ENDPOINT, region_name=S3_REGION)


def create_bucket(name: str) -> None:
    """A new bucket on the test S3 server (credentials from the environment: AWS_ACCESS_KEY_ID, ...)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    s3_client().create_bucket(Bucket=name)


def delete_bucket(name: str) -> None:
    """Empty and delete the bench's bucket (best effort: a left bucket costs the S3 server's disk only)."""
    try:
        client = s3_client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            for i in range(0, len(keys), 1000):
                client.delete_objects(Bucket=name, Delete={"Objects": keys[i:i + 1000]})
        client.delete_bucket(Bucket=name)
    except Exception as exc:  # noqa: BLE001 - clean-up only
        print(f"bench: could not delete bucket {name}: {exc}")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def lower_bound(bench: Bench, jobs: int) -> float:
    """The sleeps on the critical path: the base step, then the apps in waves of ``jobs``."""
    return bench.sleep + math.ceil(len(bench.apps) / min(jobs, len(bench.apps))) * bench.sleep


def breakdown(report: dict[str, Any], wall: float) -> tuple[float, float, float]:
    """(setup: wall - report duration, the base target, everything after the base) from an imgbuild report."""
    base = next(t["duration_s"] for t in report["targets"] if t["label"] == "//base:base")
    return wall - report["duration_s"], base, report["duration_s"] - base


def print_table(results: list[tuple[int, Timing]], bench: Bench, jobs: int) -> None:
    bounds = {"imgbuild": lower_bound(bench, jobs), "bake": lower_bound(bench, len(bench.apps) + 1)}
    print()
    print(f"{'run':>3}  {'tool':<8}  {'wall':>6}  {'vs bound':>8}   imgbuild: setup   base  apps")
    for n, t in results:
        extra = ""
        if t.report is not None:
            start, base, apps = breakdown(t.report, t.wall)
            extra = f"   {start:14.2f}s {base:5.2f}s {apps:4.2f}s"
        print(f"{n:>3}  {t.tool:<8}  {t.wall:5.2f}s  {t.wall - bounds[t.tool]:+7.2f}s{extra}")
    med = {tool: statistics.median(t.wall for _, t in results if t.tool == tool) for tool in TOOLS}
    print()
    for tool in TOOLS:
        walls = [t.wall for _, t in results if t.tool == tool]
        print(f"median {tool:<8}   {med[tool]:5.2f}s  (min {min(walls):.2f}s, max {max(walls):.2f}s)")
    waves = math.ceil(len(bench.apps) / min(jobs, len(bench.apps)))
    print(f"lower bound         {bounds['imgbuild']:5.2f}s  (the RUN sleeps on the critical path: {bench.sleep:g}s base"
          f" + {waves} x {bench.sleep:g}s apps at -j {jobs}"
          + (f"; bake, all apps at once: {bounds['bake']:.2f}s" if bounds["bake"] != bounds["imgbuild"] else "")
          + ")")
    for tool in TOOLS:
        cpus = [t.cpu for _, t in results if t.tool == tool and t.cpu is not None]
        if cpus:
            print(f"cpu {tool:<8}      {statistics.median(c[0] for c in cpus):5.2f}s in its own processes, "
                  f"{statistics.median(c[1] for c in cpus):5.2f}s in dockerd + containerd (medians; "
                  f"{os.cpu_count()} CPUs for {med[tool]:.2f}s = {(os.cpu_count() or 1) * med[tool]:.2f} CPU-s)")
    ratio = med["imgbuild"] / med["bake"]
    print(f"ratio imgbuild/bake {ratio:.3f}  ({'OK' if ratio <= 1.0 else 'SLOWER than bake'}: goal <= 1.0)")


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed builds per tool (default: 3)")
    ap.add_argument("-j", "--jobs", type=int, default=None,
                    help="imgbuild -j (default: apps + 1, i.e. all at once, as bake builds)")
    ap.add_argument("--apps", type=int, default=8, help="apps built FROM the base (default: 8)")
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each RUN step sleeps (default: 2)")
    ap.add_argument("--builder", default="default",
                    help="the buildx builder both tools build on (default: default, the engine's docker driver; "
                         "here also imgbuild-container and imgbuild-remote)")
    ap.add_argument("--layer-cache", choices=("none", "local", "s3"), default="none",
                    help="layer caches both tools export: none, type=local, or BuildKit's own S3 cache "
                         "(s3: not on the docker driver) (default: none)")
    ap.add_argument("--imgbuild-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for `imgbuild build` (repeatable), to see where its time goes: "
                         "e.g. --imgbuild-arg=--cache-read-only leaves its target cache unwritten")
    ap.add_argument("--rev", metavar="REV",
                    help="measure imgbuild as committed at REV (e.g. HEAD) instead of the work tree")
    ap.add_argument("--retries", type=int, default=2,
                    help="a failed or wrong build is shown, discarded and done again up to this many times "
                         "(the engine is shared: someone's prune can break a build) (default: 2)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and logs (the path is printed)")
    args = ap.parse_args()
    if args.runs < 1 or args.apps < 1 or (args.jobs is not None and args.jobs < 1):
        ap.error("--runs, --apps and -j must be at least 1")
    if args.retries < 0:
        ap.error("--retries must be at least 0")
    jobs = args.jobs or args.apps + 1

    if docker("info", "--format", "{{.ServerVersion}}", check=False).returncode != 0:
        sys.exit('bench: no Docker engine (in this repository: eval "$(scripts/dev-services up)")')
    bx = docker("buildx", "version").stdout.strip()
    driver = builder_driver(args.builder)
    if args.layer_cache == "s3" and driver == "docker":
        ap.error(f"--layer-cache s3 needs a builder whose BuildKit has an S3 cache; {args.builder!r} has the "
                 "docker driver (try --builder imgbuild-container)")
    print(f"engine {docker('info', '--format', '{{.ServerVersion}}').stdout.strip()}, {bx}; "
          f"{os.cpu_count()} CPUs, {load()}")

    tmp = Path(tempfile.mkdtemp(prefix="imgbench-"))
    prefix = f"imgbench-{secrets.token_hex(3)}"
    bucket = prefix if args.layer_cache == "s3" else ""
    if bucket:
        create_bucket(bucket)
    src = export_rev(args.rev, tmp / "src") if args.rev else REPO
    bench = write_workspace(tmp / "ws", prefix=prefix, n_apps=args.apps, sleep=args.sleep, src=src,
                            builder=args.builder, layer_cache=args.layer_cache, bucket=bucket)
    bench = replace(bench, imgbuild_args=tuple(args.imgbuild_arg))
    logs = tmp / "logs"
    logs.mkdir()
    print(f"workspace {bench.root}: base + {args.apps} apps, RUN sleep {args.sleep:g}; imgbuild -j {jobs}; "
          f"images {prefix}-*")
    print(f"builder {args.builder} ({driver} driver) for both tools; layer caches: {args.layer_cache}"
          + (f" (bucket {bucket} at {S3_ENDPOINT})" if bucket else "")
          + (f"; imgbuild build also gets {' '.join(args.imgbuild_arg)}" if args.imgbuild_arg else ""))
    print(f"imgbuild from {src}" + (f" (git archive {args.rev})" if args.rev else ""))
    try:
        # Untimed: each tool once, checked, so a broken setup fails here rather than timing nothing.
        for tool in TOOLS:
            timing = measure(bench, tool, jobs=jobs, logs=logs, n=0, check_app=bench.apps[-1], retries=args.retries)
            print(f"  check  {tool:<8} {timing.wall:5.2f}s  ok: {args.apps + 1} images, "
                  f"{bench.apps[-1]} has this build's layers")

        results: list[tuple[int, Timing]] = []
        for n in range(1, args.runs + 1):
            for tool in TOOLS:  # alternately: imgbuild, bake, imgbuild, bake, ...
                timing = measure(bench, tool, jobs=jobs, logs=logs, n=n, retries=args.retries,
                                 check_app=bench.apps[(n - 1) % len(bench.apps)])
                results.append((n, timing))
                print(f"  run {n}  {tool:<8} {timing.wall:5.2f}s", flush=True)
        print_table(results, bench, jobs)
        print(load())
    finally:
        remove_images(prefix)
        if bucket:
            delete_bucket(bucket)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
