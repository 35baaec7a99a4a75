"""Your own model, end to end: a factory file plus a checkpoint, a TorchScript file, a timm name.

Each source is loaded through the Python API and analysed through the CLI; the attention the
user's network contains is found (by type or by behaviour) and its maps written like any other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz import analyze
from attnviz.checkpoints import save_safetensors
from attnviz.cli import main
from attnviz.custom import call_factory, load_custom_model, parse_factory, select_records
from attnviz.errors import SettingsError, WeightsUnavailableError

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


USER_MODEL = '''
"""A user's own network, the way people write them (this file is the user's code)."""
import torch
from torch import nn


class SELayer(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c),
                                nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.shape
        return x * self.fc(x.mean((2, 3))).view(b, c, 1, 1)


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return self.sigmoid(self.conv1(pooled))


class simam_module(nn.Module):
    def __init__(self, channels=None, e_lambda=1e-4):
        super().__init__()
        self.activaton = nn.Sigmoid()
        self.e_lambda = e_lambda

    def forward(self, x):
        b, c, h, w = x.size()
        n = w * h - 1
        d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * self.activaton(y)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.sa = SpatialAttention()

    def forward(self, x):
        out = self.bn(self.conv(x))
        return torch.relu(out * self.sa(out) + x)


class Net(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            SELayer(width), Block(width), simam_module(e_lambda=0.1),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build_model(num_classes=4, width=8):
    return Net(num_classes, width)


def build_unet():
    """Not a classifier: returns a one-channel mask."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), SELayer(8),
                         nn.Conv2d(8, 1, 1), nn.Sigmoid())


def broken(**kwargs):
    raise ValueError("the config has no key 'depth'")


def not_a_model():
    return 3
'''


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The user's model file, a checkpoint of it, labels, and a TorchScript export."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "user_model.py").write_text(USER_MODEL)
    torch.manual_seed(0)
    net = call_factory(f"{folder / 'user_model.py'}:build_model", {"num_classes": 3,
                                                                  "width": 8})
    for m in net.modules():  # trained-looking BN
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.normal_(m.bias, 0, 0.1)
    net.eval()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               folder / "net.pth")
    save_safetensors(net, folder / "net.safetensors")
    (folder / "labels.txt").write_text("cat\ndog\n\nbird\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(folder / "net_script.pt"))
    return folder, net


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTNVIZ_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "attnviz", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _expected(net, model, image=IMAGE) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net(model.preprocessing.to_tensor([image])), 1)[0]


# ----------------------------------------------------------------- factory + checkpoint


def test_factory_from_a_file_with_kwargs_and_checkpoint(user_files):
    folder, net = user_files
    model = load_custom_model(
        factory=f"{folder / 'user_model.py'}:build_model",
        factory_kwargs='{"num_classes": 3, "width": 8}', checkpoint=folder / "net.pth",
        labels=folder / "labels.txt", input_size=32, device="cpu")
    assert model.id == "custom:user_model.py:build_model"
    assert model.weights == "checkpoint net.pth" and model.labels == ("cat", "dog", "bird")
    found = {f.layer: (f.module_kind, f.how) for f in model.attention}
    assert found == {"features.3": ("se", "behaviour"), "features.4.sa": ("sam", "behaviour"),
                     "features.5": ("simam", "type")}
    assert model.cam_layer == "features"
    a = analyze(IMAGE, model)
    probs = _expected(net, model)
    assert a.predictions[0].label == model.labels[int(probs.argmax())]
    assert a.predictions[0].probability == pytest.approx(float(probs.max()), abs=1e-5)
    assert {(r.layer, r.kind) for r in a.records} == {
        ("features.3", "channel_weights"), ("features.3", "top_channels"),
        ("features.4.sa", "spatial_mask"), ("features.5", "energy")}
    assert a.cams["gradcam"].shape == (32, 32)
    only = select_records(a, ["features.5"])
    assert [r.layer for r in only.records] == ["features.5"]


def test_factory_from_a_module_path_and_a_non_classifier(user_files, monkeypatch):
    folder, _ = user_files
    monkeypatch.syspath_prepend(str(folder))
    model = load_custom_model(factory="user_model:build_unet", input_size=24, device="cpu")
    assert model.labels == ("class 0",)
    assert any("averaged over space" in n for n in model.notes)
    assert [(f.layer, f.module_kind) for f in model.attention] == [("2", "se")]
    a = analyze(IMAGE, model)
    assert a.by_kind("channel_weights") and a.predictions[0].probability == pytest.approx(1.0)


@pytest.mark.parametrize("spec, kwargs, message", [
    ("user_model.py", None, "must look like path/to/file.py:function"),
    ("{folder}/missing.py:build_model", None, "does not exist"),
    ("{folder}/user_model.py:nothing", None, "has no 'nothing'"),
    ("{folder}/user_model.py:broken", None,
     r"calling broken\(\*\*\{\}\) failed: ValueError: the config has no key 'depth' "
     r"\(at user_model.py:\d+\)"),
    ("{folder}/user_model.py:not_a_model", None, "returned int, not a torch.nn.Module"),
    ("{folder}/user_model.py:build_model", "[1, 2]", "must be a JSON object"),
    ("{folder}/user_model.py:build_model", '{"depth": 3}', "TypeError"),
])
def test_factory_mistakes_are_one_line_errors(user_files, spec, kwargs, message):
    folder, _ = user_files
    with pytest.raises(SettingsError, match=message) as info:
        load_custom_model(factory=spec.format(folder=folder), factory_kwargs=kwargs,
                          input_size=16, device="cpu")
    assert "\n" not in str(info.value)


def test_parse_factory_tells_files_from_modules():
    assert parse_factory("models/net.py:build") == ("file", "models/net.py", "build")
    assert parse_factory("pkg.models:Net.create") == ("module", "pkg.models", "Net.create")


def test_checkpoint_and_labels_must_fit(user_files):
    folder, _ = user_files
    with pytest.raises(Exception, match="do not fit the model"):
        load_custom_model(factory=f"{folder / 'user_model.py'}:build_model",
                          factory_kwargs={"width": 4}, checkpoint=folder / "net.pth",
                          input_size=16, device="cpu")
    with pytest.raises(SettingsError, match="3 label.*4 score"):
        load_custom_model(factory=f"{folder / 'user_model.py'}:build_model",
                          labels=folder / "labels.txt", input_size=16, device="cpu")


def test_cli_analyze_and_inspect_with_a_factory(user_files, tmp_path, samples):
    folder, net = user_files
    out = tmp_path / "out"
    res = run_cli("analyze", str(samples["chelsea"]), "--factory",
                  f"{folder / 'user_model.py'}:build_model",
                  "--factory-kwargs", '{"num_classes": 3, "width": 8}',
                  "--checkpoint", str(folder / "net.safetensors"), "--labels",
                  str(folder / "labels.txt"), "--input-size", "32", "--device", "cpu",
                  "--attention", "features.4.sa=none", "--out", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "chelsea" / "summary.json").read_text())
    assert summary["model"] == "custom:user_model.py:build_model"
    assert summary["top5"][0]["label"] in ("cat", "dog", "bird")
    assert {(r["layer"], r["kind"]) for r in summary["layers"]} == {
        ("features.3", "channel_weights"), ("features.3", "top_channels"),
        ("features.5", "energy")}
    pngs = {p.name for p in (out / "chelsea").glob("*.png")}
    assert {"cam_gradcam.png", "features.3_channel_weights.png",
            "features.5_energy.png"} <= pngs
    # inspect in-process: the same loader, a listing instead of files
    code = main(["inspect", "--factory", f"{folder / 'user_model.py'}:build_model",
                 "--input-size", "32", "--device", "cpu", "--json"])
    assert code == 0


def test_cli_inspect_lists_layer_kind_how_and_confidence(user_files, capsys):
    folder, _ = user_files
    assert main(["inspect", "--factory", f"{folder / 'user_model.py'}:build_model",
                 "--input-size", "32", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "features.4.sa  sam    behaviour  0.90  spatial_mask" in text
    assert "features.5     simam  type" in text
    assert main(["inspect", "--factory", f"{folder / 'user_model.py'}:build_model",
                 "--input-size", "32", "--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["attention"]
    assert {r["layer"] for r in rows} == {"features.3", "features.4.sa", "features.5"}
    assert all({"kind", "how", "confidence", "reason", "records"} <= set(r) for r in rows)


@pytest.mark.parametrize("args, fragment", [
    (["--model", "resnet18", "--factory", "x.py:f"], "--model cannot be combined"),
    (["--factory", "x.py:f", "--factory-kwargs", "{nope"], "not valid JSON"),
    (["--labels", "labels.txt"], "--labels applies only to"),
    (["--factory", "x.py:f", "--timm", "resnet18"], "exactly one of"),
])
def test_cli_custom_option_mistakes_exit_2_with_one_line(args, fragment, tmp_path, capsys):
    code = main(["analyze", str(ROOT / "assets" / "samples" / "chelsea.jpg"), *args,
                 "--out", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


# ----------------------------------------------------------------- TorchScript


def test_torchscript_file_is_opened_into_hookable_chains(user_files):
    folder, net = user_files
    model = load_custom_model(torchscript=folder / "net_script.pt", input_size=32, device="cpu")
    assert model.id == "torchscript:net_script.pt" and "weights inside" in model.weights
    # features is a Sequential (opened), features.4 a residual block (compiled, opaque)
    found = {f.layer: f.module_kind for f in model.attention}
    assert found == {"features.3": "se", "features.5": "simam"}
    assert any("features.4.sa (SpatialAttention) inside compiled features.4" in n
               for n in model.notes)
    a = analyze(IMAGE, model)
    probs = _expected(net, model)
    assert a.predictions[0].probability == pytest.approx(float(probs.max()), abs=1e-5)
    assert a.cams["gradcam"].shape == (32, 32) and a.cam_layer == "features"
    energy = a.by_kind("energy")[0]
    assert energy.layer == "features.5" and energy.data.shape == (8, 16, 16)


def test_a_traced_top_level_sequential_is_a_hookable_chain(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).eval()
    path = tmp_path / "seq.pt"
    torch.jit.save(torch.jit.trace(net, torch.randn(1, 3, 16, 16)), str(path))
    model = load_custom_model(torchscript=path, input_size=16, device="cpu")
    assert model.cam_layer != ""
    a = analyze(IMAGE, model)
    assert a.cams["gradcam"].shape == (16, 16)


def test_torchscript_upload_that_is_not_a_chain_gives_predictions_only(tmp_path):
    class TwoBranches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 3)
            self.b = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x):
            return self.fc((self.a(x) + self.b(x)).mean((2, 3)))

    path = tmp_path / "two.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TwoBranches().eval()), str(path))
    model = load_custom_model(torchscript=path.read_bytes(), torchscript_name="two.pt",
                              input_size=16, device="cpu")
    assert model.cam_layer == "" and model.attention == ()
    assert any("only predictions" in n for n in model.notes)
    a = analyze(IMAGE, model, cam_methods=())
    assert len(a.predictions) == 5 and a.cams == {}
    with pytest.raises(SettingsError, match="not a TorchScript file"):
        load_custom_model(torchscript=b"not a zip", torchscript_name="x.pt", device="cpu")


def test_cli_analyze_a_torchscript_file(user_files, tmp_path, samples):
    folder, _ = user_files
    out = tmp_path / "out"
    res = run_cli("analyze", str(samples["coffee"]), "--torchscript",
                  str(folder / "net_script.pt"), "--input-size", "32", "--only", "features.3",
                  "--device", "cpu", "--out", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "coffee" / "summary.json").read_text())
    assert summary["model"] == "torchscript:net_script.pt"
    assert {r["layer"] for r in summary["layers"]} == {"features.3"}
    assert (out / "coffee" / "cam_gradcam.png").is_file()


# ----------------------------------------------------------------- timm


def test_timm_name_with_cached_weights_api_and_cli(tmp_path, capsys, write_hub_weights):
    import timm

    from attnviz.sources import TimmSource

    torch.manual_seed(0)
    write_hub_weights(TimmSource("mobilenetv3_small_050")._repo(),
                      timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(),
                      revision="1" * 40)
    model = load_custom_model(timm_name="mobilenetv3_small_050", input_size=64, device="cpu")
    assert model.id == "timm:mobilenetv3_small_050" and "timm/mobilenetv3_small_050" in \
        model.weights
    assert len(model.labels) == 1000 and model.labels[0] == "tench"
    se = [f for f in model.attention if f.module_kind == "se"]
    assert len(se) == 9 and all(f.how == "type" and f.source == "timm" for f in se)
    a = analyze(IMAGE, model)
    assert len(a.by_kind("channel_weights")) == 9 and "gradcam" in a.cams
    out = tmp_path / "out"
    code = main(["analyze", str(ROOT / "assets" / "samples" / "chelsea.jpg"), "--timm",
                 "mobilenetv3_small_050", "--input-size", "64", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "chelsea" / "summary.json").read_text())
    assert summary["model"] == "timm:mobilenetv3_small_050"
    assert sum(r["kind"] == "channel_weights" for r in summary["layers"]) == 9


def test_timm_without_cached_weights_needs_allow_random():
    with pytest.raises(WeightsUnavailableError, match="allow random weights"):
        load_custom_model(timm_name="resnet10t", input_size=32, device="cpu")
    model = load_custom_model(timm_name="resnet10t", input_size=32, device="cpu",
                              allow_random=True, num_classes=7)
    assert model.weights.startswith("random weights") and len(model.labels) == 7
    assert any(n.startswith("RANDOM weights") for n in model.notes)
    with pytest.raises(SettingsError, match="timm has no model named 'resnet9000'"):
        load_custom_model(timm_name="resnet9000", device="cpu")
