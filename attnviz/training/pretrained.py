"""Start a fine-tune from pretrained backbone weights, with the attention module inserted.

Inserting a module renames the layer it wraps (``bn2`` becomes ``bn2.0`` in the SimAM repo's
layout) and adds weights no checkpoint has, and a new task changes the classifier. So the
backbone is copied tensor by tensor where name (after unwrapping) and shape agree, and the
rest starts fresh; the note says exactly how much came from where, because "pretrained" that
silently loaded nothing is the failure this guards against.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from attnviz.errors import AttnvizError
from attnviz.zoo import ModelSpec, get_spec

_WRAPPED = re.compile(r"\.(conv2|bn2|bn3)\.0\.")


def _backbone_source(spec: ModelSpec):
    """The weights to start from: the plain torchvision ResNet for fitted ResNets."""
    if spec.family == "resnet":
        return get_spec(spec.backbone).source  # e.g. "resnet18": torchvision ImageNet weights
    return spec.source


def transfer_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor whose unwrapped name and shape match; returns (copied, total)."""
    own = model.state_dict()
    picked = {}
    for key, value in own.items():
        for candidate in (key, _WRAPPED.sub(r".\1.", key)):
            found = state.get(candidate)
            if found is not None and found.shape == value.shape:
                picked[key] = found
                break
    model.load_state_dict({**own, **picked}, strict=True)
    return len(picked), len(own)


def initialise_from_pretrained(spec: ModelSpec, model: nn.Module) -> str:
    """Load what fits of the zoo ``spec``'s pretrained backbone into ``model`` (the same
    network, possibly with another number of classes), if the weights are here; say what
    happened."""
    from attnviz.loader import _adapt, build_architecture

    if spec.family == "bundled":
        return "trained from scratch (bundled architecture, no pretrained weights)"
    try:
        source = _backbone_source(spec)
    except AttnvizError:
        return "trained from scratch (no pretrained backbone known for this model)"
    if not source.available_offline():
        download_id = spec.backbone if spec.family == "resnet" else spec.id
        return (f"trained from scratch: pretrained weights ({source.describe()}) are not on "
                f"this machine; run `attnviz download {download_id}` while online to start "
                "from them")
    try:
        # Key mappings (e.g. EfficientNet-Lite0's original layout) need the network the
        # weights were made for: the zoo spec's own, with its own classifier.
        state = _adapt(spec, build_architecture(spec), source.load())
    except AttnvizError as exc:
        return f"trained from scratch: pretrained weights could not be read ({exc})"
    copied, total = transfer_matching(model, state)
    return (f"backbone initialised from {source.describe()}: {copied} of {total} tensors; "
            "the rest (attention module, classifier) trained from scratch")
