"""Which numbers map to the ends of the colour scale: per map, per layer, or one global scale.

Per map shows each map's own structure but hides how strong it is; per layer across the
batch lets the same layer be compared between photos; one global scale lets every map on the
page be compared with every other, and is the only mode where one colour bar is true for all.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np

from attnviz.errors import SettingsError, choices_message

NORMALIZATIONS: dict[str, str] = {
    "map": "per map",
    "layer": "per layer across the batch",
    "global": "one global scale",
}


@dataclass(frozen=True)
class Scale:
    """The value range [lo, hi] stretched onto the colour map (``render.overlay``'s vmin/vmax)."""

    lo: float
    hi: float

    @property
    def usable(self) -> bool:
        """A range that can be stretched: finite and not flat."""
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi) and self.hi > self.lo)


def value_range(maps: Iterable[np.ndarray]) -> Scale:
    """The finite min and max over several maps (NaN..NaN when there is nothing finite)."""
    lo, hi = np.inf, -np.inf
    for m in maps:
        finite = np.asarray(m)[np.isfinite(m)]
        if finite.size:
            lo = min(lo, float(finite.min()))
            hi = max(hi, float(finite.max()))
    return Scale(lo, hi) if lo <= hi else Scale(float("nan"), float("nan"))


@dataclass(frozen=True)
class Scales:
    """Scales fitted to every map of one view across the batch; ``of`` picks one for a map."""

    mode: str
    by_group: dict[Hashable, Scale] = field(default_factory=dict)
    shared: Scale | None = None  # the one scale of "global" mode, for the colour bar

    def of(self, group: Hashable) -> Scale | None:
        """The fixed range for a map of this group; None: scale the map by its own range."""
        if self.mode == "global":
            scale = self.shared
        elif self.mode == "layer":
            scale = self.by_group.get(group)
        else:
            scale = None
        # A flat shared range cannot be stretched; each map then shows (and flags) its own.
        return scale if scale is not None and scale.usable else None


def fit_scales(maps: Iterable[tuple[Hashable, np.ndarray]], mode: str) -> Scales:
    """Fit the scales of one view.

    ``maps``: (group, map) for every map the view shows across the batch; the group is what
    "per layer" compares across photos (the layer name, or a method name for CAMs).
    """
    if mode not in NORMALIZATIONS:
        raise SettingsError(choices_message("normalisation", mode, list(NORMALIZATIONS)))
    items = list(maps)
    if mode == "map":
        return Scales(mode)
    if mode == "global":
        return Scales(mode, shared=value_range(m for _, m in items))
    groups: dict[Hashable, list[np.ndarray]] = {}
    for group, m in items:
        groups.setdefault(group, []).append(m)
    return Scales(mode, by_group={g: value_range(ms) for g, ms in groups.items()})
