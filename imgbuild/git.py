"""What git says about the workspace: commit, branch, dirty flag, remote. Read once per command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgbuild import proc, statedir


@dataclass(frozen=True, kw_only=True)
class GitInfo:
    sha: str = ""
    branch: str = ""
    tag: str = ""
    dirty: bool = False
    remote_url: str = ""

    @property
    def short_sha(self) -> str:
        return self.sha[:12]


def read(root: Path) -> GitInfo:
    """Git facts for ``root``; outside a repository (or without git) everything is empty."""
    try:
        top = proc.run(["git", "rev-parse", "--show-toplevel"], cwd=root).strip()
    except proc.ProcessError:
        return GitInfo()

    def q(*args: str) -> str:
        try:
            return proc.run(["git", *args], cwd=root).strip()
        except proc.ProcessError:
            return ""

    # Independent questions, asked at once: each git process costs ~20 ms, a no-op build ~100 ms in all.
    from concurrent.futures import ThreadPoolExecutor

    questions = {
        "sha": ("rev-parse", "--verify", "-q", "HEAD"),
        "branch": ("symbolic-ref", "-q", "--short", "HEAD"),
        "tag": ("describe", "--tags", "--exact-match", "HEAD"),
        "status": ("status", "--porcelain", "--untracked-files=normal", "--", str(root)),
        "remote": ("config", "--get", "remote.origin.url"),
    }
    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        answers = dict(zip(questions, pool.map(lambda args: q(*args), questions.values())))
    dirty = bool(top) and changed(answers["status"].splitlines(), top, root)
    return GitInfo(sha=answers["sha"], branch=answers["branch"], tag=answers["tag"] if answers["sha"] else "",
                   dirty=dirty, remote_url=_public_url(answers["remote"]))


def changed(status: list[str], top: str, root: Path) -> bool:
    """Whether ``git status --porcelain`` lines (v1 ``?? path``, or v2 ``? path``) show a change, leaving out
    the untracked reports imgbuild wrote itself and nobody changed since (:func:`statedir.remember_output`)."""
    lines = [line for line in status if line and not line.startswith("#")]
    if not lines:
        return False
    own = statedir.own_outputs(statedir.roots(str(root), os.environ)[0])
    for line in lines:
        untracked = line[3:] if line.startswith("?? ") else line[2:] if line.startswith("? ") else None
        if untracked is None or untracked.startswith('"') or not statedir.is_own_output(
                os.path.join(top, untracked), own):
            return True
    return False


def _public_url(url: str) -> str:
    """A remote URL without credentials (``https://user:token@host/...``): secrets never reach labels."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
