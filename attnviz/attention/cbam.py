"""CBAM (Woo et al., ECCV 2018) and its halves CAM and SAM.

Child and layer names copy the official code (github.com/Jongchan/attention-module), so the
published CBAM checkpoints, and the SimAM repo's CBAM ResNets, load strictly:
``ChannelGate.mlp.{1,3}`` and ``SpatialGate.spatial.{conv,bn}``. CAM and SAM reuse the same
child names, so a CBAM checkpoint's sub-keys load into them too.

The gates only compute; the outer module (CBAM, CAM, SAM) records, because the recorder names
a record after the module passed to ``record()`` and users know the outer module's path.
"""

from __future__ import annotations

import torch
from torch import nn

from attnviz.attention.se import hidden_channels, record_channel_weights
from attnviz.recorder import bypassed, current, record


class ChannelGate(nn.Module):
    """avg- and max-pooled descriptors through one shared MLP, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels),
        )

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights (B,C) in (0,1)."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]


class ChannelPool(nn.Module):
    """[max, mean] over channels, in that order (the order the published 7x7 conv expects)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)


class BasicConv(nn.Module):
    """Conv + BN as in the official code (its optional ReLU is off for the spatial gate)."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SpatialGate(nn.Module):
    """ChannelPool -> 7x7 conv -> BN -> sigmoid: one mask value per position."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, padding=(kernel_size - 1) // 2)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial mask (B,1,H,W) in (0,1)."""
        return torch.sigmoid(self.spatial(self.compress(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask(x)


def _apply_channel(owner: nn.Module, kind: str, gate: ChannelGate, x: torch.Tensor) -> torch.Tensor:
    weights = gate.weights(x)
    record_channel_weights(owner, kind, x, weights)
    return x * weights[:, :, None, None]


def _apply_spatial(owner: nn.Module, kind: str, gate: SpatialGate, x: torch.Tensor) -> torch.Tensor:
    mask = gate.mask(x)
    if current() is not None:
        record(owner, kind, "spatial_mask", mask)
    return x * mask


class CBAM(nn.Module):
    """Channel gate, then spatial gate on the channel-refined features.

    Records ``"channel_weights"`` (B,C), ``"top_channels"`` (B,k,H,W) and, unless
    ``no_spatial``, ``"spatial_mask"`` (B,1,H,W).
    """

    def __init__(self, channels: int, reduction: int = 16, no_spatial: bool = False) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        out = _apply_channel(self, "cbam", self.ChannelGate, x)
        if not self.no_spatial:
            out = _apply_spatial(self, "cbam", self.SpatialGate, out)
        return out


class CAM(nn.Module):
    """CBAM's channel gate alone; records ``"channel_weights"`` and ``"top_channels"``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        return _apply_channel(self, "cam", self.ChannelGate, x)


class SAM(nn.Module):
    """CBAM's spatial gate alone; records ``"spatial_mask"`` (B,1,H,W).

    ``channels`` is accepted only so that every module fits ``create_attention(kind, channels)``;
    the gate works on any channel count.
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 7) -> None:
        super().__init__()
        self.SpatialGate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        return _apply_spatial(self, "sam", self.SpatialGate, x)
