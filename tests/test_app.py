"""The Streamlit page, driven by Streamlit's AppTest: every tab, the caches, the error paths.

AppTest runs ``app.py`` in this process, so the model cache (``st.cache_resource``) and the
analysis cache are shared between the tests here, as between browser sessions of one server.
Network passes are counted by wrapping ``attnviz.analysis.analyze_batch``, the one function
through which every analysis of the app runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from attnviz.ui import state

APP = Path(__file__).resolve().parents[1] / "app.py"
TABS = ("Overview", "SimAM energy", "CBAM spatial mask", "Channel weights", "Grad-CAM",
        "Compare", "Ablation", "Learn", "Batch")


@pytest.fixture(scope="module")
def cbam_checkpoint(tmp_path_factory) -> bytes:
    """A ResNet-18 + CBAM with random weights: real records, meaningless predictions."""
    import torch

    from attnviz.backbones import build_resnet
    from attnviz.checkpoints import save_safetensors

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "cbam18.safetensors"
    save_safetensors(build_resnet(18, "cbam", num_classes=1000), path)
    return path.read_bytes()


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page(tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    if tab is not None:
        at.session_state["tab"] = tab
    return run(at)


def captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def downloads(at: AppTest) -> list[str]:
    return [b.label for b in at.get("download_button")]


def infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)


def test_default_page_shows_the_photo_its_top5_and_every_layer():
    at = page()
    assert not at.error
    tops = [p.text for p in at.get("progress")]
    assert len(tops) == 5 and tops[0].startswith("1. ") and "cat" in tops[0].lower()
    assert any(c.startswith("chelsea.jpg") for c in captions(at))
    layer_tiles = [c for c in captions(at) if " · energy" in c]
    assert len(layer_tiles) == 16  # one overlay per attention layer
    assert {"ZIP bundle of the whole analysis", "Download this view (PNG)"} <= set(downloads(at))


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_renders_on_the_default_model(tab):
    at = page(tab)
    assert not at.error, [e.value for e in at.error]
    shown = captions(at)
    if tab in ("Overview", "SimAM energy"):
        assert sum(" · energy" in c or " · channel mean" in c for c in shown) >= 16
    if tab == "SimAM energy":
        assert sum("mean energy" in c for c in shown) == 8  # the top-energy channel grid
        assert "Download the channel grid (PNG)" in downloads(at)
    if tab == "CBAM spatial mask":
        expected = "This model has no CBAM spatial mask; pick a model with CBAM or SAM (e.g."
        assert expected in infos(at)
    if tab == "Channel weights":
        assert "This model has no channel weights (SE or CBAM); pick a model with SE" in infos(at)
    if tab == "Grad-CAM":
        cams = [c for c in shown if "Egyptian cat (285)" in c]
        assert len(cams) == 8 and any(c.startswith("Grad-CAM ·") for c in cams)
        assert "Download the CAMs (PNG)" in downloads(at)
    if tab == "Compare":
        table = at.dataframe[0].value
        assert {"model", "layer", "correlation", "iou_top20"} <= set(table.columns)
        assert len(table) == 16 and table["correlation"].between(-1, 1).all()
    if tab == "Ablation":
        assert "no attention module to switch off" in infos(at)
    if tab == "Learn":
        assert len(at.latex) >= 16
        assert any(c.startswith("live: blocks.") for c in shown)  # SimAM's live map
        assert "This model has no SE block; pick a model with SE" in infos(at)
    if tab == "Batch":
        assert "CSV of predictions and agreement scores" in downloads(at)


def test_display_changes_never_run_the_network_again(network_passes):
    state.ANALYSES.clear()
    at = page()
    assert network_passes == [1]
    before = captions(at)
    at.selectbox(key="cmap").set_value("viridis")
    run(at)
    at.slider(key="alpha").set_value(0.8)
    run(at)
    at.radio(key="normalization").set_value("global")
    run(at)
    assert any("one global scale" in c for c in captions(at))  # the colour bar appeared
    at.radio(key="normalization").set_value("layer")
    run(at)
    at.multiselect(key="stages:efficientnet_lite0-simam-probe").set_value([1, 2])
    run(at)
    assert len([c for c in captions(at) if " · energy" in c]) == 4
    layer_filter = next(m for m in at.multiselect if m.key.startswith("layers:"))
    layer_filter.set_value(layer_filter.value[:2])
    run(at)
    assert len([c for c in captions(at) if " · energy" in c]) == 2
    for tab in TABS:
        at.session_state["tab"] = tab
        run(at)
    assert network_passes == [1], "a display change re-ran the network"
    assert len(before) > len(captions(at))  # the stage filter did act

    at.selectbox(key="target:1000").set_value(281)  # an analysis setting: one new pass
    run(at)
    assert network_passes == [1, 1]


def test_a_bad_upload_is_reported_and_the_good_one_still_analysed(samples):
    at = page()
    at.file_uploader(key="uploads").set_value([
        ("broken.jpg", b"this is no photo", "image/jpeg"),
        ("chelsea.jpg", samples["chelsea"].read_bytes(), "image/jpeg"),
    ])
    run(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("broken.jpg:")
    assert any(c.startswith("chelsea.jpg") and "upload" in c for c in captions(at))
    assert "cat" in at.get("progress")[0].text.lower()


def test_a_model_without_weights_says_why_instead_of_failing():
    at = page()
    at.selectbox(key="model_id").set_value("resnet50")  # torchvision weights, not cached
    run(at)
    assert len(at.error) == 1 and "downloads are off" in at.error[0].value
    assert "No model is loaded" in at.warning[0].value
    at.selectbox(key="model_id").set_value("resnet18-cbam")  # needs a checkpoint file
    run(at)
    assert "needs a checkpoint file" in at.error[0].value
    assert at.file_uploader(key="checkpoint:resnet18-cbam") is not None
    at.button(key="zoo").click()
    run(at)
    zoo_table = at.dataframe[0].value
    assert {"model", "availability", "weights"} <= set(zoo_table.columns)
    assert "resnet18-cbam" in set(zoo_table["model"])


def test_a_checkpoint_that_does_not_fit_is_a_clear_error():
    at = page()
    at.selectbox(key="model_id").set_value("resnet18-se")
    run(at)
    at.file_uploader(key="checkpoint:resnet18-se").set_value(
        ("wrong.pth", b"not a checkpoint at all", "application/octet-stream"))
    run(at)
    assert len(at.error) == 1 and "wrong.pth" in at.error[0].value


def test_cbam_model_fills_the_mask_weights_ablation_and_learn_tabs(cbam_checkpoint):
    at = page("CBAM spatial mask")
    at.selectbox(key="model_id").set_value("resnet18-cbam")
    run(at)
    at.file_uploader(key="checkpoint:resnet18-cbam").set_value(
        ("cbam18.safetensors", cbam_checkpoint, "application/octet-stream"))
    run(at)
    assert not at.error, [e.value for e in at.error]
    masks = [c for c in captions(at) if "CBAM mask" in c]
    assert len(masks) == 8  # one per BasicBlock

    at.session_state["tab"] = "Channel weights"
    run(at)
    assert len(at.get("vega_lite_chart")) == 1  # the bar chart of one block
    assert sum(c.startswith("channel ") and "weight" in c for c in captions(at)) == 8
    assert {"Download the bar chart (PNG)", "Download the heatmap (PNG)"} <= set(downloads(at))

    at.session_state["tab"] = "Ablation"
    run(at)
    at.toggle(key="ablate_all").set_value(True)
    run(at)
    table = at.dataframe[0].value
    assert {"with attention", "switched off", "change"} <= set(table.columns)
    assert any("switched off" in c for c in captions(at))
    assert any(c.startswith("|change| of Grad-CAM") for c in captions(at))

    at.session_state["tab"] = "Learn"
    run(at)
    live = [c for c in captions(at) if c.startswith("live: layer")]
    assert len(live) == 2  # CBAM's channel and spatial lessons
    assert "This model has no SimAM energy" in infos(at)

    # Tabs draw lazily, and Streamlit forgets undrawn widgets: the picks must survive the visit.
    at.session_state["tab"] = "Channel weights"
    run(at)
    at.slider(key="weights_top_k").set_value(3)
    first = at.selectbox(key="weights_layer").options[0]
    at.selectbox(key="weights_layer").set_value(first)
    run(at)
    at.session_state["tab"] = "Ablation"
    run(at)
    at.session_state["tab"] = "Channel weights"
    run(at)
    assert at.slider(key="weights_top_k").value == 3
    assert at.selectbox(key="weights_layer").value == first
    assert '"top 3"' in at.get("vega_lite_chart")[0].proto.spec  # the chart follows them
    assert any(f"channels of `{first}`" in m.value for m in at.markdown)
    at.session_state["tab"] = "Ablation"
    run(at)
    assert at.toggle(key="ablate_all").value is True


def test_simam_tab_settings_survive_a_visit_to_another_tab():
    at = page("SimAM energy")
    at.radio(key="simam_reduce").set_value("channel")
    run(at)
    at.number_input(key="simam_channel").set_value(5)
    last = at.selectbox(key="simam_layer").options[-1]
    at.selectbox(key="simam_layer").set_value(last)
    run(at)
    for tab in ("Overview", "SimAM energy"):
        at.session_state["tab"] = tab
        run(at)
    assert at.radio(key="simam_reduce").value == "channel"
    assert at.number_input(key="simam_channel").value == 5
    assert at.selectbox(key="simam_layer").value == last
    assert any(" · channel 5 · " in c for c in captions(at))
    assert any(f"channels of `{last}`" in m.value for m in at.markdown)


def test_batch_of_two_samples_gives_rows_and_a_csv():
    at = page("Batch")
    at.button_group(key="samples").set_value(["chelsea (cat)", "coffee (espresso)"])
    at.radio(key="normalization").set_value("layer")
    run(at)
    assert not at.error
    shown = captions(at)
    assert "chelsea.jpg" in shown and "coffee.jpg" in shown
    assert sum(c.startswith("Grad-CAM") for c in shown) == 2  # one row per photo
    assert "CSV of predictions and agreement scores" in downloads(at)
    assert at.selectbox(key="current").options == ["chelsea.jpg", "coffee.jpg"]
