"""The ZIP bundle and the batch CSV."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest

from attnviz import analyze
from attnviz.ui.bundle import batch_csv, bundle_zip, unique_names
from attnviz.ui.views import Display


@pytest.fixture(scope="module")
def two(default_model, samples):
    return [("chelsea.jpg", analyze(samples["chelsea"], default_model)),
            ("chelsea.jpg", analyze(samples["coffee"], default_model))]


def test_unique_folder_names():
    assert unique_names(["a.jpg", "a.png", "b c.jpg", "a"]) == ["a", "a_2", "b_c", "a_3"]


def test_bundle_holds_pngs_raw_maps_and_a_manifest(two):
    data = bundle_zip(two, model={"id": "m", "weights": "w"}, settings={"cam_methods": ["g"]},
                      display=Display(cmap="viridis", alpha=0.3, normalization="global"))
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    assert "manifest.json" in names
    for folder in ("chelsea", "chelsea_2"):
        assert f"{folder}/maps.npz" in names and f"{folder}/summary.json" in names
        assert sum(n.startswith(f"{folder}/") and n.endswith(".png") for n in names) >= 17
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["model"] == {"id": "m", "weights": "w"}
    assert manifest["display"]["cmap"] == "viridis"
    assert [i["folder"] for i in manifest["images"]] == ["chelsea", "chelsea_2"]
    assert "cat" in manifest["images"][0]["top5"][0]["label"].lower()
    maps = np.load(io.BytesIO(zf.read("chelsea/maps.npz")))
    assert "cam/gradcam" in maps.files


def test_batch_csv_has_one_row_per_image(two):
    rows = list(csv.DictReader(io.StringIO(batch_csv(two).decode())))
    assert len(rows) == 2
    assert rows[1]["top1"] == "espresso"
    assert -1 <= float(rows[0]["mean_correlation"]) <= 1
    assert any(k.startswith("iou_top20:blocks.") for k in rows[0])


def _png(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))


@pytest.mark.parametrize("mode", ["map", "layer", "global"])
def test_bundle_overlays_follow_the_apps_normalisation(two, mode):
    """Per layer, the same layer's overlays of both photos stretch over their joint range (so
    the files compare as the page did); globally, every attention overlay over one range and
    the CAMs over theirs; per map, each over its own. The manifest gives the ranges."""
    from attnviz.export import overlay_maps
    from attnviz.render import overlay

    display = Display(cmap="viridis", alpha=0.6, normalization=mode)
    zf = zipfile.ZipFile(io.BytesIO(bundle_zip(two, model={"id": "m"}, settings={},
                                               display=display)))
    manifest = json.loads(zf.read("manifest.json"))
    maps = [overlay_maps(a) for _, a in two]
    layer = two[0][1].records[0].layer
    key = f"{layer}/energy"
    both = np.concatenate([m[key].ravel() for m in maps])
    attention = np.concatenate([v.ravel() for m in maps for k, v in m.items()
                                if not k.startswith("cam/")])
    expected_range = {"map": None, "layer": (both.min(), both.max()),
                      "global": (attention.min(), attention.max())}[mode]
    ranges = manifest["display"].get("overlay_ranges", {})
    if mode == "map":
        assert ranges == {}
    else:
        got = ranges[key] if mode == "layer" else ranges["attention"]
        np.testing.assert_allclose(got, expected_range, rtol=1e-6)
        assert "cam" in ranges if mode == "global" else "cam/gradcam" in ranges
    for folder, (_, a), m in zip(("chelsea", "chelsea_2"), two, maps, strict=True):
        lo, hi = expected_range if expected_range is not None else (None, None)
        want = overlay(a.image, m[key], cmap="viridis", alpha=0.6, vmin=lo, vmax=hi)
        np.testing.assert_array_equal(_png(zf, f"{folder}/{layer}_energy.png"), want)
    # The shared scales differ from at least one photo's own range here, so that photo's
    # picture does too: the setting reached the files.
    if mode != "map":
        assert any(not np.array_equal(
            _png(zf, f"{folder}/{layer}_energy.png"),
            overlay(a.image, m[key], cmap="viridis", alpha=0.6))
            for folder, (_, a), m in zip(("chelsea", "chelsea_2"), two, maps))
