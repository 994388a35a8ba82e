from __future__ import annotations

import pytest

from imgbuild.errors import LabelError
from imgbuild.labels import Label, Pattern, parse_patterns, select


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("//apps/api:api", "", Label("apps/api", "api")),
        ("//apps/api", "", Label("apps/api", "api")),
        ("//:root", "", Label("", "root")),
        (":api", "apps/api", Label("apps/api", "api")),
        ("//apps/web:test", "x", Label("apps/web", "test")),
    ],
)
def test_label_parse(text: str, current: str, expected: Label) -> None:
    assert Label.parse(text, current_package=current) == expected


def test_label_str_roundtrip() -> None:
    assert str(Label.parse("//apps/api")) == "//apps/api:api"


@pytest.mark.parametrize("bad", ["apps/api", "//apps/api:", "//apps//api:x", "//apps/a pi", "//:", ":"])
def test_label_rejects(bad: str) -> None:
    with pytest.raises(LabelError):
        Label.parse(bad)


LABELS = [
    Label("apps/api", "api"),
    Label("apps/web", "test"),
    Label("apps/web", "runtime"),
    Label("apps/legacy/old", "old"),
    Label("apps2/x", "x"),
    Label("base", "base"),
]


@pytest.mark.parametrize(
    ("patterns", "current", "expected"),
    [
        (["//..."], "", LABELS),
        (["//apps/..."], "", LABELS[:4]),
        (["//apps/web:all"], "", [Label("apps/web", "test"), Label("apps/web", "runtime")]),
        (["//apps/web:*"], "", [Label("apps/web", "test"), Label("apps/web", "runtime")]),
        (["//apps/api"], "", [Label("apps/api", "api")]),
        (["//... ", "-//apps/legacy/..."], "", [lb for lb in LABELS if lb.package != "apps/legacy/old"]),
        (["//apps/...", "-//apps/web:test"], "", [LABELS[0], LABELS[2], LABELS[3]]),
        ([":runtime"], "apps/web", [Label("apps/web", "runtime")]),
        (["..."], "apps", LABELS[:4]),
        (["web:all"], "apps", [Label("apps/web", "test"), Label("apps/web", "runtime")]),
        # Left to right: a later inclusion brings back what an earlier exclusion removed.
        (["//apps/...", "-//apps/web:all", "//apps/web:test"], "",
         [LABELS[0], Label("apps/web", "test"), LABELS[3]]),
    ],
)
def test_select(patterns: list[str], current: str, expected: list[Label]) -> None:
    assert select(LABELS, parse_patterns(patterns, current_package=current)) == sorted(expected)


def test_recursive_pattern_does_not_match_prefix_siblings() -> None:
    # //apps/... must not match //apps2/x
    assert Label("apps2/x", "x") not in select(LABELS, parse_patterns(["//apps/..."]))


@pytest.mark.parametrize("bad", ["//apps/...:api", "//apps/web:bad name", "", "-"])
def test_pattern_rejects(bad: str) -> None:
    with pytest.raises(LabelError):
        Pattern.parse(bad)


def test_only_exclusions_is_an_error() -> None:
    with pytest.raises(LabelError, match="only exclusions"):
        parse_patterns(["-//apps/..."])
