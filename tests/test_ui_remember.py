"""Tab widget values kept under keys of their own (``attnviz.ui.remember``)."""

from __future__ import annotations

from attnviz.ui.remember import PREFIX, keep, recall


def test_recall_gives_the_default_until_a_value_is_kept():
    state: dict = {}
    assert recall(state, "k", "mean") == "mean"
    assert keep(state, "k", "max") == "max"
    assert recall(state, "k", "mean") == "max"
    assert state == {PREFIX + "k": "max"}  # never the widget's own key


def test_a_kept_choice_no_longer_offered_falls_back_to_the_default():
    state: dict = {}
    keep(state, "layer", "layer4.1")
    assert recall(state, "layer", "layer2.0", ["layer2.0", "layer3.0"]) == "layer2.0"
    assert recall(state, "layer", "layer2.0", ["layer4.1"]) == "layer4.1"


def test_a_kept_list_keeps_the_members_still_offered():
    state: dict = {}
    keep(state, "models", ["a", "b", "gone"])
    assert recall(state, "models", ["a"], ["a", "b", "c"]) == ["a", "b"]
    assert recall(state, "models", ["c"], ["c", "d"]) == ["c"]  # none left: the default
    keep(state, "models", [])
    assert recall(state, "models", ["c"], ["c", "d"]) == []  # cleared on purpose stays cleared
