"""The one place imgbuild starts processes (git, the docker CLI, docker-credential-* helpers).

Builds run in their own session (process group) so that stopping imgbuild stops the whole build tree,
``docker`` and its ``docker-buildx`` plugin included: no orphaned build processes (issue #3).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence


class ProcessError(Exception):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv[:3])} exited with {returncode}: {stderr.strip()[:500]}")
        self.returncode = returncode
        self.stderr = stderr


def run(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60.0) -> str:
    """Run a short command and return its stdout; a non-zero exit raises :class:`ProcessError`."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ProcessError(argv, 127, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise ProcessError(argv, 124, f"timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise ProcessError(argv, proc.returncode, proc.stderr)
    return proc.stdout


def run_unchecked(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 120.0,
                  input: str | None = None) -> tuple[int, str, str]:
    """Run a short command (``input`` on its stdin); its exit status, stdout and stderr (a missing program is
    status 127)."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f}s"
    return proc.returncode, proc.stdout, proc.stderr


def stream(argv: Sequence[str], *, on_line: Callable[[str], None], stop: threading.Event | None = None,
           cwd: Path | None = None, env: dict[str, str] | None = None, grace: float = 5.0) -> int:
    """Run a long command, passing each output line (stdout and stderr merged) to ``on_line``.

    When ``stop`` is set the whole process group gets SIGTERM, then SIGKILL after ``grace`` seconds.
    Returns the exit status (negative for a signal, as subprocess does).
    """
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True, errors="replace",
                            bufsize=1)
    watcher = None
    if stop is not None:
        watcher = threading.Thread(target=_kill_on_stop, args=(proc, stop, grace), daemon=True)
        watcher.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
    finally:
        code = proc.wait()
    return code


def _kill_on_stop(proc: subprocess.Popen[str], stop: threading.Event, grace: float) -> None:
    while proc.poll() is None:
        if stop.wait(0.1):
            _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
            return


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
