"""The procedural shapes in the app: draw a gallery sample, show its true class, draw its
outline over every map and score each map against it.

The bundled ``procedural-resnet-*`` models were trained on generated shapes whose pixels are
known exactly (``attnviz.datasets.procedural``), so for them the page can do what it cannot do
for a photo: *measure* whether an attention map looks at the object. Samples come from the
``gallery`` split (never used in training); one ``(seed, index)`` always gives the same picture
and mask. The "new random draw" button walks a sequence of indices that is itself fixed by the
seed, so a class can replay a demo draw by draw.

Everything here is plain Python on numpy (no Streamlit): ``app.py`` places what it returns.
"""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from dataclasses import dataclass

import numpy as np

from attnviz.analysis import Analysis
from attnviz.bundled import PROCEDURAL_PREFIX, is_procedural
from attnviz.datasets.procedural import CLASS_NAMES, IMAGE_SIZE, sample
from attnviz.evaluate import localization_rows
from attnviz.ui import views
from attnviz.ui.catalog import BADGES, ModelChoice
from attnviz.ui.state import ImageItem, pixel_digest
from attnviz.zoo import ModelSpec

GALLERY_SPLIT = "gallery"
MAX_INDEX = 99_999
MAX_SEED = 2**31 - 1
# Session-state keys of the widgets (the draw button's callback writes the index).
SOURCE_KEY, INDEX_KEY, SEED_KEY, DRAWS_KEY = "image_source", "proc_index", "proc_seed", "proc_draws"
SOURCES = {"procedural": "A procedural sample", "photos": "Photos"}

GALLERY_NOTE = (f"Ten shapes on textured {IMAGE_SIZE}×{IMAGE_SIZE} backgrounds, from a split "
                "the models never saw in training. A seed and an index always give the same "
                "picture; its true outline is drawn over every map.")
PHOTO_NOTE = ("This model only knows ten shapes ({classes}) on textured backgrounds: for a "
              "photo its classes mean little, and its maps show attention far from home. "
              "Pick “A procedural sample” above to see it on what it was trained for.")
NO_MASK_MODEL = ("Localisation needs the object's true outline, which only the procedural shapes "
                 "have: pick a model `{prefix}…` in the sidebar, then draw a procedural sample.")
NO_MASK_SAMPLE = ("Localisation needs the object's true outline: pick “A procedural sample” "
                  "above the photo to score this model's maps.")
HIT, MISS = "✓ hit", "✗ miss"


def offered(spec: ModelSpec | None) -> bool:
    """Procedural samples are offered only for models trained on the procedural shapes."""
    return spec is not None and is_procedural(spec)


def picker_label(choice: ModelChoice) -> str:
    """The model menu's line: for a procedural model its attention first, so the nine stay
    apart where the sidebar cuts lines short ("[offline] CBAM · shapes, small ResNet")."""
    head, sep, attention = choice.title.partition(" + ")
    if not choice.id.startswith(PROCEDURAL_PREFIX) or not sep:
        return choice.label
    badge = BADGES.get(choice.availability, choice.availability)
    return f"[{badge}] {attention} · {head.removeprefix('Procedural ').strip()}"


def sample_name(seed: int, index: int) -> str:
    return f"shape {int(index)} (seed {int(seed)})"


@functools.lru_cache(maxsize=64)
def sample_item(seed: int, index: int) -> ImageItem:
    """The gallery sample ``index`` of stream ``seed`` as the page's current image, with its
    mask and true class. Keyed by its pixels like any image, so every sample has its own
    analyses; the same draw is the same object (and the same cache entry) on every rerun."""
    drawn = sample(int(seed), int(index), GALLERY_SPLIT)
    image, mask = drawn.image, drawn.mask
    image.flags.writeable = False  # shared by every session that draws it
    mask.flags.writeable = False
    h, w = image.shape[:2]
    return ImageItem(name=sample_name(seed, index), array=image, key=pixel_digest(image),
                     origin="procedural", original_size=(w, h), mask=mask,
                     true_class=drawn.class_name)


def next_index(seed: int, draw: int, avoid: int | None = None) -> int:
    """The index of the ``draw``-th random draw for ``seed``: random-looking, yet the same
    sequence every time for one seed. Never ``avoid`` (the index shown now)."""
    rng = np.random.default_rng([int(seed), int(draw), 0x5EED])
    while True:
        index = int(rng.integers(0, MAX_INDEX + 1))
        if index != avoid:
            return index


def new_draw(session: MutableMapping) -> None:
    """The draw button's callback: the next index of this seed's sequence into the input."""
    draws = int(session.get(DRAWS_KEY, 0)) + 1
    session[DRAWS_KEY] = draws
    session[INDEX_KEY] = next_index(int(session.get(SEED_KEY) or 0), draws,
                                    session.get(INDEX_KEY))


def display_photo(item: ImageItem, side: int = views.TILE_SIDE) -> np.ndarray:
    """The photo under the header and the tiles: a sample with a mask enlarged with sharp
    pixels (64 px would be a blur in the browser), any other photo as ``views`` scales it."""
    if item.mask is not None:
        return views.enlarge(item.array)
    return views.display_photo(item.array, side)


def true_index(item: ImageItem, labels) -> int | None:
    """The model's output index of the item's true class (by name), None when unknown."""
    lookup = {str(name).lower(): i for i, name in enumerate(labels)}
    return lookup.get(item.true_class.lower()) if item.true_class else None


def truth_line(item: ImageItem, analysis: Analysis, labels) -> str | None:
    """'True class: star', and whether the model got it (Markdown), for the top-5 column."""
    if not item.true_class:
        return None
    line = f"**True class: {item.true_class}**"
    top = analysis.predictions[0]
    index = true_index(item, labels)
    if index is None:
        return f"{line} — not one of this model's classes"
    if top.index == index:
        return f"{line} — the model's top-1 ✓"
    p = views.probabilities(analysis)[index] if index < analysis.logits.size else float("nan")
    return f"{line} — the model says *{top.label}* ✗ ({item.true_class}: {p:.1%})"


def photo_note(spec: ModelSpec | None, item: ImageItem) -> str | None:
    """A gentle word when a photo (no known outline) is analysed by a shapes model."""
    if not offered(spec) or item.mask is not None:
        return None
    return PHOTO_NOTE.format(classes=", ".join(CLASS_NAMES))


def no_mask_message(spec: ModelSpec | None) -> str:
    """What the Localisation view says for an image without a true outline."""
    return NO_MASK_SAMPLE if offered(spec) else NO_MASK_MODEL.format(prefix=PROCEDURAL_PREFIX)


# --- localisation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    column: str
    meaning: str
    chance: str


def chance_level(mask: np.ndarray) -> float:
    """The object's share of the image: what a map that knows nothing scores on average in
    the pointing game and in mass in mask."""
    return float(np.asarray(mask, dtype=bool).mean())


def metrics(mask: np.ndarray) -> list[Metric]:
    """One line per score: what it measures and its chance level for this mask."""
    area = f"{chance_level(mask):.0%}"
    return [
        Metric("pointing game", "a hit when the map's peak lies inside the object",
               f"{area} (the object's share of the image)"),
        Metric("mass in mask", "the share of the map (scaled to 0–1) that falls inside the "
               "object", area),
        Metric("AUC", "the map read as a pixel-by-pixel object detector: how often an object "
               "pixel scores above a background pixel (1: perfectly apart)", "0.50"),
    ]


def pointing_text(score: float) -> str:
    """Hit or miss; a map whose peak is shared by many pixels scores the share inside."""
    if score >= 1.0:
        return HIT
    if score <= 0.0:
        return MISS
    return f"peak split: {score:.0%} inside"


def localization_table(analysis: Analysis, mask: np.ndarray) -> list[dict]:
    """Table rows: every attention map (per layer) and CAM of ``analysis`` scored against
    ``mask`` (``attnviz.evaluate.localization_rows``), pointing game as hit or miss."""
    rows = []
    for r in localization_rows(analysis, mask):
        rows.append({"map": r["map"], "layer": r["layer"], "stage": r["stage"],
                     "pointing game": pointing_text(float(r["pointing_game"])),
                     "mass in mask": float(r["mass_in_mask"]), "AUC": float(r["auc"])})
    return rows


def _is_cam(row: dict, analysis: Analysis) -> bool:
    from attnviz.cam import CAM_TITLES

    titles = {CAM_TITLES.get(m, m) for m in analysis.cams}
    return row["map"] in titles and row["layer"] == analysis.cam_layer


def summary(rows: list[dict], analysis: Analysis) -> str | None:
    """One line: the attention map with the highest AUC on this image, and the first CAM."""
    attention = [r for r in rows if not _is_cam(r, analysis) and np.isfinite(r["AUC"])]
    cams = [r for r in rows if _is_cam(r, analysis)]
    parts = []
    if attention:
        best = max(attention, key=lambda r: r["AUC"])
        parts.append(f"Best attention map on this image: **{best['map']}** at `{best['layer']}` "
                     f"(AUC {best['AUC']:.2f}, {best['pointing game']})")
    if cams:
        parts.append(f"{cams[0]['map']}: AUC {cams[0]['AUC']:.2f}, {cams[0]['pointing game']}")
    return "; ".join(parts) + "." if parts else None


def compare_line(analysis: Analysis, mask: np.ndarray) -> str | None:
    """For one model of the Compare view: its best attention map's AUC and the CAM's."""
    rows = localization_table(analysis, mask)
    attention = [r["AUC"] for r in rows if not _is_cam(r, analysis) and np.isfinite(r["AUC"])]
    cams = [r for r in rows if _is_cam(r, analysis)]
    parts = []
    if attention:
        parts.append(f"best attention AUC {max(attention):.2f}")
    if cams:
        parts.append(f"{cams[0]['map']} AUC {cams[0]['AUC']:.2f}")
    return "localisation: " + ", ".join(parts) if parts else None


def cam_note(item: ImageItem, analysis: Analysis, labels) -> str | None:
    """When the CAMs explain another class than the true one, say so and how to change it
    (``attnviz evaluate`` scores CAMs for the true class)."""
    index = true_index(item, labels)
    if not analysis.cams or index is None or analysis.target == index:
        return None
    return (f"The CAMs explain *{analysis.target_label}*, not the true class "
            f"*{item.true_class}*: pick “{index} · {item.true_class}” as the target class in the "
            "sidebar to score them for the true class, as `attnviz evaluate` does.")
