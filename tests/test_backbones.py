"""Fitted ResNets must have exactly the keys of the published checkpoints (shared/reference),
or real weights would not load; and every placement must still run and record its maps."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from attnviz.backbones import RESNET_ATTENTIONS, build_resnet, target_layer_name
from attnviz.checkpoints import load_strict
from attnviz.errors import CheckpointError, SettingsError
from attnviz.recorder import Recorder, recording

_REF_NAME = re.compile(r"^(?P<att>[a-z]+)-resnet(?P<depth>\d+)-(?P<src>[a-z-]+)-keys\.tsv$")
_LAYOUT_OF_SOURCE = {"simam-repo": "simam-repo", "attention-module": "cbam-official"}


def _reference_dir() -> Path | None:
    here = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
    if here.is_dir():
        return here
    env = os.environ.get("ATTNVIZ_REFERENCE_DIR")
    return Path(env) if env and Path(env).is_dir() else None


_REF_DIR = _reference_dir()
_REF_FILES = sorted(_REF_DIR.glob("*.tsv")) if _REF_DIR else []
_NO_REF = "shared/reference/ not beside the clone and ATTNVIZ_REFERENCE_DIR not set"


def _read_tsv(path: Path) -> dict[str, tuple[int, ...]]:
    rows = path.read_text().splitlines()
    assert rows[0].split("\t") == ["key", "shape"], f"{path.name}: unexpected header"
    out: dict[str, tuple[int, ...]] = {}
    for row in rows[1:]:
        if not row.strip():
            continue
        key, _, shape = row.partition("\t")
        out[key] = tuple(int(d) for d in shape.split("x")) if shape.strip() else ()
    return out


def _random_sd(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        k: torch.tensor(7, dtype=torch.int64)
        if k.endswith("num_batches_tracked")
        else torch.rand(shape, generator=gen) + 0.1
        for k, shape in layout.items()
    }


def _model_for(path: Path) -> nn.Module:
    m = _REF_NAME.match(path.name)
    if m is None or m["src"] not in _LAYOUT_OF_SOURCE:
        pytest.fail(f"{path.name}: no rule mapping this reference file to a backbone; add one")
    return build_resnet(int(m["depth"]), m["att"], layout=_LAYOUT_OF_SOURCE[m["src"]])


@pytest.mark.skipif(not _REF_FILES, reason=_NO_REF)
@pytest.mark.parametrize("path", _REF_FILES, ids=lambda p: p.stem)
def test_reference_layout_loads_strictly(path: Path) -> None:
    layout = _read_tsv(path)
    model = _model_for(path)
    bare = {k.removeprefix("module."): v for k, v in layout.items()}
    assert set(model.state_dict()) == set(bare)
    sd = _random_sd(bare)
    for prefix in ("", "module."):
        load_strict(model, {prefix + k: v for k, v in sd.items()}, source=path.name)
        own = model.state_dict()
        assert all(torch.equal(own[k], v) for k, v in sd.items())


@pytest.mark.skipif(not _REF_FILES, reason=_NO_REF)
def test_reference_mismatch_names_keys_and_shapes() -> None:
    path = next(p for p in _REF_FILES if p.name.startswith("se-resnet18"))
    model = _model_for(path)
    sd = _random_sd({k.removeprefix("module."): v for k, v in _read_tsv(path).items()})
    renamed = dict(sd)
    renamed["layer1.0.bn2.1.fc.0.weight_renamed"] = renamed.pop("layer1.0.bn2.1.fc.0.weight")
    with pytest.raises(CheckpointError) as info:
        load_strict(model, renamed, source=path.name)
    msg = str(info.value)
    assert "1 missing key (layer1.0.bn2.1.fc.0.weight)" in msg
    assert "1 unexpected key (layer1.0.bn2.1.fc.0.weight_renamed)" in msg

    wrong = dict(sd)
    wrong["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(CheckpointError, match=r"fc\.weight: file 10x512 vs model 1000x512"):
        load_strict(model, wrong, source=path.name)


@pytest.mark.skipif(not _REF_FILES, reason=_NO_REF)
def test_wrong_layout_gets_a_hint() -> None:
    path = next(p for p in _REF_FILES if "attention-module" in p.name)
    sd = _random_sd(_read_tsv(path))
    with pytest.raises(CheckpointError, match="cbam-official"):
        load_strict(build_resnet(50, "cbam"), sd, source=path.name)


def test_plain_resnet_has_torchvision_keys_and_weights() -> None:
    ours = build_resnet(50, None)
    theirs = torchvision.models.resnet50()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    load_strict(ours, theirs.state_dict(), source="torchvision")


def test_plain_resnet18_computes_like_torchvision() -> None:
    theirs = torchvision.models.resnet18().eval()
    ours = build_resnet(18, None).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_cbam_layouts_compute_the_same() -> None:
    """Both CBAM layouts gate after the last BN, before the residual add: same function."""
    repo = build_resnet(18, "cbam").eval()
    official = build_resnet(18, "cbam", layout="cbam-official").eval()
    sd = {}
    for k, v in official.state_dict().items():
        k = re.sub(r"\.cbam\.", ".bn2.1.", k)
        k = re.sub(r"(layer\d\.\d)\.bn2\.(?!1\.)", r"\1.bn2.0.", k)
        sd[k] = v
    repo.load_state_dict(sd)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(repo(x), official(x))


@pytest.mark.parametrize("attention", [None, *RESNET_ATTENTIONS])
def test_resnet18_forward_shapes(attention: str | None) -> None:
    model = build_resnet(18, attention, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_resnet50_cbam_official_forward() -> None:
    model = build_resnet(50, "cbam", layout="cbam-official", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


@pytest.mark.parametrize(
    ("attention", "layers"),
    [
        ("bam", {"bam1", "bam2", "bam3"}),
        ("nonlocal", {"nonlocal3"}),
        ("sssa", {"sssa3"}),
        ("stn", {"stn"}),
        ("simam", {"layer1.0.conv2.1", "layer4.1.conv2.1"}),
        ("se", {"layer1.0.bn2.1", "layer4.1.bn2.1"}),
    ],
)
def test_records_carry_layer_names(attention: str, layers: set[str]) -> None:
    model = build_resnet(18, attention).eval()
    with torch.no_grad(), recording(Recorder(model)) as rec:
        model(torch.randn(1, 3, 64, 64))
    assert layers <= {r.layer for r in rec.records}


def test_cbam_official_records_under_block_child() -> None:
    model = build_resnet(18, "cbam", layout="cbam-official").eval()
    with torch.no_grad(), recording(Recorder(model)) as rec:
        model(torch.randn(1, 3, 64, 64))
    assert "layer2.1.cbam" in {r.layer for r in rec.records}


def test_stage_is_a_parameter() -> None:
    model = build_resnet(18, "nonlocal", stage=4)
    assert hasattr(model, "nonlocal4") and not hasattr(model, "nonlocal3")
    assert model.nonlocal4.g.in_channels == 512
    with pytest.raises(SettingsError, match="stage"):
        build_resnet(18, "se", stage=2)
    with pytest.raises(SettingsError, match="valid choices: 1, 2, 3, 4"):
        build_resnet(18, "sssa", stage=5)


def test_options_reach_the_modules() -> None:
    model = build_resnet(18, "simam", simam_lambda=0.1)
    assert model.layer3[1].conv2[1].e_lambda == 0.1
    model = build_resnet(50, "se", reduction=8)
    assert model.layer1[0].bn3[1].fc[0].weight.shape == (32, 256)


@pytest.mark.parametrize(
    ("kwargs", "valid"),
    [
        ({"depth": 101, "attention": None}, "18, 34, 50"),
        ({"depth": 18, "attention": "eca"}, "simam, se, cbam"),
        ({"depth": 18, "attention": "se", "layout": "timm"}, "simam-repo, cbam-official"),
        ({"depth": 18, "attention": "se", "layout": "cbam-official"}, "simam-repo"),
    ],
)
def test_invalid_settings_list_choices(kwargs: dict, valid: str) -> None:
    with pytest.raises(SettingsError, match=valid):
        build_resnet(**kwargs)


def test_target_layer_name() -> None:
    assert target_layer_name(build_resnet(18, "bam")) == "layer4"
    with pytest.raises(SettingsError):
        target_layer_name(nn.Linear(2, 2))
