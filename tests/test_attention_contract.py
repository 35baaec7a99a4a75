"""The contract every attention module shares: factory, bypass, per-call records, key layouts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch import nn

from attnviz.attention import ATTENTION_KINDS, CBAM, SE, create_attention
from attnviz.errors import SettingsError
from attnviz.recorder import Recorder, recording

CHANNELS = 16
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def build(kind: str) -> nn.Module:
    kwargs = {"reduction": 4} if kind in {"se", "cbam", "cam", "bam"} else {}
    module = create_attention(kind, CHANNELS, **kwargs)
    return nn.Sequential(module).eval()


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(SettingsError) as info:
        create_attention("eca", 8)
    message = str(info.value)
    assert "'eca'" in message
    for kind in ATTENTION_KINDS:
        assert kind in message


def test_unknown_se_gate() -> None:
    with pytest.raises(SettingsError, match="hard_sigmoid"):
        SE(8, gate="swish")


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_kind_records_under_its_own_name(kind: str) -> None:
    torch.manual_seed(0)
    model = build(kind)
    x = torch.randn(2, CHANNELS, 6, 6)
    with torch.no_grad(), recording(Recorder(model)) as rec:
        out = model(x)
    assert out.shape == x.shape
    assert rec.records
    for r in rec.records:
        assert (r.layer, r.module) == ("0", kind)
        assert r.tensor.shape[0] == 2
        assert not r.tensor.requires_grad


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_bypass_is_identity_and_records_nothing(kind: str) -> None:
    model = build(kind)
    x = torch.randn(1, CHANNELS, 6, 6)
    with torch.no_grad(), recording(Recorder(model, disabled={"0"})) as rec:
        out = model(x)
    assert out is x
    assert rec.records == []


def test_bypass_only_affects_the_named_module() -> None:
    model = nn.Sequential(create_attention("simam", 4), create_attention("simam", 4))
    with recording(Recorder(model, disabled={"1"})) as rec:
        model(torch.randn(1, 4, 3, 3))
    assert [r.layer for r in rec.records] == ["0"]


def test_no_recorder_means_no_side_effects() -> None:
    module = create_attention("cbam", CHANNELS, reduction=4)
    before = set(vars(module))
    module(torch.randn(1, CHANNELS, 4, 4))
    assert set(vars(module)) == before


@pytest.mark.parametrize("kind", ["simam", "cbam", "nonlocal"])
def test_concurrent_calls_keep_their_own_records(kind: str) -> None:
    torch.manual_seed(1)
    model = build(kind)
    inputs = [torch.randn(1, CHANNELS, 5, 5) for _ in range(2)]

    def serial(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), recording(Recorder(model)) as rec:
            model(x)
        return [r.tensor for r in rec.records]

    expected = [serial(x) for x in inputs]
    barrier = threading.Barrier(2)

    def worker(i: int) -> list[list[torch.Tensor]]:
        barrier.wait(timeout=30)  # both threads run the shared module at the same time
        return [serial(inputs[i]) for _ in range(10)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(worker, i) for i in range(2)]
        results = [f.result(timeout=60) for f in futures]
    for i in range(2):
        for got in results[i]:
            assert len(got) == len(expected[i])
            for a, b in zip(got, expected[i], strict=True):
                torch.testing.assert_close(a, b)


# --- published key layouts ----------------------------------------------------------------


def test_se_keys() -> None:
    sd = SE(64).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "fc.0.weight": (4, 64),
        "fc.2.weight": (64, 4),
    }


def test_cbam_keys() -> None:
    sd = CBAM(256).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "ChannelGate.mlp.1.weight": (16, 256),
        "ChannelGate.mlp.1.bias": (16,),
        "ChannelGate.mlp.3.weight": (256, 16),
        "ChannelGate.mlp.3.bias": (256,),
        "SpatialGate.spatial.conv.weight": (1, 2, 7, 7),
        "SpatialGate.spatial.bn.weight": (1,),
        "SpatialGate.spatial.bn.bias": (1,),
        "SpatialGate.spatial.bn.running_mean": (1,),
        "SpatialGate.spatial.bn.running_var": (1,),
        "SpatialGate.spatial.bn.num_batches_tracked": (),
    }
    bn = CBAM(8, reduction=2).SpatialGate.spatial.bn
    assert (bn.eps, bn.momentum, bn.affine) == (1e-5, 0.01, True)


def test_bam_keys_follow_official_code() -> None:
    keys = set(create_attention("bam", 64).state_dict())
    for k in (
        "channel_att.gate_c.gate_c_fc_0.weight",
        "channel_att.gate_c.gate_c_bn_1.running_var",
        "channel_att.gate_c.gate_c_fc_final.bias",
        "spatial_att.gate_s.gate_s_conv_reduce0.weight",
        "spatial_att.gate_s.gate_s_bn_reduce0.weight",
        "spatial_att.gate_s.gate_s_conv_di_0.weight",
        "spatial_att.gate_s.gate_s_bn_di_1.bias",
        "spatial_att.gate_s.gate_s_conv_final.weight",
    ):
        assert k in keys


def _reference_rows(name: str, prefix: str) -> dict[str, torch.Size]:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        key, _, shape = line.partition("\t")
        if key.startswith(prefix):
            rows[key[len(prefix) :]] = torch.Size(int(s) for s in shape.split("x") if s)
    assert rows, f"no keys under {prefix} in {name}"
    return rows


@pytest.mark.parametrize(
    ("file", "prefix", "factory"),
    [
        ("se-resnet18-simam-repo-keys.tsv", "layer1.0.bn2.1.", lambda: SE(64)),
        ("cbam-resnet18-simam-repo-keys.tsv", "layer1.0.bn2.1.", lambda: CBAM(64)),
        ("cbam-resnet50-attention-module-keys.tsv", "module.layer3.0.cbam.", lambda: CBAM(1024)),
    ],
)
def test_published_sub_state_dicts_load_strictly(file: str, prefix: str, factory) -> None:
    rows = _reference_rows(file, prefix)
    state = {
        k: torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.randn(s)
        for k, s in rows.items()
    }
    module = factory()
    module.load_state_dict(state, strict=True)
