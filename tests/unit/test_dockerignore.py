"""Docker's .dockerignore rules: expected verdicts from docs.docker.com and moby/patternmatcher."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgbuild.dockerignore import DockerignoreError, IgnoreRules, go_clean, load_rules


def rules(*lines: str) -> IgnoreRules:
    return IgnoreRules.parse("\n".join(lines))


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # Anchored at the context root, unlike gitignore.
        (["foo"], "foo", True),
        (["foo"], "a/foo", False),
        (["foo"], "foobar", False),
        (["*.md"], "a.md", True),
        (["*.md"], "docs/a.md", False),
        # The docs' table.
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/temp", True),
        (["*/temp*"], "temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["*/*/temp*"], "somedir/temporary.txt", False),
        (["temp?"], "tempa", True),
        (["temp?"], "temp", False),
        (["temp?"], "tempab", False),
        # A matching directory excludes everything below it.
        (["foo"], "foo/bar/baz.txt", True),
        (["*/build"], "app/build/out/x.o", True),
        # Leading and trailing slashes, . and .. are cleaned away.
        (["/foo/bar"], "foo/bar", True),
        (["/foo/bar/"], "foo/bar/x", True),
        (["foo//bar"], "foo/bar", True),
        (["./foo/../bar"], "bar", True),
        (["."], "anything", False),
        # ** matches any number of directories, including none.
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "a/b/main.go", True),
        (["**/*.go"], "a/main.goo", False),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["a/**/b"], "ab", False),
        (["foo/**"], "foo/x/y", True),
        (["foo/**"], "foo", False),
        (["**/foo"], "foo", True),
        (["**/foo"], "x/y/foo", True),
        (["**/foo"], "x/barfoo", False),
        (["**foo"], "x/barfoo", True),  # moby: a leading ** makes a plain suffix test
        (["**"], "any/thing", True),
        # Classes and escapes are filepath.Match's: ^ negates, ! is an ordinary character.
        (["[a-c]x"], "bx", True),
        (["[a-c]x"], "dx", False),
        (["[^a-c]x"], "dx", True),
        (["[^a-c]x"], "ax", False),
        (["[!a]x"], "!x", True),
        (["[!a]x"], "bx", False),
        (["\\*x"], "*x", True),
        (["\\*x"], "ax", False),
        (["a.b"], "axb", False),
        (["?"], "a/b", True),  # via its parent "a"
        # ! exceptions: the last pattern that applies wins.
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        (["node_modules", "!node_modules/keep"], "node_modules/a/b.js", True),
        (["node_modules", "!node_modules/keep"], "node_modules/keep/b.js", False),
        (["*", "!src/**/*.py"], "src/a/b.py", False),
        (["*", "!src/**/*.py"], "docs/a.py", True),
        (["*", "!src"], "src/x", False),
        (["!foo", "foo"], "foo", True),
        # BuildKit's walk carries a pattern down only from a directory where it was evaluated:
        # "!a" is skipped at "a" (nothing excluded yet), so it does not re-include a/c.
        (["a/c", "!a"], "a/c", True),
        (["a/c", "!a"], "a", False),
    ],
)
def test_excluded(patterns: list[str], path: str, excluded: bool) -> None:
    assert rules(*patterns).excluded(path) is excluded


def test_reading_comments_whitespace_bom_and_normalized_text() -> None:
    text = "\ufeff# comment\n\n   \n  /foo/bar/  \r\n!  /keep//me\n  # not a comment\n\t*.log\n"
    r = IgnoreRules.parse(text)
    assert r.text == "foo/bar\n!keep/me\n# not a comment\n*.log\n"
    assert r.excluded("# not a comment")
    assert not r.excluded("comment")
    assert IgnoreRules.parse("").text == "" and not IgnoreRules().excluded("x")


def test_equal_after_cleaning_means_equal_text() -> None:
    assert rules("/a/b/", "!c").text == rules("a//b", "! ./c").text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("!", "illegal exclusion"),
        ("  !  ", "illegal exclusion"),
        ("[", "unterminated"),
        ("a[b", "unterminated"),
        ("[]", "unterminated"),
        ("[a-]", "unterminated"),
        ("[z-a]", "range"),
        ("a\\", "trailing"),
        ("\\d", "escape"),  # Docker: an RE2 digit class
        ("[*]", "mistranslates"),
        ("[[:alpha:]]", "POSIX"),
    ],
)
def test_bad_patterns_are_located_errors(line: str, message: str) -> None:
    with pytest.raises(DockerignoreError) as exc:
        IgnoreRules.parse(f"ok\n{line}\n", source="ctx/.dockerignore")
    assert message in str(exc.value)
    assert exc.value.render().startswith("error: ctx/.dockerignore:2:")


@pytest.mark.parametrize(
    ("patterns", "reldir", "expected"),
    [
        (["dist"], "dist", False),
        (["dist", "!dist/keep.txt"], "dist", True),
        (["dist", "!dist/keep.txt"], "dist/sub", False),
        (["dist", "!dist"], "dist", False),
        (["build", "!*.md"], "build", False),  # *.md only matches at the root
        (["build", "!*/*.md"], "build", True),
        (["build", "!*/*.md"], "build/sub", False),
        (["build", "!*/*"], "build/sub", False),  # two segments: nothing strictly below build/sub
        (["build", "!src/*.md"], "build", False),
        (["x", "!**/keep"], "x/y/z", True),
        (["x", "!x/**"], "x/y", True),
        (["x", "!xy/**"], "x", False),
        (["x", "![a-x]/k"], "x", True),
    ],
)
def test_may_reinclude_under(patterns: list[str], reldir: str, expected: bool) -> None:
    assert rules(*patterns).may_reinclude_under(reldir) is expected


_PARTS = ["a", "b", "ab", "*", "?", "**", "a*", "*b", "[ab]", "[^a]b"]
_pattern = st.builds(
    lambda neg, parts: ("!" if neg else "") + "/".join(parts),
    st.booleans(),
    st.lists(st.sampled_from(_PARTS), min_size=1, max_size=3),
)
_NAMES = ["a", "b", "ab", "ba"]
_UNIVERSE = [
    "/".join(p)
    for n in (1, 2, 3, 4)
    for p in itertools.product(_NAMES, repeat=n)
]


@settings(max_examples=250, deadline=None)
@given(patterns=st.lists(_pattern, min_size=1, max_size=4))
def test_skipping_a_dir_never_loses_a_reincluded_file(patterns: list[str]) -> None:
    """Every directory the walker may skip has nothing re-included below it (over all paths to depth 4)."""
    r = rules(*patterns)
    excluded = {p: r.excluded(p) for p in _UNIVERSE}
    for d in _UNIVERSE:
        if excluded[d] and not r.may_reinclude_under(d):
            lost = [p for p in _UNIVERSE if p.startswith(d + "/") and not excluded[p]]
            assert not lost, (d, lost)


@pytest.mark.parametrize(
    ("path", "clean"),
    [("", "."), ("a//b/", "a/b"), ("./a/./b", "a/b"), ("a/../..", ".."), ("/../a", "/a"), ("//a", "/a"), ("!../..", ".")],
)
def test_go_clean(path: str, clean: str) -> None:
    assert go_clean(path) == clean


def test_dockerfile_specific_ignore_file_takes_precedence(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / ".dockerignore").write_text("from-root\n")
    (tmp_path / "docker" / "Dockerfile.api.dockerignore").write_text("from-api\n")
    assert load_rules(tmp_path, tmp_path / "docker" / "Dockerfile.api").text == "from-api\n"
    assert load_rules(tmp_path, tmp_path / "docker" / "Dockerfile.web").text == "from-root\n"
    (tmp_path / ".dockerignore").unlink()
    assert load_rules(tmp_path, tmp_path / "docker" / "Dockerfile.web").text == ""


def test_load_rules_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n[\n")
    with pytest.raises(DockerignoreError) as exc:
        load_rules(tmp_path, tmp_path / "Dockerfile")
    assert f"{tmp_path / '.dockerignore'}:2:" in exc.value.render()
