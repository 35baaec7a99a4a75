"""How much an attention map agrees with a class activation map, in two numbers.

An attention module's map and Grad-CAM answer different questions (where the module looks,
and what supports one class), so agreement is a finding, not a check. Both scores compare the
attention map, resized to the CAM's size, with the CAM pixel by pixel:

- ``correlation``: Pearson's r over all pixels,
  ``r = sum((a - mean a)(c - mean c)) / sqrt(sum((a - mean a)^2) * sum((c - mean c)^2))``.
  It ignores scale and offset, so raw SimAM energies and [0, 1] masks compare alike. It is
  undefined (NaN) when either map is constant.
- ``top_iou``: the intersection over union of the two maps' top regions. A map's top region
  is every pixel at or above its k-th largest value, with ``k = ceil(fraction * pixels)``
  (fraction 0.2: the top 20 %); ties at the threshold are all included, so a constant map's
  top region is the whole map.

Pure numpy (the resize is ``render.resize_map``, bilinear): no torch, no Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attnviz.render import resize_map

TOP_FRACTION = 0.2


@dataclass(frozen=True)
class Agreement:
    correlation: float
    top_iou: float


def _finite(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if np.isfinite(m).all():
        return m
    fill = float(np.nanmin(np.where(np.isfinite(m), m, np.nan))) if np.isfinite(m).any() else 0.0
    return np.where(np.isfinite(m), m, fill)  # non-finite pixels count as the map's minimum


def correlation(attention: np.ndarray, cam: np.ndarray) -> float:
    """Pearson's r between the attention map (resized to the CAM) and the CAM; NaN if constant."""
    a = _finite(resize_map(attention, cam.shape)).ravel()
    c = _finite(cam).ravel()
    a = a - a.mean()
    c = c - c.mean()
    denom = math.sqrt(float(a @ a) * float(c @ c))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((a @ c) / denom, -1.0, 1.0))


def top_region(values: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Boolean mask of the pixels at or above the map's k-th largest value."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = _finite(values).ravel()
    k = max(1, math.ceil(fraction * flat.size - 1e-9))
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    return (flat >= threshold).reshape(np.shape(values))


def top_iou(attention: np.ndarray, cam: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the top-``fraction`` regions of the attention map (resized) and the CAM."""
    a = top_region(resize_map(attention, cam.shape), fraction)
    c = top_region(cam, fraction)
    union = int(np.logical_or(a, c).sum())
    return float(np.logical_and(a, c).sum() / union) if union else float("nan")


def agreement(attention: np.ndarray, cam: np.ndarray, fraction: float = TOP_FRACTION) -> Agreement:
    """Both scores at once (the attention map is resized once)."""
    resized = resize_map(attention, cam.shape)
    return Agreement(correlation(resized, cam), top_iou(resized, cam, fraction))
