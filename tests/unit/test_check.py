"""``imgbuild check``: the advisor's rules on workspaces, its ignores, history, bad input and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgbuild.advisor.check import check_dockerfile, check_targets
from imgbuild.cli import main
from imgbuild.history.record import HistoryRecord
from imgbuild.history.sqlite import SqliteHistory
from imgbuild.statedir import for_workspace
from imgbuild.specfiles.packages import load_workspace
from imgbuild.specfiles.schemas import load_schema
from tests.conftest import EXAMPLES, WorkspaceFactory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def codes(data: str | bytes, stage: str | None = None, **kw: object) -> list[tuple[str, int]]:
    raw = data.encode() if isinstance(data, str) else data
    found, _ = check_dockerfile(raw, file="Dockerfile", stage=stage, **kw)  # type: ignore[arg-type]
    return [(f.code, f.line) for f in found]


NPM_BAD = "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN --mount=type=cache,target=/root/.npm npm ci\n"


# -- bad input: one finding with its line, never a traceback ---------------------------------------------------

def test_unreadable_dockerfiles_are_one_finding_with_their_line() -> None:
    assert codes(b"FROM busybox\nRUN echo \xff\xfe\n") == [("IB001", 2)]
    assert codes("FROM busybox\nRUN echo a\nRUNN echo b\n") == [("IB001", 3)]
    assert codes("# a comment\nRUN echo a\nFROM busybox\n") == [("IB001", 2)]
    assert codes("# only a comment\n") == [("IB001", 1)]
    assert codes("") == [("IB001", 1)]
    assert codes("FROM busybox AS a\n", stage="b") == [("IB001", 1)]
    found, _ = check_dockerfile(b"FROM\n", file="Dockerfile", stage=None)
    assert found[0].message == "FROM without an image"


def test_heredocs_continuations_directives_flags_and_onbuild_parse() -> None:
    text = (
        "# syntax=docker/dockerfile:1.7\n"
        "# escape=`\n"
        "FROM node:20 AS build\n"
        "ONBUILD COPY . .\n"
        "ONBUILD RUN npm ci\n"
        "COPY --chmod=755 --link <<EOF /usr/local/bin/hello\n"
        "#!/bin/sh\n"
        "echo COPY . . && npm ci\n"
        "EOF\n"
        "RUN --mount=type=cache,target=/root/.npm `\n"
        "    # a comment inside the continuation\n"
        "    echo a `\n"
        "    && echo b\n"
        "COPY --from=build /x /y\n"
        "COPY . .\n"
        "RUN --mount=type=cache,target=/root/.npm <<EOF\n"
        "npm ci\n"
        "EOF\n"
    )
    assert codes(text) == [("IB101", 15)]
    assert codes("FROM busybox\nRUN <<EOF\nnever closed\nCOPY . .\n") == []
    assert codes("FROM busybox\nRUN echo a \\\n") == []  # a continuation at the end of the file


def test_escape_directive_continuations_keep_lines() -> None:
    text = "# escape=`\nFROM node:20\nCOPY . `\n  C:/app\nRUN npm ci `\n  --omit=dev\n"
    assert codes(text) == [("IB101", 3), ("IB201", 5)]


# -- the rules -------------------------------------------------------------------------------------------------

def test_only_the_stages_the_target_builds_are_checked() -> None:
    text = "FROM node:20 AS dev\nCOPY . .\nRUN npm ci\n\nFROM busybox:1.36 AS runtime\nCOPY app /app\n"
    assert codes(text, stage="runtime") == []
    assert codes(text, stage="dev") == [("IB101", 2), ("IB201", 3)]
    copy_from = "FROM node:20 AS deps\nCOPY . .\nRUN npm ci\nFROM busybox AS run\nCOPY --from=deps /a /a\n"
    assert ("IB101", 2) in codes(copy_from, stage="run")


def test_arg_without_a_value_costs_nothing_and_a_used_arg_after_its_step_is_fine() -> None:
    text = "FROM busybox\nARG GIT_SHA\nRUN echo expensive\nLABEL rev=$GIT_SHA\n"
    assert codes(text, values={}) == []  # no build arg, no default: empty in every build
    assert codes(text, values={"GIT_SHA": "abc"}) == [("IB102", 2)]
    assert codes("FROM busybox\nRUN echo expensive\nARG GIT_SHA\nRUN echo $GIT_SHA\n", values={"GIT_SHA": "a"}) == []
    # COPY and settings after the ARG are keyed by their own text: only RUN steps pay.
    assert codes("FROM busybox\nARG BUILD_ID=1\nCOPY a /a\nENV X=1\n") == []


def test_the_arg_fix_names_the_step_that_uses_it() -> None:
    found, _ = check_dockerfile(b"FROM busybox\nARG COMMIT_SHA=x\nRUN echo a\nRUN echo b\nRUN echo ${COMMIT_SHA}\n",
                                file="Dockerfile", stage=None)
    (f,) = found
    assert (f.code, f.line, f.step_line) == ("IB102", 2, 3)
    assert "write before line 5" in f.fix and f.fix_lines == ("ARG COMMIT_SHA=x",)
    assert "2 RUN step(s)" in f.cost


def test_invalidate_every_makes_time_based_args_intended_but_not_commit_ones() -> None:
    bust = "FROM busybox\nARG CACHEBUST=1\nRUN echo expensive\n"
    assert codes(bust) == [("IB102", 2)]
    assert codes(bust, invalidate_every=True) == []
    sha = "FROM busybox\nARG GIT_SHA=1\nRUN echo expensive\n"
    assert codes(sha, invalidate_every=True) == [("IB102", 2)]
    # Names that only look alike are not volatile.
    assert codes("FROM busybox\nARG APT_UPDATE=1\nARG VALIDATE=1\nARG REFRESH=1\nRUN echo x\n") == []


def test_a_changed_value_in_the_history_makes_any_arg_volatile() -> None:
    text = "FROM busybox\nARG RELEASE=dev\nRUN echo expensive\nRUN echo $RELEASE\n"
    assert codes(text, values={"RELEASE": "1"}) == []
    assert codes(text, values={"RELEASE": "1"}, changed=frozenset({"RELEASE"})) == [("IB102", 2)]


def test_copy_fix_gives_the_exact_reordered_lines(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "web/BUILD.yaml": "apps: {web: {}}\n",
        "web/Dockerfile": "FROM node:20\nCOPY site/ /srv/\nWORKDIR /srv\nRUN npm ci && npm run build\n",
        "web/site/package.json": "{}\n",
        "web/site/package-lock.json": "{}\n",
        "web/site/index.js": "\n",
    })
    ws = load_workspace(root)
    report = check_targets(ws, ws.targets.values())
    ib101 = [r.finding for r in report.findings if r.finding.code == "IB101"]
    assert [(f.file, f.line, f.step_line) for f in ib101] == [("web/Dockerfile", 2, 4)]
    assert ib101[0].fix_lines == (
        "COPY site/package.json site/package-lock.json /srv/",
        "WORKDIR /srv",
        "RUN npm ci",
        "COPY site/ /srv/",
        "RUN npm run build",
    )


# -- the context -----------------------------------------------------------------------------------------------

def _root_context_ws(make_ws: WorkspaceFactory, **extra: str) -> Path:
    root = make_ws({
        "apps/api/BUILD.yaml": "apps:\n  api:\n    context: ../..\n",
        "apps/api/Dockerfile": "FROM busybox:1.36\nCOPY apps/api/app.txt /app.txt\n",
        "apps/api/app.txt": "x\n",
        **extra,
    })
    (root / ".git").mkdir()
    return root


def test_root_context_without_dockerignore(make_ws: WorkspaceFactory) -> None:
    ws = load_workspace(_root_context_ws(make_ws))
    (r,) = check_targets(ws, ws.targets.values()).findings
    assert (r.finding.code, r.finding.file, r.finding.line) == ("IB103", "apps/api/BUILD.yaml", 2)
    assert r.finding.fix_lines == (".git",) and r.targets == ("//apps/api:api",)


def test_root_context_dockerignore_must_exclude_git_and_state(make_ws: WorkspaceFactory) -> None:
    ws = load_workspace(_root_context_ws(make_ws, **{".dockerignore": "node_modules\n"}))
    (r,) = check_targets(ws, ws.targets.values()).findings
    assert (r.finding.code, r.finding.file, r.finding.fix_lines) == ("IB104", ".dockerignore", (".git",))
    (ws.root / ".dockerignore").write_text(".git\n")
    assert check_targets(ws, ws.targets.values()).findings == ()


def test_root_context_dockerignore_must_exclude_a_state_dir_in_it(make_ws: WorkspaceFactory,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGBUILD_STATE_DIR", "build/state")
    ws = load_workspace(_root_context_ws(make_ws, **{".dockerignore": ".git\n"}))
    (r,) = check_targets(ws, ws.targets.values()).findings
    assert (r.finding.code, r.finding.fix_lines) == ("IB104", ("build/state",))
    assert "copies it into the image" in r.finding.cost
    (ws.root / ".dockerignore").write_text(".git\nbuild/state\n")
    assert check_targets(ws, ws.targets.values()).findings == ()


def test_a_large_context_mostly_not_copied(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "svc/BUILD.yaml": "apps: {svc: {}}\n",
        "svc/Dockerfile": "FROM busybox:1.36\nCOPY bin/ /bin/\n",
        "svc/bin/tool": "x\n",
    })
    (root / "svc" / "fixtures").mkdir()
    with open(root / "svc" / "fixtures" / "dump.sql", "wb") as fh:
        fh.truncate(80 * 1000 * 1000)  # sparse: its size counts, nothing is written
    ws = load_workspace(root)
    (r,) = check_targets(ws, ws.targets.values()).findings
    assert r.finding.code == "IB105" and r.finding.fix_lines == ("fixtures",)
    assert "80 MB" in r.finding.message
    (root / "svc" / ".dockerignore").write_text("fixtures\n")
    assert check_targets(ws, ws.targets.values()).findings == ()


# -- ignores ---------------------------------------------------------------------------------------------------

def test_ignore_comments_and_spec_ignore_lists(make_ws: WorkspaceFactory,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({
        "imgbuild.yaml": "version: 1\ndefaults:\n  check: {ignore: [IB201]}\n",
        "a/BUILD.yaml": ("apps:\n  a:\n    targets:\n      one: {stage: one}\n"
                         "      two: {stage: two, check: {ignore: [IB102]}}\n"),
        "a/Dockerfile": ("FROM node:20 AS one\n# imgbuild: ignore=IB101\nCOPY . .\nRUN npm ci\n"
                         "FROM busybox AS two\nARG GIT_SHA=1\nRUN echo x\n"),
        "b/BUILD.yaml": "apps:\n  b: {}\n",
        "b/Dockerfile": "FROM node:20\nCOPY . .\nRUN npm ci\n# imgbuild: ignore=IB102\nARG BUILD_ID=1\nRUN echo ok\n",
    })
    ws = load_workspace(root)
    report = check_targets(ws, ws.targets.values())
    assert [(r.finding.file, r.finding.code, r.finding.line) for r in report.findings] == [("b/Dockerfile", "IB101", 2)]
    assert report.ignored == 5  # a: IB101 (comment), IB201 (defaults), IB102 (target); b: IB201, IB102 (comment)
    assert ws.targets[next(lb for lb in ws.targets if lb.name == "two")].check_ignore == ("IB102", "IB201")
    code = main(["plan", "-w", str(root), "//a:two", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["targets"][0]["check"] == {"ignore": ["IB102", "IB201"]}


def test_a_bad_ignore_code_is_a_spec_error(make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({"a/BUILD.yaml": "apps:\n  a:\n    check: {ignore: [IB1]}\n", "a/Dockerfile": "FROM busybox\n"})
    code, _, err = run(capsys, "check", "-w", str(root))
    assert code == 2 and "a/BUILD.yaml:3" in err and "ignore" in err


# -- the command -----------------------------------------------------------------------------------------------

def test_check_example_monorepo_has_no_finding(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "-w", str(EXAMPLES / "monorepo"), "--fail-on", "info")
    assert code == 0
    assert out.strip() == "9 target(s) checked: 0 error(s), 0 warning(s), 0 suggestion(s)"


def test_cli_text_json_and_exit_codes(make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    root = make_ws({
        "web/BUILD.yaml": "apps:\n  web:\n    targets:\n      a: {stage: a}\n      b: {stage: b}\n",
        "web/Dockerfile": "FROM node:20 AS a\nCOPY . .\nRUN npm ci\nFROM a AS b\n",
        "web/package.json": "{}\n",
        "web/package-lock.json": "{}\n",
        "ok/BUILD.yaml": "apps: {ok: {}}\n",
        "ok/Dockerfile": "FROM busybox\nRUN pip install -r requirements.txt\n",
    })
    code, out, _ = run(capsys, "check", "-w", str(root))
    assert code == 1
    assert "web/Dockerfile:2: warning IB101 //web:a (+1 more): COPY . . copies the whole context before `npm ci`" in out
    assert "        COPY package.json package-lock.json ./" in out
    code, out, _ = run(capsys, "check", "-w", str(root), "--json", "//ok")
    doc = json.loads(out)
    jsonschema.validate(doc, load_schema("check"))
    assert code == 0 and doc["counts"] == {"error": 0, "warning": 0, "info": 1}
    assert doc["findings"][0]["fix_lines"] == [
        "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt"]
    assert run(capsys, "check", "-w", str(root), "--fail-on", "info", "//ok")[0] == 1
    code, out, _ = run(capsys, "check", "-w", str(root), "--json", "--fail-on", "never")
    assert code == 0
    assert [f["targets"] for f in json.loads(out)["findings"] if f["code"] == "IB101"] == [["//web:a", "//web:b"]]
    jsonschema.validate(json.loads(out), load_schema("check"))
    assert run(capsys, "check", "-w", str(root), "//nope")[0] == 2
    with pytest.raises(SystemExit) as exc:
        main(["check", "-w", str(root), "--fail-on", "bogus"])
    assert exc.value.code == 2


def test_missing_and_unreadable_dockerfiles_are_findings(make_ws: WorkspaceFactory,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({
        "a/BUILD.yaml": "apps: {a: {}}\n",
        "a/Dockerfile": "FROM busybox\nCOPY . .\nRUNN npm ci\n",
        "b/BUILD.yaml": "apps:\n  b: {dockerfile: Missing.Dockerfile}\n",
    })
    code, out, err = run(capsys, "check", "-w", str(root))
    assert code == 1 and "Traceback" not in err
    assert "a/Dockerfile:3: error IB001 //a:a: unknown instruction 'RUNN'" in out
    assert "b/BUILD.yaml:2: error IB001 //b:b: b/Missing.Dockerfile cannot be read" in out


def test_history_values_that_changed(make_ws: WorkspaceFactory, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ws({
        "base/BUILD.yaml": "apps:\n  base:\n    build_args: {RELEASE: '2'}\n",
        "base/Dockerfile": "FROM busybox\nARG RELEASE\nRUN echo slow\nRUN echo $RELEASE > /r\n",
    })
    assert run(capsys, "check", "-w", str(root))[0] == 0
    store = SqliteHistory(for_workspace(root).history_db)
    for n, value in enumerate(("1", "2")):
        store.append(HistoryRecord(kind="build", time=f"2026-01-0{n + 1}T00:00:00Z", label="//base:base",
                                   build_args=(("RELEASE", value),)))
    code, out, _ = run(capsys, "check", "-w", str(root))
    assert code == 1 and "base/Dockerfile:2: warning IB102" in out
    assert "its value differs between the target's last two builds" in out
    assert run(capsys, "check", "-w", str(root), "--no-history")[0] == 0


def test_schema_command_prints_the_check_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", "check")
    assert code == 0 and json.loads(out)["title"] == "imgbuild check report"



_FRAGMENTS = ["FROM node:20 AS a", "FROM a", "FROM", "ARG GIT_SHA=1", "ARG", "COPY . .", "COPY --from=a / /",
              "COPY [\"a\", \"b\"", "ADD https://x/y /y", "RUN npm ci", "RUN <<EOF", "RUN <<-X cat", "EOF", "X",
              "RUN --mount=type=cache", "RUN pip install -r", "RUN go build && cargo build", "WORKDIR /a",
              "ONBUILD RUN npm ci", "# escape=`", "# syntax=x", "# imgbuild: ignore=IB101", "\\", "`", "",
              "RUN echo $GIT_SHA \\", "ENV A=$GIT_SHA", "RUN \"unterminated", "COPY", "RUN xargs apk add < p.txt"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=30)), max_size=25),
       st.sampled_from([None, "a", "zz"]))
def test_no_dockerfile_text_makes_the_advisor_raise(lines: list[str], stage: str | None) -> None:
    text = "\n".join(lines)
    found, _ = check_dockerfile(text.encode("utf-8", "surrogatepass"), file="Dockerfile", stage=stage,
                                values={"GIT_SHA": "1"})
    assert all(0 <= f.line <= text.count("\n") + 1 for f in found)


def test_an_install_in_a_subdirectory_keeps_its_cd() -> None:
    found, _ = check_dockerfile(b"FROM golang:1.22\nCOPY . .\nRUN cd svc && go build ./...\n", file="Dockerfile",
                                stage=None)
    ib101 = next(f for f in found if f.code == "IB101")
    assert ib101.fix_lines == ("COPY svc/go.mod svc/go.sum ./svc/", "RUN cd svc && go mod download", "COPY . .",
                               "RUN cd svc && go build ./...")


def test_an_unreadable_dockerignore_and_a_parent_context(make_ws: WorkspaceFactory) -> None:
    root = make_ws({
        "team/BUILD.yaml": "apps: {x: {}}\n",
        "team/Dockerfile": "FROM busybox\n",
        "team/svc/BUILD.yaml": "apps:\n  svc:\n    context: ..\n    dockerfile: Dockerfile\n",
        "team/svc/Dockerfile": "FROM busybox\nCOPY svc/app /app\n",
        "team/svc/app": "x\n",
    })
    ws = load_workspace(root)
    (r,) = check_targets(ws, [t for t in ws.targets.values() if t.app == "svc"]).findings
    assert (r.finding.code, r.finding.file, r.finding.line) == ("IB103", "team/svc/BUILD.yaml", 2)
    assert "team, a parent of the target's package" in r.finding.message
    (root / "team" / ".dockerignore").write_text("# fine\n!\n")
    (r,) = check_targets(ws, [t for t in ws.targets.values() if t.app == "svc"]).findings
    assert (r.finding.code, r.finding.file, r.finding.line) == ("IB001", "team/.dockerignore", 2)


def test_an_unreadable_file_is_one_finding_at_the_first_problem() -> None:
    assert codes("FROM busybox\nFOO a\nBAR b\nRUNN c\n") == [("IB001", 2)]
