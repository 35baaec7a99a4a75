"""Finding attention in networks attnviz does not know: by type, and by behaviour.

The third-party modules below are written the way blogs and repositories write them; each must
be found with the right kind, and the map attnviz records must equal the gate the module really
multiplies by. Plain blocks and whole standard networks must not produce false findings.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnviz.attention.detect import (
    detect_attention,
    estimate_simam_lambda,
    install_detected_recorders,
)
from attnviz.attention.simam import simam_energy
from attnviz.errors import SettingsError
from attnviz.recorder import Recorder, recording

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------- third-party-style modules


class SELayer(nn.Module):
    """The common blog SE: nn.Linear excitation, x * y.expand_as(x)."""

    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)

    def true_gate(self, x):
        return self.fc(self.avg_pool(x).flatten(1))


class HSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


class SqueezeExciteHS(nn.Module):
    """1x1 convs and a hard-sigmoid (MobileNetV3 blog style)."""

    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(c // r, c, 1)
        self.gate = HSigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))

    def true_gate(self, x):
        return self.gate(self.expand(self.act(self.reduce(self.pool(x))))).flatten(1)


class FunctionalSE(nn.Module):
    """An SE whose sigmoid is functional: no gate module to hook, the gate is recovered."""

    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 2, 1)
        self.fc2 = nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        return x * self.true_gate(x)[:, :, None, None]

    def true_gate(self, x):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))).flatten(1)


class ChannelAttention(nn.Module):
    def __init__(self, c, ratio=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(c, c // ratio, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(c // ratio, c, 1, bias=False))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.fc(self.avg_pool(x)) + self.fc(self.max_pool(x)))


class SpatialAttention(nn.Module):
    """Returns the gate only: sigmoid(conv([mean, max]))."""

    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class ThirdPartyCBAM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ca = ChannelAttention(c)
        self.sa = SpatialAttention()

    def forward(self, x):
        x = x * self.ca(x)
        return x * self.sa(x)


class Simam(nn.Module):
    """SimAM copied in the official style (under another class name)."""

    def __init__(self, channels=None, e_lambda=1e-4):
        super().__init__()
        self.activaton = nn.Sigmoid()
        self.e_lambda = e_lambda

    def forward(self, x):
        b, c, h, w = x.size()
        n = w * h - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = x_minus_mu_square / (
            4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * self.activaton(y)


class PlainBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class SABlock(nn.Module):
    """A residual block that multiplies its features by a SpatialAttention's mask."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.sa = SpatialAttention()

    def forward(self, x):
        out = self.conv(x)
        out = out * self.sa(out)
        return torch.relu(out + x)


class Net(nn.Module):
    def __init__(self, c=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.block1 = PlainBlock(c)
        self.se = SELayer(c)
        self.se_hs = SqueezeExciteHS(c)
        self.se_fn = FunctionalSE(c)
        self.cbam = ThirdPartyCBAM(c)
        self.block2 = SABlock(c)
        self.simam = Simam(e_lambda=0.1)
        self.silu = nn.SiLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x):
        x = self.block1(self.stem(x))
        x = self.se_fn(self.se_hs(self.se(x)))
        x = self.simam(self.block2(self.cbam(x)))
        return self.head(self.silu(x))


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BatchNorm (scale, bias, running stats), so BN is not an identity."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = _randomise_bn(Net())
    found = detect_attention(model, input_size=24)
    install_detected_recorders(model, found)
    return model, found


def _inputs_of(model: nn.Module, names: list[str], x: torch.Tensor):
    """Record what each named module got and the recorder's records, in one pass."""
    seen = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, i[0].detach())) for n in names]
    try:
        with torch.no_grad(), recording(Recorder(model)) as rec:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen, {(r.layer, r.kind): r.tensor for r in rec.records}


# ----------------------------------------------------------------- behaviour: found, right kind


def test_each_third_party_module_is_found_with_its_kind(net):
    _, found = net
    kinds = {f.layer: f.module_kind for f in found}
    assert kinds == {"se": "se", "se_hs": "se", "se_fn": "se", "cbam": "cbam",
                     "block2.sa": "sam", "simam": "simam"}
    for f in found:
        assert f.how == "behaviour" and 0.5 <= f.confidence <= 1 and f.reason


def test_plain_blocks_and_activations_are_not_reported(net):
    _, found = net
    layers = {f.layer for f in found}
    assert not layers & {"block1", "block1.bn1", "block1.relu", "stem", "silu", "head",
                         "cbam.ca", "cbam.sa", "se.fc", "block2"}


def test_recorded_gates_equal_the_true_gates(net):
    model, _ = net
    x = torch.randn(2, 3, 20, 28)
    names = ["se", "se_hs", "se_fn", "cbam", "block2.sa", "simam"]
    inputs, recs = _inputs_of(model, names, x)
    close = dict(atol=1e-5, rtol=1e-4)
    assert torch.allclose(recs["se", "channel_weights"], model.se.true_gate(inputs["se"]), **close)
    assert torch.allclose(recs["se_hs", "channel_weights"],
                          model.se_hs.true_gate(inputs["se_hs"]), **close)
    assert torch.allclose(recs["se_fn", "channel_weights"],  # recovered from y / x
                          model.se_fn.true_gate(inputs["se_fn"]), **close)
    xc = inputs["cbam"]
    ca = model.cbam.ca(xc)
    assert torch.allclose(recs["cbam", "channel_weights"], ca.flatten(1), **close)
    assert torch.allclose(recs["cbam", "spatial_mask"], model.cbam.sa(xc * ca), **close)
    assert recs["cbam", "top_channels"].shape == (2, 8, 20, 28)
    assert torch.allclose(recs["block2.sa", "spatial_mask"],
                          model.block2.sa(inputs["block2.sa"]), **close)
    assert torch.allclose(recs["simam", "energy"], simam_energy(inputs["simam"], 0.1), **close)


def test_ablation_switches_detected_modules_off(net):
    model, _ = net
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad(), recording(Recorder(model, disabled={"se_fn", "block2.sa"})) as rec:
        out = model(x)
    layers = {r.layer for r in rec.records}
    assert "se_fn" not in layers and "block2.sa" not in layers and "se" in layers
    model.se_fn.forward, original = (lambda t: t), model.se_fn.forward
    try:
        sa, model.block2.sa.forward = model.block2.sa.forward, (lambda t: torch.ones_like(t[:, :1]))
        with torch.no_grad():
            expected = model(x)
    finally:
        model.se_fn.forward = original
        model.block2.sa.forward = sa
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("lam", [1e-4, 0.1, 3.0])
def test_simam_lambda_is_estimated_from_the_gate(lam):
    x = torch.randn(2, 4, 9, 11) * 2 + 0.5
    y = x * torch.sigmoid(simam_energy(x, lam))
    est = estimate_simam_lambda(x, y)
    assert est is not None and abs(est - lam) <= 1e-3 + 0.02 * lam
    assert estimate_simam_lambda(x, x * torch.sigmoid(x)) is None  # SiLU is not SimAM


class Gate3D(nn.Module):
    """A learned 3-D gate in (1, 2), BAM-style, written by someone else."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x * (1 + torch.sigmoid(self.conv(x) + x.mean((2, 3), keepdim=True)))


class SpatialMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class L2Norm(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


def test_recovered_spatial_and_3d_gates_and_low_confidence_lookalikes():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SpatialMul(), Gate3D(8), L2Norm(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    found = {f.layer: f for f in detect_attention(model, input_size=16)}
    assert {k: f.module_kind for k, f in found.items()} == {"1": "sam", "2": "bam"}
    # A parameter-free normalisation looks like a spatial gate: reported only on request.
    low = {f.layer: f for f in detect_attention(model, input_size=16, min_confidence=0.0)}
    assert low["3"].confidence < 0.5 and "parameter-free" in low["3"].reason
    install_detected_recorders(model, list(found.values()))
    x = torch.randn(2, 3, 12, 12)
    inputs, recs = _inputs_of(model, ["1", "2"], x)
    m1, x1 = model[1], inputs["1"]
    pooled = torch.cat([x1.mean(1, keepdim=True), x1.amax(1, keepdim=True)], 1)
    assert torch.allclose(recs["1", "spatial_mask"], torch.sigmoid(m1.conv(pooled)), atol=1e-5)
    x2 = inputs["2"]
    true = 1 + torch.sigmoid(model[2].conv(x2) + x2.mean((2, 3), keepdim=True))
    assert torch.allclose(recs["2", "attention"], true, atol=1e-4)


# ----------------------------------------------------------------- non-local


class PAM(nn.Module):
    """DANet's position attention: softmax affinity as a module, gamma * out + x."""

    def __init__(self, c):
        super().__init__()
        self.query_conv = nn.Conv2d(c, c // 2, 1)
        self.key_conv = nn.Conv2d(c, c // 2, 1)
        self.value_conv = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.ones(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        attention = self.softmax(torch.bmm(q, k))
        v = self.value_conv(x).view(b, -1, h * w)
        out = torch.bmm(v, attention.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class SelfAttn(PAM):
    """SAGAN style: returns (out, attention)."""

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        attention = torch.softmax(torch.bmm(q, self.key_conv(x).view(b, -1, h * w)), dim=-1)
        out = torch.bmm(self.value_conv(x).view(b, -1, h * w), attention.permute(0, 2, 1))
        return self.gamma * out.view(b, c, h, w) + x, attention


class SagNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pam = PAM(8)
        self.attn = SelfAttn(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x, _ = self.attn(self.pam(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_non_local_blocks_that_expose_their_affinity():
    torch.manual_seed(0)
    model = SagNet().eval()
    found = detect_attention(model, input_size=8)
    assert [(f.layer, f.module_kind) for f in found] == [("pam", "nonlocal"),
                                                          ("attn", "nonlocal")]
    install_detected_recorders(model, found)
    x = torch.randn(1, 3, 6, 5)
    inputs, _ = _inputs_of(model, ["pam", "attn"], x)
    with torch.no_grad(), recording(Recorder(model)) as rec:
        model(x)
    affinity = {r.layer: r for r in rec.records if r.kind == "affinity"}
    assert affinity["pam"].tensor.shape == (1, 30, 30)
    assert affinity["pam"].meta == {"height": 6, "width": 5, "key_height": 6, "key_width": 5}
    _, attention = model.attn(inputs["attn"])
    assert torch.allclose(affinity["attn"].tensor, attention)


# ----------------------------------------------------------------- by type: published and timm


def _official_cbam_classes():
    """The CBAM and BAM authors' classes, as their repositories write them."""

    class Flatten(nn.Module):
        def forward(self, x):
            return x.view(x.size(0), -1)

    class BasicConv(nn.Module):
        def __init__(self, i, o, k, padding=0, relu=True, bn=True):
            super().__init__()
            self.conv = nn.Conv2d(i, o, k, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(o, eps=1e-5, momentum=0.01, affine=True) if bn else None
            self.relu = nn.ReLU() if relu else None

        def forward(self, x):
            x = self.conv(x)
            if self.bn is not None:
                x = self.bn(x)
            return self.relu(x) if self.relu is not None else x

    class ChannelGate(nn.Module):
        def __init__(self, gate_channels, reduction_ratio=4, pool_types=("avg", "max")):
            super().__init__()
            self.mlp = nn.Sequential(Flatten(), nn.Linear(gate_channels, gate_channels // 4),
                                     nn.ReLU(), nn.Linear(gate_channels // 4, gate_channels))
            self.pool_types = pool_types

        def forward(self, x):
            att = None
            for pool_type in self.pool_types:
                if pool_type == "avg":
                    raw = self.mlp(F.avg_pool2d(x, (x.size(2), x.size(3))))
                else:
                    raw = self.mlp(F.max_pool2d(x, (x.size(2), x.size(3))))
                att = raw if att is None else att + raw
            return x * torch.sigmoid(att).unsqueeze(2).unsqueeze(3).expand_as(x)

    class ChannelPool(nn.Module):
        def forward(self, x):
            return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)

    class SpatialGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.compress = ChannelPool()
            self.spatial = BasicConv(2, 1, 7, padding=3, relu=False)

        def forward(self, x):
            return x * torch.sigmoid(self.spatial(self.compress(x)))

    class CBAM(nn.Module):
        def __init__(self, gate_channels):
            super().__init__()
            self.ChannelGate = ChannelGate(gate_channels)
            self.SpatialGate = SpatialGate()

        def forward(self, x):
            return self.SpatialGate(self.ChannelGate(x))

    class BAMChannel(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.gate_c = nn.Sequential(Flatten(), nn.Linear(c, c // 4), nn.ReLU(),
                                        nn.Linear(c // 4, c))

        def forward(self, x):
            pooled = F.avg_pool2d(x, x.size(2), stride=x.size(2))
            return self.gate_c(pooled).unsqueeze(2).unsqueeze(3).expand_as(x)

    class BAMSpatial(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.gate_s = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(),
                                        nn.Conv2d(c // 4, 1, 3, padding=4, dilation=4))

        def forward(self, x):
            return self.gate_s(x).expand_as(x)

    class BAM(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.channel_att = BAMChannel(c)
            self.spatial_att = BAMSpatial(c)

        def forward(self, x):
            att = 1 + torch.sigmoid(self.channel_att(x) * self.spatial_att(x))
            return att * x

    class simam_module(Simam):  # noqa: N801 - the official class name
        pass

    return CBAM, SpatialGate, BAM, simam_module


def test_published_classes_are_found_by_type_and_read_exactly():
    CBAM, SpatialGate, BAM, simam_module = _official_cbam_classes()
    torch.manual_seed(0)
    model = _randomise_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), CBAM(8), SpatialGate(),
                                        nn.ReLU(), BAM(8), simam_module(e_lambda=0.1)))
    found = detect_attention(model, input_size=16)
    assert [(f.layer, f.module_kind, f.how, f.source) for f in found] == [
        ("1", "cbam", "type", "published"), ("2", "sam", "type", "published"),
        ("4", "bam", "type", "published"), ("5", "simam", "type", "published")]
    install_detected_recorders(model, found)
    x = torch.randn(2, 3, 12, 12)
    inputs, recs = _inputs_of(model, ["1", "2", "4", "5"], x)
    cbam, x1 = model[1], inputs["1"]
    avg, mx = x1.mean((2, 3)), x1.amax((2, 3))
    cw = torch.sigmoid(cbam.ChannelGate.mlp(avg[..., None, None]) + cbam.ChannelGate.mlp(
        mx[..., None, None]))
    assert torch.allclose(recs["1", "channel_weights"], cw, atol=1e-5)
    refined = x1 * cw[:, :, None, None]
    mask = torch.sigmoid(cbam.SpatialGate.spatial(cbam.SpatialGate.compress(refined)))
    assert torch.allclose(recs["1", "spatial_mask"], mask, atol=1e-5)
    bam, x4 = model[4], inputs["4"]  # after a ReLU: many zeros, still exact
    att = 1 + torch.sigmoid(bam.channel_att(x4) * bam.spatial_att(x4))
    assert torch.allclose(recs["4", "attention"], att, atol=1e-5)
    assert torch.allclose(recs["5", "energy"], simam_energy(inputs["5"], 0.1), atol=1e-5)


def test_timm_attention_layers_are_found_by_type_and_read_from_their_gate():
    from timm.layers.cbam import CbamModule, LightCbamModule
    from timm.layers.eca import EcaModule
    from timm.layers.gather_excite import GatherExcite
    from timm.layers.squeeze_excite import EffectiveSEModule, SEModule

    torch.manual_seed(0)
    c = 16
    model = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), SEModule(c, rd_ratio=0.25),
                          EffectiveSEModule(c), EcaModule(c), CbamModule(c, rd_ratio=0.25),
                          LightCbamModule(c, rd_ratio=0.25),
                          GatherExcite(c, use_mlp=False),  # its MLP fails to build in timm 1.0
                          GatherExcite(c, extent=2, use_mlp=False)).eval()
    found = detect_attention(model, input_size=16)
    assert [(f.layer, f.module_kind, f.source) for f in found] == [
        ("1", "se", "timm"), ("2", "se", "timm"), ("3", "eca", "timm"), ("4", "cbam", "timm"),
        ("5", "cbam", "timm"), ("6", "ge", "timm"), ("7", "ge", "timm")]
    install_detected_recorders(model, found)
    gates = {}
    handles = [model[i].gate.register_forward_hook(
        lambda m, a, o, i=i: gates.__setitem__(i, o.detach())) for i in (1, 2, 3, 6, 7)]
    handles += [model[i].spatial.gate.register_forward_hook(
        lambda m, a, o, i=i: gates.__setitem__(f"s{i}", o.detach())) for i in (4, 5)]
    handles.append(model[4].channel.gate.register_forward_hook(
        lambda m, a, o: gates.__setitem__("c4", o.detach())))
    x = torch.randn(2, 3, 10, 10)
    inputs, recs = _inputs_of(model, ["5"], x)
    for h in handles:
        h.remove()
    for i in (1, 2, 3, 6):
        assert torch.equal(recs[str(i), "channel_weights"], gates[i].reshape(2, -1))
    assert torch.equal(recs["7", "attention"], gates[7])  # a 3-D gather-excite gate
    assert torch.equal(recs["4", "channel_weights"], gates["c4"].flatten(1))
    for i in (4, 5):
        assert torch.equal(recs[str(i), "spatial_mask"], gates[f"s{i}"])
    light = model[5].channel  # functional sigmoid: recovered from y / x
    x5 = inputs["5"]
    pooled = 0.5 * x5.mean((2, 3), keepdim=True) + 0.5 * x5.amax((2, 3), keepdim=True)
    true = torch.sigmoid(light.fc2(light.act(light.fc1(pooled)))).flatten(1)
    assert torch.allclose(recs["5", "channel_weights"], true, atol=1e-5)


# ----------------------------------------------------------------- overrides


def test_overrides_force_a_kind_or_hide_a_layer(net):
    model, _ = net
    found = detect_attention(model, input_size=16,
                             overrides={"simam": "gate3d", "se": "none", "block1": "simam:0.5"})
    kinds = {f.layer: (f.module_kind, f.how) for f in found}
    assert "se" not in kinds
    assert kinds["simam"] == ("gate3d", "override") and kinds["block1"] == ("simam", "override")
    with pytest.raises(SettingsError, match="unknown attention kind 'eca2'.*valid choices"):
        detect_attention(model, input_size=16, overrides={"simam": "eca2"})
    with pytest.raises(SettingsError, match="layer 'nope' does not exist"):
        detect_attention(model, input_size=16, overrides={"nope": "se"})
    with pytest.raises(SettingsError, match="cannot show layer 'head' as sam"):
        detect_attention(model, input_size=16, overrides={"head": "sam"})


# ----------------------------------------------------------------- precision on real networks


class TinyUNet(nn.Module):
    def __init__(self):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o),
                                 nn.ReLU(inplace=True), nn.Conv2d(o, o, 3, padding=1),
                                 nn.InstanceNorm2d(o, affine=True), nn.LeakyReLU(0.1))

        self.down1, self.down2 = block(3, 8), block(8, 16)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.dec = block(24, 8)
        self.drop = nn.Dropout2d(0.1)
        self.head = nn.Sequential(nn.Conv2d(8, 1, 1), nn.Sigmoid())  # a mask, never multiplied

    def forward(self, x):
        a = self.down1(x)
        b = self.down2(self.pool(a))
        return self.head(self.dec(torch.cat([self.drop(self.up(b)), a], 1)))


@pytest.mark.parametrize("name, typed", [("resnet18", 0), ("mobilenet_v3_small", 9),
                                         ("efficientnet_b0", 16), ("regnet_y_400mf", 16),
                                         ("unet", 0)])
def test_no_false_findings_in_standard_networks(name, typed):
    import torchvision

    torch.manual_seed(0)
    model = TinyUNet() if name == "unet" else torchvision.models.get_model(name, weights=None)
    _randomise_bn(model)
    found = detect_attention(model, input_size=32, min_confidence=0.0)
    assert [f.layer for f in found if f.how != "type"] == []
    assert len(found) == typed
