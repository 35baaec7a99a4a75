"""Class activation maps from the ``grad-cam`` package's formulas, on one shared pass.

``pytorch_grad_cam`` runs its own forward and a full backward through every layer. attnviz
already has the target layer's activation (the start of a short autograd graph, see
``attention.probe.install_cam_hook``) and its gradient; the package's per-method
``get_cam_image`` turns those into the map, so the maps are the package's own, for a fraction
of the cost. ScoreCAM needs forward passes of masked inputs and runs them batched.
"""

from __future__ import annotations

import contextlib
import functools
import io
import time

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from attnviz.errors import SettingsError, choices_message

CAM_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "gradcamelementwise": GradCAMElementWise,
    "scorecam": ScoreCAM,
}
CAM_TITLES = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "Eigen-CAM",
    "eigengradcam": "EigenGrad-CAM", "gradcamelementwise": "Grad-CAM element-wise",
    "scorecam": "Score-CAM",
}
NO_GRADIENT = {"eigencam", "scorecam"}
SCORECAM_BATCH = 32
_NULL = contextlib.nullcontext()


def normalize_method(name: str) -> str:
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    key = key.replace("plusplus", "++")
    if key not in CAM_METHODS:
        raise SettingsError(choices_message("CAM method", name, list(CAM_METHODS)))
    return key


def needs_gradient(methods: list[str]) -> bool:
    return any(m not in NO_GRADIENT for m in methods)


class _Holder(nn.Module):
    """A parameter-bearing stand-in, so the package's classes hook nothing of ours."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1), requires_grad=False)


@functools.cache
def _formula(method: str):
    """The package's class for a gradient/eigen method, built once: it only holds formulas
    (``get_cam_image`` is pure) and hooks a throwaway layer, so one instance serves every call
    and thread. Building it per call cost about 1% of a small model's analysis."""
    return CAM_METHODS[method](_Holder(), [nn.Identity()])


def _instance(method: str, model: nn.Module | None):
    if method != "scorecam":
        return _formula(method)
    # ScoreCAM runs the model itself; BaseCAM hooks its target layers, so give it a throwaway
    # layer and release it after use so the shared model stays clean.
    inst = CAM_METHODS[method](model if model is not None else _Holder(), [nn.Identity()])
    inst.batch_size = SCORECAM_BATCH
    return inst


def cam_maps(
    methods: list[str],
    activations: torch.Tensor,
    gradients: torch.Tensor | None,
    input_tensor: torch.Tensor,
    targets: list[int],
    model: nn.Module | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Maps (B, H, W) in [0, 1] at input resolution, exactly as ``pytorch_grad_cam`` scales them.

    ``timings`` (optional) receives each method's own seconds as ``"cam:<method>"``: ScoreCAM
    runs one forward pass per channel of the layer and reports what that cost on its own.
    """
    acts = activations.detach().float().cpu().numpy()
    grads = gradients.detach().float().cpu().numpy() if gradients is not None else None
    size = (input_tensor.shape[-1], input_tensor.shape[-2])
    wrapped = [ClassifierOutputTarget(t) for t in targets]
    out: dict[str, np.ndarray] = {}
    for method in methods:
        started = time.perf_counter()
        inst = _instance(method, model if method == "scorecam" else None)
        if grads is None and method not in NO_GRADIENT:
            raise SettingsError(f"CAM method {method!r} needs gradients")
        # ScoreCAM draws a tqdm bar per image on stderr; attnviz shows its own progress.
        quiet = contextlib.redirect_stderr(io.StringIO()) if method == "scorecam" else _NULL
        with torch.no_grad(), quiet:
            cam = inst.get_cam_image(input_tensor, None, wrapped, acts, grads, False)
        if method == "scorecam":
            inst.activations_and_grads.release()
        cam = np.maximum(cam, 0)
        out[method] = scale_cam_image(cam, size).astype(np.float32)
        if timings is not None:
            timings[f"cam:{method}"] = time.perf_counter() - started
    return out
