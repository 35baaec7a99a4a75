"""The bundled procedural models: in the zoo offline, strict to load, as accurate as their
cards say on images no training run has seen, small, and measurable by ``evaluate``."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.bundled import (
    BUNDLED_ATTENTIONS,
    PROCEDURAL_PREFIX,
    bundled_ids,
    card_paths,
    models_dir,
    procedural_spec,
)
from attnviz.datasets import CLASS_NAMES, sample, sample_batch
from attnviz.training.card import read_card, sha256_of

EXPECTED = [PROCEDURAL_PREFIX + a for a in BUNDLED_ATTENTIONS]
TEST_SEED, TEST_SAMPLES = 2024, 2000  # the "test" stream: never drawn by `fit`
MAX_BUNDLE_BYTES = 50 * 1024 * 1024


def _card(model_id: str) -> dict:
    return read_card(models_dir() / f"{model_id}.json")


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    images, _, labels = sample_batch(TEST_SEED, range(TEST_SAMPLES), "test")
    return images, labels


def test_every_bundled_model_is_in_the_zoo_and_offline() -> None:
    from attnviz.zoo import get_spec

    assert bundled_ids() == EXPECTED
    for model_id in EXPECTED:
        spec = get_spec(model_id)
        assert spec.family == "bundled" and spec.backbone == "bundled:resnet-mini"
        assert spec.labels == CLASS_NAMES and spec.preprocessing.size == 64
        assert spec.listing()["offline"] == "offline"
        assert spec.placement == ("none" if model_id.endswith("baseline") else "fitted")


def test_bundle_is_small_and_files_match_their_cards() -> None:
    files = [p for p in models_dir().iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < MAX_BUNDLE_BYTES
    assert not [p for p in files if p.name.endswith((".state.pt", ".tmp"))]
    assert len(card_paths()) == len(EXPECTED)
    for model_id in EXPECTED:
        card = _card(model_id)
        assert card["sha256"] == sha256_of(models_dir() / card["weights"])


def test_card_commands_rebuild_the_same_model() -> None:
    """Each card's command is a plain `attnviz fit` of that model into assets/models."""
    from attnviz.cli import _parser

    for model_id in EXPECTED:
        training = _card(model_id)["training"]
        argv = shlex.split(training["command"])
        assert argv[:3] == ["python", "-m", "attnviz"] and not training["resumed"]
        args = _parser().parse_args(argv[3:])
        assert (args.command, args.model, args.data) == ("fit", model_id, "procedural")
        assert args.out == Path("assets/models") and args.seed == training["seed"]


@pytest.mark.parametrize("model_id", EXPECTED)
def test_bundled_model_reaches_its_stated_accuracy(model_id: str, test_set) -> None:
    from attnviz.loader import load_model

    stated = _card(model_id)["heldout"]["accuracy"]
    assert stated >= 0.95
    model = load_model(model_id, device="cpu")  # strict: a missing or extra key fails here
    images, labels = test_set
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 500):
            x = model.preprocessing.to_tensor(list(images[start:start + 500]))
            correct += int((model.model(x).argmax(1).numpy() == labels[start:start + 500]).sum())
    accuracy = correct / len(labels)
    assert abs(accuracy - stated) <= 0.01, f"{model_id}: {accuracy:.4f} vs card {stated:.4f}"


def test_narrow_resnet_keeps_the_official_placements() -> None:
    from attnviz.bundled import build_bundled
    from attnviz.recorder import Recorder, recording

    expected = {"se": "layer4.0.bn2.1", "cbam": "layer1.0.bn2.1", "simam": "layer2.0.conv2.1",
                "bam": "bam3", "nonlocal": "nonlocal3", "stn": "stn", "sssa": "sssa3"}
    for attention, layer in expected.items():
        model = build_bundled(procedural_spec(PROCEDURAL_PREFIX + attention)).eval()
        rec = Recorder(model)
        with recording(rec), torch.no_grad():
            assert model(torch.zeros(1, 3, 64, 64)).shape == (1, len(CLASS_NAMES))
        assert layer in {r.layer for r in rec.records}, attention
    cbam = build_bundled(procedural_spec(PROCEDURAL_PREFIX + "cbam")).eval()
    rec = Recorder(cbam)
    with recording(rec), torch.no_grad():
        cbam(torch.zeros(1, 3, 64, 64))
    sides = [r.tensor.shape[-1] for r in rec.records if r.kind == "spatial_mask"]
    assert sides == [32, 16, 8, 4]  # stage 4 still has a map worth looking at


def test_localization_scores_for_one_gallery_sample() -> None:
    from attnviz.analysis import analyze
    from attnviz.evaluate import localization_for
    from attnviz.loader import load_model

    model = load_model(PROCEDURAL_PREFIX + "cbam", device="cpu")
    s = sample(0, 3, "gallery")
    analysis = analyze(s.image, model, cam_methods=["gradcam"], target=s.label)
    scored = localization_for(analysis, s.mask)
    names = {m.name for m in scored}
    assert "CBAM spatial mask" in names and "Grad-CAM" in names
    for m in scored:
        assert 0.0 <= m.scores.pointing_game <= 1.0 and 0.0 <= m.scores.mass_in_mask <= 1.0
        assert 0.0 <= m.scores.auc <= 1.0
    assert {m.stage for m in scored if m.name == "CBAM spatial mask"} == {1, 2, 3, 4}


def test_evaluate_writes_csv_and_markdown(tmp_path: Path) -> None:
    from attnviz.cli import main

    models = f"{PROCEDURAL_PREFIX}baseline,{PROCEDURAL_PREFIX}sam,{PROCEDURAL_PREFIX}stn"
    assert main(["evaluate", "--models", models, "--samples", "30", "--cam", "gradcam",
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "localization.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_model = {r["model"] for r in rows}
    assert by_model == set(models.split(","))
    sam = [r for r in rows if r["map"] == "SAM spatial mask"]
    assert sorted(int(r["stage"]) for r in sam) == [1, 2, 3, 4]
    assert any(r["map"] == "STN sampling footprint" for r in rows)
    for r in rows:
        assert r["samples"] == "30" and 0.0 <= float(r["auc"]) <= 1.0
        assert 0.0 <= float(r["accuracy"]) <= 1.0
    text = (tmp_path / "localization.md").read_text()
    assert "| model | accuracy | map |" in text and "machine:" in text
    assert main(["evaluate", "--models", "no-such-model", "--out", str(tmp_path)]) == 2
