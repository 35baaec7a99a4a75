"""SSSA: spatial self-attention with a local window branch and a global pooled branch.

Each position attends (a) to the keys in its ``window x window`` neighbourhood and (b) to the
keys of the feature map average-pooled to a ``grid x grid`` layout. A 1x1 conv fuses
``[local, global]`` (2C -> C) and the result is added to the input. The question a user asks
of this module is "does this position rely on local or on global context?", so it records the
share of each branch in the fused output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.errors import SettingsError
from attnviz.recorder import bypassed, current, record


def branch_share(
    fuse_weight: torch.Tensor, local: torch.Tensor, glob: torch.Tensor
) -> torch.Tensor:
    """Per-position share of each branch (B,2,H,W): channel 0 local, channel 1 global.

    ``n_l = ||W_local @ local||_2`` over output channels, where ``W_local`` is the fusion
    conv's columns acting on the local half (likewise ``n_g``); share = ``n / (n_l + n_g)``.
    When the fusion weight is all zero (a freshly initialised block) those norms carry no
    information, so the norms of the branch outputs themselves are used instead. Where both
    norms are 0 the shares are 0.5 each, so the two channels always sum to 1.
    """
    c = local.shape[1]
    w = fuse_weight.flatten(1)  # (C, 2C)
    if torch.count_nonzero(w) == 0:
        n_l, n_g = local.norm(dim=1), glob.norm(dim=1)
    else:
        n_l = torch.einsum("oc,bchw->bohw", w[:, :c], local).norm(dim=1)
        n_g = torch.einsum("oc,bchw->bohw", w[:, c:], glob).norm(dim=1)
    total = n_l + n_g
    safe = torch.where(total > 0, total, torch.ones_like(total))
    share_l = torch.where(total > 0, n_l / safe, torch.full_like(total, 0.5))
    return torch.stack([share_l, 1 - share_l], dim=1)


class SSSA(nn.Module):
    """Local (window) + global (pooled grid) self-attention; records ``"branch_share"`` (B,2,H,W).

    The fusion conv starts at zero, so a new block is an identity; ``branch_share`` then falls
    back to the branch output norms (see :func:`branch_share`).
    """

    def __init__(self, channels: int, window: int = 7, grid: int = 16, reduction: int = 8) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise SettingsError(f"SSSA window must be an odd positive size, got {window}")
        if grid < 1:
            raise SettingsError(f"SSSA grid must be positive, got {grid}")
        qk = max(channels // reduction, 1)
        self.window = window
        self.grid = grid
        self.scale = 1.0 / math.sqrt(qk)
        self.query = nn.Conv2d(channels, qk, kernel_size=1)
        self.key = nn.Conv2d(channels, qk, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.fuse = nn.Conv2d(2 * channels, channels, kernel_size=1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def extra_repr(self) -> str:
        return f"window={self.window}, grid={self.grid}"

    def _local(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, d, h, w = q.shape
        n, pad = self.window * self.window, self.window // 2
        keys = F.unfold(k, self.window, padding=pad).view(b, d, n, h * w)
        values = F.unfold(v, self.window, padding=pad).view(b, v.shape[1], n, h * w)
        # Zero padding would look like real keys with logit 0: mask positions off the map.
        inside = F.unfold(q.new_ones(1, 1, h, w), self.window, padding=pad).view(1, n, h * w) > 0
        logits = (q.view(b, d, 1, h * w) * keys).sum(1) * self.scale  # (B, n, HW)
        attn = torch.softmax(logits.masked_fill(~inside, float("-inf")), dim=1)
        return (values * attn[:, None]).sum(2).view(b, v.shape[1], h, w)

    def _global(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q.shape
        size = (min(self.grid, h), min(self.grid, w))  # never upsample into duplicate keys
        keys = F.adaptive_avg_pool2d(k, size).flatten(2)  # (B, d, G)
        values = F.adaptive_avg_pool2d(v, size).flatten(2)  # (B, C, G)
        attn = torch.softmax(q.flatten(2).transpose(1, 2) @ keys * self.scale, dim=-1)  # (B,HW,G)
        return (values @ attn.transpose(1, 2)).view(b, v.shape[1], h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        q, k, v = self.query(x), self.key(x), self.value(x)
        local, glob = self._local(q, k, v), self._global(q, k, v)
        if current() is not None:
            record(self, "sssa", "branch_share", branch_share(self.fuse.weight, local, glob))
        return x + self.fuse(torch.cat([local, glob], dim=1))
