"""Non-local block, embedded-Gaussian version (Wang et al., CVPR 2018).

Named ``nonlocal_block`` because ``nonlocal`` is a Python keyword. Layer names follow the
widely used reference implementation (``g``, ``theta``, ``phi``, ``W.0`` conv, ``W.1`` BN).
"""

from __future__ import annotations

import torch
from torch import nn

from attnviz.recorder import bypassed, record


class NonLocalBlock(nn.Module):
    """``z = W(softmax(theta^T phi) g) + x``; records ``"affinity"`` (B, HW, H'W').

    Rows are query positions and sum to 1. Without ``sub_sample`` the keys are all positions,
    so the map is (B, HW, HW); with it the keys come from a 2x max-pooled grid. Meta:
    ``height``/``width`` of the query grid and ``key_height``/``key_width`` of the key grid.
    With ``bn_layer`` the BN after W starts at zero (the paper's init), so a new block is an
    identity and can be dropped into a pretrained network.
    """

    def __init__(
        self,
        channels: int,
        inter_channels: int | None = None,
        sub_sample: bool = False,
        bn_layer: bool = True,
    ) -> None:
        super().__init__()
        inter = inter_channels if inter_channels is not None else max(channels // 2, 1)
        self.inter_channels = inter
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        if bn_layer:
            self.W = nn.Sequential(
                nn.Conv2d(inter, channels, kernel_size=1), nn.BatchNorm2d(channels)
            )
            nn.init.zeros_(self.W[1].weight)
            nn.init.zeros_(self.W[1].bias)
        else:
            self.W = nn.Conv2d(inter, channels, kernel_size=1)
            nn.init.zeros_(self.W.weight)
            nn.init.zeros_(self.W.bias)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(2))
            self.phi = nn.Sequential(self.phi, nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi_map = self.phi(x)
        phi = phi_map.flatten(2)  # (B, C', N)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        affinity = torch.softmax(theta @ phi, dim=-1)  # (B, HW, N)
        record(
            self,
            "nonlocal",
            "affinity",
            affinity,
            height=h,
            width=w,
            key_height=phi_map.shape[-2],
            key_width=phi_map.shape[-1],
        )
        y = (affinity @ g).transpose(1, 2).reshape(b, self.inter_channels, h, w)
        return self.W(y) + x
