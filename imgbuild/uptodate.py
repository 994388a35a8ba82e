"""The up-to-date journal: a no-op ``imgbuild build`` answered without loading the workspace.

When a build finds every selected target in the cache, it writes a *journal* of what that answer
depended on, one per command line (``uptodate/<key>.json`` in the state directory, :mod:`imgbuild.statedir`):

* the command: its arguments, working directory and environment (all variables but a few that shells
  change on their own; see ``_VOLATILE_ENV``), the Python and imgbuild that ran it;
* every file the run read and every directory it listed (spec files, Dockerfiles, ``.dockerignore``
  files, the build contexts, cache entries, secret files), and the directory of each file read, so a
  new file next to one (a ``Dockerfile.dockerignore``, a new ``BUILD.yaml``) is noticed: each with its
  size, mtime, ctime and inode, like the stat cache. Files changed within 2 s of the run's start are
  "racy" (see :mod:`imgbuild.statcache`): no journal is written then;
* git: commit, branch and dirty flag (asked again with one ``git status``), tags and remote (their files);
* the engine: the newest event in its log when the run began, and the images and tags it used. Any
  image event since then that deletes or untags one of them, or moves one of the tags, voids the
  journal; so does losing that event from the log (a daemon restart, more than 256 events since);
* time: a journal is valid until the next UTC midnight (``{date}`` tags); targets with ``{datetime}``
  tags or layer caches with ``invalidate_every`` never get one.

The next identical command checks all of that (:func:`replay`) with the standard library only, and if
nothing changed prints the same table, appends the same build records (time renewed) to the SQLite
history, and exits 0, without importing the spec loader, the graph, the hasher or the engine client.
Anything it cannot check, or any doubt, means "not up to date": the normal build runs, which writes
a new journal. ``IMGBUILD_NO_JOURNAL=1`` turns it off. Only plain builds are replayed: ``--push``,
``--json``, ``--metadata-file``, ``--no-cache``, ``--rebuild`` and ``--dry-run`` always run the build,
and so does a workspace whose history is kept in S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from imgbuild import __version__, engine_events, statedir
from imgbuild.canonical import canonical_json

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~4 ms of a ~30 ms answer
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1
KEEP_JOURNALS = 32  # per workspace: the most recently written
RACY_MARGIN_NS = 2_000_000_000
WORKSPACE_FILE = "imgbuild.yaml"

# imgbuild's own speed-ups, rewritten by runs; what they say is checked elsewhere (the stat cache against
# the files, the engine trust against the engine's events, the spec memo by the specs' text).
_BOOKKEEPING = ("statcache.json", "engine-trust.json", "spec-validated.json", statedir.OUTPUTS_FILE)
_VOLATILE_ENV = frozenset({"_", "OLDPWD", "PWD", "SHLVL", "COLUMNS", "LINES"})
_VALUE_FLAGS = frozenset({"-j", "--jobs", "--progress", "-w", "--workspace", "--builder"})
_BOOL_FLAGS = frozenset({"-k", "--keep-going", "--cache-read-only", "--allow-dirty"})
STAT_EVENT = "imgbuild.statcache.lookup"  # raised by the stat cache for files it answers without reading
_DAY_NS = 86_400 * 1_000_000_000
_INSERT = ("INSERT OR IGNORE INTO records (id, time, label, git_commit, kind, record) "
           "VALUES (?, ?, ?, ?, ?, ?)")


def workspace_option(argv: list[str]) -> tuple[bool, str | None]:
    """Whether ``imgbuild build ARGV`` may be answered by a journal, and its ``--workspace`` value."""
    workspace = None
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if a.startswith(("-//", "-:", "-...")) or not a.startswith("-"):
            pass  # a pattern (exclusions start with "-")
        elif name in _VALUE_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    return False, None
                value = argv[i]
            if name in ("-w", "--workspace"):
                workspace = value
        elif a in _BOOL_FLAGS:
            pass
        else:
            return False, None
        i += 1
    return True, workspace


def find_root(workspace: str | None, cwd: str) -> str | None:
    """The workspace root as :func:`imgbuild.specfiles.workspace.find_root` finds it (None: let it say why)."""
    if workspace is not None:
        root = os.path.realpath(os.path.join(cwd, workspace))
        return root if os.path.isfile(os.path.join(root, WORKSPACE_FILE)) else None
    here = os.path.realpath(cwd)
    while True:
        if os.path.isfile(os.path.join(here, WORKSPACE_FILE)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def command_key(argv: list[str], cwd: str, environ: dict[str, str]) -> str:
    env = sorted((k, v) for k, v in environ.items() if k not in _VOLATILE_ENV)
    doc = [FORMAT, __version__, sys.executable, os.path.realpath(cwd), list(argv), env]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


# -- replaying (the fast path) ------------------------------------------------------------------------


def replay(argv: list[str], *, cwd: str | None = None, environ: dict[str, str] | None = None) -> int | None:
    """Answer ``imgbuild build ARGV`` from its journal: 0 when it was up to date, None to build normally."""
    started = time.perf_counter()
    env = dict(os.environ if environ is None else environ)
    if env.get("IMGBUILD_NO_JOURNAL"):
        return None
    ok, workspace = workspace_option(argv)
    if not ok:
        return None
    here = os.getcwd() if cwd is None else cwd
    root = find_root(workspace, here)
    if root is None:
        return None
    key = command_key(argv, here, env)
    try:
        with open(os.path.join(statedir.journal_dir(root, env), f"{key}.json"), "rb") as f:
            journal = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        lines = [f"up to date: nothing changed since the build at {journal['written']}",
                 *(str(line) for line in journal["summary"])]
        state = str(journal["state"])
        if not _still_true(journal, root, env):
            return None
        _append_history(journal, root)
    except Exception:  # a journal we cannot read as written is one we do not trust
        return None
    out = sys.stderr
    for line in lines:
        print(line, file=out)
    print(f"{state} in {time.perf_counter() - started:.1f}s", file=out)
    return 0


def _still_true(journal: dict[str, Any], root: str, env: dict[str, str]) -> bool:
    if journal.get("format") != FORMAT or time.time_ns() >= journal["valid_until_ns"]:
        return False
    for path, stat in journal["paths"]:
        if _stat(path) != (tuple(stat) if stat is not None else None):
            return False
    if journal["git"] is not None and _git_state(root, env) != journal["git"]:
        return False
    sock = engine_events.socket_path(env)
    if sock is None or sock != journal["engine"]["socket"]:
        return False
    try:
        since = engine_events.since_anchor(sock, journal["engine"]["anchor"])
    except engine_events.EventsUnavailable:
        return False
    return since is not None and not engine_events.untrusted(since, journal["engine"]["images"])


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _git_state(root: str, env: dict[str, str]) -> list[object]:
    """Commit, branch and dirty flag as :func:`imgbuild.git.read` sees them, from one ``git status``."""
    import subprocess

    proc = subprocess.run(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=normal", "--", root],
                          cwd=root, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return ["?"]
    sha, branch, changes = "", "", []
    for line in proc.stdout.splitlines():
        if line.startswith("# branch.oid "):
            sha = "" if line.endswith("(initial)") else line.split()[-1]
        elif line.startswith("# branch.head "):
            branch = "" if line.endswith("(detached)") else line[len("# branch.head "):]
        elif line and not line.startswith("#"):
            changes.append(line)
    return [sha, branch, bool(changes) and _changed(changes, root, env)]


def _changed(lines: list[str], root: str, env: dict[str, str]) -> bool:
    """Dirty as imgbuild.git sees it: not counting the untracked reports imgbuild wrote itself."""
    if any(not line.startswith("? ") for line in lines):
        return True
    import subprocess

    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                         timeout=30).stdout.strip()
    own = statedir.own_outputs(statedir.roots(root, env)[0])
    return not top or any(line[2:].startswith('"') or not statedir.is_own_output(os.path.join(top, line[2:]), own)
                          for line in lines)


def _append_history(journal: dict[str, Any], root: str) -> None:
    """The build records of the run the journal replays, with this moment as their time."""
    import sqlite3

    now = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000)) + \
        f".{(now // 1_000_000) % 1000:03d}Z"
    rows = []
    for payload in journal["history"]["records"]:
        doc = {**payload, "time": stamp}
        record_id = "sha256:" + hashlib.sha256(canonical_json(doc)).hexdigest()
        text = canonical_json({**doc, "id": record_id}).decode()
        rows.append((record_id, stamp, doc["label"], doc["git_commit"], doc["kind"], text))
    db = sqlite3.connect(journal["history"]["sqlite"], timeout=30.0)
    try:
        with db:
            db.executemany(_INSERT, rows)
    finally:
        db.close()


# -- recording (during a normal build) ----------------------------------------------------------------

_recording: Recorder | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    rec = _recording
    if rec is None:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        if isinstance(mode, str):
            writing = any(c in mode for c in "wax+")
        else:
            writing = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        (rec.written if writing else rec.opened).add(os.fspath(path))
    elif event in ("os.scandir", "os.listdir"):
        path = args[0]
        if isinstance(path, int):
            return
        rec.listed.add(os.fspath(path) if path is not None else ".")
    elif event == STAT_EVENT:
        rec.also.add(args[0])


class Recorder:
    """Collects what a build read, from the moment it starts; :meth:`save` writes the journal."""

    def __init__(self, argv: list[str], cwd: str, environ: dict[str, str], root: str) -> None:
        self.argv, self.cwd, self.environ, self.root = list(argv), cwd, environ, root
        self.start_ns = time.time_ns()
        self.opened: set[str] = set()
        self.written: set[str] = set()
        self.listed: set[str] = set()
        self.also: set[str] = set()  # files whose stat the build used without opening them
        self.void: str | None = None  # why no journal may be written
        self.socket = engine_events.socket_path(environ)
        self.anchor = None
        if self.socket is not None:
            try:
                self.anchor = engine_events.anchor(self.socket)
            except engine_events.EventsUnavailable:
                pass

    @classmethod
    def begin(cls, argv: list[str], *, cwd: str | None = None,
              environ: dict[str, str] | None = None) -> Recorder | None:
        """Start recording ``imgbuild build ARGV`` if its result could be journaled."""
        env = dict(os.environ if environ is None else environ)
        ok, workspace = workspace_option(argv)
        here = os.getcwd() if cwd is None else cwd
        root = find_root(workspace, here) if ok and not env.get("IMGBUILD_NO_JOURNAL") else None
        if root is None:
            return None
        rec = cls(argv, here, env, root)
        if rec.anchor is None:
            return None
        rec.start()
        return rec

    def start(self) -> None:
        """Record from now on (an audit hook: Python's own report of every file opened, every directory listed)."""
        global _recording, _hooked
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True
        _recording = self

    def stop(self) -> None:
        global _recording
        if _recording is self:
            _recording = None

    def refuse(self, reason: str) -> None:
        self.void = self.void or reason

    def save(self, *, images: dict[str, str], records: list[dict[str, Any]], history_db: str, summary: list[str],
             state: str, git: list[object] | None) -> bool:
        """Write the journal of a run that found everything cached; False when it must not be trusted.

        ``git``: commit, branch and dirty flag as the run saw them.
        """
        self.stop()
        if self.void is not None or self.anchor is None or self.socket is None:
            return False
        paths = self._paths()
        git_dir = _git_dir(self.root)
        if git_dir is None:  # not in a repository: a `git init` above would change the tags
            here = self.root
            while True:
                paths.add(os.path.join(here, ".git"))
                if os.path.dirname(here) == here:
                    break
                here = os.path.dirname(here)
            git = None
        elif not os.path.isdir(git_dir):
            return False  # a worktree or submodule: its refs live elsewhere
        else:
            paths |= {os.path.join(git_dir, "config"), os.path.join(git_dir, "packed-refs")}
            paths |= {d for d, _, _ in os.walk(os.path.join(git_dir, "refs", "tags"))}
        entries = []
        for p in sorted(paths):
            st = _stat(p)
            if st is not None and max(st[1], st[2]) >= self.start_ns - RACY_MARGIN_NS:
                return False  # changed while (or just before) we read it: the next run will tell
            entries.append([p, None if st is None else list(st)])
        now = time.time_ns()
        journal = {
            "format": FORMAT,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now // 1_000_000_000)),
            "valid_until_ns": (now // _DAY_NS + 1) * _DAY_NS,  # {date} tags change at midnight UTC
            "paths": entries,
            "git": git,
            "engine": {"socket": self.socket, "anchor": self.anchor, "images": images},
            "history": {"sqlite": history_db, "records": records},
            "summary": summary,
            "state": state,
        }
        directory = statedir.journal_dir(self.root, self.environ)
        key = command_key(self.argv, self.cwd, self.environ)
        try:
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{key}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(journal, f, separators=(",", ":"))
            os.replace(tmp, os.path.join(directory, f"{key}.json"))
            _prune(directory)
        except OSError:
            return False
        return True

    def _paths(self) -> set[str]:
        own = statedir.roots(self.root, self.environ)[0]  # the cache root: journals, logs, bookkeeping
        ignored = tuple(os.path.join(own, d) + os.sep for d in ("logs", "uptodate", "layers"))
        skip = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                             os.path.dirname(os.path.dirname(__file__)))}
                     | {"/proc/", "/sys/", "/dev/"})
        written = {os.path.abspath(os.path.join(self.cwd, p)) for p in self.written}

        bookkeeping = {own, *(os.path.join(own, name) for name in _BOOKKEEPING)}

        def keep(p: str) -> bool:
            return not (p.startswith(skip) or p.startswith(ignored) or p in bookkeeping or p in written)

        out: set[str] = set()
        for p in self.opened | self.also:
            p = os.path.abspath(os.path.join(self.cwd, p))
            if keep(p):
                out.add(p)
                parent = os.path.dirname(p)
                if keep(parent):
                    out.add(parent)
        for p in self.listed:
            p = os.path.abspath(os.path.join(self.cwd, p))
            if keep(p):
                out.add(p)
        out.add(engine_events.config_path(self.environ))  # the docker context in use
        return out


def _git_dir(root: str) -> str | None:
    """The ``.git`` of the repository holding ``root`` (its config and tags decide the remote and {git.tag};
    commit, branch and dirty flag come from git status)."""
    here = root
    while not os.path.exists(os.path.join(here, ".git")):
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return os.path.join(here, ".git")


def _prune(directory: str) -> None:
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".json")]
        if len(names) <= KEEP_JOURNALS:
            return
        paths = sorted((os.path.join(directory, n) for n in names), key=os.path.getmtime)
        for p in paths[:-KEEP_JOURNALS]:
            os.unlink(p)
    except OSError:
        pass
