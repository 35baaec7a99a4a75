"""``attnviz fit`` on a tiny budget: it learns, writes a loadable checkpoint and a true card,
and an interrupted run resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.bundled import procedural_spec, spec_from_card
from attnviz.cli import main
from attnviz.datasets import CLASS_NAMES
from attnviz.errors import SettingsError
from attnviz.training import FitConfig, fit
from attnviz.training.card import sha256_of
from attnviz.training.data import ProceduralSource
from attnviz.training.fit import heldout_accuracy

TINY = ["--model", "procedural-resnet-baseline", "--steps", "250", "--batch-size", "32",
        "--lr", "0.003", "--size", "32", "--heldout", "500", "--seed", "0", "--device", "cpu",
        "--name", "tiny-baseline", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("fit")
    args = ["fit", *TINY, "--out", str(out)]
    threads = torch.get_num_threads()  # one thread: much faster on a busy shared CPU
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    card = json.loads((out / "tiny-baseline.json").read_text())
    return out, card, args


def _untrained_accuracy(size: int, n: int) -> float:
    from dataclasses import replace

    from attnviz.loader import build_architecture

    torch.manual_seed(0)
    spec = procedural_spec("procedural-resnet-baseline")
    spec = replace(spec, preprocessing=replace(spec.preprocessing, size=size))
    acc, _, _ = heldout_accuracy(build_architecture(spec), ProceduralSource(0, n),
                                 spec.preprocessing, torch.device("cpu"))
    return acc


@pytest.mark.slow
def test_tiny_fit_beats_chance(tiny_run) -> None:
    _, card, _ = tiny_run
    accuracy = card["heldout"]["accuracy"]
    chance = 1 / len(CLASS_NAMES)
    # 500 held-out images: chance accuracy has a standard deviation of 1.3 points.
    assert accuracy >= chance + 0.06, accuracy
    assert accuracy > _untrained_accuracy(32, 500) + 0.04
    assert card["heldout"]["loss"] < np.log(len(CLASS_NAMES))


@pytest.mark.slow
def test_card_matches_the_checkpoint(tiny_run) -> None:
    from attnviz.loader import load_model
    from attnviz.zoo import list_specs, register

    out, card, args = tiny_run
    weights = out / card["weights"]
    assert card["sha256"] == sha256_of(weights)
    assert card["classes"] == list(CLASS_NAMES)
    assert card["preprocessing"]["size"] == 32
    assert card["architecture"]["backbone"] == "bundled:resnet-mini"
    assert card["training"]["command"] == shlex.join(["python", "-m", "attnviz", *args])
    assert card["training"]["seed"] == 0 and card["training"]["device"] == "cpu"
    assert card["training"]["seconds"] > 0 and card["training"]["torch"] == torch.__version__
    assert not (out / "tiny-baseline.state.pt").exists()  # removed when done

    spec = spec_from_card(out / "tiny-baseline.json")
    list_specs()  # the zoo fills itself only while empty: fill it before adding to it
    register(spec)
    loaded = load_model("tiny-baseline", device="cpu")  # strict: every key must match
    assert loaded.labels == CLASS_NAMES and loaded.preprocessing.size == 32
    # The card's accuracy is what the loaded model scores on the same held-out images.
    correct = 0
    for images, labels in ProceduralSource(0, card["heldout"]["samples"]).heldout_batches(250):
        x = loaded.preprocessing.to_tensor(list(images))
        correct += int((loaded.model(x).argmax(1).numpy() == labels).sum())
    assert correct / card["heldout"]["samples"] == pytest.approx(
        card["heldout"]["accuracy"], abs=1 / 500)


def _config(out: Path, **kw) -> FitConfig:
    base = dict(model="procedural-resnet-se", out=out, steps=12, batch_size=8, size=32,
                heldout_samples=40, device="cpu", progress=False, save_every=5, command="test")
    return FitConfig(**{**base, **kw})


def test_resume_reaches_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    straight = fit(_config(tmp_path / "straight"))

    original = ProceduralSource.train_batch
    calls = {"n": 0}

    def interrupted(self, step, batch_size):
        if step == 7 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        return original(self, step, batch_size)

    monkeypatch.setattr(ProceduralSource, "train_batch", interrupted)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        fit(_config(out))
    state = out / "procedural-resnet-se.state.pt"
    assert state.is_file()
    resumed = fit(_config(out, resume=state, command="again"))
    assert resumed.card["training"]["commands"] == ["test", "again"]
    assert resumed.card["training"]["resumed"] is True

    from attnviz.checkpoints import read_state_dict

    a, b = read_state_dict(straight.weights), read_state_dict(resumed.weights)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    fit(_config(tmp_path, steps=3, keep_state=True))
    state = tmp_path / "procedural-resnet-se.state.pt"
    with pytest.raises(SettingsError, match="lr"):
        fit(_config(tmp_path, steps=4, lr=0.1, resume=state))
    more = fit(_config(tmp_path, steps=4, resume=state))  # a longer budget is allowed
    assert more.card["training"]["steps"] == 4


def test_fit_on_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from attnviz.datasets import sample

    data = tmp_path / "data"
    for i in range(24):
        s = sample(5, i)
        folder = data / ("round" if s.class_name in ("circle", "ring") else "other")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(s.image).save(folder / f"{i}.png")
    (data / "other" / "broken.png").write_bytes(b"not an image")
    result = fit(FitConfig(model="procedural-resnet-cam", out=tmp_path / "out", data=str(data),
                           steps=3, batch_size=4, device="cpu", progress=False, command="t"))
    card = result.card
    assert card["id"] == "procedural-resnet-cam-data"
    assert card["classes"] == ["other", "round"]
    assert card["data"]["kind"] == "folder" and card["data"]["skipped_files"] == 1
    assert card["data"]["train_images"] + card["data"]["heldout_images"] == 24
    assert spec_from_card(result.card_path).num_classes == 2


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["fit", "--model", "procedural-resnet-nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "procedural-resnet-se" in err
    assert main(["fit", "--model", "procedural-resnet-se", "--data", str(tmp_path / "missing"),
                 "--out", str(tmp_path)]) == 2
    assert main(["fit", "--model", "procedural-resnet-se", "--steps", "0",
                 "--out", str(tmp_path)]) == 2


def test_fine_tune_starts_from_the_cached_backbone() -> None:
    """A zoo ResNet with SE inserted takes every backbone tensor from torchvision's file."""
    import torchvision

    from attnviz.loader import build_architecture
    from attnviz.training.pretrained import initialise_from_pretrained
    from attnviz.zoo import get_spec

    base = get_spec("resnet18-se")
    cache = get_spec("resnet18").source.cache_path()  # an empty per-session cache (conftest)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), cache)
    try:
        from dataclasses import replace

        model = build_architecture(replace(base, num_classes=3))
        note = initialise_from_pretrained(base, model)
    finally:
        cache.unlink()
    own = model.state_dict()
    backbone = [k for k in reference.state_dict() if not k.startswith("fc.")]
    assert f"{len(backbone)} of {len(own)} tensors" in note
    torch.testing.assert_close(own["layer1.0.bn2.0.weight"], reference.state_dict()[
        "layer1.0.bn2.weight"])
    assert own["fc.weight"].shape == (3, 512)


@pytest.mark.slow
def test_evaluate_a_fitted_model_on_a_folder_with_masks(tiny_run, tmp_path: Path) -> None:
    """Any model, any dataset with masks: a card path as --models, a folder with --masks."""
    import csv

    from PIL import Image

    from attnviz.datasets import sample

    out, _, _ = tiny_run
    data, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(12):
        s = sample(9, i)
        for root, array in ((data, s.image), (masks, s.mask.astype(np.uint8) * 255)):
            (root / s.class_name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / s.class_name / f"{i}.png")
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--models", str(out / "tiny-baseline.json"), "--data", str(data),
                 "--masks", str(masks), "--cam", "gradcam", "--device", "cpu",
                 "--out", str(report_dir)]) == 0
    with open(report_dir / "localization.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["map"] for r in rows] == ["Grad-CAM"] and rows[0]["samples"] == "12"
    assert main(["evaluate", "--models", str(out / "tiny-baseline.json"), "--data", str(data),
                 "--out", str(report_dir)]) == 2  # a folder without masks cannot be scored
