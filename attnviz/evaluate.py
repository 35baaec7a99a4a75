"""``attnviz evaluate``: does each attention map (and each CAM) point at the object?

For every model, images with ground-truth masks (the procedural shapes, or a user's folder
with masks) go through ``analyze_batch``; every spatial map is scored against the mask with
``attnviz.localization`` and the scores are averaged over images.

Which maps, and how they are summarised (the table's "map" and "layer" columns):

- one row per spatial attention map **per stage**, taken at the stage's last layer that has
  such a map (in the bundled ResNet each stage has one block, so that is every layer). SimAM
  energy and BAM's 3-D map are averaged over channels, CBAM/SAM give their spatial mask,
  SE/CAM/CBAM channel gates give the mean of the 8 input maps they weight most ("top-8
  channels"), Non-local gives where the average query looks, STN gives its sampling
  footprint (how densely the transform samples each input pixel);
- one row per CAM method at the model's CAM layer, for the *true* class (the standard
  protocol for weakly supervised localisation: a wrong prediction should not move the map).

Channel weights alone (SE's bar chart) have no spatial layout and are not scored.
"""

from __future__ import annotations

import csv
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from attnviz.analysis import Analysis, AttentionRecord
from attnviz.errors import AttnvizError, SettingsError
from attnviz.localization import LocalizationScores, localization_scores
from attnviz.recorder import stage_of

_MODULE_TITLES = {"simam": "SimAM", "se": "SE", "cbam": "CBAM", "cam": "CAM", "sam": "SAM",
                  "bam": "BAM", "nonlocal": "Non-local", "stn": "STN", "sssa": "SSSA"}
_KIND_TITLES = {
    "energy": "energy (channel mean)",
    "spatial_mask": "spatial mask",
    "top_channels": "top-8 channels (mean)",
    "attention": "3-D map (channel mean)",
    "affinity": "affinity (mean over queries)",
    "branch_share": "local-branch share",
    "theta": "sampling footprint",
}
CSV_COLUMNS = ("model", "attention", "map", "source", "layer", "stage", "pointing_game",
               "mass_in_mask", "auc", "accuracy", "samples")


@dataclass(frozen=True)
class ScoredMap:
    """One map of one analysed image and its localisation scores."""

    name: str  # e.g. "CBAM spatial mask", "Grad-CAM"
    source: str  # "attention" or "cam"
    layer: str
    stage: int  # 0: the input (STN); -1: unknown
    map: np.ndarray = field(repr=False)
    scores: LocalizationScores | None = None


def stn_footprint(theta: np.ndarray, height: int, width: int) -> np.ndarray:
    """How many output pixels sample each input pixel under the affine ``theta`` (2,3).

    The STN "attends" to the region its grid covers; an identity transform covers the image
    evenly (a constant map), a zoom concentrates the samples on what it zooms into.
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(2, 3)
    xs = (2 * np.arange(width) + 1) / width - 1  # affine_grid, align_corners=False
    ys = (2 * np.arange(height) + 1) / height - 1
    gx, gy = np.meshgrid(xs, ys)
    src = theta @ np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    u = ((src[0] + 1) * width - 1) / 2  # back to pixel coordinates
    v = ((src[1] + 1) * height - 1) / 2
    counts, _, _ = np.histogram2d(v, u, bins=(height, width),
                                  range=((-0.5, height - 0.5), (-0.5, width - 0.5)))
    return counts


def _stage(record: AttentionRecord) -> int:
    if record.module == "stn":
        return 0
    if record.stage >= 1:
        return record.stage
    found = re.search(r"(\d+)$", record.layer)  # bam1, nonlocal3: the stage they close
    return int(found.group(1)) if found else -1


def analysis_maps(analysis: Analysis) -> list[ScoredMap]:
    """Every spatial attention map and CAM of an analysis, named for people (unscored)."""
    from attnviz.cam import CAM_TITLES

    size = analysis.model_input.shape[:2]
    maps = []
    for record in analysis.records:
        if record.kind == "resampled":
            continue  # an image, not a map of where to look
        if record.kind == "theta":
            data = stn_footprint(record.data, *size)
        else:
            data = record.spatial()
            if data is None:
                continue
        title = f"{_MODULE_TITLES.get(record.module, record.module)} " \
                f"{_KIND_TITLES.get(record.kind, record.kind)}"
        maps.append(ScoredMap(title, "attention", record.layer, _stage(record), data))
    for method, data in analysis.cams.items():
        maps.append(ScoredMap(CAM_TITLES.get(method, method), "cam", analysis.cam_layer,
                              stage_of(analysis.cam_layer), data))
    return maps


def localization_for(analysis: Analysis, mask: np.ndarray) -> list[ScoredMap]:
    """Each map of ``analysis`` scored against the object ``mask`` (H,W bool, any size).

    This is what the app shows beside a procedural sample: one entry per attention layer and
    CAM method, with pointing game, mass in mask and AUC.
    """
    return [ScoredMap(m.name, m.source, m.layer, m.stage, m.map,
                      localization_scores(m.map, mask)) for m in analysis_maps(analysis)]


def localization_rows(analysis: Analysis, mask: np.ndarray) -> list[dict[str, object]]:
    """``localization_for`` as plain rows (for a table widget): map, layer, the three scores."""
    return [{"map": m.name, "layer": m.layer, "stage": m.stage, **m.scores.as_dict()}
            for m in localization_for(analysis, mask)]


# --- the benchmark ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationConfig:
    out: Path
    models: str | Sequence[str] = "all"
    data: str = "procedural"
    masks: Path | None = None
    samples: int = 500
    seed: int = 0
    split: str = "test"
    cam_methods: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "eigencam")
    checkpoint: str | None = None
    device: str = "auto"
    batch_size: int = 100
    command: str = ""
    progress: bool = False


@dataclass(frozen=True)
class ResultRow:
    model: str
    attention: str
    map: str
    source: str
    layer: str
    stage: int
    pointing_game: float
    mass_in_mask: float
    auc: float
    accuracy: float | None
    samples: int


@dataclass
class EvaluationReport:
    rows: list[ResultRow]
    models: list[str]
    samples: int
    mask_area: float  # mean share of the image the masks cover: chance level
    csv_path: Path | None = None
    markdown_path: Path | None = None
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _model_ids(models: str | Sequence[str]) -> list[str]:
    from attnviz.bundled import bundled_ids, spec_from_card
    from attnviz.zoo import get_spec, list_specs, register

    list_specs()  # fill the zoo first: it fills itself only while empty, so register after

    if isinstance(models, str):
        if models.strip() == "all":
            ids = bundled_ids()
            if not ids:
                raise SettingsError("no bundled models found in assets/models; train them "
                                    "with `attnviz fit` or name models with --models")
            return ids
        models = [m.strip() for m in models.split(",") if m.strip()]
    ids = []
    for item in models:
        if item.endswith(".json") and Path(item).is_file():
            spec = spec_from_card(item)  # a model someone fitted: make it loadable by id
            register(spec)
            ids.append(spec.id)
        else:
            ids.append(get_spec(item).id)
    if not ids:
        raise SettingsError("--models names no model")
    return ids


def _dataset(config: EvaluationConfig, model) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       tuple[str, ...]]:
    """(images, masks, labels, class names) for one model (folder images at its input size)."""
    if config.data == "procedural":
        from attnviz.datasets.procedural import CLASS_NAMES, sample_batch

        images, masks, labels = sample_batch(config.seed, range(config.samples), config.split)
        return images, masks, labels, CLASS_NAMES
    from attnviz.datasets.folder import load_labelled

    if config.masks is None:
        raise SettingsError("evaluating a folder needs --masks (a folder of object masks)")
    split, classes = load_labelled(config.data, model.preprocessing, config.masks)
    return split.images, split.masks, split.labels, classes


def _class_index(classes: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Dataset class -> model output index by name (case-insensitive); -1 when unknown."""
    lookup = {name.lower(): i for i, name in enumerate(labels)}
    return np.asarray([lookup.get(c.lower(), -1) for c in classes], dtype=np.int64)


def _evaluate_model(model, images, masks, labels, classes, config, bar) -> tuple[
        list[ResultRow], float | None]:
    from attnviz.analysis import analyze_batch

    to_model = _class_index(classes, model.labels)
    sums: dict[tuple, list[LocalizationScores]] = defaultdict(list)
    layers: dict[tuple, str] = {}
    correct = known = 0
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        target = int(to_model[label]) if to_model[label] >= 0 else None
        for start in range(0, len(where), config.batch_size):
            chunk = where[start:start + config.batch_size]
            analyses = analyze_batch(list(images[chunk]), model,
                                     cam_methods=config.cam_methods, target=target)
            for i, analysis in zip(chunk, analyses):
                if target is not None:
                    known += 1
                    correct += int(analysis.predictions[0].index == target)
                last: dict[tuple, ScoredMap] = {}
                for m in analysis_maps(analysis):
                    last[(m.source, m.name, m.stage)] = m  # a stage's last layer wins
                for key, m in last.items():
                    sums[key].append(localization_scores(m.map, masks[i]))
                    layers[key] = m.layer
            if bar is not None:
                bar.update(len(chunk))
    accuracy = correct / known if known else None
    rows = []
    order = sorted(sums, key=lambda k: (k[0] != "attention", k[2] if k[0] == "attention" else 0,
                                        _cam_rank(k[1], config.cam_methods), k[1]))
    for key in order:
        scores = sums[key]
        rows.append(ResultRow(
            model=model.id, attention=_attention_label(model.spec), map=key[1], source=key[0],
            layer=layers[key], stage=key[2],
            pointing_game=float(np.mean([s.pointing_game for s in scores])),
            mass_in_mask=float(np.mean([s.mass_in_mask for s in scores])),
            auc=float(np.nanmean([s.auc for s in scores])) if any(
                np.isfinite(s.auc) for s in scores) else float("nan"),
            accuracy=accuracy, samples=len(scores),
        ))
    return rows, accuracy


def _cam_rank(name: str, methods: Sequence[str]) -> int:
    from attnviz.cam import CAM_TITLES

    titles = [CAM_TITLES.get(m, m) for m in methods]
    return titles.index(name) if name in titles else len(titles)


def _attention_label(spec) -> str:
    return "none" if spec.placement == "none" else spec.attention


def run_evaluation(config: EvaluationConfig) -> EvaluationReport:
    """Score every model; write ``localization.csv`` and ``localization.md`` into ``out``."""
    from tqdm import tqdm

    from attnviz.cam import normalize_method
    from attnviz.loader import load_model

    started = time.perf_counter()
    if config.samples < 1 or config.batch_size < 1:
        raise SettingsError("--samples and --batch-size must be at least 1")
    methods = tuple(normalize_method(m) for m in config.cam_methods)
    config = replace(config, cam_methods=methods)
    ids = _model_ids(config.models)
    if config.checkpoint is not None and len(ids) != 1:
        raise SettingsError("--checkpoint applies to exactly one model in --models")
    rows: list[ResultRow] = []
    failures: dict[str, str] = {}
    n_images, mask_area = 0, float("nan")
    bar = tqdm(desc="evaluating", unit="image", disable=not config.progress, mininterval=2.0)
    try:
        for model_id in ids:
            try:
                model = load_model(model_id, checkpoint=config.checkpoint, device=config.device)
                images, masks, labels, classes = _dataset(config, model)
            except SettingsError:
                raise
            except AttnvizError as exc:
                failures[model_id] = str(exc)
                bar.write(f"attnviz: {model_id}: {exc}")
                continue
            bar.total = (bar.total or 0) + len(labels)
            bar.set_postfix(model=model_id, refresh=False)
            model_rows, _ = _evaluate_model(model, images, masks, labels, classes, config, bar)
            rows += model_rows
            n_images, mask_area = len(labels), float(masks.mean())
    finally:
        bar.close()
    report = EvaluationReport(rows=rows, models=[i for i in ids if i not in failures],
                              samples=n_images, mask_area=mask_area, failures=failures,
                              seconds=time.perf_counter() - started)
    config.out.mkdir(parents=True, exist_ok=True)
    report.csv_path = write_csv(report, config.out / "localization.csv")
    report.markdown_path = write_markdown(report, config, config.out / "localization.md")
    return report


# --- writing ----------------------------------------------------------------------------------


def write_csv(report: EvaluationReport, path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for r in report.rows:
            writer.writerow([r.model, r.attention, r.map, r.source, r.layer, r.stage,
                             f"{r.pointing_game:.4f}", f"{r.mass_in_mask:.4f}", f"{r.auc:.4f}",
                             "" if r.accuracy is None else f"{r.accuracy:.4f}", r.samples])
    return path


def markdown_table(rows: Sequence[ResultRow]) -> str:
    """The results as one Markdown table, a model's accuracy shown on its first row."""
    lines = ["| model | accuracy | map | layer | pointing game | mass in mask | AUC |",
             "|---|--:|---|---|--:|--:|--:|"]
    seen = set()
    for r in rows:
        first = r.model not in seen
        seen.add(r.model)
        acc = "" if not first else ("n/a" if r.accuracy is None else f"{r.accuracy:.1%}")
        lines.append(f"| {r.model if first else ''} | {acc} | {r.map} | {r.layer} | "
                     f"{r.pointing_game:.2f} | {r.mass_in_mask:.2f} | {r.auc:.2f} |")
    return "\n".join(lines)


def summary_rows(rows: Sequence[ResultRow], cam: str = "Grad-CAM") -> list[
        tuple[str, float | None, ResultRow | None, ResultRow | None]]:
    """Per model: its attention map with the highest AUC (over all stages) and one CAM.

    The best map is chosen on the same images it is scored on, so it is an optimistic
    summary; the full table has every stage."""
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        attention = [r for r in mine if r.source == "attention" and np.isfinite(r.auc)]
        best = max(attention, default=None, key=lambda r: r.auc)
        cam_row = next((r for r in mine if r.source == "cam" and r.map == cam), None)
        out.append((model, mine[0].accuracy, best, cam_row))
    return out


def summary_table(rows: Sequence[ResultRow], cam: str = "Grad-CAM") -> str:
    """One line per model: accuracy, its best attention map and ``cam``: AUC, pointing game."""
    lines = [f"| model | accuracy | best attention map (layer) | AUC | pointing game | {cam} AUC | "
             f"{cam} pointing game |", "|---|--:|---|--:|--:|--:|--:|"]
    for model, accuracy, att, cam_row in summary_rows(rows, cam):
        acc = "n/a" if accuracy is None else f"{accuracy:.1%}"
        att_cells = (f"{att.map} ({att.layer}) | {att.auc:.2f} | {att.pointing_game:.2f}"
                     if att else "(no attention module) | | ")
        cam_cells = (f"{cam_row.auc:.2f} | {cam_row.pointing_game:.2f}" if cam_row else " | ")
        lines.append(f"| {model} | {acc} | {att_cells} | {cam_cells} |")
    return "\n".join(lines)


def write_markdown(report: EvaluationReport, config: EvaluationConfig, path: Path) -> Path:
    from attnviz.devices import resolve_device
    from attnviz.training.card import machine_description

    if config.data == "procedural":
        data = (f"{report.samples} procedural images (seed {config.seed}, split "
                f"`{config.split}`, never used in training)")
    else:
        data = f"{report.samples} images from `{config.data}` with masks from `{config.masks}`"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    device = str(resolve_device(config.device))
    text = [
        "# Where do attention maps look? Localization against ground-truth masks",
        "",
        f"Produced by `{config.command or 'attnviz.evaluate.run_evaluation'}` on {when}, "
        f"device {device}, machine: {machine_description(device)}, {report.seconds:.0f} s.",
        "",
        f"Data: {data}. The masks cover {report.mask_area:.1%} of an image on average: that "
        "is the chance level of the pointing game and of mass in mask; chance AUC is 0.50.",
        "",
        "Pointing game: share of images whose map peaks inside the object. Mass in mask: share "
        "of the map (scaled to 0..1) inside the object. AUC: the map as a per-pixel object "
        "detector. Attention maps: one row per stage, at the stage's last layer; CAMs for the "
        "true class at the CAM layer. Accuracy: top-1 on the same images.",
        "",
        "## Summary",
        "",
        "Per model, the attention map with the highest AUC over all stages (chosen on these "
        "images, so an optimistic pick) next to Grad-CAM.",
        "",
        summary_table(report.rows),
        "",
        "## Every map",
        "",
        markdown_table(report.rows),
        "",
    ]
    if report.failures:
        text += ["Models that could not be evaluated:", ""]
        text += [f"- {k}: {v}" for k, v in report.failures.items()] + [""]
    path.write_text("\n".join(text))
    return path
