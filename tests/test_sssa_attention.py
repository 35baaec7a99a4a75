"""SSSA against a position-by-position reference, and its branch-share record."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnviz.attention import SSSA
from attnviz.errors import SettingsError
from attnviz.recorder import Recorder, recording


def forward(block: SSSA, x: torch.Tensor):
    model = nn.Sequential(block).eval()
    with torch.no_grad(), recording(Recorder(model)) as rec:
        out = model(x)
    [r] = rec.records
    assert (r.layer, r.module, r.kind) == ("0", "sssa", "branch_share")
    return out, r.tensor


def reference_branches(block: SSSA, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loops over positions: local window (inside the map only) and pooled global grid."""
    sd = block.state_dict()
    q = F.conv2d(x, sd["query.weight"], sd["query.bias"])
    k = F.conv2d(x, sd["key.weight"], sd["key.bias"])
    v = F.conv2d(x, sd["value.weight"], sd["value.bias"])
    b, _, h, w = v.shape
    scale = 1 / math.sqrt(q.shape[1])
    r = block.window // 2
    gh, gw = min(block.grid, h), min(block.grid, w)
    kg = F.adaptive_avg_pool2d(k, (gh, gw)).flatten(2)
    vg = F.adaptive_avg_pool2d(v, (gh, gw)).flatten(2)
    local, glob = torch.zeros_like(v), torch.zeros_like(v)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                qv = q[n, :, i, j]
                nb = [
                    (a, bb)
                    for a in range(i - r, i + r + 1)
                    for bb in range(j - r, j + r + 1)
                    if 0 <= a < h and 0 <= bb < w
                ]
                logits = torch.stack([qv @ k[n, :, a, bb] for a, bb in nb]) * scale
                att = torch.softmax(logits, 0)
                local[n, :, i, j] = sum(att[m] * v[n, :, a, bb] for m, (a, bb) in enumerate(nb))
                att_g = torch.softmax((qv @ kg[n]) * scale, 0)
                glob[n, :, i, j] = vg[n] @ att_g
    return local, glob


def test_zero_init_is_identity_and_share_falls_back_to_branch_norms() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6)
    block = SSSA(4, window=3, grid=2)
    out, share = forward(block, x)
    torch.testing.assert_close(out, x)
    local, glob = reference_branches(block, x)
    nl, ng = local.norm(dim=1), glob.norm(dim=1)
    torch.testing.assert_close(share, torch.stack([nl / (nl + ng), ng / (nl + ng)], dim=1))


def test_trained_fusion_output_and_share() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 4, 5, 5)
    block = SSSA(4, window=3, grid=2, reduction=2)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    out, share = forward(block, x)
    local, glob = reference_branches(block, x)
    wf = block.fuse.weight[:, :, 0, 0]
    fused = torch.einsum("oc,bchw->bohw", wf, torch.cat([local, glob], 1))
    torch.testing.assert_close(out, x + fused + block.fuse.bias.view(1, -1, 1, 1))
    nl = torch.einsum("oc,bchw->bohw", wf[:, :4], local).norm(dim=1)
    ng = torch.einsum("oc,bchw->bohw", wf[:, 4:], glob).norm(dim=1)
    torch.testing.assert_close(share[:, 0], nl / (nl + ng))


def test_share_range_sum_and_shape_default_sizes() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 8, 9, 18)
    block = SSSA(8)
    with torch.no_grad():
        block.fuse.weight.normal_()
    out, share = forward(block, x)
    assert out.shape == x.shape
    assert share.shape == (2, 2, 9, 18)
    assert bool(((share >= 0) & (share <= 1)).all())
    torch.testing.assert_close(share.sum(1), torch.ones(2, 9, 18))


def test_share_is_half_where_both_branches_vanish() -> None:
    block = SSSA(2, window=3, grid=2)
    with torch.no_grad():
        block.value.weight.zero_()
        block.value.bias.zero_()
    _, share = forward(block, torch.randn(1, 2, 3, 3))
    torch.testing.assert_close(share, torch.full((1, 2, 3, 3), 0.5))


@pytest.mark.parametrize("kwargs", [{"window": 4}, {"window": 0}, {"grid": 0}])
def test_bad_sizes_are_settings_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(SettingsError):
        SSSA(4, **kwargs)
