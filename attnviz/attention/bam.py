"""BAM: Bottleneck Attention Module (Park et al., BMVC 2018).

Layer names copy the official code (github.com/Jongchan/attention-module, ``bam.py``:
``channel_att.gate_c.*``, ``spatial_att.gate_s.*``) so its checkpoints load strictly.

One deliberate difference: the official code combines the branches as
``1 + sigmoid(channel * spatial)``; the paper (eq. 1) and DESIGN.md say
``1 + sigmoid(channel + spatial)``, which is what this module computes. Weights trained with
the official code therefore load but do not reproduce its outputs exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.attention.se import hidden_channels
from attnviz.recorder import bypassed, record


class BAMChannelGate(nn.Module):
    """avg-pool -> FC -> BN -> ReLU -> FC: one logit per channel (B,C)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction)
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", nn.Flatten())
        self.gate_c.add_module("gate_c_fc_0", nn.Linear(channels, hidden))
        self.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(hidden))
        self.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(F.adaptive_avg_pool2d(x, 1))


class BAMSpatialGate(nn.Module):
    """1x1 reduce -> two dilated 3x3 -> 1x1 to one channel, BN+ReLU between: (B,1,H,W) logits.

    The dilation widens the receptive field cheaply, which is why BAM sits at stage ends.
    """

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction)
        g = nn.Sequential()
        g.add_module("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, kernel_size=1))
        g.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        g.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(2):
            conv = nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation)
            g.add_module(f"gate_s_conv_di_{i}", conv)
            g.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            g.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        g.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1))
        self.gate_s = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)


class BAM(nn.Module):
    """``out = x * (1 + sigmoid(channel + spatial))``.

    Records ``"attention"`` (B,C,H,W), the 3-D map, with values in (1,2).
    """

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        self.channel_att = BAMChannelGate(channels, reduction)
        self.spatial_att = BAMSpatialGate(channels, reduction, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        channel = self.channel_att(x)[:, :, None, None]
        attention = 1 + torch.sigmoid(channel + self.spatial_att(x))
        record(self, "bam", "attention", attention)
        return x * attention
