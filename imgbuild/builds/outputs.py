"""Reports for CI systems: JUnit XML (one test case per target), GitHub job summary and annotations."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from imgbuild.builds.results import RunResult
from imgbuild.labels import Label
from imgbuild.model import Workspace


def write_junit(result: RunResult, path: Path, *, suite: str = "imgbuild") -> None:
    """One ``testcase`` per target: failed -> failure (with the log tail), skipped/cancelled -> skipped."""
    failures = sum(t.status == "failed" for t in result.targets)
    skipped = sum(t.status in ("skipped", "cancelled") for t in result.targets)
    root = ET.Element("testsuite", name=suite, tests=str(len(result.targets)), failures=str(failures),
                      errors="0", skipped=str(skipped), time=f"{result.duration:.3f}", timestamp=result.started)
    for t in result.targets:
        package, _, name = t.label[2:].partition(":")
        case = ET.SubElement(root, "testcase", classname=package.replace("/", ".") or "root", name=name,
                             time=f"{t.duration or 0:.3f}")
        if t.status == "failed":
            failure = ET.SubElement(case, "failure", message=(t.error or "build failed")[:500], type="BuildFailed")
            failure.text = "\n".join(t.log_tail) + (f"\nfull log: {t.log_path}" if t.log_path else "")
        elif t.status in ("skipped", "cancelled"):
            ET.SubElement(case, "skipped", message=t.error or t.status)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{t.status} {t.image_id or ''} {' '.join(t.pushed)}".strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def github_summary(result: RunResult) -> str:
    """A markdown table for ``$GITHUB_STEP_SUMMARY``."""
    icon = {"built": "✅", "cached": "♻️", "restored": "♻️", "failed": "❌", "skipped": "⏭️", "cancelled": "⏹️"}
    lines = ["### imgbuild", "", "| target | status | time | image | pushed |", "|---|---|---|---|---|"]
    for t in result.targets:
        took = "-" if t.duration is None else f"{t.duration:.1f}s"
        lines.append(f"| `{t.label}` | {icon.get(t.status, '')} {t.status} | {took} | "
                     f"`{(t.image_id or '-')[:19]}` | {'<br>'.join(f'`{p}`' for p in t.pushed) or '-'} |")
    steps = [f"- `{t.label}` {t.steps.short()}" for t in result.targets if t.steps is not None]
    if steps:  # issue #16: which step missed the layer cache, and why
        lines += ["", "Layer cache, per built target:", "", *steps]
    counts: dict[str, int] = {}
    for t in result.targets:
        counts[t.status] = counts.get(t.status, 0) + 1
    lines += ["", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" in {result.duration:.1f}s", ""]
    return "\n".join(lines)


def github_annotations(result: RunResult, ws: Workspace) -> list[str]:
    """``::error`` workflow commands pointing at each failed target's spec file."""
    out = []
    for t in result.targets:
        if t.status != "failed":
            continue
        target = ws.targets.get(Label.parse(t.label))
        where = ""
        if target is not None:
            where = f" file={target.location.file},line={target.location.line or 1}"
        message = (t.error or "build failed").replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        out.append(f"::error{where},title=imgbuild {t.label} failed::{message}")
    return out
