"""Colour scales: per map, per layer across the batch, one global scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnviz.errors import SettingsError
from attnviz.ui.normalization import Scale, fit_scales, value_range


def _maps():
    # two photos x two layers
    return [("a", np.array([[0.0, 1.0]])), ("b", np.array([[10.0, 20.0]])),
            ("a", np.array([[2.0, 3.0]])), ("b", np.array([[5.0, 5.0]]))]


def test_per_map_leaves_each_map_to_its_own_range():
    scales = fit_scales(_maps(), "map")
    assert scales.of("a") is None and scales.of("b") is None


def test_per_layer_shares_one_range_per_layer_across_photos():
    scales = fit_scales(_maps(), "layer")
    assert scales.of("a") == Scale(0.0, 3.0)
    assert scales.of("b") == Scale(5.0, 20.0)
    assert scales.of("never seen") is None


def test_global_uses_one_range_for_everything():
    scales = fit_scales(_maps(), "global")
    assert scales.shared == Scale(0.0, 20.0)
    assert scales.of("a") == scales.of("b") == Scale(0.0, 20.0)


def test_a_flat_shared_range_falls_back_to_per_map():
    scales = fit_scales([("a", np.full((2, 2), 7.0)), ("a", np.full((2, 2), 7.0))], "layer")
    assert scales.by_group["a"] == Scale(7.0, 7.0)
    assert scales.of("a") is None


def test_value_range_ignores_non_finite_values():
    assert value_range([np.array([np.nan, 1.0, np.inf, -2.0])]) == Scale(-2.0, 1.0)
    empty = value_range([np.array([np.nan])])
    assert math.isnan(empty.lo) and not empty.usable


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(SettingsError, match="per|map, layer, global"):
        fit_scales([], "log")
