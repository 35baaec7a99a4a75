"""Downloads of a whole analysis: the ZIP bundle (per image: PNGs, raw maps, summary; plus one
manifest) and the batch CSV.

The per-image files are exactly what the CLI writes (``export.analysis_files``), so a bundle from
the app and a folder from ``attnviz analyze`` agree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from attnviz import __version__
from attnviz.analysis import Analysis
from attnviz.export import analysis_files, is_cam_key, overlay_maps, safe_name, zip_bundle
from attnviz.ui.normalization import NORMALIZATIONS, Scales, fit_scales
from attnviz.ui.views import Display, batch_row


def unique_names(names: Sequence[str]) -> list[str]:
    """Folder names safe for a ZIP and distinct even when two uploads share a file name."""
    used: set[str] = set()
    out = []
    for name in names:
        stem = safe_name(name.rsplit(".", 1)[0] if "." in name else name)
        candidate, n = stem, 1
        while candidate in used:
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate)
        out.append(candidate)
    return out


_OVERLAY_SCALES = {
    "map": "each PNG overlay is scaled by its own range",
    "layer": "the PNG overlays of one record (layer and kind) or of one CAM method share one "
             "range across the images of this bundle (overlay_ranges)",
    "global": "the attention overlays share one range, the CAM overlays another "
              "(overlay_ranges)",
}


@dataclass(frozen=True)
class OverlayScales:
    """The app's normalisation applied to a bundle's overlays, fitted over every image by the
    groups the files are named by (``export.overlay_maps``). CAMs get scales of their own: the
    package has already scaled them to [0, 1], and on one scale with raw attention values
    (SimAM energies run to the hundreds) they would come out blank."""

    attention: Scales
    cams: Scales

    def range_of(self, key: str) -> tuple[float, float] | None:
        scale = (self.cams if is_cam_key(key) else self.attention).of(key)
        return (scale.lo, scale.hi) if scale is not None else None

    def ranges(self) -> dict[str, list[float]]:
        """The fitted ranges, for the manifest (empty per map)."""
        out: dict[str, list[float]] = {}
        for name, scales in (("attention", self.attention), ("cam", self.cams)):
            if scales.shared is not None and scales.shared.usable:
                out[name] = [scales.shared.lo, scales.shared.hi]
            out.update({str(k): [v.lo, v.hi] for k, v in scales.by_group.items() if v.usable})
        return out


def overlay_scales(per_image: Sequence[dict[str, np.ndarray]], mode: str) -> OverlayScales:
    """Fit the scales over each image's ``export.overlay_maps``."""
    maps = [(key, values) for image_maps in per_image for key, values in image_maps.items()]
    return OverlayScales(
        attention=fit_scales(((k, v) for k, v in maps if not is_cam_key(k)), mode),
        cams=fit_scales(((k, v) for k, v in maps if is_cam_key(k)), mode),
    )


def manifest(
    named: Sequence[tuple[str, Analysis]], folders: Sequence[str], *, model: dict[str, Any],
    settings: dict[str, Any], display: Display, scales: OverlayScales | None = None,
) -> dict[str, Any]:
    """What a reader of the bundle needs to reproduce it: model, weights, settings, results."""
    if scales is None:
        scales = overlay_scales([overlay_maps(a) for _, a in named], display.normalization)
    ranges = scales.ranges()
    return {
        "attnviz": __version__,
        "model": model,
        "analysis_settings": settings,
        "display": {**asdict(display),
                    "normalization_title": NORMALIZATIONS[display.normalization],
                    "overlays": _OVERLAY_SCALES[display.normalization]
                    + "; maps.npz holds the raw values",
                    **({"overlay_ranges": ranges} if ranges else {})},
        "images": [
            {"name": name, "folder": folder, "weights": a.weights, "device": a.device,
             "top5": [{"index": p.index, "label": p.label, "probability": p.probability}
                      for p in a.predictions],
             "target": {"index": a.target, "label": a.target_label}}
            for (name, a), folder in zip(named, folders)
        ],
    }


def bundle_zip(
    named: Sequence[tuple[str, Analysis]], *, model: dict[str, Any], settings: dict[str, Any],
    display: Display,
) -> bytes:
    """The ZIP: one folder per image (overlays, maps.npz, summary.json) and manifest.json.

    The overlays follow the app's normalisation: per map, per layer across the images, or one
    global scale, so that the files compare as the page did."""
    folders = unique_names([name for name, _ in named])
    maps = [overlay_maps(a) for _, a in named]  # once: the scales and the files both need them
    scales = overlay_scales(maps, display.normalization)
    entries = {
        folder: analysis_files(a, cmap=display.cmap, alpha=display.alpha,
                               extra={"input": name}, range_of=scales.range_of, maps=m)
        for (name, a), folder, m in zip(named, folders, maps)
    }
    return zip_bundle(entries, manifest(named, folders, model=model, settings=settings,
                                        display=display, scales=scales))


def batch_csv(named: Sequence[tuple[str, Analysis]]) -> bytes:
    """One row per image: top-5 with probabilities and each layer's agreement with the CAM."""
    rows = [batch_row(name, a) for name, a in named]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()
