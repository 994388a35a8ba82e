"""Where imgbuild keeps its own state for a workspace: outside the work tree, like Bazel's output base.

Nothing imgbuild writes for itself lands in the repository by default, so a build context that is the
workspace root never contains it (no rebuild on every run, no cache blobs sent to BuildKit or copied into
an image by ``COPY . .``) and git never sees it (``--push`` is not refused as dirty). Per workspace, keyed
by its resolved path (``<basename>-<sha256 of the real path, 16 hex digits>``):

* ``${XDG_CACHE_HOME:-~/.cache}/imgbuild/<key>/``: what can be lost at no cost but time: the local target
  and layer caches (``cache/``, ``layers/``), logs, the no-op journals (``uptodate/``), the stat cache, the
  engine trust, the spec memo;
* ``${XDG_STATE_HOME:-~/.local/state}/imgbuild/<key>/``: the default SQLite history and its spool:
  records that must never be lost, kept apart from a directory users wipe to free space.

``IMGBUILD_STATE_DIR=DIR`` puts both in DIR instead (relative to the workspace root; ``.imgbuild`` gives
the old layout). A DIR inside the workspace gets a ``.gitignore`` of ``*`` and is never part of an input
digest; a context containing it still needs a ``.dockerignore`` line to keep it out of what BuildKit
receives (see specs/README.md, "Where imgbuild keeps its state").

An environment variable and not a setting of ``imgbuild.yaml``: the no-op fast path (imgbuild.uptodate)
finds its journal before any YAML is read, and where a machine keeps its caches is the machine's business,
not the repository's. Standard library only, no dataclasses, for that same fast path.
"""

from __future__ import annotations

import hashlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

ENV = "IMGBUILD_STATE_DIR"
LEGACY_DIR = ".imgbuild"  # where state was kept before; see migrate()
HISTORY_FILE = "history.sqlite"
SPOOL_DIR = "history-spool"


def workspace_key(root: str) -> str:
    """``<basename>-<16 hex digits>``: readable in a listing, unique per resolved workspace path."""
    real = os.path.realpath(root)
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(real))[:40] or "root"
    return f"{name}-{hashlib.sha256(os.fsencode(real)).hexdigest()[:16]}"


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> str:
    value = environ.get(var, "")
    # The XDG spec: a relative value is invalid and ignored.
    if os.path.isabs(value):
        return value
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, fallback)


def roots(root: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """(the cache root, the records root) of the workspace at ``root``: absolute, not created."""
    override = environ.get(ENV, "")
    if override:
        path = os.path.abspath(os.path.join(root, os.path.expanduser(override)))
        return path, path
    key = workspace_key(root)
    return (os.path.join(_xdg(environ, "XDG_CACHE_HOME", ".cache"), "imgbuild", key),
            os.path.join(_xdg(environ, "XDG_STATE_HOME", os.path.join(".local", "state")), "imgbuild", key))


def journal_dir(root: str, environ: Mapping[str, str]) -> str:
    """The no-op journals' directory (imgbuild.uptodate, before anything else is imported)."""
    return os.path.join(roots(root, environ)[0], "uptodate")


class StateDirs:
    """The paths of one workspace's state. Immutable (a plain class: see the module's last paragraph)."""

    __slots__ = ("workspace", "cache", "records")
    workspace: Path
    cache: Path
    records: Path

    def __init__(self, *, workspace: Path, cache: Path, records: Path) -> None:
        object.__setattr__(self, "workspace", workspace)
        object.__setattr__(self, "cache", cache)
        object.__setattr__(self, "records", records)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"StateDirs is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateDirs) and (self.workspace, self.cache, self.records) == \
            (other.workspace, other.cache, other.records)

    def __hash__(self) -> int:
        return hash((self.workspace, self.cache, self.records))

    def __repr__(self) -> str:
        return f"StateDirs(workspace={self.workspace!r}, cache={self.cache!r}, records={self.records!r})"

    @property
    def target_cache(self) -> Path:
        """The default local target cache (and, under ``layers/``, the local layer caches)."""
        return self.cache / "cache"

    @property
    def layer_sync(self) -> Path:
        """Synced copies of S3 layer caches, one directory per policy."""
        return self.cache / "layers"

    @property
    def oci_layouts(self) -> Path:
        """Images handed from a dependency to its dependants as OCI layouts (builders outside the engine)."""
        return self.cache / "oci"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"

    @property
    def uptodate(self) -> Path:
        return self.cache / "uptodate"

    @property
    def statcache(self) -> Path:
        return self.cache / "statcache.json"

    @property
    def engine_trust(self) -> Path:
        return self.cache / "engine-trust.json"

    @property
    def spec_memo(self) -> Path:
        return self.cache / "spec-validated.json"

    @property
    def history_db(self) -> Path:
        """The default SQLite history (a ``history: path:`` in imgbuild.yaml replaces it)."""
        return self.records / HISTORY_FILE

    @property
    def history_spool(self) -> Path:
        return self.records / SPOOL_DIR

    def inside_workspace(self) -> tuple[Path, ...]:
        """The state roots that lie in the workspace (only with ``IMGBUILD_STATE_DIR``): kept out of digests."""
        out: list[Path] = []
        for p in dict.fromkeys((self.cache, self.records)):
            if p == self.workspace or p.is_relative_to(self.workspace):
                out.append(p)
        return tuple(out)

    def prepare(self) -> None:
        """Create the roots; one inside the work tree gets a ``.gitignore`` of ``*`` (git never sees it)."""
        inside = self.inside_workspace()
        for p in dict.fromkeys((self.cache, self.records)):
            p.mkdir(parents=True, exist_ok=True)
            if p in inside and p != self.workspace and not (p / ".gitignore").exists():
                (p / ".gitignore").write_text("# imgbuild's own state (IMGBUILD_STATE_DIR): never committed\n*\n")


def require(dirs: StateDirs) -> None:
    """:meth:`StateDirs.prepare`, or an :class:`~imgbuild.errors.ImgbuildError` (exit 2) saying what to set:
    a build must not run where its logs and history records cannot be kept."""
    try:
        dirs.prepare()
    except OSError as exc:
        from imgbuild.errors import ImgbuildError

        raise ImgbuildError(
            f"cannot create imgbuild's state directory {exc.filename or dirs.cache}: {exc.strerror or exc}\n"
            f"  hint: set IMGBUILD_STATE_DIR (or XDG_CACHE_HOME and XDG_STATE_HOME) to a writable directory") from None


def for_workspace(root: Path, environ: Mapping[str, str] | None = None) -> StateDirs:
    """The state directories of the workspace at ``root`` (``environ``: default ``os.environ``)."""
    from pathlib import Path

    real = Path(os.path.realpath(root))
    cache, records = roots(str(real), os.environ if environ is None else environ)
    return StateDirs(workspace=real, cache=Path(cache), records=Path(records))


OUTPUTS_FILE = "outputs.json"


def remember_output(dirs: StateDirs, path: Path) -> None:
    """Note a report imgbuild wrote (``--json``, ``--metadata-file``, ``--junit``) with its content's digest.

    While it is untracked and holds what imgbuild wrote, git's dirty check leaves it out
    (:func:`is_own_output`): a report ``imgbuild ci`` leaves in the work tree does not make the next
    command's tree dirty (``{git.sha}-dirty`` tags, a refused ``--push``). Best effort: without the
    note, the file counts as a change, as any other.
    """
    import json

    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        index = dirs.cache / OUTPUTS_FILE
        known = own_outputs(str(dirs.cache))
        real = os.path.realpath(path)  # as git names it: from its real top-level directory
        known.pop(real, None)
        known[real] = digest  # the newest last: the 256 newest are kept
        dirs.cache.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{OUTPUTS_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(list(known.items())[-256:]), indent=0))
        os.replace(tmp, index)
    except OSError:
        pass


def own_outputs(cache_root: str) -> dict[str, str]:
    """The reports imgbuild wrote: absolute path -> sha256 of what it wrote."""
    import json

    try:
        with open(os.path.join(cache_root, OUTPUTS_FILE), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def is_own_output(path: str, outputs: Mapping[str, str]) -> bool:
    """Whether the untracked ``path`` (a file, or a directory git lists whole) is only reports imgbuild wrote
    and nobody changed since."""
    if not outputs:
        return False
    path = os.path.realpath(path)
    files = [path]
    if os.path.isdir(path):
        files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    for f in files:
        try:
            with open(f, "rb") as fh:
                if outputs.get(f) != hashlib.sha256(fh.read()).hexdigest():
                    return False
        except OSError:
            return False
    return bool(files)


def migrate(dirs: StateDirs, *, move_history: bool, notice: Callable[[str], None]) -> None:
    """Move the records of the old in-tree ``.imgbuild/`` (history, spool) to ``dirs``, once.

    The history is merged row by row into the new file (records are immutable and keyed by id, so a
    merge is exact even when both exist), checked, and only then is the old file removed. Spooled records
    move file by file. Caches, logs and journals are not moved: they only save time. A failure leaves the
    old files where they are, says so, and is tried again by the next command.
    """
    legacy = dirs.workspace / LEGACY_DIR
    if dirs.records == legacy or not legacy.is_dir():
        return
    moved: list[str] = []
    old_db = legacy / HISTORY_FILE
    try:
        if move_history and old_db.is_file():
            from imgbuild.history.sqlite import SqliteHistory

            SqliteHistory(dirs.history_db).absorb(old_db)
            moved.append(f"the history ({LEGACY_DIR}/{HISTORY_FILE}) to {dirs.history_db}")
        old_spool = legacy / SPOOL_DIR
        if old_spool.is_dir() and any(old_spool.iterdir()):
            dirs.history_spool.mkdir(parents=True, exist_ok=True)
            for f in sorted(old_spool.iterdir()):
                dest = dirs.history_spool / f.name
                if not dest.exists():
                    import shutil

                    shutil.copy2(f, dest.with_name(f".{f.name}.tmp"))
                    os.replace(dest.with_name(f".{f.name}.tmp"), dest)
                f.unlink()
            moved.append(f"spooled history records to {dirs.history_spool}")
    except Exception as exc:  # sqlite3.Error, OSError: never lose a record, never stop the command
        notice(f"could not move imgbuild's old state out of {legacy}: {exc}; it stays there and the next "
               f"command tries again")
        return
    if moved:
        rest = (f"{old_db} was left in place: imgbuild.yaml's `history:` names another store"
                if old_db.exists() else f"nothing in {legacy} is used any more (old caches and logs): delete it")
        notice(f"imgbuild keeps its state outside the work tree now: moved {' and '.join(moved)}; {rest}")
