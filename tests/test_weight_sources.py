"""Online weight sources are real code paths: tested with weights the tests write into caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from attnviz import analyze, analyze_batch, load_model
from attnviz.checkpoints import save_safetensors
from attnviz.errors import CheckpointError, SettingsError, WeightsUnavailableError
from attnviz.loader import build_architecture
from attnviz.zoo import get_spec, list_specs

IMAGE = (torch.rand(96, 128, 3) * 255).to(torch.uint8).numpy()


def test_default_model_is_available_offline():
    spec = get_spec("efficientnet_lite0-simam-probe")
    assert spec.source.available_offline()
    assert spec.placement == "probe"


def test_zoo_says_which_models_are_fitted_probes_or_native():
    by_id = {s.id: s for s in list_specs()}
    assert by_id["resnet50-simam"].placement == "fitted"
    assert by_id["resnet50-simam"].simam_lambda == 0.1
    assert by_id["resnet50-simam-probe"].placement == "probe"
    assert by_id["mobilenet_v3_large"].placement == "native"
    assert by_id["resnet50-cbam-official"].layout == "cbam-official"


def test_unknown_model_id_lists_valid_choices():
    with pytest.raises(SettingsError, match="valid choices: .*efficientnet_lite0-simam-probe"):
        get_spec("resnet51")


def test_torchvision_weights_not_cached_offline_is_a_clear_message():
    with pytest.raises(WeightsUnavailableError, match="MobileNet_V3_Small_Weights.IMAGENET1K_V1.*"
                       "not cached.*downloads are off"):
        load_model("mobilenet_v3_small", device="cpu")


def test_fitted_model_without_checkpoint_says_what_to_do():
    with pytest.raises(WeightsUnavailableError, match="needs a checkpoint file.*--checkpoint"):
        load_model("resnet50-cbam-official", device="cpu")


def _write_torchvision_cache(model_id: str) -> Path:
    spec = get_spec(model_id)
    path = spec.source.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_architecture(spec).state_dict(), path)
    return path


def test_torchvision_cached_weights_load_and_native_se_is_recorded():
    path = _write_torchvision_cache("mobilenet_v3_small")
    try:
        assert str(path).startswith(os.environ["TORCH_HOME"])
        assert get_spec("mobilenet_v3_small").source.availability() == "cached"
        model = load_model("mobilenet_v3_small", device="cpu")
        found = [f for f in model.attention if f.module_kind == "se"]
        assert len(found) == 9 and all(f.source == "torchvision" for f in found)
        a = analyze(IMAGE, model)
        weights = a.by_kind("channel_weights")
        assert [r.layer for r in weights] == [f.layer for f in found]
        assert all(((r.data >= 0) & (r.data <= 1)).all() for r in weights)  # hard-sigmoid
        tops = a.by_kind("top_channels")
        assert len(tops) == 9 and all(len(r.meta["channels"]) == r.data.shape[0] for r in tops)
        assert "gradcam" in a.cams
    finally:
        path.unlink()


def test_timm_cached_weights_load_from_the_hub_cache(write_hub_weights):
    spec = get_spec("seresnet50-timm")
    write_hub_weights(spec.source._repo(), build_architecture(spec).state_dict())
    assert spec.source.available_offline()
    model = load_model("seresnet50-timm", device="cpu")
    assert sum(f.source == "timm" for f in model.attention) == 16
    a = analyze(IMAGE, model, cam_methods=())
    assert len(a.by_kind("channel_weights")) == 16


def test_user_checkpoint_for_a_fitted_cbam_resnet(tmp_path):
    spec = get_spec("resnet18-cbam")
    torch.manual_seed(0)
    sd = build_architecture(spec).state_dict()
    ckpt = tmp_path / "cbam18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, ckpt)
    model = load_model("resnet18-cbam", checkpoint=ckpt, device="cpu")
    assert model.weights.endswith("cbam18.pth")
    a = analyze(IMAGE, model)
    masks = a.by_kind("spatial_mask")
    assert len(masks) == 8 and all(m.module == "cbam" for m in masks)
    assert masks[0].layer == "layer1.0.bn2.1"
    assert len(a.by_kind("channel_weights")) == 8
    off = analyze(IMAGE, model, disabled=["layer1.0.bn2.1"])
    assert len(off.by_kind("spatial_mask")) == 7
    # In a batch, each image keeps its own top channels.
    other = IMAGE[::-1, ::-1].copy()
    batch = analyze_batch([IMAGE, other], model, cam_methods=())
    for got, alone in zip(batch, (a, analyze(other, model)), strict=True):
        assert ([r.meta["channels"] for r in got.by_kind("top_channels")]
                == [r.meta["channels"] for r in alone.by_kind("top_channels")])


def test_wrong_architecture_checkpoint_names_keys(tmp_path):
    sd = build_architecture(get_spec("resnet18-se")).state_dict()
    ckpt = tmp_path / "se18.safetensors"
    save_safetensors(sd, ckpt)
    with pytest.raises(CheckpointError, match=r"(?s)missing.*ChannelGate.*unexpected.*fc\.0"):
        load_model("resnet18-cbam", checkpoint=ckpt, device="cpu")


def test_cuda_requested_on_a_cpu_machine_lists_devices():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SettingsError, match="not present.*available: .*cpu"):
        load_model(device="cuda")


def test_registering_a_spec_keeps_the_built_in_zoo():
    import dataclasses

    from attnviz import zoo

    extra = dataclasses.replace(zoo.get_spec("resnet18-se"), id="my-se-resnet18")
    zoo.register(extra)
    assert zoo.get_spec("my-se-resnet18") is extra
    assert zoo.DEFAULT_MODEL_ID in zoo.model_ids() and len(zoo.model_ids()) > 40


def test_torchvision_download_path_creates_the_cache_and_cleans_up_a_failure(
        monkeypatch, tmp_path):
    """The online path without a network: torch's downloader is replaced by a local copy."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-torch-home"))
    monkeypatch.setenv("ATTNVIZ_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    source = get_spec("resnet18").source
    state = build_architecture(get_spec("resnet18")).state_dict()

    def fake_download(url, dst, progress=True):
        assert url.endswith(source.cache_path().name)
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    loaded = source.load()
    assert source.cache_path().is_file() and set(loaded) == set(state)

    source.cache_path().unlink()

    def failing_download(url, dst, progress=True):
        Path(dst).write_bytes(b"partial")
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(WeightsUnavailableError, match="could not download torchvision weights "
                       "ResNet18_Weights.IMAGENET1K_V1 .network unreachable.*place"):
        source.load()
    assert not source.cache_path().exists()
