"""The advisor over a corpus of real-world Dockerfiles: each planted problem is found at its line, and the
clean half (``good-*``) gives no finding at all. Expectations are the files' own ``# expect: CODE line N``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imgbuild.advisor.check import check_dockerfile
from imgbuild.advisor.findings import ignored_here

CORPUS = Path(__file__).parents[1] / "data" / "check-corpus"
FILES = sorted(CORPUS.glob("*.Dockerfile"))
_EXPECT = re.compile(r"^# expect: (IB\d{3}) line (\d+)$", re.M)


def findings_of(path: Path) -> set[tuple[str, int]]:
    found, comments = check_dockerfile(path.read_bytes(), file=path.name, stage=None)
    return {(f.code, f.line) for f in found if not ignored_here(f, comments)}


def test_the_corpus_is_large_enough_and_balanced() -> None:
    bad = [p for p in FILES if p.name.startswith("bad-")]
    good = [p for p in FILES if p.name.startswith("good-")]
    assert len(FILES) >= 30 and len(bad) >= 15 and len(good) >= 15
    assert all(_EXPECT.search(p.read_text()) for p in bad)
    assert not any(_EXPECT.search(p.read_text()) for p in good)
    ecosystems = " ".join(p.read_text() for p in bad)
    for tool in ("npm ci", "yarn install", "pnpm install", "pip install", "poetry install", "uv sync",
                 "bundle install", "go build", "cargo build", "mvn", "gradle", "composer install", "apt-get install",
                 "apk add"):
        assert tool in ecosystems, tool


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_corpus_file(path: Path) -> None:
    expected = {(code, int(line)) for code, line in _EXPECT.findall(path.read_text())}
    assert findings_of(path) == expected
