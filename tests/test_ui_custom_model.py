"""'Your own model' logic of the app, without Streamlit: keys, corrections, rows, loading."""

from __future__ import annotations

import io
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnviz.checkpoints import save_safetensors
from attnviz.custom import call_factory
from attnviz.errors import CheckpointError, SettingsError
from attnviz.ui import custom_model as cm
from attnviz.ui import state
from attnviz.ui.catalog import ModelChoice

ALLOW = {cm.ALLOW_FACTORY_ENV: "1"}

NET = '''
import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]


def build(num_classes=3, width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), Gate(width),
                         nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own-unit") / "net.py"
    path.write_text(NET)
    return path


@pytest.fixture
def allowed(monkeypatch):
    monkeypatch.setenv(cm.ALLOW_FACTORY_ENV, "1")


def factory_inputs(net_file, **fields) -> cm.OwnInputs:
    return cm.OwnInputs("factory", factory=f"{net_file}:build", input_size=32, **fields)


def loaded(net_file, overrides=None):
    key = cm.make_key(factory_inputs(net_file), "cpu", environ=ALLOW)
    return cm.load(key.with_corrections(overrides), None, environ=ALLOW)


# --- the server's switch and what each source runs -----------------------------------------


@pytest.mark.parametrize("value, allowed_", [
    ("1", True), ("true", True), (" YES ", True), ("on", True), ("0", False), ("", False),
    ("no", False), (None, False)])
def test_factories_are_off_unless_the_server_turns_them_on(value, allowed_):
    env = {} if value is None else {cm.ALLOW_FACTORY_ENV: value}
    assert cm.factory_allowed(env) is allowed_
    assert ("factory" in cm.source_options(cm.factory_allowed(env))) is allowed_


def test_each_source_says_what_it_runs():
    assert cm.source_note("factory").startswith("**Runs code on this server.** A factory runs "
                                                "your Python code")
    assert "never an uploaded file" in cm.source_note("factory")
    assert cm.source_note("torchscript").startswith("A TorchScript file runs no Python code")
    assert "no user code" in cm.source_note("timm")
    assert "never runs code" in cm.source_note("checkpoint")
    assert cm.ALLOW_FACTORY_ENV in cm.FACTORY_OFF


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", [
    cm.OwnInputs("factory", factory="  "), cm.OwnInputs("timm", timm_name=""),
    cm.OwnInputs("torchscript")])
def test_no_key_while_the_source_is_not_filled_in(inputs):
    assert cm.make_key(inputs, "cpu", environ=ALLOW) is None
    assert cm.waiting_message(inputs.source)


@pytest.mark.parametrize("fields, message", [
    ({"factory": "net.py"}, "must look like path/to/file.py:function"),
    ({"factory": "x.py:build", "factory_kwargs": "{num_classes: 3}"}, "not valid JSON"),
    ({"factory": "x.py:build", "factory_kwargs": "[3]"}, "must be a JSON object"),
    ({"factory": "x.py:build", "input_size": 8}, "between 16 and 2048"),
])
def test_key_mistakes_are_one_line_settings_errors(fields, message):
    with pytest.raises(SettingsError, match=message):
        cm.make_key(cm.OwnInputs("factory", **fields), "cpu", environ=ALLOW)


def test_a_factory_key_is_refused_where_factories_are_off(net_file):
    with pytest.raises(SettingsError, match=cm.ALLOW_FACTORY_ENV):
        cm.make_key(factory_inputs(net_file), "cpu", environ={})
    forged = cm.make_key(factory_inputs(net_file), "cpu", environ=ALLOW)
    with pytest.raises(SettingsError, match="would run code on this server"):
        cm.load(forged, None, environ={})  # a key made elsewhere still runs nothing


def test_the_key_holds_every_argument_and_digests_of_the_bytes(net_file):
    def key(**fields):
        return cm.make_key(factory_inputs(net_file, **fields), "auto", environ=ALLOW)

    base = key()
    assert base.device == "cpu" and base.file_digest and base.factory_kwargs == ""
    assert key(factory_kwargs='{"a": 1, "b": 2}') == key(factory_kwargs='{ "b": 2, "a": 1 }')
    variants = [key(factory_kwargs='{"width": 8}'), key(data=b"w1", data_name="w.pth"),
                key(data=b"w2", data_name="w.pth"), key(labels_text="cat\n\n dog \n"),
                base.with_corrections({"2": "none"}), base.with_corrections(None, 0.3)]
    identities = {base.identity, *(v.identity for v in variants)}
    assert len(identities) == len(variants) + 1
    assert variants[3].labels == ("cat", "dog")
    assert variants[1].checkpoint_name == "w.pth" and variants[1].data_digest
    # The correction widgets survive a new checkpoint, class names and corrections ...
    assert {v.scope for v in variants[1:]} == {base.scope}
    # ... but not another model.
    assert variants[0].scope != base.scope


def test_editing_the_factory_file_makes_a_new_key(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(NET)
    before = cm.make_key(cm.OwnInputs("factory", factory=f"{path}:build"), "cpu", environ=ALLOW)
    path.write_text(NET + "\n# tuned\n")
    after = cm.make_key(cm.OwnInputs("factory", factory=f"{path}:build"), "cpu", environ=ALLOW)
    assert before != after and before.scope == after.scope


def test_torchscript_and_timm_keys():
    one = cm.make_key(cm.OwnInputs("torchscript", data=b"one", data_name="a.pt"), "cpu")
    two = cm.make_key(cm.OwnInputs("torchscript", data=b"two", data_name="a.pt"), "cpu")
    assert one.target == "a.pt" and one.checkpoint_name == "" and one.scope != two.scope
    timm = cm.make_key(cm.OwnInputs("timm", timm_name=" resnet18 ", num_classes=5,
                                    allow_random=True), "cpu")
    assert (timm.target, timm.num_classes, timm.allow_random) == ("resnet18", 5, True)
    assert timm.label == "timm resnet18"


def test_analyses_of_two_own_models_or_two_corrections_never_share_a_key(net_file):
    image = SimpleNamespace(key="pixels")
    settings = state.AnalysisSettings()
    a = cm.make_key(factory_inputs(net_file), "cpu", environ=ALLOW)
    b = a.with_corrections({"2": "none"})
    c = cm.make_key(cm.OwnInputs("torchscript", data=b"x", data_name="a.pt"), "cpu")
    keys = {state.analysis_key(image, k, settings)
            for k in (a, b, c, state.model_key("efficientnet_lite0-simam-probe", "cpu"))}
    assert len(keys) == 4


# --- corrections -------------------------------------------------------------------------------


def test_corrections_come_from_this_models_widgets_only():
    session = {cm.read_as_key("s1", "layer1.se"): "none", cm.read_as_key("s1", "gate"): "auto",
               cm.read_as_key("s1", "a.b"): "sam", cm.read_as_key("s2", "x"): "se",
               cm.min_confidence_key("s1"): 0.25, "other": 1}
    assert cm.corrections(session, "s1") == ({"layer1.se": "none", "a.b": "sam"}, 0.25)
    assert cm.corrections(session, "s2") == ({"x": "se"}, cm.DEFAULT_MIN_CONFIDENCE)
    key = cm.CustomKey("timm", "m", "cpu").with_corrections(*cm.corrections(session, "s1"))
    assert key.overrides == (("a.b", "sam"), ("layer1.se", "none"))


def test_carry_selection_keeps_the_choice_and_adds_what_is_new():
    assert cm.carry_selection(None, None, ["a", "b"]) == ["a", "b"]
    assert cm.carry_selection(["a"], ["a", "b"], ["a", "b"]) == ["a"]
    assert cm.carry_selection(["a", "b"], ["a", "b"], ["b"]) == ["b"]  # a was hidden
    assert cm.carry_selection(["a"], ["a", "b"], ["a", "b", "c"]) == ["a", "c"]  # c is new


def test_rows_list_found_hidden_failed_and_added_layers_in_network_order(net_file):
    model = loaded(net_file)
    rows = cm.found_rows(model)
    assert [(r["layer"], r["kind"], r["how"], r["shown"]) for r in rows] == [
        ("2", "se", "behaviour", True)]
    assert rows[0]["confidence"] >= cm.DEFAULT_MIN_CONFIDENCE

    hidden = loaded(net_file, overrides={"2": "none"})
    assert cm.found_rows(hidden) == []
    rows = cm.found_rows(hidden, {"2": "none", "7": "sam"}, extra=["0", "2"])
    assert [(r["layer"], r["kind"], r["title"], r["shown"]) for r in rows] == [
        ("0", "", "not read yet", False), ("2", "none", "hidden by you", False),
        ("7", "sam", "not applied", False)]
    table = cm.table(rows)
    assert list(table[0]) == ["layer", "kind", "confidence", "found by", "what", "why"]
    assert table[0]["kind"] == "—" and cm.shown_options(rows) == []
    assert "0" in cm.addable_layers(hidden, rows) and "2" not in cm.addable_layers(hidden, rows)
    assert cm.layers_shown(cm.found_rows(model), None) == ["2"]
    assert cm.layers_shown(cm.found_rows(model), ["2", "gone"]) == ["2"]


def test_read_as_labels():
    found, added = {"how": "behaviour"}, {"how": "added"}
    assert cm.READ_AS[0] == "auto" and "none" in cm.READ_AS
    assert cm.read_as_label("auto", found) == "as detected"
    assert cm.read_as_label("auto", added) == "not read"
    assert cm.read_as_label("none", found) == "none: hide it"
    assert cm.read_as_label("se", found) == "se: channel gate (SE-style)"


# --- loading, through the app's cache ----------------------------------------------------------


def test_a_correction_that_cannot_apply_falls_back_to_the_model_as_detected(net_file,
                                                                              allowed):
    base = cm.make_key(factory_inputs(net_file), "cpu")
    model, used, problem = state.get_own_model(base.with_corrections({"2": "none"}))
    assert problem is None and used.overrides == (("2", "none"),) and not model.attention
    model, used, problem = state.get_own_model(base.with_corrections({"0": "sam"}))
    assert used == base and [f.layer for f in model.attention] == ["2"]
    assert "cannot show layer '0' as sam" in problem and "Correct the detection" in problem


def test_failures_are_remembered_only_where_the_key_holds_everything(net_file, allowed,
                                                                     monkeypatch):
    calls = []
    real = cm.load

    def counting(key, data, environ=None):
        calls.append(key.source)
        return real(key, data, environ)

    monkeypatch.setattr(cm, "load", counting)
    bad = cm.make_key(cm.OwnInputs("torchscript", data=b"not a zip", data_name="bad.pt"), "cpu")
    for _ in range(2):
        with pytest.raises(SettingsError, match="'bad.pt' is not a TorchScript file"):
            state.get_custom_model(bad, b"not a zip")
    assert calls == ["torchscript"]

    broken = cm.make_key(factory_inputs(net_file, factory_kwargs='{"depth": 3}'), "cpu")
    for _ in range(2):
        with pytest.raises(SettingsError, match="unexpected keyword argument 'depth'"):
            state.get_custom_model(broken)
    assert calls == ["torchscript", "factory", "factory"]  # the user may fix their code

    wrong = torch.nn.Linear(2, 2)
    buf = io.BytesIO()
    torch.save(wrong.state_dict(), buf)
    misfit = cm.make_key(factory_inputs(net_file, data=buf.getvalue(), data_name="w.pth"), "cpu")
    for _ in range(2):
        with pytest.raises(CheckpointError, match="w.pth"):
            state.get_custom_model(misfit, buf.getvalue())
    assert calls.count("factory") == 3
    assert cm.remember_failure(misfit, CheckpointError("x"))
    assert not cm.remember_failure(misfit, SettingsError("x"))


def test_a_checkpoint_and_a_torchscript_file_load_through_the_cache(net_file, tmp_path,
                                                                    allowed):
    torch.manual_seed(1)
    net = call_factory(f"{net_file}:build")
    save_safetensors(net, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    key = cm.make_key(factory_inputs(net_file, data=data, data_name="w.safetensors",
                                     labels_text="a\nb\nc"), "cpu")
    model = state.get_custom_model(key, data)
    assert model is state.get_custom_model(key, data)  # shared, loaded once
    assert model.weights == "checkpoint w.safetensors" and model.labels == ("a", "b", "c")
    assert "checkpoint w.safetensors" in cm.summary(model)
    with pytest.raises(SettingsError, match="changed while loading"):
        cm.load(key, b"other bytes", environ=ALLOW)

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(_Wrapped(net).eval(), torch.randn(1, 3, 32, 32)), buf)
    script = cm.make_key(cm.OwnInputs("torchscript", data=buf.getvalue(), data_name="n.pt",
                                      input_size=32), "cpu")
    scripted = state.get_custom_model(script, buf.getvalue())
    x = np.zeros((32, 32, 3), np.uint8)
    with torch.no_grad():
        same = torch.allclose(scripted.model(scripted.preprocessing.to_tensor([x])),
                              net(model.preprocessing.to_tensor([x])), atol=1e-5)
    assert same and scripted.cam_layer and cm.usable_cams(scripted, ["gradcam"]) == ("gradcam",)


class _Wrapped(torch.nn.Module):
    """A Sequential inside a module: TorchScript opens it into hookable children."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


# --- around the analysis -------------------------------------------------------------------


def test_a_model_without_a_cam_layer_runs_no_cam_and_says_why():
    opaque = SimpleNamespace(cam_layer="", notes=(
        "TorchScript a.pt: its forward is not a chain of its children, so only predictions "
        "are available (no CAM)",))
    assert cm.usable_cams(opaque, ["gradcam", "layercam"]) == ()
    assert cm.usable_cams(None, ["gradcam"]) == ("gradcam",)
    message = cm.no_cam_message(opaque)
    assert message.startswith("This model has no layer to take a CAM at")
    assert "TorchScript a.pt: its forward is not a chain" in message
    assert "no convolutional stage" in cm.no_cam_message(SimpleNamespace(cam_layer="",
                                                                         notes=()))


def test_compare_offers_zoo_models_with_the_same_classes_only():
    from attnviz.labels import imagenet_labels

    choices = [ModelChoice("zoo-a", "A", "se", "native", "w", "offline"),
               ModelChoice("zoo-b", "B", "se", "native", "w", "download"),
               ModelChoice("zoo-c", "C", "se", "native", "w", "offline", classes="a|b|c")]
    imagenet = SimpleNamespace(id="custom:x", labels=imagenet_labels())
    three = SimpleNamespace(id="custom:y", labels=("a", "b", "c"))
    assert cm.comparable(imagenet, choices) == ["custom:x", "zoo-a"]
    assert cm.comparable(three, choices) == ["custom:y", "zoo-c"]
