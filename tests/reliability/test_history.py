"""The history checker finds what a system lost, doubled or invented."""

from __future__ import annotations

from tests.reliability.history import History


def test_a_history_kept_finds_nothing() -> None:
    history = History()
    for key, outcome in (("a", "ok"), ("b", "failed"), ("c", "unknown"), ("d", "unknown")):
        history.complete(history.invoke(key, "client-1"), outcome)  # type: ignore[arg-type]
    assert not history.check(["a", "c"])
    assert history.summary() == "failed 1, ok 1, unknown 2"


def test_lost_doubled_and_unexpected_keys_are_reported() -> None:
    history = History()
    for key, outcome in (("a", "ok"), ("b", "failed"), ("c", "unknown")):
        history.complete(history.invoke(key, "client-1"), outcome)  # type: ignore[arg-type]
    found = history.check(["b", "c", "c", "z"])
    assert found.lost == ["a"]
    assert found.doubled == ["c"]
    assert sorted(map(str, found.unexpected)) == ["b", "z"]
    assert "lost 1" in str(found)
