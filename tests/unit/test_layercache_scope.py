"""Layer-cache scopes: the own scope from the template or the branch, fallbacks, write, invalidation periods."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from imgbuild.git import GitInfo
from imgbuild.layercache.scope import LayerScope, invalidation_period, layer_scope, period_seconds
from imgbuild.model import CachePolicy

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
FEATURE = GitInfo(sha="0123456789abcdef0123456789abcdef01234567", branch="feat/new-thing")
DETACHED = GitInfo(sha="0123456789abcdef0123456789abcdef01234567")


def policy(**kw: Any) -> CachePolicy:
    return CachePolicy(name="shared", backend="s3", bucket="b", **kw)


def test_branch_scope_then_fallback() -> None:
    p = policy(scope="{git.branch}", fallback_scopes=("main",))
    assert layer_scope(p, git=FEATURE, now=NOW, read_only=False) == LayerScope(
        write_scope="feat-new-thing", read_scopes=("feat-new-thing", "main"), period=None)


def test_on_the_fallback_branch_itself_the_scopes_are_not_repeated() -> None:
    p = policy(scope="{git.branch}", fallback_scopes=("main", "main"))
    got = layer_scope(p, git=GitInfo(branch="main"), now=NOW, read_only=False)
    assert got == LayerScope(write_scope="main", read_scopes=("main",), period=None)


def test_default_scope_is_the_branch_or_main() -> None:
    assert layer_scope(policy(), git=FEATURE, now=NOW, read_only=False).read_scopes == ("feat-new-thing",)
    assert layer_scope(policy(), git=DETACHED, now=NOW, read_only=False).read_scopes == ("main",)


def test_a_template_without_a_value_falls_back_to_the_default_scope() -> None:
    p = policy(scope="{git.branch}", fallback_scopes=("main",))
    assert layer_scope(p, git=DETACHED, now=NOW, read_only=False) == LayerScope(
        write_scope="main", read_scopes=("main",), period=None)


def test_env_placeholders_for_ci_branch_names() -> None:
    p = policy(scope="{env.CI_COMMIT_REF_SLUG}", fallback_scopes=("main", "{env.MISSING}"))
    got = layer_scope(p, git=DETACHED, now=NOW, read_only=False, environ={"CI_COMMIT_REF_SLUG": "mr-12"})
    assert got.read_scopes == ("mr-12", "main")


def test_write_false_and_read_only_runs_write_nothing() -> None:
    p = policy(scope="{git.branch}", fallback_scopes=("main",), write=False)
    assert layer_scope(p, git=FEATURE, now=NOW, read_only=False) == LayerScope(
        write_scope=None, read_scopes=("feat-new-thing", "main"), period=None)
    p = policy(scope="{git.branch}", fallback_scopes=("main",))
    assert layer_scope(p, git=FEATURE, now=NOW, read_only=True).write_scope is None


def test_invalidation_period_is_appended_to_every_scope_and_returned() -> None:
    p = policy(scope="{git.branch}", fallback_scopes=("main",), invalidate_every="7d")
    week = int(NOW.timestamp()) // (7 * 86400)
    assert layer_scope(p, git=FEATURE, now=NOW, read_only=False) == LayerScope(
        write_scope=f"feat-new-thing-7d-{week}", read_scopes=(f"feat-new-thing-7d-{week}", f"main-7d-{week}"),
        period=f"7d-{week}")


@pytest.mark.parametrize("every", ["12h", "7d", "2w"])
def test_the_period_changes_exactly_at_the_boundary(every: str) -> None:
    seconds = period_seconds(every)
    boundary = datetime.fromtimestamp((int(NOW.timestamp()) // seconds + 1) * seconds, tz=timezone.utc)
    before = invalidation_period(every, boundary - timedelta(microseconds=1))
    at = invalidation_period(every, boundary)
    assert before != at
    assert int(at.rsplit("-", 1)[1]) == int(before.rsplit("-", 1)[1]) + 1
    assert invalidation_period(every, boundary + timedelta(seconds=seconds - 1)) == at


def test_periods_are_fixed_values_from_the_epoch() -> None:
    assert invalidation_period("12h", datetime(1970, 1, 1, 11, 59, 59, tzinfo=timezone.utc)) == "12h-0"
    assert invalidation_period("12h", datetime(1970, 1, 1, 12, tzinfo=timezone.utc)) == "12h-1"
    # 2026-11-28T12:00Z = 1795867200 s; / 604800 = 2969.35
    assert invalidation_period("7d", NOW) == "7d-2969"
    assert invalidation_period("2w", NOW) == "2w-1484"
    # Another timezone, same instant, same period.
    assert invalidation_period("7d", NOW.astimezone(timezone(timedelta(hours=-8)))) == "7d-2969"


def test_period_values_are_checked() -> None:
    assert period_seconds("12h") == 43200
    assert period_seconds("2w") == 1209600
    for bad in ("0d", "7", "d", "1m", "1.5d"):
        with pytest.raises(ValueError):
            period_seconds(bad)
    with pytest.raises(ValueError):
        invalidation_period("7d", datetime(2026, 1, 1))
