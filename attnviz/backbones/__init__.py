"""Backbones fitted with attention modules in the places their authors put them.

Only ResNets today: the published SimAM, SE and CBAM checkpoints are ResNets, and their key
layouts (``shared/reference``) decide how each module is placed.
"""

from __future__ import annotations

from attnviz.backbones.resnet import (
    RESNET_ATTENTIONS,
    RESNET_DEPTHS,
    RESNET_LAYOUTS,
    AttnResNet,
    build_resnet,
    target_layer_name,
)

__all__ = [
    "RESNET_ATTENTIONS",
    "RESNET_DEPTHS",
    "RESNET_LAYOUTS",
    "AttnResNet",
    "build_resnet",
    "target_layer_name",
]
