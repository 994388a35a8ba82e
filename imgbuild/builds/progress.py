"""What the user sees while targets build: a live view on a terminal, one line per event otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.text import Text

from imgbuild.builds.results import RunResult, TargetResult


class Progress(Protocol):
    warnings: int  # how many warnings were shown

    def started(self, label: str) -> None: ...
    def finished(self, result: TargetResult) -> None: ...
    def warn(self, message: str) -> None: ...
    def close(self) -> None: ...


_STATUS_WORD = {"built": "built", "cached": "cached", "restored": "restored from cache", "failed": "FAILED", "skipped": "skipped: dependency failed",
                "cancelled": "cancelled"}


def describe(r: TargetResult) -> str:
    word = _STATUS_WORD.get(r.status, r.status)
    if r.status == "skipped" and r.error:
        word = f"skipped: {r.error}"
    took = f" in {r.duration:.1f}s" if r.duration is not None else ""
    image = f" {r.image_id[:19]}" if r.image_id else ""
    return f"{r.label} {word}{took}{image}"


class PlainProgress:
    """One line per event: what CI logs want."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.lock = threading.Lock()
        self.warnings = 0

    def started(self, label: str) -> None:
        self._print(f"[start] {label}")

    def finished(self, result: TargetResult) -> None:
        self._print(f"[{'done' if result.ok else result.status}] {describe(result)}")

    def warn(self, message: str) -> None:
        self.warnings += 1
        self._print(f"warning: {message}")

    def _print(self, line: str) -> None:
        with self.lock:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        pass


class LiveProgress:
    """One line per running target with its elapsed time, redrawn in place (rich)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.total = total
        self.done = 0
        self.running: dict[str, float] = {}
        self.lock = threading.Lock()
        self.warnings = 0
        self.live = Live(console=self.console, refresh_per_second=4, transient=True,
                         get_renderable=self._render)
        self.live.start()

    def _render(self) -> Text:
        from rich.text import Text

        now = time.monotonic()
        with self.lock:
            lines = [f"building {len(self.running)} of {self.total - self.done} remaining ({self.done}/{self.total} done)"]
            lines += [f"  {label}  {now - t0:5.1f}s" for label, t0 in sorted(self.running.items())]
        return Text("\n".join(lines))

    def started(self, label: str) -> None:
        with self.lock:
            self.running[label] = time.monotonic()

    def finished(self, result: TargetResult) -> None:
        with self.lock:
            self.running.pop(result.label, None)
            self.done += 1
        style = "green" if result.ok else ("red" if result.status == "failed" else "yellow")
        from rich.markup import escape

        self.console.print(f"[{style}]{escape(describe(result))}[/{style}]", highlight=False)

    def warn(self, message: str) -> None:
        from rich.markup import escape

        self.warnings += 1
        self.console.print(f"[yellow]warning: {escape(message)}[/yellow]", highlight=False)

    def close(self) -> None:
        self.live.stop()


def summary(result: RunResult, out: IO[str]) -> None:
    """The table at the end: target, status, duration, image id; then each failure's last log lines."""
    rows = [(t.label, t.status, "-" if t.duration is None else f"{t.duration:.1f}s", (t.image_id or "-")[:19])
            for t in result.targets]
    head = ("TARGET", "STATUS", "TIME", "IMAGE")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
    for t in result.targets:
        if t.steps is not None:  # issue #16: which step missed BuildKit's cache, and why
            print(f"{t.label}  {t.steps.short()}", file=out)
    for t in result.targets:
        if t.status == "failed":
            print(f"\n--- {t.label} failed: {t.error}", file=out)
            for line in t.log_tail:
                print(f"  {t.label} | {line}", file=out)
            if t.log_path:
                print(f"  full log: {t.log_path}", file=out)
    counts: dict[str, int] = {}
    for t in result.targets:
        counts[t.status] = counts.get(t.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    state = "interrupted" if result.interrupted else ("ok" if result.ok else "FAILED")
    print(f"{state}: {parts} in {result.duration:.1f}s", file=out)
