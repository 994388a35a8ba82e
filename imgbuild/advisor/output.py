"""The advisor's report as text, as JSON (``specs/check.schema.json``), and for GitHub Actions."""

from __future__ import annotations

from typing import Any

from imgbuild.advisor.check import Report

SCHEMA_VERSION = 1


def text(report: Report) -> str:
    lines: list[str] = []
    for r in report.findings:
        f = r.finding
        who = r.targets[0] + (f" (+{len(r.targets) - 1} more)" if len(r.targets) > 1 else "")
        lines.append(f"{f.file}:{f.line}: {f.severity} {f.code} {who}: {f.message}")
        if f.instruction:
            lines.append(f"    instruction: {f.instruction}")
        lines.append(f"    cost: {f.cost}")
        lines.append(f"    fix: {f.fix}")
        lines.extend(f"        {x}" for x in f.fix_lines)
    c = report.counts()
    lines.append(f"{report.targets} target(s) checked: {c['error']} error(s), {c['warning']} warning(s), "
                 f"{c['info']} suggestion(s)" + (f", {report.ignored} ignored" if report.ignored else ""))
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "targets": report.targets,
        "ignored": report.ignored,
        "counts": report.counts(),
        "findings": [
            {
                "code": r.finding.code,
                "severity": r.finding.severity,
                "title": r.finding.title,
                "file": r.finding.file,
                "line": r.finding.line,
                "step_line": r.finding.step_line,
                "instruction": r.finding.instruction,
                "message": r.finding.message,
                "cost": r.finding.cost,
                "fix": r.finding.fix,
                "fix_lines": list(r.finding.fix_lines),
                "targets": list(r.targets),
            }
            for r in report.findings
        ],
    }


def _escape(value: str, *, prop: bool = False) -> str:
    out = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return out.replace(":", "%3A").replace(",", "%2C") if prop else out


def github_annotations(report: Report) -> list[str]:
    """One workflow command per finding: ``::error``, ``::warning`` or ``::notice`` at its file and line."""
    level = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for r in report.findings:
        f = r.finding
        body = "\n".join((f.message, f"cost: {f.cost}", f"fix: {f.fix}", *f.fix_lines))
        title = _escape(f"imgbuild check {f.code}: {f.title}", prop=True)
        out.append(f"::{level[f.severity]} file={_escape(f.file, prop=True)},line={max(f.line, 1)},"
                   f"title={title}::{_escape(body)}")
    return out


def github_summary(report: Report) -> str:
    """A markdown section for ``$GITHUB_STEP_SUMMARY``."""
    c = report.counts()
    lines = ["### imgbuild check", "",
             f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} suggestion(s) in {report.targets} "
             f"target(s)" + (f", {report.ignored} ignored" if report.ignored else ""), ""]
    if report.findings:
        lines += ["| where | code | finding | fix |", "|---|---|---|---|"]
        for r in report.findings:
            f = r.finding
            fix = " ".join((_cell(f.fix), *(f"<br>`{_cell(x)}`" for x in f.fix_lines)))
            lines.append(f"| `{f.file}:{f.line}` | {f.severity} {f.code} | {_cell(f.message)} | {fix} |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")
