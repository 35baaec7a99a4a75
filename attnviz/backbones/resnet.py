"""ResNet-18/34/50 fitted with an attention module where its authors placed it.

The skeleton is torchvision's ``ResNet`` so that a plain network has exactly torchvision's
keys, and each placement reproduces the module names of the code that trained the published
weights (the SimAM repo's ``conv2 = Sequential(conv2, simam)`` and ``bn3 = Sequential(bn3, se)``;
the CBAM repo's ``block.cbam`` and ``bam1..3``). Getting names right is what lets those
checkpoints load strictly, and the names are also the layer labels a user sees in the app.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from attnviz.attention import create_attention
from attnviz.errors import SettingsError, choices_message

RESNET_DEPTHS = (18, 34, 50)
RESNET_ATTENTIONS = ("simam", "se", "cbam", "cam", "sam", "bam", "nonlocal", "stn", "sssa")
RESNET_LAYOUTS = ("simam-repo", "cbam-official")
# Input downsampling before stage 1: "imagenet" 7x7/2 conv + max-pool (/4), "small" 3x3/2 conv
# (/2), "cifar" 3x3/1 conv (/1). The small stems keep 64 px inputs worth looking at in stage 4.
RESNET_STEMS = ("imagenet", "small", "cifar")
IMAGENET_WIDTHS = (64, 128, 256, 512)

_BLOCK_GATES = ("se", "cbam", "cam", "sam")  # go after the last BN of every block
_OFFICIAL_GATES = ("cbam", "cam", "sam")  # the CBAM repo's `block.cbam` (CAM = no_spatial)
_STAGE_MODULES = ("nonlocal", "sssa")  # one module at the end of one stage
_SPEC = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
}


def _gated(x: Tensor, block: nn.Module) -> Tensor:
    gate = block.cbam
    return x if gate is None else gate(x)


class CBAMBasicBlock(BasicBlock):
    """torchvision's BasicBlock with the CBAM repo's ``cbam`` child before the residual add."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_module("cbam", None)  # filled by build_resnet once channels are known

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = _gated(self.bn2(self.conv2(out)), self)
        return self.relu(out + identity)


class CBAMBottleneck(Bottleneck):
    """torchvision's Bottleneck with the CBAM repo's ``cbam`` child before the residual add."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_module("cbam", None)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = _gated(self.bn3(self.conv3(out)), self)
        return self.relu(out + identity)


class AttnResNet(ResNet):
    """torchvision ResNet plus optional network-level modules (input STN, after-stage modules).

    The modules are plain attributes (``stn``, ``bam1``, ``nonlocal3``) so that their keys and
    recorder layer names match the official code; with none set, keys equal torchvision's.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        *args: Any,
        widths: tuple[int, int, int, int] = IMAGENET_WIDTHS,
        stem: str = "imagenet",
        **kwargs: Any,
    ) -> None:
        super().__init__(block, layers, *args, **kwargs)
        if tuple(widths) != IMAGENET_WIDTHS or stem != "imagenet":
            self._narrow(block, layers, tuple(widths), stem)
        self.register_module("stn", None)
        self.after_stage: dict[int, list[str]] = {}

    def _narrow(
        self, block: type[BasicBlock | Bottleneck], layers: list[int],
        widths: tuple[int, ...], stem: str,
    ) -> None:
        """Rebuild stem and stages with other widths, keeping torchvision's names and init.

        The small stems (3x3 conv, no max-pool) keep 64-96 px inputs large enough that stage 4
        still has a map worth looking at (4x4 or 8x8 at 64 px, instead of 2x2).
        """
        self.inplanes = widths[0]
        if stem in ("small", "cifar"):
            stride = 2 if stem == "small" else 1
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=stride, padding=1,
                                   bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(widths[0])
        for i, (width, count) in enumerate(zip(widths, layers), 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", self._make_layer(block, width, count, stride=stride))
        self.fc = nn.Linear(widths[3] * block.expansion, self.fc.out_features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def add_after_stage(self, stage: int, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.after_stage.setdefault(stage, []).append(name)

    def _forward_impl(self, x: Tensor) -> Tensor:
        if self.stn is not None:
            x = self.stn(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            x = layer(x)
            for name in self.after_stage.get(stage, ()):
                x = getattr(self, name)(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def build_resnet(
    depth: int,
    attention: str | None,
    *,
    layout: str = "simam-repo",
    num_classes: int = 1000,
    simam_lambda: float = 1e-4,
    reduction: int = 16,
    stage: int | None = None,
    widths: tuple[int, int, int, int] = IMAGENET_WIDTHS,
    blocks: tuple[int, int, int, int] | None = None,
    stem: str = "imagenet",
    **attention_kwargs: Any,
) -> nn.Module:
    """A ResNet with ``attention`` fitted in its published place (random weights).

    ``layout`` matters only for block gates (se/cbam/cam/sam): "simam-repo" wraps the last BN
    as ``Sequential(bn, gate)``, "cbam-official" adds a ``cbam`` child per block. ``stage``
    picks the stage whose end gets a nonlocal/sssa module (default 3). ``widths``, ``blocks``
    (per stage) and ``stem`` (see ``RESNET_STEMS``) make narrow variants for small inputs;
    every module keeps its placement. Remaining keyword arguments go to the attention
    module's constructor.
    """
    if depth not in _SPEC:
        raise SettingsError(choices_message("ResNet depth", depth, [str(d) for d in RESNET_DEPTHS]))
    if attention is not None and attention not in RESNET_ATTENTIONS:
        raise SettingsError(choices_message("attention", attention, RESNET_ATTENTIONS))
    if layout not in RESNET_LAYOUTS:
        raise SettingsError(choices_message("layout", layout, RESNET_LAYOUTS))
    if layout == "cbam-official" and attention in ("se", "simam"):
        raise SettingsError(
            f"layout 'cbam-official' has no place for {attention!r}; "
            f"valid choices with it: {', '.join(_OFFICIAL_GATES + ('bam',))}; or use 'simam-repo'"
        )
    if stage is not None and attention not in _STAGE_MODULES:
        raise SettingsError(
            f"'stage' applies only to {', '.join(_STAGE_MODULES)}, not {attention!r}"
        )
    stage = 3 if stage is None else stage
    if stage not in (1, 2, 3, 4):
        raise SettingsError(choices_message("stage", stage, ["1", "2", "3", "4"]))
    if stem not in RESNET_STEMS:
        raise SettingsError(choices_message("stem", stem, RESNET_STEMS))
    if len(widths) != 4 or (blocks is not None and len(blocks) != 4):
        raise SettingsError("'widths' and 'blocks' need one value per stage (4)")

    block, layers = _SPEC[depth]
    layers = list(blocks) if blocks is not None else layers
    if attention in _OFFICIAL_GATES and layout == "cbam-official":
        block = CBAMBasicBlock if block is BasicBlock else CBAMBottleneck
    model = AttnResNet(block, layers, num_classes=num_classes, widths=widths, stem=stem)
    if attention is None:
        return model

    kwargs = dict(attention_kwargs)
    if attention == "simam":
        kwargs.setdefault("e_lambda", simam_lambda)
    elif attention in ("se", "cbam", "cam", "bam"):  # SAM has no MLP, so no reduction
        kwargs.setdefault("reduction", reduction)

    if attention == "simam":
        for blk in _blocks(model):
            simam = create_attention("simam", blk.conv2.out_channels, **kwargs)
            blk.conv2 = nn.Sequential(blk.conv2, simam)
    elif attention in _BLOCK_GATES:
        _fit_block_gates(model, attention, layout, kwargs)
    elif attention == "bam":
        for i in (1, 2, 3):
            channels = _stage_channels(model, i)
            model.add_after_stage(i, f"bam{i}", create_attention("bam", channels, **kwargs))
    elif attention in _STAGE_MODULES:
        module = create_attention(attention, _stage_channels(model, stage), **kwargs)
        model.add_after_stage(stage, f"{attention}{stage}", module)
    elif attention == "stn":
        model.stn = create_attention("stn", kwargs.pop("in_channels", 3), **kwargs)
    return model


def _fit_block_gates(model: ResNet, kind: str, layout: str, kwargs: dict[str, Any]) -> None:
    for blk in _blocks(model):
        last_bn = "bn2" if isinstance(blk, BasicBlock) else "bn3"
        bn = getattr(blk, last_bn)
        gate = create_attention(kind, bn.num_features, **kwargs)
        if layout == "cbam-official":
            blk.cbam = gate
        else:
            setattr(blk, last_bn, nn.Sequential(bn, gate))


def _blocks(model: ResNet) -> list[nn.Module]:
    return [blk for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
            for blk in layer]


def _stage_channels(model: ResNet, stage: int) -> int:
    last = getattr(model, f"layer{stage}")[-1]
    bn = last.bn3 if isinstance(last, Bottleneck) else last.bn2
    return bn[0].num_features if isinstance(bn, nn.Sequential) else bn.num_features


def target_layer_name(model: nn.Module) -> str:
    """Where Grad-CAM looks in a ResNet: the last stage, as in the CBAM/SimAM papers' figures."""
    if not hasattr(model, "layer4"):
        raise SettingsError("not a ResNet: it has no 'layer4'")
    return "layer4"
