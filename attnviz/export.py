"""An analysis as files: PNG overlays per layer, raw maps (.npz), a JSON summary.

The CLI writes these to a folder and the app zips the same set, so both exports agree.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from attnviz.analysis import Analysis
from attnviz.charts import channel_weights_figure, figure_png
from attnviz.render import overlay, to_png_bytes

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_ENCODERS = max(1, min(8, os.cpu_count() or 1))


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "item"


def raw_maps(analysis: Analysis) -> dict[str, np.ndarray]:
    """Every record and CAM under a unique key (``layer/kind``, ``cam/method``)."""
    arrays: dict[str, np.ndarray] = {}
    for rec in analysis.records:
        arrays[f"{rec.layer}/{rec.kind}"] = rec.data
        if "channels" in rec.meta:
            arrays[f"{rec.layer}/{rec.kind}_channels"] = np.asarray(rec.meta["channels"])
    for method, cam in analysis.cams.items():
        arrays[f"cam/{method}"] = cam
    arrays["logits"] = analysis.logits
    return arrays


def npz_bytes(analysis: Analysis) -> bytes:
    """A compressed ``.npz`` (``np.load`` reads it) written with fast deflate.

    ``np.savez_compressed`` deflates at zlib's default level; level 1 takes half the time
    for files 7% larger, and raw maps of a 16-layer model are several MB.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, value in raw_maps(analysis).items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def analysis_files(
    analysis: Analysis,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    extra: dict[str, Any] | None = None,
) -> dict[str, bytes]:
    """File name -> content for one analysis (PNG overlays, maps.npz, summary.json).

    Encoding dominates a batch export (about 0.35 s per image for the default model, against
    25 ms for its analysis); PNG and deflate encoders release the GIL, so the overlays and the
    maps are encoded on a thread per core. Matplotlib figures stay on the calling thread.
    """
    image = analysis.image
    jobs: dict[str, Callable[[], bytes] | bytes] = {}

    def overlay_png(values: np.ndarray) -> Callable[[], bytes]:
        return lambda: to_png_bytes(overlay(image, values, cmap=cmap, alpha=alpha))

    for rec in analysis.records:
        base = safe_name(f"{rec.layer}_{rec.kind}")
        if rec.kind == "channel_weights":
            fig = channel_weights_figure(rec.data, title=f"{rec.layer} channel weights")
            jobs[f"{base}.png"] = figure_png(fig)
            continue
        spatial = rec.spatial()
        if spatial is not None:
            jobs[f"{base}.png"] = overlay_png(spatial)
    for method, cam in analysis.cams.items():
        jobs[f"cam_{safe_name(method)}.png"] = overlay_png(cam)
    jobs["maps.npz"] = lambda: npz_bytes(analysis)
    with ThreadPoolExecutor(max_workers=min(_ENCODERS, len(jobs))) as pool:
        pending = {name: job if isinstance(job, bytes) else pool.submit(job)
                   for name, job in jobs.items()}
        files = {name: done if isinstance(done, bytes) else done.result()
                 for name, done in pending.items()}
    summary = analysis.summary()
    summary["render"] = {"colormap": cmap, "alpha": alpha}
    if extra:
        summary.update(extra)
    files["summary.json"] = json.dumps(summary, indent=2).encode()
    return files


def write_analysis(analysis: Analysis, folder: Path, **kwargs: Any) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in analysis_files(analysis, **kwargs).items():
        path = folder / name
        path.write_bytes(content)
        written.append(path)
    return written


def zip_bundle(entries: dict[str, dict[str, bytes]], manifest: dict[str, Any]) -> bytes:
    """A ZIP of several analyses (folder per image) plus a top-level manifest.json."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder, files in entries.items():
            for name, content in files.items():
                zf.writestr(f"{safe_name(folder)}/{name}", content)
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    return buf.getvalue()
