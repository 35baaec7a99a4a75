"""Squeeze-and-Excitation (Hu et al., 2018), with the SimAM repo's key layout.

The layer names (``fc.0``, ``fc.2``, both without bias) are those of the SE ResNets trained
in the SimAM repository, so their checkpoints load strictly. The hard-sigmoid gate is the
MobileNetV3 / GhostNet variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.errors import SettingsError, choices_message
from attnviz.recorder import bypassed, current, record

SE_GATES = ("sigmoid", "hard_sigmoid")
TOP_K = 8


def hidden_channels(channels: int, reduction: int) -> int:
    """Bottleneck width; at least 1 so that tiny test modules still work."""
    return max(channels // reduction, 1)


def top_channel_maps(x: torch.Tensor, weights: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The input maps (B,k,H,W) of each item's k most strongly weighted channels, and their
    indices (B,k); one definition for attnviz's own gates and the foreign ones it hooks."""
    idx = weights.detach().topk(min(TOP_K, weights.shape[1]), dim=1).indices
    feats = torch.gather(x.detach(), 1, idx[:, :, None, None].expand(-1, -1, *x.shape[-2:]))
    return feats, idx


def record_channel_weights(
    owner: nn.Module, module_kind: str, x: torch.Tensor, weights: torch.Tensor
) -> None:
    """Report channel weights (B,C) and the input maps of the top-k channels (B,k,H,W).

    Shared by SE and CBAM/CAM: a bar chart of weights says little on its own, the feature
    maps the module amplifies most say what it looks at. ``channels`` names the top channels
    of batch item 0 (the one a UI shows); ``indices`` has them for every item.
    """
    rec = current()
    if rec is None or not rec.keep:
        return
    record(owner, module_kind, "channel_weights", weights)
    feats, idx = top_channel_maps(x, weights)
    record(
        owner,
        module_kind,
        "top_channels",
        feats,
        channels=idx[0].tolist(),
        indices=idx.tolist(),
    )


def _gate(name: str) -> nn.Module:
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "hard_sigmoid":
        return nn.Hardsigmoid()
    raise SettingsError(choices_message("SE gate", name, SE_GATES))


class SE(nn.Module):
    """avg-pool -> FC C->C/r -> ReLU -> FC C/r->C -> gate; records ``"channel_weights"``
    (B,C) and ``"top_channels"`` (B,k,H,W)."""

    def __init__(self, channels: int, reduction: int = 16, gate: str = "sigmoid") -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, channels, bias=False),
            _gate(gate),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        weights = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        record_channel_weights(self, "se", x, weights)
        return x * weights[:, :, None, None]
