"""From a ``ModelSpec`` to a ready model: architecture, weights, device, hooks.

The returned ``LoadedModel`` is immutable and safe to share: parameters never need
gradients (a CAM only needs the gradient at its target layer), the model is in eval mode,
and every hook records into the caller's own recorder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from attnviz.attention.probe import (
    FoundAttention,
    find_attention,
    install_cam_hook,
    install_native_recorders,
    install_simam_probe,
)
from attnviz.checkpoints import load_strict, read_state_dict
from attnviz.devices import resolve_device
from attnviz.errors import SettingsError
from attnviz.labels import imagenet_labels
from attnviz.preprocess import Preprocessing
from attnviz.zoo import DEFAULT_MODEL_ID, ModelSpec, get_spec


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    model: nn.Module = field(repr=False, compare=False)
    device: torch.device
    weights: str  # where the loaded weights came from, for summaries
    labels: tuple[str, ...] = field(repr=False)
    cam_layer: str = ""
    probe_layers: tuple[str, ...] = ()
    attention: tuple[FoundAttention, ...] = ()
    load_seconds: float = 0.0
    notes: tuple[str, ...] = ()  # what a user should know about this model (limits, conversions)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    @property
    def id(self) -> str:
        return self.spec.id


def build_architecture(spec: ModelSpec) -> nn.Module:
    """The network of a spec with freshly initialised weights."""
    if spec.family == "resnet":
        from attnviz.backbones.resnet import build_resnet

        depth = int(spec.backbone.removeprefix("resnet"))
        attention = None if spec.placement in ("none", "probe") else spec.attention
        return build_resnet(
            depth, attention, layout=spec.layout, num_classes=spec.num_classes,
            simam_lambda=spec.simam_lambda,
        )
    if spec.family == "efficientnet_lite":
        from attnviz.backbones.efficientnet_lite import build_efficientnet_lite0

        return build_efficientnet_lite0(spec.num_classes)
    if spec.family == "timm":
        import timm

        return timm.create_model(spec.backbone.removeprefix("timm:"), pretrained=False,
                                 num_classes=spec.num_classes)
    if spec.family == "bundled":
        from attnviz.bundled import build_bundled

        return build_bundled(spec)
    import torchvision

    return torchvision.models.get_model(spec.backbone, weights=None, num_classes=spec.num_classes)


def default_cam_layer(spec: ModelSpec, model: nn.Module) -> str:
    """The last convolutional stage: where Grad-CAM is usually taken."""
    names = dict(model.named_modules())
    for candidate in ("layer4", "bn2", "trunk_output", "stages.3"):
        if candidate in names:
            return candidate
    features = names.get("features")
    if isinstance(features, nn.Sequential):
        return f"features.{len(features) - 1}"
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SettingsError(f"model {spec.id!r} has no convolution to take a CAM at")
    return convs[-1]


def default_probe_layers(spec: ModelSpec, model: nn.Module) -> list[str]:
    if spec.placement != "probe":
        return []
    if spec.family == "efficientnet_lite":
        from attnviz.backbones.efficientnet_lite import depthwise_layers

        return depthwise_layers(model)
    # SimAM's official place in a ResNet block: right after the 3x3 conv.
    return [n for n, m in model.named_modules()
            if n.startswith("layer") and n.endswith(".conv2") and isinstance(m, nn.Conv2d)]


def _adapt(spec: ModelSpec, model: nn.Module, state: dict[str, torch.Tensor]) -> dict:
    if spec.family == "efficientnet_lite":
        from attnviz.backbones.efficientnet_lite import is_lukemelas_layout, map_lukemelas_to_timm

        if is_lukemelas_layout(state):
            return map_lukemelas_to_timm(state, model)
    return state


def load_model(
    model_id: str = DEFAULT_MODEL_ID,
    *,
    checkpoint: str | os.PathLike | bytes | BinaryIO | None = None,
    checkpoint_name: str | None = None,
    device: str = "auto",
) -> LoadedModel:
    """Build a zoo model, load its weights strictly, move it to a device, install hooks.

    ``checkpoint`` replaces the spec's own weight source (a path, or bytes of an upload with
    ``checkpoint_name`` telling the format). Loading never runs code from a file.
    """
    started = time.perf_counter()
    spec = get_spec(model_id)
    dev = resolve_device(device)
    model = build_architecture(spec)
    if checkpoint is not None:
        name = checkpoint_name or (
            Path(checkpoint).name if isinstance(checkpoint, (str, os.PathLike)) else None
        )
        state = read_state_dict(checkpoint, name=name)
        weights = f"checkpoint {name or 'upload'}"
    else:
        state = spec.source.load()
        weights = spec.source.describe()
    load_strict(model, _adapt(spec, model, state), source=weights)
    model.eval().requires_grad_(False).to(dev)

    cam_layer = default_cam_layer(spec, model)
    install_cam_hook(model, cam_layer)
    found = find_attention(model)
    install_native_recorders(model, found)
    probes = default_probe_layers(spec, model)
    for layer in probes:
        install_simam_probe(model, layer)
    labels = imagenet_labels() if spec.labels == "imagenet" else tuple(spec.labels)
    return LoadedModel(
        spec=spec, model=model, device=dev, weights=weights, labels=labels,
        cam_layer=cam_layer, probe_layers=tuple(probes),
        attention=tuple(found), load_seconds=time.perf_counter() - started,
    )
