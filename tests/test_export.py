"""An analysis as files: encoded on several threads, the same bytes as one at a time."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from attnviz import analyze
from attnviz.export import analysis_files, safe_name
from attnviz.inputs import load_image
from attnviz.render import overlay, to_png_bytes


def test_files_are_complete_ordered_and_equal_to_serial_encoding(default_model, samples):
    photo = load_image(samples["chelsea"]).array
    a = analyze(photo, default_model, cam_methods=("gradcam", "layercam"))
    files = analysis_files(a, cmap="magma", alpha=0.4, extra={"input": "chelsea.jpg"})

    expected = [f"{safe_name(f'{r.layer}_{r.kind}')}.png" for r in a.records]
    expected += ["cam_gradcam.png", "cam_layercam.png", "maps.npz", "summary.json"]
    assert list(files) == expected
    for rec in a.records:
        name = f"{safe_name(f'{rec.layer}_{rec.kind}')}.png"
        serial = to_png_bytes(overlay(photo, rec.spatial(), cmap="magma", alpha=0.4))
        assert files[name] == serial
    with Image.open(io.BytesIO(files["cam_gradcam.png"])) as im:
        assert im.size == (photo.shape[1], photo.shape[0])
    with zipfile.ZipFile(io.BytesIO(files["maps.npz"])) as z:
        assert len(z.namelist()) == len(a.records) + 2 + 1  # records, two CAMs, logits
    maps = np.load(io.BytesIO(files["maps.npz"]))
    np.testing.assert_array_equal(maps[f"{a.records[0].layer}/energy"], a.records[0].data)
    summary = json.loads(files["summary.json"])
    assert summary["input"] == "chelsea.jpg" and summary["render"]["colormap"] == "magma"
