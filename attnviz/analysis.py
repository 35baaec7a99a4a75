"""One analysis: predictions, every attention record and the CAMs, from one shared pass.

The forward pass records every attention module's tensors into a per-call recorder and makes
the CAM target layer's activation the start of a short autograd graph; one backward from the
target class score to that activation gives the gradient every gradient-based CAM needs.
What leaves this module is numpy only: torch stays inside.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attnviz.attention.probe import install_cam_hook, install_simam_probe
from attnviz.cam import CAM_METHODS, cam_maps, needs_gradient, normalize_method
from attnviz.errors import SettingsError
from attnviz.labels import resolve_target
from attnviz.loader import LoadedModel
from attnviz.recorder import Recorder, recording, stage_of

TOP_K = 5


@dataclass(frozen=True)
class AttentionRecord:
    """What one attention layer attended to, for one image.

    ``kind`` says how to read ``data``: ``energy`` (C,H,W) SimAM's E_inv (its gate is
    ``sigmoid(energy)``), ``channel_weights`` (C,), ``top_channels`` (k,H,W) with
    ``meta["channels"]``, ``spatial_mask`` (1,H,W), ``attention`` (C,H,W) BAM's 1+sigmoid map,
    ``affinity`` (HW,HW) with ``meta["height"/"width"]``, ``theta`` (2,3), ``resampled``
    (C,H,W), ``branch_share`` (2,H,W).
    """

    layer: str
    module: str
    kind: str
    stage: int
    data: np.ndarray = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def spatial(self, reduce: str = "mean", channel: int | None = None) -> np.ndarray | None:
        """A 2-D map of this record for overlays, or None when it has no spatial layout."""
        d = self.data
        if self.kind in ("energy", "attention", "top_channels", "resampled") and d.ndim == 3:
            if channel is not None:
                if not 0 <= channel < d.shape[0]:
                    raise SettingsError(
                        f"channel {channel} out of range for {self.layer} (0..{d.shape[0] - 1})"
                    )
                return d[channel]
            return d.max(axis=0) if reduce == "max" else d.mean(axis=0)
        if self.kind == "spatial_mask":
            return d.reshape(d.shape[-2], d.shape[-1])
        if self.kind == "branch_share":
            return d[0]
        if self.kind == "affinity":
            h = int(self.meta.get("key_height", self.meta["height"]))
            w = int(self.meta.get("key_width", self.meta["width"]))
            return d.mean(axis=0).reshape(h, w)  # where the average query looks
        return None


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Analysis:
    image: np.ndarray = field(repr=False)  # the photo as given (RGB uint8)
    model_input: np.ndarray = field(repr=False)  # what the network saw (size x size RGB)
    model_id: str
    weights: str
    device: str
    predictions: tuple[Prediction, ...]
    target: int
    target_label: str
    records: tuple[AttentionRecord, ...] = field(repr=False)
    cams: dict[str, np.ndarray] = field(repr=False)  # method -> (size, size) in [0, 1]
    cam_layer: str = ""
    logits: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def by_kind(self, kind: str) -> list[AttentionRecord]:
        return [r for r in self.records if r.kind == kind]

    def layers(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.setdefault(r.layer, None)
        return list(seen)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no arrays) for manifests and the CLI."""
        return {
            "model": self.model_id,
            "weights": self.weights,
            "device": self.device,
            "top5": [
                {"index": p.index, "label": p.label, "probability": round(p.probability, 6)}
                for p in self.predictions
            ],
            "target": {"index": self.target, "label": self.target_label},
            "cam": {"layer": self.cam_layer, "methods": list(self.cams)},
            "layers": [
                {"layer": r.layer, "module": r.module, "kind": r.kind, "stage": r.stage,
                 "shape": list(r.data.shape), **({"channels": r.meta["channels"]}
                                                 if "channels" in r.meta else {})}
                for r in self.records
            ],
            "settings": self.settings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _as_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] < 3:
            raise SettingsError("an image array must be RGB uint8 with shape (H, W, 3)")
        return image[..., :3]
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    from attnviz.inputs import load_image

    return load_image(image).array


def analyze_batch(
    images: Sequence[Any],
    model: LoadedModel,
    *,
    cam_methods: Sequence[str] = ("gradcam",),
    target: int | str | None = None,
    cam_layer: str | None = None,
    disabled: Sequence[str] = (),
    probe_layers: Sequence[str] | None = None,
    simam_lambda: float = 1e-4,
    progress: Callable[[int, int], None] | None = None,
) -> list[Analysis]:
    """Analyse several images in one batched pass (see ``analyze``)."""
    started = time.perf_counter()
    arrays = [_as_array(im) for im in images]
    if not arrays:
        return []
    methods = [normalize_method(m) for m in cam_methods]
    target_index = resolve_target(target, model.labels)
    layer = cam_layer or model.cam_layer
    if methods and layer != model.cam_layer:
        install_cam_hook(model.model, layer)
    probes = list(model.probe_layers if probe_layers is None else probe_layers)
    for p in probes:
        if p not in model.probe_layers:
            install_simam_probe(model.model, p)
    known = {a.layer for a in model.attention}
    unknown = [d for d in disabled if d not in known]
    if unknown:
        raise SettingsError(
            f"cannot switch off {', '.join(unknown)}: not an attention layer of this model; "
            f"attention layers: {', '.join(sorted(known)) or '(none)'}"
        )

    prep = model.preprocessing
    views = [prep.resize(a) for a in arrays]
    x = prep.normalize(views).to(model.device)
    grad = bool(methods) and needs_gradient(methods)
    # A second pass only when a probe's layer output turned out to be overwritten in place
    # after the probe had decided to keep a reference to it; the second pass copies.
    for _ in range(2):
        recorder = Recorder(
            model.model, disabled=set(disabled), probe_layers={p: simam_lambda for p in probes},
            cam_layers={layer} if methods else set(),
        )
        passed = _pass(model, x, recorder, grad, methods, layer, target_index, progress)
        if not recorder.stale:
            break
    logits, top, targets, cams, times = passed

    out = []
    logits_np = logits.detach().float().cpu().numpy()
    for b, (array, view) in enumerate(zip(arrays, views)):
        records = tuple(_to_record(r, b) for r in recorder.records)
        preds = tuple(
            Prediction(int(i), model.labels[int(i)], float(p))
            for i, p in zip(top.indices[b].tolist(), top.values[b].tolist())
        )
        out.append(Analysis(
            image=array, model_input=view, model_id=model.id, weights=model.weights,
            device=str(model.device), predictions=preds, target=targets[b],
            target_label=model.labels[targets[b]], records=records,
            cams={m: v[b] for m, v in cams.items()}, cam_layer=layer if methods else "",
            logits=logits_np[b],
            settings={"cam_methods": methods, "target": target_index, "disabled": list(disabled),
                      "probe_layers": probes, "simam_lambda": simam_lambda,
                      "preprocessing": prep.as_dict()},
            timings={**times, "total": time.perf_counter() - started},
        ))
    return out


def _pass(model: LoadedModel, x: torch.Tensor, recorder: Recorder, grad: bool,
          methods: list[str], layer: str, target_index: int | None,
          progress: Callable[[int, int], None] | None):
    """One forward pass with ``recorder`` current, then the top-5 and the CAMs while the
    recorder's deferred observation (SimAM energies) runs on a worker thread: those steps are
    small and latency-bound, and leave a core idle. The records are complete on return."""
    t0 = time.perf_counter()
    with recording(recorder, finish=False), torch.set_grad_enabled(grad):
        logits = model.model(x)
    t_forward = time.perf_counter() - t0
    finishing = recorder.finish_in_background(x.device)
    try:
        probs = torch.softmax(logits.detach().float(), dim=1)
        top = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
        targets = (
            [target_index] * x.shape[0] if target_index is not None
            else top.indices[:, 0].tolist()
        )
        cams: dict[str, np.ndarray] = {}
        cam_times: dict[str, float] = {}
        t1 = time.perf_counter()
        if methods:
            acts = recorder.cam_activations.get(layer)
            if acts is None:
                raise SettingsError(f"layer {layer!r} was not reached in the forward pass")
            grads = None
            if grad:
                score = logits.gather(
                    1, torch.tensor(targets, device=logits.device)[:, None]).sum()
                (grads,) = torch.autograd.grad(score, acts)
            cams = cam_maps(methods, acts, grads, x, targets, model.model, timings=cam_times,
                            progress=progress)
        t_cam = time.perf_counter() - t1
    finally:
        # Also on an error: the worker must be done with this pass's tensors before it ends.
        t2 = time.perf_counter()
        wait([finishing])
        t_wait = time.perf_counter() - t2
    finishing.result()  # re-raises what the deferred work raised
    times = {"forward": t_forward, "cam": t_cam, **cam_times, "observe_wait": t_wait}
    return logits, top, targets, cams, times


def _to_record(raw, b: int) -> AttentionRecord:
    meta = dict(raw.meta)
    if "indices" in meta:
        # Top channels are chosen per image: keep this image's, not the whole batch's.
        meta["channels"] = meta.pop("indices")[b]
    return AttentionRecord(
        layer=raw.layer, module=raw.module, kind=raw.kind, stage=stage_of(raw.layer),
        data=raw.tensor[b].float().cpu().numpy(), meta=meta,
    )


def analyze(
    image: Any,
    model: LoadedModel,
    *,
    cam_methods: Sequence[str] = ("gradcam",),
    target: int | str | None = None,
    cam_layer: str | None = None,
    disabled: Sequence[str] = (),
    probe_layers: Sequence[str] | None = None,
    simam_lambda: float = 1e-4,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Analyse one image: top-5, every attention record, and the CAMs of the target class.

    ``image``: an RGB uint8 array, a PIL image, a path or raw bytes. ``target``: a class index
    or name (default: the top-1 class). ``disabled``: attention layers to run as identity
    (ablation). ``probe_layers``: layers whose SimAM energy to observe (default: the model's
    own probe layers). Methods: see ``attnviz.cam.CAM_METHODS``. ``progress``: called as
    ``progress(done, total)`` while a CAM that needs many forward passes (ScoreCAM) runs.
    """
    return analyze_batch(
        [image], model, cam_methods=cam_methods, target=target, cam_layer=cam_layer,
        disabled=disabled, probe_layers=probe_layers, simam_lambda=simam_lambda,
        progress=progress,
    )[0]


__all__ = ["Analysis", "AttentionRecord", "Prediction", "analyze", "analyze_batch", "CAM_METHODS"]
