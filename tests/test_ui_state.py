"""What the app computes once: cache keys, model loading, analyses, decoded uploads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from attnviz import analysis as analysis_module
from attnviz.errors import ImageError, SettingsError, WeightsUnavailableError
from attnviz.ui import state


@pytest.fixture(scope="module")
def cat_item(samples):
    return state.sample_image(samples["chelsea"])


@pytest.fixture(scope="module")
def coffee_item(samples):
    return state.sample_image(samples["coffee"])


@pytest.fixture
def counted(monkeypatch):
    """Count network passes: every analysis goes through ``analysis.analyze_batch``."""
    calls = []
    real = analysis_module.analyze_batch

    def counting(images, model, **kwargs):
        calls.append(len(images))
        return real(images, model, **kwargs)

    monkeypatch.setattr(analysis_module, "analyze_batch", counting)
    state.ANALYSES.clear()
    return calls


def test_model_key_resolves_the_device_and_digests_the_checkpoint():
    auto = state.model_key("m", "auto")
    assert auto == state.model_key("m", "cpu") and auto.device == "cpu"
    one = state.model_key("m", "cpu", b"weights", "a.safetensors")
    two = state.model_key("m", "cpu", b"other", "a.safetensors")
    assert one.checkpoint_digest and one != two and one.checkpoint_name == "a.safetensors"


def test_an_absent_device_is_a_settings_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SettingsError, match="not present"):
        state.model_key("m", "cuda")


def test_weights_problems_are_known_before_building_anything(monkeypatch):
    def never(*_a, **_k):
        raise AssertionError("no model should be built for a choice without weights")

    monkeypatch.setattr(state, "load_model", never)
    needs_file = state.model_key("resnet18-cbam", "cpu")
    assert "needs a checkpoint file" in state.weights_problem(needs_file)
    with pytest.raises(WeightsUnavailableError, match="needs a checkpoint file"):
        state.get_model(needs_file)
    online = state.model_key("resnet50", "cpu")  # torchvision weights, not cached in tests
    assert "downloads are off" in state.weights_problem(online)
    assert state.weights_problem(state.model_key("resnet18-cbam", "cpu", b"x", "x.pt")) is None


def test_a_checkpoint_that_does_not_fit_fails_once_then_from_memory(monkeypatch):
    from attnviz.errors import CheckpointError

    key = state.model_key("resnet18-se", "cpu", b"garbage", "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth"):
        state.get_model(key, b"garbage")

    def never(*_a, **_k):
        raise AssertionError("a known bad checkpoint must not be loaded again")

    monkeypatch.setattr(state, "load_model", never)
    with pytest.raises(CheckpointError, match="bad.pth"):
        state.get_model(key, b"garbage")


def test_the_default_model_is_loaded_once_and_shared():
    key = state.model_key("efficientnet_lite0-simam-probe", "cpu")
    assert state.weights_problem(key) is None
    assert state.get_model(key) is state.get_model(key)


def test_an_analysis_runs_the_network_once_per_key(counted, cat_item, default_model):
    key = state.model_key(default_model.id, "cpu")
    settings = state.AnalysisSettings(("gradcam",))
    first = state.get_analysis(cat_item, default_model, key, settings)
    again = state.get_analysis(cat_item, default_model, key, settings)
    assert again is first and counted == [1]
    assert state.is_cached(cat_item, key, settings)
    other = state.get_analysis(cat_item, default_model, key, settings.with_target(281))
    assert other.target == 281 and counted == [1, 1]


def test_settings_helpers_keep_the_rest():
    s = state.AnalysisSettings(("gradcam", "eigencam"), 3, (), 0.1)
    assert s.with_disabled(["b", "a"]) == state.AnalysisSettings(s.cam_methods, 3, ("a", "b"), 0.1)
    assert s.with_target(None).cam_methods == s.cam_methods


def test_concurrent_sessions_share_one_model_without_mixing_maps(
        default_model, cat_item, coffee_item):
    """Two browser sessions analysing different photos at once get their own maps."""
    key = state.model_key(default_model.id, "cpu")
    settings = state.AnalysisSettings(("gradcam",), simam_lambda=0.5)  # a key no test shares
    serial = {it.name: analysis_module.analyze_batch(
        [it.array], default_model, cam_methods=("gradcam",), simam_lambda=0.5)[0]
        for it in (cat_item, coffee_item)}
    state.ANALYSES.clear()
    results, barrier = {}, threading.Barrier(2)

    def session(item):
        barrier.wait()
        results[item.name] = state.get_analysis(item, default_model, key, settings)

    threads = [threading.Thread(target=session, args=(it,)) for it in (cat_item, coffee_item)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, expected in serial.items():
        got = results[name]
        assert got.predictions[0].index == expected.predictions[0].index
        for a, b in zip(got.records, expected.records):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.cams["gradcam"], expected.cams["gradcam"], atol=1e-4)


def test_uploads_are_decoded_once_and_identified_by_their_pixels(samples):
    data = samples["chelsea"].read_bytes()
    upload = state.decode_image(data, "mine.jpg")
    assert state.decode_image(data, "mine.jpg") is upload
    sample = state.sample_image(samples["chelsea"])
    assert sample.key == upload.key and sample.origin == "sample" and upload.origin == "upload"
    assert upload.array.dtype == np.uint8 and upload.original_size == (451, 300)


def test_a_bad_upload_is_an_image_error():
    with pytest.raises(ImageError, match="broken.jpg"):
        state.decode_image(b"this is not a photo", "broken.jpg")
