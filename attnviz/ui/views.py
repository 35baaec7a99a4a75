"""What each tab shows, as plain data: maps with captions, tiles, tables.

Every function here turns an ``Analysis`` (numpy only) and display settings into lists of
``MapItem`` (a 2-D map and what to call it) or ``Tile`` (caption + uint8 picture) or rows for a
table, so the whole page can be tested without Streamlit and ``app.py`` only places them.
Picking maps and rendering them are separate steps because normalisation "per layer across the
batch" and "one global scale" must see the maps of every image before any is coloured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from attnviz.agreement import agreement
from attnviz.analysis import Analysis, AttentionRecord
from attnviz.cam import CAM_TITLES, throttled_progress
from attnviz.errors import SettingsError, choices_message
from attnviz.render import (
    colorbar,
    contour_overlay,
    grid,
    label_image,
    normalize,
    overlay,
    to_png_bytes,
)
from attnviz.ui.catalog import MODULE_NAMES
from attnviz.ui.normalization import Scales, fit_scales

TILE_SIDE = 320  # long side of the photo under each overlay: sharp enough, light to send
# A photo with a ground-truth mask (a 64 px procedural sample) is enlarged, pixels kept sharp,
# to at least this long side before its overlays get the object's outline drawn over them.
OUTLINE_SIDE = 256
OUTLINE_COLOR = (255, 255, 255)
OUTLINE_THICKNESS = 2  # pixels of the enlarged tile, inside the object's boundary
REDUCTIONS = {"mean": "channel mean", "max": "channel max", "channel": "one channel"}
KIND_TITLES = {  # short: they end every caption
    "energy": "energy", "spatial_mask": "mask", "attention": "BAM map",
    "branch_share": "local share", "affinity": "affinity", "top_channels": "top channels",
    "resampled": "STN output", "channel_weights": "channel weights", "theta": "STN transform",
}
# For the overview, the one record per layer that best shows where that layer looks.
_OVERVIEW_ORDER = ("spatial_mask", "energy", "attention", "branch_share", "affinity",
                   "top_channels", "resampled")


@dataclass(frozen=True)
class Display:
    """The display settings: changing them re-renders, never re-runs the network."""

    cmap: str = "jet"
    alpha: float = 0.5
    normalization: str = "map"
    stages: tuple[int, ...] | None = None  # None: every stage
    layers: tuple[str, ...] | None = None  # None: every layer (of the chosen stages)

    def shows(self, layer: str, stage: int) -> bool:
        """Whether the layer/stage filter lets a layer's maps through."""
        return ((self.stages is None or stage in self.stages)
                and (self.layers is None or layer in self.layers))


@dataclass(frozen=True, eq=False)
class MapItem:
    """A 2-D map to overlay; ``group`` is what 'per layer' normalisation shares a scale by."""

    group: str
    caption: str
    values: np.ndarray = field(repr=False)
    stage: int = -1


@dataclass(frozen=True, eq=False)
class Tile:
    caption: str
    image: np.ndarray = field(repr=False)
    flat: bool = False


# --- picking maps ------------------------------------------------------------------------


def overview_items(analysis: Analysis) -> list[MapItem]:
    """One map per attention layer (its most telling record), in network order.

    Captions name the layer path, which names its stage too (``layer3.1...``, ``blocks.4...``).
    """
    by_layer: dict[str, dict[str, AttentionRecord]] = {}
    for rec in analysis.records:
        by_layer.setdefault(rec.layer, {})[rec.kind] = rec
    items = []
    for layer, kinds in by_layer.items():
        rec = next((kinds[k] for k in _OVERVIEW_ORDER if k in kinds), None)
        if rec is None:
            continue
        values = rec.spatial()
        if values is not None:
            items.append(MapItem(layer, f"{rec.layer} · {KIND_TITLES[rec.kind]}",
                                 values, rec.stage))
    return items


def energy_records(analysis: Analysis) -> list[AttentionRecord]:
    return analysis.by_kind("energy")


def energy_items(analysis: Analysis, reduce: str = "mean", channel: int | None = None
                 ) -> tuple[list[MapItem], list[str]]:
    """SimAM energy per layer reduced over channels (or one channel); plus notes on layers left
    out because they have fewer channels than the one asked for."""
    if reduce not in REDUCTIONS:
        raise SettingsError(choices_message("channel reduction", reduce, list(REDUCTIONS)))
    items, skipped = [], []
    for rec in energy_records(analysis):
        if reduce == "channel":
            ch = int(channel or 0)
            if ch >= rec.data.shape[0]:
                skipped.append(f"{rec.layer} ({rec.data.shape[0]} channels)")
                continue
            values, what = rec.spatial(channel=ch), f"channel {ch}"
        else:
            values, what = rec.spatial(reduce=reduce), REDUCTIONS[reduce]
        items.append(MapItem(rec.layer, f"{rec.layer} · {what}", values, rec.stage))
    return items, skipped


def top_energy_channels(rec: AttentionRecord, k: int = 8) -> list[MapItem]:
    """The k channels of one layer with the highest mean energy (the neurons SimAM boosts)."""
    means = rec.data.reshape(rec.data.shape[0], -1).mean(axis=1)
    order = np.argsort(means)[::-1][: max(1, k)]
    return [MapItem(rec.layer, f"channel {int(c)} · mean energy {means[c]:.3g}", rec.data[c],
                    rec.stage) for c in order]


def mask_items(analysis: Analysis) -> list[MapItem]:
    return [MapItem(r.layer, f"{r.layer} · {r.module.upper()} mask", r.spatial(),
                    r.stage) for r in analysis.by_kind("spatial_mask")]


def weight_records(analysis: Analysis) -> list[AttentionRecord]:
    return analysis.by_kind("channel_weights")


def top_channel_items(analysis: Analysis, layer: str) -> list[MapItem]:
    """Activations of the top-weighted channels of one block, captioned with their weights."""
    rec = next((r for r in analysis.by_kind("top_channels") if r.layer == layer), None)
    if rec is None:
        return []
    weights = next((r.data for r in weight_records(analysis) if r.layer == layer), None)
    channels = rec.meta.get("channels", list(range(rec.data.shape[0])))
    items = []
    for i, ch in enumerate(channels[: rec.data.shape[0]]):
        w = f" · weight {weights[ch]:.3f}" if weights is not None else ""
        items.append(MapItem(f"{layer}#{i}", f"channel {ch}{w}", rec.data[i], rec.stage))
    return items


def timing_caption(analysis: Analysis, slow: float = 0.5) -> str:
    """How long the analysis took, naming any CAM method that cost ``slow`` seconds or more on
    its own (ScoreCAM: one forward pass per channel of the CAM layer)."""
    t = analysis.timings
    line = f"forward {t.get('forward', 0):.2f} s, CAM {t.get('cam', 0):.2f} s"
    costly = [f"{CAM_TITLES.get(k[4:], k[4:])} {v:.1f} s" for k, v in t.items()
              if k.startswith("cam:") and v >= slow]
    return line + (f" (of which {', '.join(costly)})" if costly else "")


def pass_progress(update: Callable[[float, str], None], what: str,
                  steps: int = 100) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for ``analyze`` that redraws a bar through
    ``update(fraction, text)`` at most ``steps`` times (``cam.throttled_progress``)."""
    return throttled_progress(
        lambda done, total: update(min(done / max(total, 1), 1.0),
                                   f"{what}: {done} of {total} forward passes"), steps)


def batch_hint(source: str) -> str:
    """What the Batch tab needs when it has a single image, for the image source in use: a
    procedural sample is one image by design, so the way to a batch is the Photos source."""
    rows = "one row per photo and a CSV of predictions and agreement scores"
    if source == "procedural":
        return (f"The batch runs over photos: pick Photos above the sample, then upload or "
                f"pick several, to get {rows}.")
    return f"Upload several photos (or pick several sample photos) to get {rows}."


def cam_items(analysis: Analysis) -> list[MapItem]:
    target = f"{analysis.target_label} ({analysis.target})"
    return [MapItem(f"cam:{m}", f"{CAM_TITLES.get(m, m)} · {target}", cam)
            for m, cam in analysis.cams.items()]


def batch_items(analysis: Analysis, stages: Sequence[int] | None = None) -> list[MapItem]:
    """One gallery row: the first CAM, then the first, middle and last attention maps."""
    layers = filter_stages(overview_items(analysis), stages)
    picks = [layers[i] for i in sorted({0, len(layers) // 2, len(layers) - 1})] if layers else []
    return cam_items(analysis)[:1] + picks


def lesson_item(analysis: Analysis, modules: Sequence[str], kind: str) -> MapItem | None:
    """The live map for the Learn tab: the middle layer of that module, or None if absent."""
    recs = [r for r in analysis.records if r.module in modules and r.kind == kind]
    rec = recs[len(recs) // 2] if recs else None
    values = rec.spatial() if rec is not None else None
    if values is None:
        return None
    return MapItem(rec.layer, f"live: {rec.layer}", values, rec.stage)


def module_names(analysis: Analysis) -> list[str]:
    """The attention modules an analysis recorded, by their usual names (SimAM, SE, ...)."""
    return sorted({MODULE_NAMES.get(r.module.removesuffix("-probe"), r.module)
                   for r in analysis.records})


def filter_stages(items: Sequence[MapItem], stages: Sequence[int] | None) -> list[MapItem]:
    if stages is None:
        return list(items)
    wanted = set(stages)
    return [it for it in items if it.stage in wanted]


def filter_display(items: Sequence[MapItem], display: Display) -> list[MapItem]:
    """The items whose layer and stage pass the display's layer/stage filter."""
    return [it for it in items if display.shows(it.group, it.stage)]


def layers_in(analysis: Analysis, stages: Sequence[int] | None) -> list[str]:
    """Attention layers with records, in network order, within the chosen stages."""
    wanted = None if stages is None else set(stages)
    seen: dict[str, None] = {}
    for r in analysis.records:
        if wanted is None or r.stage in wanted:
            seen.setdefault(r.layer, None)
    return list(seen)


def options_key(*parts: object) -> str:
    """A short stable key for a widget whose options change (Streamlit keeps a keyed value)."""
    import hashlib

    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def stages_of(analysis: Analysis) -> list[int]:
    return sorted({r.stage for r in analysis.records})


# --- rendering -----------------------------------------------------------------------------


def display_photo(image: np.ndarray, side: int = TILE_SIDE) -> np.ndarray:
    """The photo scaled so its long side is ``side`` (overlays need no more pixels)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def scales_for(items_per_image: Sequence[Sequence[MapItem]], mode: str) -> Scales:
    """Fit one view's scales over every image of the batch."""
    return fit_scales(((it.group, it.values) for items in items_per_image for it in items), mode)


def enlarge(photo: np.ndarray, side: int = OUTLINE_SIDE) -> np.ndarray:
    """The photo enlarged by the whole factor that brings its long side nearest to ``side``
    without going under it, by nearest neighbour: every pixel becomes a sharp square block."""
    factor = max(1, -(-side // max(photo.shape[:2])))
    if factor == 1:
        return photo
    return np.repeat(np.repeat(photo, factor, axis=0), factor, axis=1)


def draw_outline(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object's outline over a tile: the boundary pixels of ``mask`` scaled to the tile
    by nearest neighbour (``OUTLINE_THICKNESS`` pixels, drawn inside the object)."""
    return contour_overlay(picture, mask, color=OUTLINE_COLOR, thickness=OUTLINE_THICKNESS)


def render_tiles(photo: np.ndarray, items: Sequence[MapItem], scales: Scales,
                 display: Display, mask: np.ndarray | None = None) -> list[Tile]:
    """Overlay each map on the photo; captions carry the value range the colours stand for.

    With a ground-truth ``mask`` (H, W bool at the photo's aspect), a small photo is enlarged
    first (``enlarge``) and every tile gets the object's outline (``draw_outline``).
    """
    if mask is not None:
        photo = enlarge(photo)
    tiles = []
    for it in items:
        scale = scales.of(it.group)
        norm = normalize(it.values, vmin=scale.lo if scale else None,
                         vmax=scale.hi if scale else None)
        picture = overlay(photo, norm, cmap=display.cmap, alpha=display.alpha)
        if mask is not None:
            picture = draw_outline(picture, mask)
        flat = norm.flat and scale is None
        if flat:
            caption = f"{it.caption} · flat map"
        elif scales.mode == "global":
            caption = it.caption  # the colour bar says what the colours mean
        else:
            caption = f"{it.caption} · [{norm.vmin:.2g}, {norm.vmax:.2g}]"
        tiles.append(Tile(caption, picture, flat))
    return tiles


def scale_bar(scales: Scales, cmap: str, width: int = 320) -> np.ndarray | None:
    """The colour bar of the one global scale, or None in the other modes."""
    if scales.mode != "global" or scales.shared is None or not scales.shared.usable:
        return None
    return colorbar(cmap, scales.shared.lo, scales.shared.hi, width=width)


def tiles_png(tiles: Sequence[Tile], cols: int = 4, bar: np.ndarray | None = None) -> bytes:
    """One PNG of a whole view: captioned tiles in a grid, the colour bar under them."""
    if not tiles:
        raise SettingsError("nothing to export in this view")
    sheet = grid([label_image(t.image, t.caption) for t in tiles], cols=cols, pad=4)
    if bar is not None:
        sheet = grid([sheet, bar], cols=1, pad=6)
    return to_png_bytes(sheet)


# --- tables --------------------------------------------------------------------------------


def probabilities(analysis: Analysis) -> np.ndarray:
    """Softmax of the logits: the probability of every class, not only the top 5."""
    z = analysis.logits.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def reference_cam(analysis: Analysis) -> tuple[str, np.ndarray] | None:
    """The CAM that agreement is measured against: Grad-CAM when computed, else the first."""
    if not analysis.cams:
        return None
    method = "gradcam" if "gradcam" in analysis.cams else next(iter(analysis.cams))
    return method, analysis.cams[method]


def agreement_rows(analysis: Analysis) -> list[dict]:
    """Correlation and top-20 % IoU of every layer's map (as in the overview) with the CAM."""
    ref = reference_cam(analysis)
    if ref is None:
        return []
    method, cam = ref
    rows = []
    for it in overview_items(analysis):
        score = agreement(it.values, cam)
        rows.append({"layer": it.group, "map": it.caption.split(" · ")[-1],
                     "cam": CAM_TITLES.get(method, method),
                     "correlation": round(score.correlation, 4),
                     "iou_top20": round(score.top_iou, 4)})
    return rows


def compare_items(analysis: Analysis) -> list[MapItem]:
    """One Compare row: the attention map agreeing best with the CAM, the last attention map
    (where the network's attention ends up), and the CAM itself."""
    layers = overview_items(analysis)
    rows = agreement_rows(analysis)
    picks: list[MapItem] = []
    if rows:
        best = max(rows, key=lambda r: np.nan_to_num(r["correlation"], nan=-2.0))
        picks += [MapItem(it.group, f"best r = {best['correlation']:.2f} · {it.caption}",
                          it.values, it.stage) for it in layers if it.group == best["layer"]]
    if layers and (not picks or picks[0].group != layers[-1].group):
        picks.append(layers[-1])
    return picks + cam_items(analysis)[:1]


def ablation_rows(before: Analysis, after: Analysis) -> list[dict]:
    """Every class in either top-5, with its probability with and without the modules."""
    p0, p1 = probabilities(before), probabilities(after)
    seen: dict[int, str] = {}
    for p in (*before.predictions, *after.predictions):
        seen.setdefault(p.index, p.label)
    rows = [{"class": label, "index": i, "with attention": float(p0[i]),
             "switched off": float(p1[i]), "change": float(p1[i] - p0[i])}
            for i, label in seen.items()]
    return sorted(rows, key=lambda r: -r["with attention"])


def ablation_items(before: Analysis, after: Analysis) -> tuple[list[MapItem], MapItem | None]:
    """The reference CAM with and without the modules (one shared scale), and |change|."""
    ref0, ref1 = reference_cam(before), reference_cam(after)
    if ref0 is None or ref1 is None or ref0[0] != ref1[0]:
        return [], None
    title = CAM_TITLES.get(ref0[0], ref0[0])
    pair = [MapItem("cam", f"{title} with attention", ref0[1]),
            MapItem("cam", f"{title} switched off", ref1[1])]
    return pair, MapItem("cam:diff", f"|change| of {title}", np.abs(ref1[1] - ref0[1]))


def mean_agreement(rows: Sequence[dict]) -> tuple[float, float]:
    """Mean correlation and mean top-20 % IoU over layers (NaN scores left out)."""
    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return (mean([r["correlation"] for r in rows]), mean([r["iou_top20"] for r in rows]))


def batch_row(name: str, analysis: Analysis) -> dict:
    """One CSV row: the image, the model, its top-5 and each layer's agreement with the CAM."""
    row: dict = {"image": name, "model": analysis.model_id, "weights": analysis.weights,
                 "target": analysis.target_label, "target_index": analysis.target}
    for i, p in enumerate(analysis.predictions, start=1):
        row[f"top{i}"] = p.label
        row[f"top{i}_index"] = p.index
        row[f"top{i}_probability"] = round(p.probability, 6)
    rows = agreement_rows(analysis)
    if rows:
        corr, iou = mean_agreement(rows)
        row["mean_correlation"] = round(corr, 4)
        row["mean_iou_top20"] = round(iou, 4)
        for r in rows:
            row[f"correlation:{r['layer']}"] = r["correlation"]
            row[f"iou_top20:{r['layer']}"] = r["iou_top20"]
    return row


def weights_matrix(analysis: Analysis) -> tuple[list[np.ndarray], list[str]]:
    """Rows of the blocks x channels heatmap: each block's channel weights, and its label."""
    recs = weight_records(analysis)
    return [r.data for r in recs], [r.layer for r in recs]


def weights_chart_rows(rec: AttentionRecord, top_k: int) -> list[dict]:
    """Bar-chart data for one block: every channel's weight, the top-k flagged."""
    w = np.nan_to_num(rec.data.astype(np.float64))
    top = set(np.argsort(w)[::-1][:top_k].tolist())
    return [{"channel": i, "weight": float(v), "top": f"top {top_k}" if i in top else "other"}
            for i, v in enumerate(w)]
