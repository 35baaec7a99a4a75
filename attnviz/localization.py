"""How well a map localises an object, given the object's pixel mask. Pure numpy.

Three complementary scores, each with a known chance level (a map with no information):

- **pointing game**: does the map's maximum fall inside the mask? 1 or 0 per image; when
  several pixels share the maximum, the share of them inside the mask (so a constant map
  scores the mask's area fraction instead of an arbitrary 0 or 1). Chance: the area fraction.
- **mass in mask**: the share of the map's mass inside the mask, after scaling the map to
  [0, 1] (min to 0, max to 1), because attention maps live on different scales (BAM's map is
  in (1, 2), SimAM's energy is unbounded) and an offset would otherwise swamp the shape.
  A constant map scores the area fraction. Chance: the area fraction.
- **AUC**: the map as a per-pixel score for "inside the mask": the probability that a random
  object pixel scores higher than a random background pixel, ties counting one half
  (Mann-Whitney U). Invariant to any increasing rescaling of the map. Chance: 0.5.

Maps are resized bilinearly to the mask's resolution first (pixel centres aligned, as in
``attnviz.render.resize_map``), since attention maps are coarser than the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from attnviz.errors import SettingsError


@dataclass(frozen=True)
class LocalizationScores:
    pointing_game: float
    mass_in_mask: float
    auc: float

    def as_dict(self) -> dict[str, float]:
        return {"pointing_game": self.pointing_game, "mass_in_mask": self.mass_in_mask,
                "auc": self.auc}


def _check(attention_map: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(attention_map, dtype=np.float64)
    k = np.asarray(mask)
    if m.ndim != 2 or k.ndim != 2 or m.size == 0 or k.size == 0:
        raise SettingsError(f"map and mask must be non-empty 2-D arrays, got shapes "
                            f"{m.shape} and {k.shape}")
    if not np.isfinite(m).all():
        raise SettingsError("the map has NaN or infinite values; it cannot be scored")
    return m, k.astype(bool)


def resize_to_mask(attention_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``shape`` (height, width), as float64."""
    m = np.asarray(attention_map, dtype=np.float64)
    if m.shape == tuple(shape):
        return m
    # PIL's float mode is 32-bit; normalise first so large or tiny values keep their precision.
    lo, span = float(m.min()), float(np.ptp(m))
    if span == 0:
        return np.full(shape, lo)
    scaled = Image.fromarray(((m - lo) / span).astype(np.float32), mode="F")
    out = np.asarray(scaled.resize((shape[1], shape[0]), Image.Resampling.BILINEAR),
                     dtype=np.float64)
    return out * span + lo


def _prepared(attention_map: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, k = _check(attention_map, mask)
    return resize_to_mask(m, k.shape), k


def pointing_game(attention_map: np.ndarray, mask: np.ndarray) -> float:
    """1.0 if the map's maximum lies in the mask, else 0.0; ties share (see module docs)."""
    return _pointing_game(*_prepared(attention_map, mask))


def mass_in_mask(attention_map: np.ndarray, mask: np.ndarray) -> float:
    """Share of the min-max scaled map's mass inside the mask (area fraction if constant)."""
    return _mass_in_mask(*_prepared(attention_map, mask))


def auc(attention_map: np.ndarray, mask: np.ndarray) -> float:
    """ROC AUC of the map as a predictor of the mask; NaN when the mask is empty or full."""
    return _auc(*_prepared(attention_map, mask))


def localization_scores(attention_map: np.ndarray, mask: np.ndarray) -> LocalizationScores:
    """All three scores of one map against one mask (the map is resized once)."""
    m, k = _prepared(attention_map, mask)
    return LocalizationScores(_pointing_game(m, k), _mass_in_mask(m, k), _auc(m, k))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, tied values sharing the mean of their ranks."""
    x = np.asarray(values).ravel()
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    counts = np.diff(np.concatenate((starts, [x.size])))
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


# --- on a map already at the mask's resolution ----------------------------------------------


def _pointing_game(m: np.ndarray, k: np.ndarray) -> float:
    peak = m == m.max()
    return float(peak[k].sum() / peak.sum())


def _mass_in_mask(m: np.ndarray, k: np.ndarray) -> float:
    span = float(np.ptp(m))
    if span == 0:
        return float(k.mean())
    scaled = (m - m.min()) / span
    return float(scaled[k].sum() / scaled.sum())


def _auc(m: np.ndarray, k: np.ndarray) -> float:
    labels = k.ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = average_ranks(m)[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
