"""Procedural samples in the app, without Streamlit: drawing, the outline over the tiles, the
localisation table and the words around it."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.analysis import Analysis, AttentionRecord, Prediction
from attnviz.datasets.procedural import CLASS_NAMES, sample
from attnviz.ui import procedural, state, views
from attnviz.ui.catalog import ModelChoice
from attnviz.ui.normalization import fit_scales
from attnviz.zoo import get_spec

RNG = np.random.default_rng(0)
WHITE = np.array(views.OUTLINE_COLOR, np.uint8)


def inside_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-neighbour steps of the outside (the image's
    surroundings count as outside): the outline as defined independently of the renderer."""
    outside = np.pad(~mask, width, constant_values=True)
    near = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(-width, width + 1):
        for dx in range(-width + abs(dy), width - abs(dy) + 1):
            near |= outside[width + dy:width + dy + h, width + dx:width + dx + w]
    return mask & near


def tiles_with_and_without(photo, mask, values=None):
    values = RNG.random((8, 8)) if values is None else values
    items = [views.MapItem("a", "layer a · mask", values)]
    scales = fit_scales([("a", values)], "map")
    display = views.Display(cmap="gray", alpha=0.5)
    return (views.render_tiles(photo, items, scales, display, mask)[0].image,
            views.render_tiles(views.enlarge(photo), items, scales, display)[0].image)


def test_a_square_gets_a_two_pixel_frame_just_inside_it_in_the_enlarged_tile():
    photo = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:45] = True  # -> rows 40..79, columns 120..179 at 4x
    outlined, plain = tiles_with_and_without(photo, mask)
    assert outlined.shape == (256, 256, 3) == plain.shape
    frame = np.zeros((256, 256), bool)
    frame[40:80, 120:180] = True
    frame[42:78, 122:178] = False
    changed = (outlined != plain).any(axis=2)
    assert (outlined[frame] == WHITE).all()
    assert (outlined[~frame] == plain[~frame]).all()
    assert changed.sum() <= frame.sum()  # nothing drawn outside the frame


def test_the_outline_is_exactly_the_boundary_of_a_real_sample_mask():
    drawn = sample(0, 3, "gallery")
    outlined, plain = tiles_with_and_without(drawn.image, drawn.mask)
    big = np.kron(drawn.mask, np.ones((4, 4), bool))  # the mask at the tile's size
    edge = inside_band(big, views.OUTLINE_THICKNESS)
    assert edge.any() and not (edge & ~big).any()
    assert (outlined[edge] == WHITE).all()
    assert (outlined[~edge] == plain[~edge]).all()
    # Every mask pixel beside the background carries the outline in its 4x4 block.
    blocks = edge.reshape(64, 4, 64, 4).any(axis=(1, 3))
    assert not (inside_band(drawn.mask, 1) & ~blocks).any()
    assert not (blocks & ~inside_band(drawn.mask, 2)).any()


def test_without_a_mask_tiles_are_unchanged_and_not_enlarged():
    photo = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    values = RNG.random((8, 8))
    items = [views.MapItem("a", "a", values)]
    scales = fit_scales([("a", values)], "map")
    tile = views.render_tiles(photo, items, scales, views.Display())[0]
    assert tile.image.shape == (64, 64, 3)


def test_enlarge_keeps_pixels_sharp_and_whole():
    photo = RNG.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    big = views.enlarge(photo)
    assert big.shape == (256, 192, 3)
    assert np.array_equal(big[::4, ::4], photo) and np.array_equal(big[3::4, 3::4], photo)
    assert views.enlarge(np.zeros((300, 200, 3), np.uint8)).shape == (300, 200, 3)


# --- drawing samples ---------------------------------------------------------------------------


def test_a_sample_is_the_same_item_for_the_same_seed_and_index_and_new_otherwise():
    a, again, other, reseeded = (procedural.sample_item(0, 5), procedural.sample_item(0, 5),
                                 procedural.sample_item(0, 6), procedural.sample_item(1, 5))
    assert a is again
    truth = sample(0, 5, "gallery")
    assert np.array_equal(a.array, truth.image) and np.array_equal(a.mask, truth.mask)
    assert a.true_class == truth.class_name in CLASS_NAMES
    assert a.origin == "procedural" and a.original_size == (64, 64)
    assert len({a.key, other.key, reseeded.key}) == 3
    settings, key = state.AnalysisSettings(), state.ModelKey("procedural-resnet-cbam", "cpu")
    keys = {state.analysis_key(im, key, settings) for im in (a, again, other, reseeded)}
    assert len(keys) == 3  # the analysis cache tells samples apart, and finds a draw again
    assert not a.array.flags.writeable and not a.mask.flags.writeable


def test_random_draws_follow_a_sequence_fixed_by_the_seed():
    def draws(seed, n=5):
        session = {procedural.SEED_KEY: seed, procedural.INDEX_KEY: 0}
        out = []
        for _ in range(n):
            before = session[procedural.INDEX_KEY]
            procedural.new_draw(session)
            assert session[procedural.INDEX_KEY] != before
            assert 0 <= session[procedural.INDEX_KEY] <= procedural.MAX_INDEX
            out.append(session[procedural.INDEX_KEY])
        return out

    assert draws(0) == draws(0) != draws(1)
    assert draws(0)[0] == procedural.next_index(0, 1, 0)
    assert procedural.next_index(3, 1, avoid=procedural.next_index(3, 1)) != \
        procedural.next_index(3, 1)


def test_procedural_samples_are_offered_only_for_shapes_models():
    assert procedural.offered(get_spec("procedural-resnet-cbam"))
    assert not procedural.offered(get_spec("efficientnet_lite0-simam-probe"))
    assert not procedural.offered(None)


def test_the_model_menu_puts_the_attention_first_for_shapes_models():
    choice = ModelChoice("procedural-resnet-sam", "Procedural shapes, small ResNet + SAM (CBAM "
                         "spatial)", "sam", "fitted", "bundled model", "offline")
    assert procedural.picker_label(choice) == \
        "[offline] SAM (CBAM spatial) · shapes, small ResNet"
    photo = ModelChoice("resnet18-se", "ResNet-18 + SE", "se", "fitted", "x", "needs file")
    assert procedural.picker_label(photo) == photo.label


# --- words and tables --------------------------------------------------------------------------


def fake_analysis(records, cam, logits, target=None, cam_layer="layer4"):
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(probs)[::-1][:5]
    target = int(order[0]) if target is None else target
    return Analysis(
        image=np.zeros((64, 64, 3), np.uint8), model_input=np.zeros((64, 64, 3), np.uint8),
        model_id="fake", weights="random", device="cpu",
        predictions=tuple(Prediction(int(i), CLASS_NAMES[i], float(probs[i])) for i in order),
        target=target, target_label=CLASS_NAMES[target], records=tuple(records),
        cams={"gradcam": cam}, cam_layer=cam_layer, logits=logits)


@pytest.fixture
def crafted():
    """A square object; a CBAM mask peaking on it, a CAM peaking in a corner away from it."""
    mask = np.zeros((64, 64), bool)
    mask[16:32, 16:32] = True
    spatial = np.zeros((1, 8, 8), np.float32)
    spatial[0, 2:4, 2:4] = 1.0  # the object, at 1/8 resolution
    cam = np.zeros((8, 8), np.float32)
    cam[6:, 6:] = 1.0
    records = [AttentionRecord("layer1.0", "cbam", "spatial_mask", 1, spatial),
               AttentionRecord("layer1.0", "cbam", "channel_weights", 1,
                               np.linspace(0, 1, 4, dtype=np.float32))]
    logits = np.arange(10, dtype=np.float64)[::-1].copy()  # top-1: circle (0)
    return mask, fake_analysis(records, cam, logits)


def test_localisation_rows_score_each_map_and_cam(crafted):
    mask, analysis = crafted
    rows = procedural.localization_table(analysis, mask)
    assert [(r["map"], r["layer"]) for r in rows] == [
        ("CBAM spatial mask", "layer1.0"), ("Grad-CAM", "layer4")]  # weights have no map
    by_map = {r["map"]: r for r in rows}
    assert by_map["CBAM spatial mask"]["pointing game"] == procedural.HIT
    assert by_map["Grad-CAM"]["pointing game"] == procedural.MISS
    assert by_map["CBAM spatial mask"]["AUC"] > 0.9 > 0.5 > by_map["Grad-CAM"]["AUC"]
    for r in rows:
        assert 0.0 <= r["mass in mask"] <= 1.0 and 0.0 <= r["AUC"] <= 1.0
    assert procedural.summary(rows, analysis).startswith(
        "Best attention map on this image: **CBAM spatial mask** at `layer1.0`")
    assert procedural.compare_line(analysis, mask).startswith("localisation: best attention AUC")


def test_metrics_say_what_chance_is_for_this_mask(crafted):
    mask, _ = crafted
    assert procedural.chance_level(mask) == pytest.approx(256 / 4096)
    lines = {m.column: m for m in procedural.metrics(mask)}
    assert set(lines) == {"pointing game", "mass in mask", "AUC"}
    assert lines["pointing game"].chance.startswith("6%") and lines["mass in mask"].chance == "6%"
    assert lines["AUC"].chance == "0.50"
    assert procedural.pointing_text(0.25) == "peak split: 25% inside"


def test_true_class_line_and_the_cam_target_note(crafted):
    mask, analysis = crafted
    item = state.ImageItem("s", np.zeros((64, 64, 3), np.uint8), "k", mask=mask,
                           true_class="circle")
    assert procedural.truth_line(item, analysis, CLASS_NAMES) == \
        "**True class: circle** — the model's top-1 ✓"
    assert procedural.cam_note(item, analysis, CLASS_NAMES) is None
    wrong = state.ImageItem("s", item.array, "k", mask=mask, true_class="star")
    line = procedural.truth_line(wrong, analysis, CLASS_NAMES)
    assert line.startswith("**True class: star** — the model says *circle* ✗ (star: ")
    note = procedural.cam_note(wrong, analysis, CLASS_NAMES)
    assert "not the true class *star*" in note and "4 · star" in note
    photo = state.ImageItem("cat.jpg", item.array, "k")
    assert procedural.truth_line(photo, analysis, CLASS_NAMES) is None


def test_a_photo_with_a_shapes_model_gets_a_gentle_note():
    shapes, imagenet = get_spec("procedural-resnet-cbam"), get_spec("resnet18-se")
    photo = state.ImageItem("cat.jpg", np.zeros((8, 8, 3), np.uint8), "k")
    drawn = procedural.sample_item(0, 0)
    assert "only knows ten shapes (circle, ring" in procedural.photo_note(shapes, photo)
    assert procedural.photo_note(shapes, drawn) is None
    assert procedural.photo_note(imagenet, photo) is None
    assert "procedural-resnet-" in procedural.no_mask_message(imagenet)
    assert "A procedural sample" in procedural.no_mask_message(shapes)
    assert procedural.display_photo(drawn).shape == (256, 256, 3)
