"""Spatial transformer (Jaderberg et al., NeurIPS 2015) at the network input.

What it "attends to" is the affine transform itself and the image it resamples, so those are
what it records. The localisation net ends in an adaptive pool, so any input size works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.recorder import bypassed, record

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class SpatialTransformer(nn.Module):
    """Affine STN; records ``"theta"`` (B,2,3) and ``"resampled"`` (B,C,H,W).

    The last FC layer starts at the identity transform (zero weight, identity bias), so a new
    STN passes its input through unchanged until it is trained.
    """

    def __init__(self, in_channels: int = 3, hidden: int = 32, pool_size: int = 4) -> None:
        super().__init__()
        self.localization = nn.Sequential(
            nn.Conv2d(in_channels, 8, kernel_size=7, padding=3),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.ReLU(),
            nn.Conv2d(8, 10, kernel_size=5, padding=2),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(pool_size),
        )
        self.fc_loc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(10 * pool_size * pool_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 6),
        )
        nn.init.zeros_(self.fc_loc[3].weight)
        with torch.no_grad():
            self.fc_loc[3].bias.copy_(torch.tensor(IDENTITY_THETA))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        theta = self.fc_loc(self.localization(x)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, align_corners=False)
        record(self, "stn", "theta", theta)
        record(self, "stn", "resampled", out)
        return out
