"""Models this project trains itself and ships, so learned attention works offline.

Each model is a ``.safetensors`` file with a JSON model card beside it in ``assets/models``;
the card is the single source of truth: the zoo entry (classes, preprocessing, attention,
architecture) is built from it, so a retrained model needs no code change. The architecture
itself is named by the backbone (``bundled:resnet-mini``) and defined here, because weights
are only meaningful with the exact network they were trained in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from attnviz.datasets.procedural import CLASS_NAMES, IMAGE_SIZE, MEAN, STD
from attnviz.errors import AttnvizError, SettingsError, choices_message
from attnviz.preprocess import Preprocessing
from attnviz.sources import FileSource
from attnviz.zoo import FITTED_ATTENTION, ModelSpec

log = logging.getLogger(__name__)

ASSETS_ENV = "ATTNVIZ_ASSETS"
BUNDLED_PREFIX = "bundled:"
PROCEDURAL_PREFIX = "procedural-resnet-"
PROCEDURAL_BACKBONE = "bundled:resnet-mini"
# The models shipped in assets/models ("baseline" = no attention). SSSA trains too, not shipped.
BUNDLED_ATTENTIONS = ("baseline", "se", "cbam", "cam", "sam", "simam", "bam", "nonlocal", "stn")
PROCEDURAL_ATTENTIONS = ("baseline", *FITTED_ATTENTION)

_TITLES = {"baseline": "no attention", "se": "SE", "cbam": "CBAM", "cam": "CAM (CBAM channel)",
           "sam": "SAM (CBAM spatial)", "simam": "SimAM", "bam": "BAM", "nonlocal": "Non-local",
           "stn": "STN", "sssa": "SSSA"}


@dataclass(frozen=True)
class Architecture:
    """A narrow ResNet for small inputs; every module keeps its full-size ResNet placement."""

    widths: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]
    stem: str
    reduction: int  # SE/CBAM/BAM MLP reduction: 16 would leave 1 hidden unit at width 16

    def as_dict(self) -> dict:
        return {"base": "resnet18 blocks (BasicBlock)", "widths": list(self.widths),
                "blocks": list(self.blocks), "stem": self.stem, "reduction": self.reduction}


ARCHITECTURES = {
    "resnet-mini": Architecture(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), stem="small",
                                reduction=4),
}


def models_dir() -> Path:
    """``assets/models`` beside the package, or under ``$ATTNVIZ_ASSETS`` when that is set."""
    override = os.environ.get(ASSETS_ENV)
    if override and (Path(override) / "models").is_dir():
        return Path(override) / "models"
    return Path(__file__).resolve().parent.parent / "assets" / "models"


def architecture_of(spec: ModelSpec) -> Architecture:
    name = spec.backbone.removeprefix(BUNDLED_PREFIX)
    if name not in ARCHITECTURES:
        raise SettingsError(choices_message("bundled architecture", name, list(ARCHITECTURES)))
    return ARCHITECTURES[name]


def build_bundled(spec: ModelSpec) -> nn.Module:
    """The network of a bundled spec, freshly initialised (``loader`` loads its weights)."""
    from attnviz.backbones.resnet import build_resnet

    arch = architecture_of(spec)
    attention = None if spec.placement in ("none", "probe") else spec.attention
    return build_resnet(
        18, attention, layout=spec.layout, num_classes=spec.num_classes,
        simam_lambda=spec.simam_lambda, widths=arch.widths, blocks=arch.blocks, stem=arch.stem,
        reduction=arch.reduction,
    )


def procedural_preprocessing() -> Preprocessing:
    return Preprocessing(size=IMAGE_SIZE, mean=MEAN, std=STD)


def procedural_spec(model_id: str, weights: str | os.PathLike | None = None) -> ModelSpec:
    """The spec for ``procedural-resnet-<attention>`` before (or without) a card: for ``fit``."""
    attention = model_id.removeprefix(PROCEDURAL_PREFIX)
    if not model_id.startswith(PROCEDURAL_PREFIX) or attention not in PROCEDURAL_ATTENTIONS:
        valid = [PROCEDURAL_PREFIX + a for a in PROCEDURAL_ATTENTIONS]
        raise SettingsError(choices_message("procedural model", model_id, valid))
    path = Path(weights) if weights else models_dir() / f"{model_id}.safetensors"
    return ModelSpec(
        id=model_id,
        title=f"Procedural shapes, small ResNet + {_TITLES[attention]}",
        backbone=PROCEDURAL_BACKBONE,
        attention="none" if attention == "baseline" else attention,
        placement="none" if attention == "baseline" else "fitted",
        source=FileSource(str(path), label="bundled model"),
        num_classes=len(CLASS_NAMES),
        labels=CLASS_NAMES,
        preprocessing=procedural_preprocessing(),
    )


def spec_from_card(card_path: str | os.PathLike) -> ModelSpec:
    """A zoo entry from a model card written by ``attnviz fit`` (weights file beside it)."""
    from attnviz.training.card import read_card

    path = Path(card_path)
    card = read_card(path)
    arch = card["architecture"]
    prep = card["preprocessing"]
    held = card.get("heldout", {})
    bundled = path.resolve().parent == models_dir().resolve()
    accuracy = held.get("accuracy")
    notes = (f"trained by `attnviz fit` on {card['data']['kind']} data; held-out accuracy "
             f"{accuracy:.1%} on {held.get('samples', '?')} images" if accuracy is not None
             else "trained by `attnviz fit`")
    return ModelSpec(
        id=card["id"],
        title=card.get("title", card["id"]),
        backbone=arch["backbone"],
        attention=arch["attention"],
        placement=arch["placement"],
        source=FileSource(str(path.parent / card["weights"]),
                          label="bundled model" if bundled else "fitted model"),
        layout=arch.get("layout", "simam-repo"),
        simam_lambda=float(arch.get("simam_lambda", 1e-4)),
        num_classes=len(card["classes"]),
        labels=tuple(card["classes"]),
        preprocessing=Preprocessing(
            size=int(prep["size"]), mean=tuple(prep["mean"]), std=tuple(prep["std"]),
            resample=prep.get("resample", "bicubic"),
        ),
        notes=notes,
    )


def card_paths(folder: str | os.PathLike | None = None) -> list[Path]:
    """Model cards in ``folder`` (default: the bundled models), in name order."""
    root = Path(folder) if folder is not None else models_dir()
    return sorted(root.glob("*.json")) if root.is_dir() else []


def bundled_specs() -> list[ModelSpec]:
    """Zoo entries for every card in ``assets/models``; a broken card is logged and skipped,
    so one bad file cannot take the whole zoo (and the app's model menu) down."""
    specs = []
    for path in card_paths():
        try:
            specs.append(spec_from_card(path))
        except (AttnvizError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipping model card %s: %s", path, exc)
    order = {PROCEDURAL_PREFIX + a: i for i, a in enumerate(PROCEDURAL_ATTENTIONS)}
    return sorted(specs, key=lambda s: (order.get(s.id, len(order)), s.id))


def is_procedural(spec: ModelSpec) -> bool:
    """True when the model was trained on the procedural shapes (its gallery has masks)."""
    return tuple(spec.labels) == CLASS_NAMES


def bundled_ids() -> list[str]:
    """Ids of the bundled procedural models, in the order of ``BUNDLED_ATTENTIONS``."""
    present = {s.id for s in bundled_specs()}
    return [PROCEDURAL_PREFIX + a for a in BUNDLED_ATTENTIONS if PROCEDURAL_PREFIX + a in present]
