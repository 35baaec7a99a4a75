"""Agreement scores against values worked out by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnviz.agreement import agreement, correlation, top_iou, top_region
from attnviz.render import resize_map


def test_correlation_of_proportional_maps_is_one():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert correlation(a, 2 * a + 5) == pytest.approx(1.0)
    assert correlation(a, -a) == pytest.approx(-1.0)


def test_correlation_hand_computed():
    # deviations a: -1.5 -0.5 0.5 1.5; c: -1.5 0.5 -0.5 1.5 -> sum of products 4, squares 5 and 5
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    c = np.array([[1.0, 3.0, 2.0, 4.0]])
    assert correlation(a, c) == pytest.approx(0.8)


def test_correlation_of_a_constant_map_is_undefined():
    assert math.isnan(correlation(np.ones((3, 3)), np.arange(9.0).reshape(3, 3)))


def test_top_region_takes_ceil_of_the_fraction_and_keeps_ties():
    values = np.arange(10.0)
    assert top_region(values, 0.2).nonzero()[0].tolist() == [8, 9]
    assert top_region(values, 0.15).nonzero()[0].tolist() == [8, 9]  # ceil(1.5) = 2
    tied = np.array([0.0, 5.0, 5.0, 5.0, 1.0])
    assert top_region(tied, 0.2).sum() == 3  # k = 1, but three pixels share the top value
    assert top_region(np.zeros((2, 2)), 0.2).all()


def test_top_iou_hand_computed():
    attention = np.arange(10.0).reshape(2, 5)  # top 20 %: the pixels valued 8 and 9
    cam = np.zeros((2, 5))
    cam.flat[9] = 1.0
    cam.flat[7] = 0.5  # top 20 %: positions 9 and 7 -> intersection {9}, union {7, 8, 9}
    assert top_iou(attention, cam) == pytest.approx(1 / 3)
    assert top_iou(attention, attention) == pytest.approx(1.0)


def test_attention_map_is_resized_to_the_cam():
    small = np.array([[0.0, 1.0]])
    big = resize_map(small, (2, 4))
    assert big.shape == (2, 4)
    # Pillow's bilinear with pixel centres: 0, 0.25, 0.75, 1 along the row.
    np.testing.assert_allclose(big[0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    cam = np.tile(np.array([0.0, 0.25, 0.75, 1.0]), (2, 1))
    scores = agreement(small, cam)
    assert scores.correlation == pytest.approx(1.0)
    assert scores.top_iou == pytest.approx(1.0)


def test_non_finite_pixels_do_not_poison_the_scores():
    a = np.array([[np.nan, 1.0], [2.0, 3.0]])
    c = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert math.isfinite(correlation(a, c))
    assert top_iou(a, c) == pytest.approx(1.0)


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError):
        top_region(np.ones(4), 0.0)
