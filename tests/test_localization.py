"""The localization scores agree with values worked out by hand on tiny maps and masks."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.errors import SettingsError
from attnviz.evaluate import stn_footprint
from attnviz.localization import (
    auc,
    average_ranks,
    localization_scores,
    mass_in_mask,
    pointing_game,
    resize_to_mask,
)

M = np.array  # short: crafted arrays read like the hand computation


def test_pointing_game_hit_miss_and_ties() -> None:
    peak = M([[0.0, 1.0], [0.0, 0.0]])
    assert pointing_game(peak, M([[0, 1], [0, 0]], bool)) == 1.0
    assert pointing_game(peak, M([[1, 0], [1, 1]], bool)) == 0.0
    # Two pixels share the maximum, one of them inside: half a hit.
    assert pointing_game(M([[1.0, 1.0], [0.0, 0.0]]), M([[1, 0], [0, 0]], bool)) == 0.5
    # A constant map carries no information: it scores the mask's area fraction.
    assert pointing_game(np.zeros((4, 4)), np.eye(4, dtype=bool)) == pytest.approx(4 / 16)


def test_mass_in_mask_scales_the_map_first() -> None:
    # min-max scaled: [[0, 1], [0.5, 0.5]], total 2; inside: 1 + 0.5.
    assert mass_in_mask(M([[0.0, 2.0], [1.0, 1.0]]), M([[0, 1], [1, 0]], bool)) == 0.75
    # An offset does not matter (BAM's map lives in (1, 2)).
    assert mass_in_mask(M([[10.0, 12.0], [11.0, 11.0]]), M([[0, 1], [1, 0]], bool)) == 0.75
    assert mass_in_mask(np.full((2, 2), 3.0), M([[1, 0], [0, 0]], bool)) == 0.25


def test_auc_rank_statistic_with_ties() -> None:
    mask = M([[0, 0, 1, 1]], bool)
    assert auc(M([[1.0, 2.0, 3.0, 4.0]]), mask) == 1.0
    assert auc(M([[4.0, 3.0, 2.0, 1.0]]), mask) == 0.0
    assert auc(np.ones((1, 4)), mask) == 0.5
    # positives {1, 3}, negatives {1, 2}: pairs 1v1 = 1/2, 1v2 = 0, 3v1 = 1, 3v2 = 1 -> 2.5/4.
    assert auc(M([[1.0, 1.0, 2.0, 3.0]]), M([[1, 0, 0, 1]], bool)) == 0.625
    assert np.isnan(auc(M([[1.0, 2.0]]), M([[0, 0]], bool)))
    assert np.isnan(auc(M([[1.0, 2.0]]), M([[1, 1]], bool)))


def test_auc_matches_scikit_learn_on_random_maps_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 6, (9, 9)).astype(float)  # many ties
        mask = rng.random((9, 9)) < 0.3
        expected = metrics.roc_auc_score(mask.ravel(), scores.ravel())
        assert auc(scores, mask) == pytest.approx(expected, abs=1e-12)


def test_average_ranks() -> None:
    np.testing.assert_array_equal(average_ranks(M([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_maps_are_resized_bilinearly_to_the_mask() -> None:
    coarse = M([[0.0, 0.0], [0.0, 1.0]])
    fine = resize_to_mask(coarse, (4, 4))
    assert fine.shape == (4, 4)
    assert fine[3, 3] == pytest.approx(1.0) and fine[0, 0] == pytest.approx(0.0)
    assert fine[1, 1] == pytest.approx(1 / 16)  # pixel centres: a quarter of the way, twice
    mask = np.zeros((4, 4), bool)
    mask[2:, 2:] = True
    scores = localization_scores(coarse, mask)
    assert scores.pointing_game == 1.0 and scores.auc == 1.0
    assert 0.5 < scores.mass_in_mask < 1.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(SettingsError):
        pointing_game(M([1.0, 2.0]), M([True, False]))
    with pytest.raises(SettingsError):
        mass_in_mask(M([[np.nan, 1.0]]), M([[True, False]]))


def test_stn_footprint() -> None:
    identity = stn_footprint(M([[1.0, 0, 0], [0, 1.0, 0]]), 8, 8)
    np.testing.assert_array_equal(identity, np.ones((8, 8)))  # every pixel sampled once
    zoom = stn_footprint(M([[0.5, 0, 0], [0, 0.5, 0]]), 8, 8)
    assert zoom.sum() == 64 and zoom[2:6, 2:6].sum() == 64  # all samples in the centre
