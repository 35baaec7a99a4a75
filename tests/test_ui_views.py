"""The tabs' content as data: picking maps, rendering tiles, tables (no Streamlit)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from attnviz.analysis import Analysis, AttentionRecord, Prediction
from attnviz.ui import views
from attnviz.ui.normalization import fit_scales

RNG = np.random.default_rng(0)


def record(layer, kind, data, module="cbam", stage=1, **meta):
    return AttentionRecord(layer, module, kind, stage, np.asarray(data, np.float32), meta)


def fake_analysis(records, cam=None, logits=None, target=0):
    cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8) if cam is None else cam
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]) if logits is None else logits
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(probs)[::-1][:5]
    labels = [f"class{i}" for i in range(logits.size)]
    return Analysis(
        image=RNG.integers(0, 255, (30, 40, 3), dtype=np.uint8),
        model_input=np.zeros((8, 8, 3), np.uint8), model_id="fake", weights="random",
        device="cpu", predictions=tuple(Prediction(int(i), labels[i], float(probs[i]))
                                        for i in order),
        target=target, target_label=labels[target], records=tuple(records),
        cams={"gradcam": cam}, cam_layer="layer4", logits=logits,
    )


def cbam_block(layer="layer1.0", stage=1, channels=6):
    weights = np.linspace(0.1, 0.9, channels)
    top = np.argsort(weights)[::-1][:3].tolist()
    return [
        record(layer, "channel_weights", weights, stage=stage),
        record(layer, "top_channels", RNG.random((3, 4, 4)), stage=stage, channels=top),
        record(layer, "spatial_mask", RNG.random((1, 4, 4)), stage=stage),
    ]


def test_overview_takes_one_telling_map_per_layer():
    recs = [*cbam_block("layer1.0"), record("stn", "theta", np.eye(2, 3), module="stn", stage=-1),
            record("blocks.1", "energy", RNG.random((5, 4, 4)) + 0.5, module="simam", stage=2)]
    items = views.overview_items(fake_analysis(recs))
    assert [(i.group, i.caption.split(" · ")[-1]) for i in items] == [
        ("layer1.0", "mask"), ("blocks.1", "energy")]  # theta has no map
    assert items[0].values.shape == (4, 4)


def test_energy_reductions_and_a_channel_too_high_for_some_layers():
    small = record("a", "energy", np.arange(2 * 4).reshape(2, 2, 2), module="simam", stage=1)
    big = record("b", "energy", np.arange(4 * 4).reshape(4, 2, 2), module="simam", stage=2)
    a = fake_analysis([small, big])
    mean, _ = views.energy_items(a, "mean")
    np.testing.assert_allclose(mean[0].values, small.data.mean(axis=0))
    top, _ = views.energy_items(a, "max")
    np.testing.assert_allclose(top[1].values, big.data.max(axis=0))
    one, skipped = views.energy_items(a, "channel", 3)
    assert [i.group for i in one] == ["b"] and skipped == ["a (2 channels)"]
    np.testing.assert_allclose(one[0].values, big.data[3])


def test_top_energy_channels_are_ranked_by_mean_energy():
    data = np.stack([np.full((2, 2), v) for v in (1.0, 5.0, 3.0)])
    items = views.top_energy_channels(record("a", "energy", data, module="simam"), k=2)
    assert [i.caption.split(" · ")[0] for i in items] == ["channel 1", "channel 2"]


def test_top_channel_items_carry_their_channel_and_weight():
    a = fake_analysis(cbam_block(channels=6))
    items = views.top_channel_items(a, "layer1.0")
    assert [i.caption for i in items] == [
        "channel 5 · weight 0.900", "channel 4 · weight 0.740", "channel 3 · weight 0.580"]
    assert views.top_channel_items(a, "nowhere") == []


def test_stage_filter():
    a = fake_analysis([*cbam_block("layer1.0", 1), *cbam_block("layer3.0", 3)])
    items = views.overview_items(a)
    assert [i.group for i in views.filter_stages(items, (3,))] == ["layer3.0"]
    assert len(views.filter_stages(items, None)) == 2
    assert views.stages_of(a) == [1, 3]


def test_tiles_are_overlays_on_the_photo_with_honest_captions():
    photo = RNG.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    items = [views.MapItem("a", "first", np.array([[0.0, 2.0], [1.0, 1.0]])),
             views.MapItem("b", "flat", np.full((2, 2), 3.0))]
    display = views.Display(cmap="viridis", alpha=0.6)
    tiles = views.render_tiles(photo, items, fit_scales([], "map"), display)
    assert [t.image.shape for t in tiles] == [(30, 40, 3)] * 2
    assert tiles[0].caption == "first · [0, 2]" and not tiles[0].flat
    assert tiles[1].caption == "flat · flat map" and tiles[1].flat

    scales = views.scales_for([items], "global")
    tiles = views.render_tiles(photo, items, scales, display)
    assert [t.caption for t in tiles] == ["first", "flat"]  # the colour bar says the range
    bar = views.scale_bar(scales, "viridis")
    assert bar is not None and bar.dtype == np.uint8
    assert views.scale_bar(fit_scales([], "map"), "viridis") is None


def test_a_view_exports_as_one_png():
    photo = np.zeros((20, 30, 3), np.uint8)
    items = [views.MapItem(str(i), f"map {i}", RNG.random((3, 3))) for i in range(5)]
    tiles = views.render_tiles(photo, items, fit_scales([], "map"), views.Display())
    png = views.tiles_png(tiles, cols=2, bar=np.zeros((10, 50, 3), np.uint8))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width >= 60 and img.height >= 3 * 20


def test_agreement_rows_compare_each_layer_with_grad_cam():
    cam = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    same = record("l", "spatial_mask", cam[None])
    flipped = record("m", "spatial_mask", cam[::-1][None])
    rows = views.agreement_rows(fake_analysis([same, flipped], cam=cam))
    assert rows[0]["layer"] == "l" and rows[0]["cam"] == "Grad-CAM"
    assert rows[0]["correlation"] == pytest.approx(1.0) and rows[0]["iou_top20"] == 1.0
    assert rows[1]["correlation"] < 0 and rows[1]["iou_top20"] == 0.0


def test_compare_row_shows_the_best_agreeing_map_the_last_map_and_the_cam():
    cam = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    recs = [record("first", "spatial_mask", cam[None]),
            record("last", "spatial_mask", cam[::-1][None])]
    items = views.compare_items(fake_analysis(recs, cam=cam))
    assert [i.group for i in items] == ["first", "last", "cam:gradcam"]
    assert items[0].caption.startswith("best r = 1.00")
    only = views.compare_items(fake_analysis(recs[:1], cam=cam))
    assert [i.group for i in only] == ["first", "cam:gradcam"]


def test_ablation_rows_use_the_probabilities_of_every_class():
    before = fake_analysis([], logits=np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]))
    after = fake_analysis([], logits=np.array([-2.0, 2.0, 1.0, 0.0, -1.0, 3.0]))
    rows = {r["index"]: r for r in views.ablation_rows(before, after)}
    assert set(rows) == {0, 1, 2, 3, 4, 5}  # class 5 enters, class 0 leaves the top-5
    assert rows[0]["change"] < 0 < rows[5]["change"]
    assert rows[5]["with attention"] == pytest.approx(views.probabilities(before)[5])


def test_batch_row_has_top5_and_agreement_columns():
    row = views.batch_row("cat.jpg", fake_analysis(cbam_block()))
    assert row["image"] == "cat.jpg" and row["top1"] == "class0"
    assert {"top5_probability", "mean_correlation", "iou_top20:layer1.0"} <= set(row)


def test_weight_chart_rows_flag_the_top_k():
    rows = views.weights_chart_rows(record("l", "channel_weights", [0.2, 0.9, 0.5, 0.1]), 2)
    assert [r["top"] for r in rows] == ["other", "top 2", "top 2", "other"]


def test_display_photo_only_shrinks():
    big = np.zeros((1000, 500, 3), np.uint8)
    assert views.display_photo(big, 320).shape == (320, 160, 3)
    small = np.zeros((10, 20, 3), np.uint8)
    assert views.display_photo(small, 320) is small


def test_real_default_model_overview(default_model, samples):
    from attnviz import analyze

    a = analyze(samples["chelsea"], default_model)
    items = views.overview_items(a)
    assert len(items) == len(default_model.probe_layers) == 16
    tiles = views.render_tiles(views.display_photo(a.image), items,
                               views.scales_for([items], "layer"), views.Display())
    assert all(t.image.dtype == np.uint8 and not t.flat for t in tiles)
    rows = views.agreement_rows(a)
    assert len(rows) == 16 and all(-1 <= r["correlation"] <= 1 for r in rows)


def test_ablation_items_pair_the_cams_and_show_the_change():
    before = fake_analysis([], cam=np.zeros((2, 2), np.float32))
    after = fake_analysis([], cam=np.ones((2, 2), np.float32))
    pair, diff = views.ablation_items(before, after)
    assert [i.caption for i in pair] == ["Grad-CAM with attention", "Grad-CAM switched off"]
    np.testing.assert_allclose(diff.values, 1.0)


def test_gallery_row_and_lesson_map_and_module_names():
    recs = [*cbam_block("layer1.0", 1), *cbam_block("layer2.0", 2), *cbam_block("layer3.0", 3)]
    a = fake_analysis(recs)
    assert [i.group for i in views.batch_items(a)] == [
        "cam:gradcam", "layer1.0", "layer2.0", "layer3.0"]
    assert [i.group for i in views.batch_items(a, (3,))] == ["cam:gradcam", "layer3.0"]
    live = views.lesson_item(a, ("cbam", "sam"), "spatial_mask")
    assert live.group == "layer2.0" and live.caption == "live: layer2.0"
    assert views.lesson_item(a, ("bam",), "attention") is None
    assert views.module_names(a) == ["CBAM"]


def test_mean_agreement_leaves_out_undefined_scores():
    rows = [{"correlation": 0.5, "iou_top20": 0.2}, {"correlation": float("nan"), "iou_top20": 0.4}]
    assert views.mean_agreement(rows) == pytest.approx((0.5, 0.3))


def test_layer_and_stage_filter_keeps_only_the_chosen_maps():
    from attnviz.ui.views import Display, MapItem, filter_display

    items = [MapItem(f"layer{s}.0", f"l{s}", np.zeros((2, 2)), s) for s in (1, 2, 3)]
    assert [i.group for i in filter_display(items, Display())] == ["layer1.0", "layer2.0",
                                                                    "layer3.0"]
    assert [i.group for i in filter_display(items, Display(stages=(2, 3)))] == ["layer2.0",
                                                                               "layer3.0"]
    only = Display(stages=(2, 3), layers=("layer3.0", "layer1.0"))
    assert [i.group for i in filter_display(items, only)] == ["layer3.0"]
    assert filter_display(items, Display(layers=())) == []


def test_timing_caption_names_only_the_costly_cam_methods():
    a = fake_analysis([])
    a.timings.update({"forward": 0.031, "cam": 12.5, "cam:gradcam": 0.001,
                      "cam:scorecam": 12.49})
    caption = views.timing_caption(a)
    assert caption == "forward 0.03 s, CAM 12.50 s (of which Score-CAM 12.5 s)"
    a.timings.pop("cam:scorecam")
    assert views.timing_caption(a) == "forward 0.03 s, CAM 12.50 s"


def test_pass_progress_redraws_a_bounded_number_of_times():
    drawn = []
    progress = views.pass_progress(lambda f, text: drawn.append((f, text)), "Score-CAM", steps=10)
    for done in range(1, 1281):
        progress(done, 1280)
    assert len(drawn) == 10 and drawn[-1] == (1.0, "Score-CAM: 1280 of 1280 forward passes")
    fractions = [f for f, _ in drawn]
    assert fractions == sorted(fractions) and fractions[0] == 128 / 1280
