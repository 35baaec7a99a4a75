"""'Your own model' in the page, end to end through Streamlit's AppTest.

A factory file (a small CNN with a third-party-style SE block and a CBAM-style spatial gate)
plus a checkpoint, and TorchScript uploads: the attention inside is listed with its kind and
confidence, a subset of layers is shown, a correction hides one, the tabs draw maps and charts.
Without ``ATTNVIZ_ALLOW_FACTORY`` no factory is offered; mistakes are one red line each.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from attnviz.checkpoints import save_safetensors
from attnviz.custom import call_factory
from attnviz.ui import custom_model

APP = Path(__file__).resolve().parents[1] / "app.py"

USER_NET = '''
"""A user's network, written the way third-party code writes attention (the user's code)."""
import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class SpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class TinyNet(nn.Module):
    def __init__(self, num_classes=3, width=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.se = SqueezeExcite(width)
        self.conv = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.gate = SpatialGate()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.gate(self.conv(self.se(self.stem(x)))))


class ScriptNet(nn.Module):
    """For TorchScript: the SE block a direct child of a Sequential, so it can be observed."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      SqueezeExcite(8), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Residual(nn.Module):
    """Not a chain of its children: TorchScript gives predictions only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc((x + self.conv(x)).mean((2, 3)))


def build_model(num_classes=3, width=8):
    return TinyNet(num_classes, width)
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The user's model file, a checkpoint of it, one that does not fit, TorchScript files."""
    folder = tmp_path_factory.mktemp("own-model")
    (folder / "user_net.py").write_text(USER_NET)
    spec = f"{folder / 'user_net.py'}:build_model"
    torch.manual_seed(0)
    net = call_factory(spec)
    save_safetensors(net, folder / "net.safetensors")
    save_safetensors(call_factory(spec, {"width": 4}), folder / "narrow.safetensors")
    module = sys.modules[type(net).__module__]  # the user's file, as imported by the factory
    scripts = {}
    for name, net in (("se_net.pt", module.ScriptNet()), ("residual.pt", module.Residual())):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(net.eval(), torch.randn(1, 3, 64, 64)), buf)
        scripts[name] = buf.getvalue()
    return folder, spec, scripts


@pytest.fixture
def allow_factory(monkeypatch):
    monkeypatch.setenv(custom_model.ALLOW_FACTORY_ENV, "1")


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def own_page(source: str, tab: str | None = None, **inputs) -> AppTest:
    """The page with 'Your own model' picked and its inputs typed in (not yet run)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["model_source"] = "own"
    at.session_state["own_source"] = source
    at.session_state["own_input_size"] = 64
    for name, value in inputs.items():
        at.session_state[f"own_{name}"] = value
    if tab is not None:
        at.session_state["tab"] = tab
    return at


def captions(at: AppTest) -> list[str]:
    return [c for img in at.main.image for c in img.captions]


def overlays(at: AppTest) -> list[str]:
    """The attention overlays shown, as 'layer · what' (their value range left out)."""
    return sorted(" · ".join(c.split(" · ")[:2]) for c in captions(at)
                  if " · " in c and not c.startswith(("chelsea", "Grad-CAM")))


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def widget(elements, label: str):
    return next(w for w in elements if w.label == label)


def found_table(at: AppTest):
    return at.sidebar.dataframe[0].value


def test_factory_with_checkpoint_lists_the_attention_shows_a_subset_and_hides_one(
        user_files, allow_factory):
    folder, spec, _ = user_files
    at = run(own_page("factory", factory=spec, factory_kwargs='{"num_classes": 3}',
                      labels="cat\ndog\nbird"))
    at.file_uploader(key="own_checkpoint:factory").set_value(
        ("net.safetensors", (folder / "net.safetensors").read_bytes(), "application/octet-stream"))
    run(at)
    assert not errors(at)
    assert any(c.value.startswith(custom_model.source_note("factory")[:30]) for c in at.caption)
    assert any("Weights:** checkpoint net.safetensors" in c.value for c in at.sidebar.caption)
    table = found_table(at)
    assert list(table["layer"]) == ["se", "gate"] and list(table["kind"]) == ["se", "sam"]
    assert list(table["found by"]) == ["behaviour", "behaviour"]
    assert (table["confidence"] >= 0.5).all()
    tops = [p.text for p in at.get("progress")]
    assert len(tops) == 3 and tops[0].split(" — ")[0].split(". ")[1] in {"cat", "dog", "bird"}
    assert overlays(at) == ["gate · mask", "se · top channels"]  # the Overview tab

    shown = widget(at.sidebar.multiselect, "Attention layers shown")
    assert shown.value == ["se", "gate"]
    shown.set_value(["gate"])
    run(at)
    assert overlays(at) == ["gate · mask"]
    widget(at.sidebar.multiselect, "Attention layers shown").set_value(["se", "gate"])
    at.session_state["tab"] = "Channel weights"
    run(at)
    assert not errors(at)
    assert len(at.get("vega_lite_chart")) == 1  # the bar chart of the SE block
    assert sum(c.startswith("channel ") and "weight" in c for c in captions(at)) == 8

    widget(at.sidebar.selectbox, "`se` read as").set_value("none")  # a correction
    at.session_state["tab"] = "Overview"
    run(at)
    assert not errors(at)
    table = found_table(at)
    assert dict(zip(table["layer"], table["kind"])) == {"se": "none", "gate": "sam"}
    assert widget(at.sidebar.multiselect, "Attention layers shown").options == ["gate"]
    assert overlays(at) == ["gate · mask"]
    widget(at.sidebar.selectbox, "`se` read as").set_value("auto")  # undone: back again
    run(at)
    assert overlays(at) == ["gate · mask", "se · top channels"]


TABS = ("Overview", "SimAM energy", "CBAM spatial mask", "Channel weights", "Grad-CAM",
        "Compare", "Ablation", "Learn", "Batch")


def test_every_tab_works_on_an_own_model(user_files, allow_factory):
    folder, spec, _ = user_files
    at = run(own_page("factory", factory=spec))
    at.file_uploader(key="own_checkpoint:factory").set_value(
        ("net.safetensors", (folder / "net.safetensors").read_bytes(), "application/octet-stream"))
    at.button_group(key="samples").set_value(["chelsea (cat)", "coffee (espresso)"])
    for tab in TABS:
        at.session_state["tab"] = tab
        run(at)
        assert not errors(at), (tab, errors(at))
    assert "CSV of predictions and agreement scores" in [b.label for b in
                                                         at.get("download_button")]
    at.session_state["tab"] = "Ablation"
    run(at)
    at.toggle(key="ablate_all").set_value(True)
    run(at)
    assert {"with attention", "switched off"} <= set(at.main.dataframe[0].value.columns)
    at.session_state["tab"] = "Compare"
    run(at)
    assert "No other model with these classes" in "\n".join(i.value for i in at.main.info)
    assert at.multiselect(key="compare_models").options == ["build_model() from user_net.py"]


def test_torchscript_uploads_show_predictions_maps_and_why_there_is_no_cam(user_files):
    _, _, scripts = user_files
    at = run(own_page("torchscript", tab="Grad-CAM"))
    assert "Upload a TorchScript file" in "\n".join(i.value for i in at.sidebar.info)
    assert any(c.value.startswith("A TorchScript file runs no Python code") for c in at.caption)
    at.file_uploader(key="own_torchscript").set_value(
        ("se_net.pt", scripts["se_net.pt"], "application/octet-stream"))
    run(at)
    assert not errors(at)
    assert list(found_table(at)["layer"]) == ["features.2"]
    assert len(at.get("progress")) == 4  # four classes: a top-4
    assert any(c.startswith("Grad-CAM · class ") for c in captions(at))
    at.session_state["tab"] = "Overview"
    run(at)
    assert overlays(at) == ["features.2 · top channels"]

    at.file_uploader(key="own_torchscript").set_value(
        ("residual.pt", scripts["residual.pt"], "application/octet-stream"))
    at.session_state["tab"] = "Grad-CAM"
    run(at)
    assert not errors(at)
    assert len(at.get("progress")) == 2
    notes = "\n".join(i.value for i in at.sidebar.info)
    assert "not a chain of its children" in notes
    assert "no layer to take a CAM at" in "\n".join(i.value for i in at.main.info)


def test_no_factory_is_offered_unless_the_server_allows_it(monkeypatch):
    monkeypatch.delenv(custom_model.ALLOW_FACTORY_ENV, raising=False)
    at = own_page("torchscript")
    run(at)
    box = at.selectbox(key="own_source")
    assert box.options == ["TorchScript file", "timm model name"]
    assert at.get("text_input") == [] or all(t.key != "own_factory" for t in at.text_input)
    assert any(custom_model.ALLOW_FACTORY_ENV in c.value for c in at.sidebar.caption)


def test_factory_mistakes_are_one_red_line_and_the_page_keeps_working(user_files,
                                                                      allow_factory):
    folder, spec, _ = user_files
    at = run(own_page("factory", factory=f"{folder / 'missing.py'}:build_model"))
    assert len(errors(at)) == 1 and "does not exist" in errors(at)[0]
    assert "No model is loaded" in at.warning[0].value

    at.text_input(key="own_factory").set_value(spec)
    at.text_input(key="own_factory_kwargs").set_value("{num_classes: 3}")
    run(at)
    assert len(errors(at)) == 1 and "not valid JSON" in errors(at)[0]

    at.text_input(key="own_factory_kwargs").set_value('{"num_classes": 3}')
    at.file_uploader(key="own_checkpoint:factory").set_value(
        ("narrow.safetensors", (folder / "narrow.safetensors").read_bytes(),
         "application/octet-stream"))
    run(at)
    assert len(errors(at)) == 1 and "narrow.safetensors" in errors(at)[0]

    at.file_uploader(key="own_checkpoint:factory").set_value(
        ("net.safetensors", (folder / "net.safetensors").read_bytes(), "application/octet-stream"))
    run(at)
    assert not errors(at) and not at.warning
    assert overlays(at) == ["gate · mask", "se · top channels"]

    # A layer detection did not report, read as something it is not: said, and undone.
    widget(at.sidebar.multiselect, "Read more layers").set_value(["stem.0"])
    run(at)
    assert list(found_table(at)["layer"]) == ["stem.0", "se", "gate"]
    widget(at.sidebar.selectbox, "`stem.0` read as").set_value("sam")
    run(at)
    assert len(errors(at)) == 1 and "cannot show layer 'stem.0' as sam" in errors(at)[0]
    assert "without your corrections" in errors(at)[0]
    assert overlays(at) == ["gate · mask", "se · top channels"]  # the model as detected
    widget(at.sidebar.selectbox, "`stem.0` read as").set_value("auto")
    run(at)
    assert not errors(at)


def test_a_timm_name_needs_cached_weights_or_says_random(monkeypatch):
    at = run(own_page("timm", timm="test_efficientnet", num_classes=5))
    assert len(errors(at)) == 1 and "allow random weights" in errors(at)[0]
    at.checkbox(key="own_allow_random").check()
    run(at)
    assert not errors(at)
    assert any(i.value.startswith("RANDOM weights") for i in at.sidebar.info)
    table = found_table(at)
    assert set(table["kind"]) == {"se"} and set(table["found by"]) == {"type"}
    assert len(at.get("progress")) == 5 and overlays(at)


def test_scorecam_shows_its_progress_while_it_runs(user_files, monkeypatch):
    """Score-CAM's many forward passes drive a progress bar: the callback the page hands the
    analysis reaches the last pass, and the bar is gone once the maps are shown."""
    from attnviz.ui import views

    _, _, scripts = user_files
    drawn: list[tuple[float, str]] = []
    make = views.pass_progress

    def recording_progress(update, what, steps=100):
        return make(lambda f, text: (drawn.append((f, text)), update(f, text)), what, steps)

    monkeypatch.setattr(views, "pass_progress", recording_progress)
    at = own_page("torchscript", tab="Grad-CAM")
    at.session_state["cam_methods"] = ["scorecam"]
    run(at)
    at.file_uploader(key="own_torchscript").set_value(
        ("se_net.pt", scripts["se_net.pt"], "application/octet-stream"))
    run(at)
    assert not errors(at)
    assert drawn and drawn[-1][0] == 1.0
    assert drawn[-1][1] == "Analysing chelsea.jpg: Score-CAM: 16 of 16 forward passes"
    assert any(c.startswith("Score-CAM · class ") for c in captions(at))
    assert len(at.get("progress")) == 4  # the top-4 bars only: Score-CAM's bar is gone
