"""affected_targets: which targets a list of changed files reaches. No git here (see integration)."""

from __future__ import annotations

import pytest

from imgbuild.affected import affected_targets
from imgbuild.graph import TargetGraph
from imgbuild.labels import Label
from imgbuild.specfiles.packages import load_workspace
from tests.conftest import WorkspaceFactory

DF = "FROM busybox:1.36\n"
BASE = Label("base", "base")
API = Label("apps/api", "api")
MIGRATE = Label("tools/migrate", "migrate")
WEB_TEST = Label("apps/web", "test")
WEB_RUNTIME = Label("apps/web", "runtime")
WORKER = Label("apps/worker", "worker")
ALL = {BASE, API, MIGRATE, WEB_TEST, WEB_RUNTIME, WORKER}

FILES = {
    "base/BUILD.yaml": "apps:\n  base: {}\n",
    "base/Dockerfile": DF,
    # api: a .dockerignore that leaves out docs and tests (except one), itself and the Dockerfile.
    "apps/api/BUILD.yaml": "apps:\n  api:\n    deps: {BASE_IMAGE: //base}\n",
    "apps/api/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    "apps/api/.dockerignore": "*.md\ntests/\n!tests/keep.txt\n.dockerignore\nDockerfile\n",
    "apps/api/src/main.py": "print('api')\n",
    "apps/api/README.md": "# api\n",
    # migrate depends on api, so it is affected by whatever affects api.
    "tools/migrate/BUILD.yaml": "apps:\n  migrate:\n    deps: {API: //apps/api}\n",
    "tools/migrate/Dockerfile": "ARG API\nFROM ${API}\n",
    # web: two targets (stages) of one app, one BUILD.yaml.
    "apps/web/BUILD.yaml": "apps:\n  web:\n    targets:\n      test: {}\n      runtime: {}\n",
    "apps/web/Dockerfile": "FROM busybox:1.36 AS test\nFROM busybox:1.36 AS runtime\n",
    "apps/web/index.html": "<p>web</p>\n",
    # worker: a Dockerfile outside its context (shared/), with its own Dockerfile.dockerignore that
    # takes precedence over shared/.dockerignore and leaves out *.txt and the latter.
    "apps/worker/BUILD.yaml": "apps:\n  worker:\n    context: ../../shared\n",
    "apps/worker/Dockerfile": DF,
    "apps/worker/Dockerfile.dockerignore": "*.txt\n.dockerignore\n",
    "apps/worker/notes.txt": "not in any context\n",
    "shared/lib.py": "x = 1\n",
    "shared/.dockerignore": "lib.py\n",
    "docs/guide.md": "# guide\n",
}


@pytest.fixture
def graph(make_ws: WorkspaceFactory) -> TargetGraph:
    return TargetGraph.build(load_workspace(make_ws(FILES)))


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param([], set(), id="nothing changed"),
    pytest.param(["apps/api/src/main.py"], {API, MIGRATE}, id="context file, and its dependant"),
    pytest.param(["apps/api/src/new.py"], {API, MIGRATE}, id="a file added (or deleted: not on disk)"),
    pytest.param(["apps/api/README.md"], set(), id="ignored by .dockerignore"),
    pytest.param(["apps/api/tests/test_main.py"], set(), id="in an ignored directory"),
    pytest.param(["apps/api/tests/keep.txt"], {API, MIGRATE}, id="re-included by an exception"),
    pytest.param(["apps/api/Dockerfile"], {API, MIGRATE}, id="Dockerfile, though the rules exclude it"),
    pytest.param(["apps/api/.dockerignore"], {API, MIGRATE}, id=".dockerignore, though it excludes itself"),
    pytest.param(["base/Dockerfile"], {BASE, API, MIGRATE}, id="a base image: every dependant, transitively"),
    pytest.param(["apps/web/BUILD.yaml"], {WEB_TEST, WEB_RUNTIME}, id="BUILD.yaml: every target it declares"),
    pytest.param(["apps/web/index.html"], {WEB_TEST, WEB_RUNTIME}, id="one context, two targets"),
    pytest.param(["tools/migrate/BUILD.yaml"], {MIGRATE}, id="a dependant's change leaves its deps alone"),
    pytest.param(["imgbuild.yaml"], ALL, id="imgbuild.yaml: everything"),
    pytest.param(["docs/guide.md"], set(), id="in no context"),
    pytest.param(["shared/lib.py"], {WORKER}, id="context outside the Dockerfile's directory"),
    pytest.param(["apps/worker/Dockerfile"], {WORKER}, id="Dockerfile outside the context"),
    pytest.param(["apps/worker/notes.txt"], set(), id="beside the Dockerfile, not in the context"),
    pytest.param(["shared/notes.txt"], set(), id="ignored by Dockerfile.dockerignore"),
    pytest.param(["apps/worker/Dockerfile.dockerignore"], {WORKER}, id="the Dockerfile's ignore file"),
    pytest.param(["shared/.dockerignore"], set(), id="context .dockerignore overridden and excluded"),
    pytest.param(["apps/api/src/main.py", "apps/web/BUILD.yaml"], {API, MIGRATE, WEB_TEST, WEB_RUNTIME},
                 id="several files"),
    pytest.param(["./apps/api/src//main.py"], {API, MIGRATE}, id="path spelled loosely"),
    pytest.param(["../elsewhere/x.py", "/abs/x.py", ".", ""], set(), id="outside the workspace"),
    pytest.param(["base"], set(), id="a directory name is no file of the context"),
])
def test_affected(graph: TargetGraph, files: list[str], expected: set[Label]) -> None:
    assert affected_targets(graph, files) == expected


def test_affected_set_is_closed_under_dependants(graph: TargetGraph) -> None:
    for path in FILES:
        found = affected_targets(graph, [path])
        assert graph.with_rdeps(found) == found, path


def test_a_deleted_dockerfile_dockerignore_affects_it_and_hands_rules_back(make_ws: WorkspaceFactory) -> None:
    # Dockerfile.dockerignore is gone (deleted in the change): shared/.dockerignore rules again, so a
    # change to it affects the target, and what it excludes does not.
    files = {k: v for k, v in FILES.items() if k != "apps/worker/Dockerfile.dockerignore"}
    g = TargetGraph.build(load_workspace(make_ws(files)))
    assert affected_targets(g, ["apps/worker/Dockerfile.dockerignore"]) == {WORKER}
    assert affected_targets(g, ["shared/.dockerignore"]) == {WORKER}
    assert affected_targets(g, ["shared/lib.py"]) == set()
    assert affected_targets(g, ["shared/notes.txt"]) == {WORKER}


def test_root_context_takes_every_file_its_rules_keep(make_ws: WorkspaceFactory) -> None:
    g = TargetGraph.build(load_workspace(make_ws({
        "BUILD.yaml": "apps:\n  bundle:\n    deps: {BASE: //base}\n",
        "Dockerfile": DF,
        ".dockerignore": ".imgbuild\n**/*.md\n",
        "base/BUILD.yaml": "apps:\n  base: {}\n",
        "base/Dockerfile": DF,
    })))
    root, base = Label("", "bundle"), Label("base", "base")
    assert affected_targets(g, ["apps/x/y.py"]) == {root}
    assert affected_targets(g, ["base/Dockerfile"]) == {root, base}
    assert affected_targets(g, ["docs/a/b.md", ".imgbuild/statcache.json"]) == set()
    assert affected_targets(g, [".dockerignore"]) == {root}
    assert affected_targets(g, ["BUILD.yaml"]) == {root}
