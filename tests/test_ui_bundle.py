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
