"""attnviz's one-pass CAMs against pytorch_grad_cam's own computation (same layer, target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from attnviz import analyze
from attnviz.cam import CAM_METHODS, cam_maps
from attnviz.inputs import load_image

FAST = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam",
        "eigengradcam", "gradcamelementwise"]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def cat(samples):
    return load_image(samples["chelsea"]).array


@pytest.mark.parametrize("method", FAST)
def test_maps_equal_pytorch_grad_cam(default_model, cat, method):
    ours = analyze(cat, default_model, cam_methods=(method,))
    x = default_model.preprocessing.to_tensor([cat]).requires_grad_(True)
    layer = dict(default_model.model.named_modules())[default_model.cam_layer]
    with CAM_METHODS[method](default_model.model, [layer]) as ref_cam:
        ref = ref_cam(x, [ClassifierOutputTarget(ours.target)])[0]
    assert _corr(ours.cams[method], ref) >= 0.999
    # Scaled as the package scales them, not just alike.
    np.testing.assert_allclose(ours.cams[method], ref, atol=2e-3)


@pytest.mark.parametrize("batch", [1, 5, 32])
def test_scorecam_equals_pytorch_grad_cam_on_a_small_network(batch, monkeypatch):
    """attnviz builds each batch's masked inputs on the fly; 24 channels in batches of 1, 5
    (uneven) and 32 must give the package's map."""
    import attnviz.cam

    monkeypatch.setitem(attnviz.cam.SCORECAM_BATCH, "cpu", batch)
    from attnviz.attention.probe import install_cam_hook
    from attnviz.recorder import Recorder, recording

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 24, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(24, 5),
    ).eval().requires_grad_(False)
    install_cam_hook(model, "3")
    x = torch.randn(1, 3, 32, 32)
    rec = Recorder(model, cam_layers={"3"})
    with recording(rec), torch.no_grad():
        model(x)
    timings: dict[str, float] = {}
    passes: list[tuple[int, int]] = []
    ours = cam_maps(["scorecam", "eigencam"], rec.cam_activations["3"], None, x, [3], model,
                    timings=timings, progress=lambda *p: passes.append(p))["scorecam"]
    # Each method reports its own cost, and ScoreCAM its progress after every batch.
    assert set(timings) == {"cam:scorecam", "cam:eigencam"}
    assert min(timings.values()) > 0
    assert passes == [(min(i + batch, 24), 24) for i in range(0, 24, batch)]
    with CAM_METHODS["scorecam"](model, [model[3]]) as ref_cam:
        ref_cam.batch_size = 32
        ref = ref_cam(x, [ClassifierOutputTarget(3)])
    assert _corr(ours[0], ref[0]) >= 0.999
    np.testing.assert_allclose(ours[0], ref[0], atol=1e-5)  # the same numbers, not just alike


def test_scorecam_batches_fill_accelerators_and_run_singly_on_cpu():
    from attnviz.cam import scorecam_batch

    assert scorecam_batch(torch.device("cpu")) == 1
    assert scorecam_batch(torch.device("cuda")) == scorecam_batch(torch.device("mps")) == 32
