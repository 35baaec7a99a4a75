"""Downloads of a whole analysis: the ZIP bundle (per image: PNGs, raw maps, summary; plus one
manifest) and the batch CSV.

The per-image files are exactly what the CLI writes (``export.analysis_files``), so a bundle from
the app and a folder from ``attnviz analyze`` agree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from attnviz import __version__
from attnviz.analysis import Analysis
from attnviz.export import analysis_files, safe_name, zip_bundle
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


def manifest(
    named: Sequence[tuple[str, Analysis]], folders: Sequence[str], *, model: dict[str, Any],
    settings: dict[str, Any], display: Display,
) -> dict[str, Any]:
    """What a reader of the bundle needs to reproduce it: model, weights, settings, results."""
    return {
        "attnviz": __version__,
        "model": model,
        "analysis_settings": settings,
        "display": {**asdict(display), "overlays": "each PNG overlay is scaled by its own range; "
                    "maps.npz holds the raw values"},
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
    """The ZIP: one folder per image (overlays, maps.npz, summary.json) and manifest.json."""
    folders = unique_names([name for name, _ in named])
    entries = {
        folder: analysis_files(a, cmap=display.cmap, alpha=display.alpha,
                               extra={"input": name})
        for (name, a), folder in zip(named, folders)
    }
    return zip_bundle(
        entries, manifest(named, folders, model=model, settings=settings, display=display)
    )


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
