"""Each module's output and records against its formula, recomputed here from its weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.attention import BAM, CAM, CBAM, SAM, SE, NonLocalBlock, SpatialTransformer
from attnviz.recorder import RawRecord, Recorder, recording


def run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, RawRecord]]:
    """Forward inside a recorder; records by kind (each kind appears once per call)."""
    model = nn.Sequential(module).eval()
    with torch.no_grad(), recording(Recorder(model)) as rec:
        out = model(x)
    by_kind = {r.kind: r for r in rec.records}
    assert len(by_kind) == len(rec.records)
    assert all(r.layer == "0" for r in rec.records)
    return out, by_kind


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that a wrong formula cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def bn(z: torch.Tensor, m: nn.Module) -> torch.Tensor:
    shape = (1, -1) + (1,) * (z.dim() - 2)
    mean, var = m.running_mean.view(shape), m.running_var.view(shape)
    return (z - mean) / torch.sqrt(var + m.eps) * m.weight.view(shape) + m.bias.view(shape)


def check_top_channels(rec: dict[str, RawRecord], x: torch.Tensor, weights: torch.Tensor) -> None:
    k = min(8, x.shape[1])
    top = rec["top_channels"]
    assert top.tensor.shape == (x.shape[0], k, *x.shape[2:])
    for b in range(x.shape[0]):
        order = sorted(range(x.shape[1]), key=lambda c: -float(weights[b, c]))[:k]
        torch.testing.assert_close(top.tensor[b], x[b, order])
        assert top.meta["indices"][b] == order
    assert top.meta["channels"] == top.meta["indices"][0]


# --- SE ---------------------------------------------------------------------------------


def test_se_sigmoid_formula_and_records() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 4)
    se = randomize(SE(32, reduction=4))
    out, rec = run(se, x)
    sd = se.state_dict()
    hidden = F.relu(x.mean(dim=(2, 3)) @ sd["fc.0.weight"].T)
    weights = 1 / (1 + torch.exp(-(hidden @ sd["fc.2.weight"].T)))
    torch.testing.assert_close(out, x * weights[:, :, None, None])
    cw = rec["channel_weights"]
    assert cw.module == "se"
    assert cw.tensor.shape == (2, 32)
    assert bool(((cw.tensor > 0) & (cw.tensor < 1)).all())
    torch.testing.assert_close(cw.tensor, weights)
    check_top_channels(rec, x, weights)


def test_se_hard_sigmoid_formula() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 16, 3, 3) * 3
    se = randomize(SE(16, reduction=4, gate="hard_sigmoid"), seed=1)
    out, rec = run(se, x)
    sd = se.state_dict()
    z = F.relu(x.mean(dim=(2, 3)) @ sd["fc.0.weight"].T) @ sd["fc.2.weight"].T
    weights = torch.clamp(z + 3, 0, 6) / 6
    torch.testing.assert_close(out, x * weights[:, :, None, None])
    assert bool(((rec["channel_weights"].tensor >= 0) & (rec["channel_weights"].tensor <= 1)).all())


def test_se_few_channels_top_k_is_all() -> None:
    x = torch.randn(1, 4, 2, 2)
    _, rec = run(SE(4, reduction=2), x)
    assert rec["top_channels"].tensor.shape == (1, 4, 2, 2)


# --- CBAM / CAM / SAM -------------------------------------------------------------------


def channel_gate_ref(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    def mlp(v: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(v, sd[prefix + "mlp.1.weight"], sd[prefix + "mlp.1.bias"]))
        return F.linear(h, sd[prefix + "mlp.3.weight"], sd[prefix + "mlp.3.bias"])

    return torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))


def spatial_gate_ref(x: torch.Tensor, gate: nn.Module) -> torch.Tensor:
    pooled = torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)
    z = F.conv2d(pooled, gate.spatial.conv.weight, padding=3)
    return torch.sigmoid(bn(z, gate.spatial.bn))


def test_cbam_formula_and_records() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 32, 9, 8)
    cbam = randomize(CBAM(32, reduction=8), seed=2)
    out, rec = run(cbam, x)
    weights = channel_gate_ref(x, cbam.state_dict(), "ChannelGate.")
    x1 = x * weights[:, :, None, None]
    mask = spatial_gate_ref(x1, cbam.SpatialGate)
    torch.testing.assert_close(out, x1 * mask)
    assert set(rec) == {"channel_weights", "top_channels", "spatial_mask"}
    assert all(r.module == "cbam" for r in rec.values())
    torch.testing.assert_close(rec["channel_weights"].tensor, weights)
    sm = rec["spatial_mask"].tensor
    assert sm.shape == (2, 1, 9, 8)
    assert bool(((sm > 0) & (sm < 1)).all())
    torch.testing.assert_close(sm, mask)
    check_top_channels(rec, x, weights)


def test_cbam_no_spatial() -> None:
    cbam = CBAM(16, reduction=4, no_spatial=True)
    assert not any(k.startswith("SpatialGate") for k in cbam.state_dict())
    _, rec = run(cbam, torch.randn(1, 16, 3, 3))
    assert set(rec) == {"channel_weights", "top_channels"}


def test_cam_formula_and_records() -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 16, 4, 5)
    cam = randomize(CAM(16, reduction=4), seed=3)
    out, rec = run(cam, x)
    weights = channel_gate_ref(x, cam.state_dict(), "ChannelGate.")
    torch.testing.assert_close(out, x * weights[:, :, None, None])
    assert set(rec) == {"channel_weights", "top_channels"}
    assert rec["channel_weights"].module == "cam"
    check_top_channels(rec, x, weights)


def test_sam_formula_and_records() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 6, 10, 7)
    sam = randomize(SAM(6), seed=4)
    out, rec = run(sam, x)
    mask = spatial_gate_ref(x, sam.SpatialGate)
    torch.testing.assert_close(out, x * mask)
    assert set(rec) == {"spatial_mask"}
    assert rec["spatial_mask"].module == "sam"
    assert rec["spatial_mask"].tensor.shape == (2, 1, 10, 7)


def test_cbam_sub_keys_load_into_cam_and_sam() -> None:
    cbam = randomize(CBAM(16, reduction=4), seed=5)
    sd = cbam.state_dict()
    cam, sam = CAM(16, reduction=4), SAM(16)
    cam.load_state_dict({k: v for k, v in sd.items() if k.startswith("ChannelGate.")})
    sam.load_state_dict({k: v for k, v in sd.items() if k.startswith("SpatialGate.")})
    key = "ChannelGate.mlp.3.bias"
    torch.testing.assert_close(cam.state_dict()[key], sd[key])


# --- BAM ----------------------------------------------------------------------------------


def test_bam_formula_and_record() -> None:
    torch.manual_seed(6)
    x = torch.randn(2, 32, 9, 9)
    bam = randomize(BAM(32, reduction=8), seed=6)
    out, rec = run(bam, x)
    cg, sg = bam.channel_att.gate_c, bam.spatial_att.gate_s
    c = F.linear(x.mean(dim=(2, 3)), cg.gate_c_fc_0.weight, cg.gate_c_fc_0.bias)
    c = F.relu(bn(c, cg.gate_c_bn_1))
    c = F.linear(c, cg.gate_c_fc_final.weight, cg.gate_c_fc_final.bias)
    s = F.conv2d(x, sg.gate_s_conv_reduce0.weight, sg.gate_s_conv_reduce0.bias)
    s = F.relu(bn(s, sg.gate_s_bn_reduce0))
    for i in range(2):
        conv = getattr(sg, f"gate_s_conv_di_{i}")
        s = F.conv2d(s, conv.weight, conv.bias, padding=4, dilation=4)
        s = F.relu(bn(s, getattr(sg, f"gate_s_bn_di_{i}")))
    s = F.conv2d(s, sg.gate_s_conv_final.weight, sg.gate_s_conv_final.bias)
    attention = 1 + torch.sigmoid(c[:, :, None, None] + s)
    torch.testing.assert_close(out, x * attention)
    att = rec["attention"]
    assert att.module == "bam"
    assert att.tensor.shape == (2, 32, 9, 9)
    assert bool(((att.tensor > 1) & (att.tensor < 2)).all())
    torch.testing.assert_close(att.tensor, attention)


# --- Non-local ----------------------------------------------------------------------------


def test_nonlocal_affinity_rows_and_identity_init() -> None:
    torch.manual_seed(7)
    x = torch.randn(2, 8, 4, 5)
    out, rec = run(NonLocalBlock(8), x)
    torch.testing.assert_close(out, x)
    aff = rec["affinity"]
    assert aff.module == "nonlocal"
    assert aff.tensor.shape == (2, 20, 20)
    assert (aff.meta["height"], aff.meta["width"]) == (4, 5)
    torch.testing.assert_close(aff.tensor.sum(-1), torch.ones(2, 20))
    assert bool((aff.tensor >= 0).all())


def test_nonlocal_formula() -> None:
    torch.manual_seed(8)
    x = torch.randn(2, 8, 3, 4)
    block = randomize(NonLocalBlock(8, inter_channels=4), seed=8)
    out, rec = run(block, x)
    sd = block.state_dict()

    def conv(name: str, v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, sd[name + ".weight"], sd[name + ".bias"])

    theta = conv("theta", x).flatten(2)  # (B, C', N)
    phi = conv("phi", x).flatten(2)
    g = conv("g", x).flatten(2)
    f = torch.softmax(torch.einsum("bcq,bck->bqk", theta, phi), dim=-1)
    y = torch.einsum("bqk,bck->bcq", f, g).reshape(2, 4, 3, 4)
    torch.testing.assert_close(out, bn(conv("W.0", y), block.W[1]) + x)
    torch.testing.assert_close(rec["affinity"].tensor, f)


def test_nonlocal_sub_sample_shapes() -> None:
    out, rec = run(NonLocalBlock(4, sub_sample=True), torch.randn(1, 4, 6, 4))
    aff = rec["affinity"]
    assert aff.tensor.shape == (1, 24, 6)
    assert (aff.meta["key_height"], aff.meta["key_width"]) == (3, 2)
    assert out.shape == (1, 4, 6, 4)


# --- STN ----------------------------------------------------------------------------------


def test_stn_identity_init() -> None:
    torch.manual_seed(9)
    x = torch.randn(2, 3, 12, 10)
    out, rec = run(SpatialTransformer(), x)
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    torch.testing.assert_close(rec["theta"].tensor, eye)
    torch.testing.assert_close(rec["resampled"].tensor, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)
    assert rec["theta"].module == "stn"


def test_stn_horizontal_flip() -> None:
    x = torch.randn(1, 2, 5, 6)
    stn = SpatialTransformer(in_channels=2)
    with torch.no_grad():
        stn.fc_loc[3].bias.copy_(torch.tensor([-1.0, 0, 0, 0, 1, 0]))
    out, rec = run(stn, x)
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=1e-5)
    assert rec["resampled"].tensor.shape == (1, 2, 5, 6)


def test_stn_tiny_input() -> None:
    out, _ = run(SpatialTransformer(in_channels=1), torch.randn(1, 1, 1, 1))
    assert out.shape == (1, 1, 1, 1)
