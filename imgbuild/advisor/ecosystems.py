"""Package managers: which shell commands download dependencies, from which manifests, into which cache.

A RUN step's shell text is cut into simple commands (at ``&&``, ``||``, ``;``, ``|`` and newlines) and
each is matched against the table below. A match is a :class:`Download`:

* ``install``: it installs what manifest and lock files list (``npm ci``, ``pip install -r
  requirements.txt``, ``go mod download``); copying those files first lets it stay cached;
* ``build``: it compiles the project and downloads the dependencies on the way (``go build``, ``cargo
  build``, ``mvn package``); ``deps_command`` fetches them from the manifests alone, so that step can be
  cached (``go mod download``), and the build then runs offline from it;
* ``packages``: it installs named packages (``apt-get install curl``, ``pip install flask``): it needs
  no project file, unless it reads a package list (``xargs apt-get install < packages.txt``), and then
  that file is its manifest.

The table errs on the side of silence: a command it does not know is not a dependency step.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Download:
    # npm | yarn | pnpm | pip | poetry | uv | pipenv | bundler | go | cargo | maven | gradle | composer | apt | apk
    ecosystem: str
    kind: str  # install | build | packages
    command: str  # the simple command as written
    manifests: tuple[str, ...]  # context-relative files it reads; the first ones are required, see `optional`
    optional: tuple[str, ...] = ()  # lock files and the like, copied when they exist
    deps_command: str | None = None  # for `build` (and installs that also install the project): deps only
    cache_targets: tuple[str, ...] = ()  # where its download cache lives, for RUN --mount=type=cache
    subdir: str = ""  # a relative directory the RUN `cd`s into before it: the manifests are there


COMMAND_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\||\n)\s*")
_PREFIXES = frozenset({"sudo", "env", "exec", "time", "nice", "command", "nohup"})
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_READS = re.compile(r"(?:\bcat\s+|<\s*|\bxargs\b[^<]*?\s-a\s+)([A-Za-z0-9_.][A-Za-z0-9_./-]*)")

NODE_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
GRADLE_FILES = ("settings.gradle", "settings.gradle.kts", "build.gradle", "build.gradle.kts", "gradle.properties",
                "gradlew", "gradle")


def downloads(command_text: str) -> list[Download]:
    """Every dependency download in a RUN step's shell text (heredoc bodies included), in order."""
    out: list[Download] = []
    subdir = ""
    for simple in COMMAND_SEPARATORS.split(command_text):
        simple = simple.strip().strip("()").strip()
        if not simple:
            continue
        try:
            words = shlex.split(simple, comments=True)
        except ValueError:
            words = simple.split()
        while words and (words[0] in _PREFIXES or _ASSIGN.match(words[0])):
            words = words[1:]
        if not words:
            continue
        if words[0] == "cd" and len(words) == 2:
            target = words[1]
            relative = not target.startswith(("/", "$", "~", "-")) and ".." not in target.split("/")
            subdir = posixpath.normpath(posixpath.join(subdir, target)) if relative else ""
            subdir = "" if subdir == "." else subdir
            continue
        found = _match(words, simple)
        if found is not None:
            out.append(dataclasses.replace(found, subdir=subdir) if subdir else found)
    return out


def _positional(words: list[str]) -> list[str]:
    return [w for w in words if not w.startswith("-")]


def _match(words: list[str], simple: str) -> Download | None:
    prog = words[0].rsplit("/", 1)[-1]
    args = words[1:]
    if prog in ("python", "python3") and args[:2] == ["-m", "pip"]:
        prog, args = "pip", args[2:]
    sub = _positional(args)[:1]
    verb = sub[0] if sub else ""
    if prog == "npm" and verb in ("ci", "install", "i"):
        if "-g" in args or "--global" in args or len(_positional(args)) > 1:
            return Download(ecosystem="npm", kind="packages", command=simple, manifests=())
        return Download(ecosystem="npm", kind="install", command=simple, manifests=("package.json",),
                        optional=NODE_LOCKS + (".npmrc",), cache_targets=("/root/.npm",))
    if prog == "yarn" and (not _positional(args) or verb == "install"):
        return Download(ecosystem="yarn", kind="install", command=simple, manifests=("package.json",),
                        optional=("yarn.lock", ".yarnrc.yml", ".yarnrc", ".yarn"),
                        cache_targets=("/usr/local/share/.cache/yarn",))
    if prog == "pnpm" and verb in ("install", "i", "fetch"):
        return Download(ecosystem="pnpm", kind="install", command=simple,
                        manifests=("pnpm-lock.yaml",) if verb == "fetch" else ("package.json",),
                        optional=("pnpm-lock.yaml", "pnpm-workspace.yaml", ".npmrc"),
                        cache_targets=("/root/.local/share/pnpm/store",))
    if prog in ("pip", "pip3") and verb == "install":
        return _pip(args[args.index("install") + 1:], simple, "pip", ("/root/.cache/pip",))
    if prog == "uv" and verb == "pip" and "install" in args:
        return _pip(args[args.index("install") + 1:], simple, "uv", ("/root/.cache/uv",))
    if prog == "uv" and verb == "sync":
        deps = None if "--no-install-project" in args else f"{simple} --no-install-project"
        return Download(ecosystem="uv", kind="install", command=simple, manifests=("pyproject.toml",),
                        optional=("uv.lock",), deps_command=deps, cache_targets=("/root/.cache/uv",))
    if prog == "poetry" and verb == "install":
        deps = None if "--no-root" in args else f"{simple} --no-root"
        return Download(ecosystem="poetry", kind="install", command=simple, manifests=("pyproject.toml",),
                        optional=("poetry.lock",), deps_command=deps, cache_targets=("/root/.cache/pypoetry",))
    if prog == "pipenv" and verb in ("install", "sync"):
        return Download(ecosystem="pipenv", kind="install", command=simple, manifests=("Pipfile",),
                        optional=("Pipfile.lock",), cache_targets=("/root/.cache/pipenv",))
    if prog == "bundle" and (verb == "install" or not _positional(args)):
        return Download(ecosystem="bundler", kind="install", command=simple, manifests=("Gemfile",),
                        optional=("Gemfile.lock", ".bundle"), cache_targets=("/usr/local/bundle/cache",))
    if prog == "composer" and verb in ("install", "i"):
        deps = None if "--no-scripts" in args else f"{simple} --no-scripts --no-autoloader"
        return Download(ecosystem="composer", kind="install", command=simple, manifests=("composer.json",),
                        optional=("composer.lock",), deps_command=deps, cache_targets=("/root/.composer/cache",))
    if prog == "go":
        if verb == "mod" and "download" in args:
            return Download(ecosystem="go", kind="install", command=simple, manifests=("go.mod",),
                            optional=("go.sum",), cache_targets=("/go/pkg/mod",))
        vendored = any(a in ("-mod=vendor", "-mod", "vendor") for a in args)  # no download: modules are in vendor/
        if verb in ("build", "install", "test", "vet", "generate") and not vendored and not any("@" in a for a in args):
            return Download(ecosystem="go", kind="build", command=simple, manifests=("go.mod",), optional=("go.sum",),
                            deps_command="go mod download", cache_targets=("/go/pkg/mod", "/root/.cache/go-build"))
    if prog == "cargo":
        if verb == "fetch":
            return Download(ecosystem="cargo", kind="install", command=simple, manifests=("Cargo.toml",),
                            optional=("Cargo.lock",), cache_targets=("/usr/local/cargo/registry",))
        if verb in ("build", "install", "test") and (verb != "install" or "--path" in args):
            # cargo needs a target to read the manifest; an empty main.rs is enough to fetch.
            return Download(ecosystem="cargo", kind="build", command=simple, manifests=("Cargo.toml",),
                            optional=("Cargo.lock",), deps_command="mkdir -p src && touch src/main.rs && cargo fetch",
                            cache_targets=("/usr/local/cargo/registry",))
    if prog in ("mvn", "mvnw"):
        tool = words[0]
        manifests = ("pom.xml",)
        optional = (".mvn", "mvnw") if prog == "mvnw" else ()
        if any(a.startswith("dependency:") for a in args):
            return Download(ecosystem="maven", kind="install", command=simple, manifests=manifests,
                            optional=optional, cache_targets=("/root/.m2",))
        if any(a in ("package", "install", "verify", "compile", "test", "spring-boot:repackage") for a in args):
            return Download(ecosystem="maven", kind="build", command=simple, manifests=manifests, optional=optional,
                            deps_command=f"{tool} -B dependency:go-offline", cache_targets=("/root/.m2",))
    if prog in ("gradle", "gradlew"):
        tool = words[0]
        if "dependencies" in args:
            return Download(ecosystem="gradle", kind="install", command=simple, manifests=(),
                            optional=GRADLE_FILES, cache_targets=("/root/.gradle",))
        if any(a in ("build", "assemble", "test", "bootJar", "installDist", "shadowJar", "jar") for a in args):
            return Download(ecosystem="gradle", kind="build", command=simple, manifests=(), optional=GRADLE_FILES,
                            deps_command=f"{tool} dependencies --no-daemon", cache_targets=("/root/.gradle",))
    if (prog in ("apt-get", "apt") and verb == "install") or (prog == "apk" and verb == "add") \
            or (prog == "xargs" and any(w in ("apt-get", "apt", "apk") for w in args)):
        files = tuple(f for f in _READS.findall(simple) if not f.startswith("/"))
        eco = "apk" if "apk" in words else "apt"
        return Download(ecosystem=eco, kind="install" if files else "packages", command=simple, manifests=files)
    if prog == "gem" and verb == "install":
        return Download(ecosystem="bundler", kind="packages", command=simple, manifests=())
    return None


def _pip(args: list[str], simple: str, eco: str, cache: tuple[str, ...]) -> Download | None:
    files: list[str] = []
    names: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-r", "--requirement", "-c", "--constraint") and i + 1 < len(args):
            files.append(args[i + 1])
            i += 2
            continue
        for flag in ("--requirement=", "--constraint=", "-r"):
            if a.startswith(flag) and len(a) > len(flag):
                files.append(a[len(flag):])
                break
        else:
            if a in ("-e", "--editable") or a in (".", "./") or a.startswith((".", "/")):
                return None  # installs the project itself: it needs the sources
            if not a.startswith("-"):
                names.append(a)
        i += 1
    if files:
        return Download(ecosystem=eco, kind="install", command=simple, manifests=tuple(files), cache_targets=cache)
    if names:
        return Download(ecosystem=eco, kind="packages", command=simple, manifests=(), cache_targets=cache)
    return None
