"""The procedural shapes in the page, through Streamlit's AppTest: a shapes model, a drawn
sample with its true class, outlined overlays in every view, the Localisation table, and the
caches (display changes never run the network; a sample drawn again is found again)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from attnviz.datasets.procedural import sample
from attnviz.ui import procedural, state

APP = Path(__file__).resolve().parents[1] / "app.py"
MODEL = "procedural-resnet-cbam"


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def shapes_page(tab: str | None = None) -> AppTest:
    """The page with the CBAM shapes model picked before the first run (no ImageNet pass)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["model_id"] = MODEL
    if tab is not None:
        at.session_state["tab"] = tab
    return run(at)


def captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_pick_the_model_draw_a_sample_and_read_its_localisation():
    at = AppTest.from_file(str(APP), default_timeout=120)
    run(at)
    with pytest.raises(KeyError):  # a photo model: no procedural samples offered
        at.radio(key=procedural.SOURCE_KEY)
    at.selectbox(key="model_id").set_value(MODEL)
    run(at)
    assert at.radio(key=procedural.SOURCE_KEY).value == "procedural"
    first = sample(0, 0, "gallery")
    assert f"**True class: {first.class_name}**" in markdown(at)
    assert "shape 0 (seed 0) · 64×64 · procedural" in captions(at)

    at.button(key="proc_draw").click()
    run(at)
    index = procedural.next_index(0, 1, 0)
    assert at.number_input(key=procedural.INDEX_KEY).value == index
    drawn = sample(0, index, "gallery")
    assert f"**True class: {drawn.class_name}**" in markdown(at)
    assert f"shape {index} (seed 0) · 64×64 · procedural" in captions(at)
    masks = [c for c in captions(at) if " · mask" in c]
    assert len(masks) == 4  # one outlined overlay per CBAM block on the Overview

    at.session_state["tab"] = "Localisation"
    run(at)
    table = at.dataframe[0].value
    assert {"map", "layer", "pointing game", "mass in mask", "AUC"} <= set(table.columns)
    assert (table["map"] == "CBAM spatial mask").sum() == 4
    assert "Grad-CAM" in set(table["map"])
    assert table["mass in mask"].between(0, 1).all() and table["AUC"].between(0, 1).all()
    # hit or miss; a map whose maximum is a plateau (a saturated 4x4 mask) scores its share
    assert all(p in (procedural.HIT, procedural.MISS) or p.startswith("peak split: ")
               for p in table["pointing game"])
    assert f"chance {drawn.mask.mean():.0%}" in "\n".join(c.value for c in at.caption)
    assert "Best attention map on this image" in markdown(at)


def test_every_view_draws_on_the_sample_and_display_changes_never_rerun_the_network(network_passes):
    state.ANALYSES.clear()
    at = shapes_page()
    assert network_passes == [1]
    at.selectbox(key="cmap").set_value("viridis")
    run(at)
    at.slider(key="alpha").set_value(0.8)
    run(at)
    for tab in ("Overview", "SimAM energy", "CBAM spatial mask", "Channel weights", "Grad-CAM",
                "Localisation", "Learn", "Batch"):
        at.session_state["tab"] = tab
        run(at)
        if tab == "CBAM spatial mask":
            assert sum("CBAM mask" in c for c in captions(at)) == 4
        if tab == "Grad-CAM":
            assert sum(c.startswith("Grad-CAM · ") for c in captions(at)) == 1
        if tab == "Batch":  # one procedural sample: the way to a batch is the Photos source
            assert "The batch runs over photos: pick Photos above the sample" in \
                "\n".join(i.value for i in at.info)
    assert network_passes == [1], "a display change re-ran the network"

    at.session_state["tab"] = "Compare"  # three other shapes models on the same sample
    run(at)
    assert network_passes == [1, 1, 1, 1]
    lines = [c.value for c in at.caption if c.value.startswith("localisation: ")]
    assert len(lines) == 4

    at.session_state["tab"] = "Ablation"
    run(at)
    at.toggle(key="ablate_all").set_value(True)
    run(at)
    assert any(c.startswith("|change| of Grad-CAM") for c in captions(at))

    at.session_state["tab"] = "Overview"
    at.number_input(key=procedural.INDEX_KEY).set_value(7)  # another sample: one new pass
    run(at)
    passes = len(network_passes)
    at.number_input(key=procedural.INDEX_KEY).set_value(0)  # back: found in the cache
    run(at)
    assert len(network_passes) == passes


def test_a_photo_with_a_shapes_model_gets_a_gentle_note():
    at = shapes_page("Localisation")
    at.radio(key=procedural.SOURCE_KEY).set_value("photos")
    run(at)
    assert any("only knows ten shapes" in c.value for c in at.caption)
    assert "True class" not in markdown(at)
    assert "A procedural sample" in "\n".join(i.value for i in at.info)
    assert not any(" · procedural" in c for c in captions(at))
