"""Class activation maps from the ``grad-cam`` package's formulas, on one shared pass.

``pytorch_grad_cam`` runs its own forward and a full backward through every layer. attnviz
already has the target layer's activation (the start of a short autograd graph, see
``attention.probe.install_cam_hook``) and its gradient; the package's per-method
``get_cam_image`` turns those into the map, so the maps are the package's own, for a fraction
of the cost. ScoreCAM needs forward passes of masked inputs and runs them batched.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
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
# Masked inputs per ScoreCAM forward pass. On an accelerator, batches fill the device. On CPU
# one at a time was fastest and smallest (default model, 1280 passes, 2-core VM): 21 s and
# +0 MB at 1, 26 s at 4, 27 s at 8, 35 s at 16, 41 s and +450 MB at 32; a batch's activations
# outgrow the CPU caches.
SCORECAM_BATCH = {"cpu": 1}
SCORECAM_BATCH_ACCELERATOR = 32


def scorecam_batch(device: torch.device) -> int:
    return SCORECAM_BATCH.get(device.type, SCORECAM_BATCH_ACCELERATOR)



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


class _BatchedScoreCAM(ScoreCAM):
    """The package's ScoreCAM with its channel weights computed batch by batch.

    The package upsamples every channel and builds every masked input at once: for
    EfficientNet-Lite0's 1280 channels at 224 px that is a 770 MB tensor (1.2 GB for
    ResNet-50's 2048) before the first forward pass. Here each batch upsamples, normalises and
    masks only its own channels, under ``torch.inference_mode``; the arithmetic per channel is
    the package's (tested against it), so the weights and the maps are the same.
    """

    # Called as progress(passes done, passes in all) after each batch: the app's and the CLI's
    # progress bars, as ScoreCAM takes half a minute on a CPU.
    progress: Callable[[int, int], None] | None = None

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        acts = torch.from_numpy(activations).to(self.device)
        size = input_tensor.shape[-2:]
        # The package reads an optional ``batch_size`` attribute; without one, by device.
        step = getattr(self, "batch_size", None) or scorecam_batch(self.device)
        scores: list[float] = []
        total = acts.shape[0] * acts.shape[1]
        with torch.inference_mode():
            for b, target in enumerate(targets):
                for i in range(0, acts.shape[1], step):
                    # UpsamplingBilinear2d, as the package uses: bilinear, align_corners=True.
                    up = F.interpolate(acts[b:b + 1, i:i + step], size=size, mode="bilinear",
                                       align_corners=True)[0]
                    flat = up.flatten(1)
                    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
                    up = (up - lo[:, None, None]) / (hi - lo + 1e-8)[:, None, None]
                    outputs = self.model(input_tensor[b:b + 1] * up[:, None])
                    scores.extend(float(target(o)) for o in outputs)
                    if self.progress is not None:
                        self.progress(len(scores), total)
        per_image = torch.tensor(scores).view(activations.shape[0], activations.shape[1])
        return torch.softmax(per_image, dim=-1).numpy()


@functools.cache
def _formula(method: str):
    """The package's class for a gradient/eigen method, built once: it only holds formulas
    (``get_cam_image`` is pure) and hooks a throwaway layer, so one instance serves every call
    and thread. Building it per call cost about 1% of a small model's analysis."""
    return CAM_METHODS[method](_Holder(), [nn.Identity()])


def throttled_progress(update: Callable[[int, int], None],
                       steps: int = 100) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that passes at most ``steps`` of its calls on to
    ``update(done, total)``, the last one always: ScoreCAM reports after every batch (1280
    times on a CPU), and each redraw of a bar is a message to a browser or a terminal."""
    shown = [0]  # a bar starts drawn at 0

    def progress(done: int, total: int) -> None:
        step = done * steps // max(total, 1)
        if step > shown[0]:
            shown[0] = step
            update(done, total)

    return progress


def _instance(method: str, model: nn.Module | None, device: torch.device,
              progress: Callable[[int, int], None] | None):
    if method != "scorecam":
        return _formula(method)
    # ScoreCAM runs the model itself. BaseCAM hooks its target layers and takes its device from
    # the model's first parameter, which a frozen TorchScript model does not have: build it on
    # a throwaway holder and layer (released after use, so the shared model stays clean), then
    # hand it the model and the input's device.
    inst = _BatchedScoreCAM(_Holder(), [nn.Identity()])
    if model is not None:
        inst.model = model
    inst.device = device
    inst.progress = progress
    return inst


def cam_maps(
    methods: list[str],
    activations: torch.Tensor,
    gradients: torch.Tensor | None,
    input_tensor: torch.Tensor,
    targets: list[int],
    model: nn.Module | None = None,
    timings: dict[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Maps (B, H, W) in [0, 1] at input resolution, exactly as ``pytorch_grad_cam`` scales them.

    ``timings`` (optional) receives each method's own seconds as ``"cam:<method>"``: ScoreCAM
    runs one forward pass per channel of the layer and reports what that cost on its own.
    ``progress`` (optional) is called as ``progress(done, total)`` during ScoreCAM's passes.
    """
    acts = activations.detach().float().cpu().numpy()
    grads = gradients.detach().float().cpu().numpy() if gradients is not None else None
    size = (input_tensor.shape[-1], input_tensor.shape[-2])
    wrapped = [ClassifierOutputTarget(t) for t in targets]
    out: dict[str, np.ndarray] = {}
    for method in methods:
        started = time.perf_counter()
        inst = _instance(method, model, input_tensor.device, progress)
        if grads is None and method not in NO_GRADIENT:
            raise SettingsError(f"CAM method {method!r} needs gradients")
        with torch.no_grad():
            cam = inst.get_cam_image(input_tensor, None, wrapped, acts, grads, False)
        if method == "scorecam":
            inst.activations_and_grads.release()
        # BaseCAM.forward's steps for one target layer: clip, min-max scale and resize
        # (compute_cam_per_layer), then clip and min-max scale again (aggregate_multi_layers);
        # the resize moves the extremes, so the second scaling changes the numbers.
        cam = scale_cam_image(np.maximum(cam, 0), size)
        out[method] = scale_cam_image(np.maximum(cam, 0)).astype(np.float32)
        if timings is not None:
            timings[f"cam:{method}"] = time.perf_counter() - started
    return out
