"""Attention found and observed in place: in models attnviz did not build, or as a probe.

Foreign squeeze-excitation blocks (torchvision ``SqueezeExcitation`` in MobileNetV3,
EfficientNet and RegNetY; timm ``SEModule``/``EffectiveSEModule``) are found by type and
their gate is read from the gate module's own output, so the numbers are exactly the ones the
network multiplies by. SimAM can run as a probe: a forward hook computes the energy of a
layer's output and returns nothing, so the network's output is untouched.

Hooks are installed once per model and stay; whether they record is decided per call by the
current recorder, so a shared model serves concurrent callers safely.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import nn

from attnviz.errors import SettingsError
from attnviz.recorder import current

_INSTALL_LOCK = threading.Lock()
TOP_K = 8


@dataclass(frozen=True)
class FoundAttention:
    layer: str
    module_kind: str  # "se", "cbam", "simam", ...
    source: str  # "attnviz", "torchvision", "timm"


def _own_kinds() -> dict[type, str]:
    from attnviz import attention as A

    pairs = {
        "SimAM": "simam", "SE": "se", "CBAM": "cbam", "CAM": "cam", "SAM": "sam",
        "BAM": "bam", "NonLocalBlock": "nonlocal", "SpatialTransformer": "stn", "SSSA": "sssa",
    }
    return {getattr(A, cls): kind for cls, kind in pairs.items() if hasattr(A, cls)}


def _foreign_gate(module: nn.Module) -> tuple[str, nn.Module] | None:
    """(source, gate child) for a foreign SE block, else None."""
    name = type(module).__name__
    origin = type(module).__module__
    if name == "SqueezeExcitation" and origin.startswith("torchvision"):
        return "torchvision", module.scale_activation
    if name in {"SEModule", "EffectiveSEModule"} and origin.startswith("timm"):
        return "timm", module.gate
    return None


def find_attention(model: nn.Module) -> list[FoundAttention]:
    """Every attention module in a model, by type, in forward order of registration."""
    own = _own_kinds()
    found = []
    for name, module in model.named_modules():
        kind = own.get(type(module))
        if kind is not None:
            found.append(FoundAttention(name, kind, "attnviz"))
            continue
        foreign = _foreign_gate(module)
        if foreign is not None:
            found.append(FoundAttention(name, "se", foreign[0]))
    return found


def _registry(model: nn.Module) -> dict[str, object]:
    reg = getattr(model, "_attnviz_hooks", None)
    if reg is None:
        reg = {}
        model._attnviz_hooks = reg  # static bookkeeping, not per-call state
    return reg


def install_native_recorders(model: nn.Module) -> list[str]:
    """Record the gates of foreign SE blocks; returns their layer names."""
    names = []
    with _INSTALL_LOCK:
        reg = _registry(model)
        for name, module in model.named_modules():
            foreign = _foreign_gate(module)
            if foreign is None:
                continue
            names.append(name)
            key = f"native:{name}"
            if key in reg:
                continue
            gate = foreign[1]
            reg[key] = (
                gate.register_forward_hook(_gate_hook(name, module)),
                module.register_forward_hook(_top_channels_hook(name)),
            )
    return names


def _gate_hook(layer: str, parent: nn.Module):
    def hook(_mod: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        rec = current()
        if rec is not None:
            rec.add(parent, "se", "channel_weights", output.flatten(1), layer=layer)

    return hook


def _top_channels_hook(layer: str):
    def hook(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        rec = current()
        if rec is None or not rec.keep:
            return
        weights = next(
            (r.tensor for r in reversed(rec.records)
             if r.layer == layer and r.kind == "channel_weights"),
            None,
        )
        x = inputs[0] if inputs else None
        if weights is None or not isinstance(x, torch.Tensor) or x.dim() != 4:
            return
        k = min(TOP_K, weights.shape[1])
        idx = weights.topk(k, dim=1).indices
        feats = torch.gather(x.detach(), 1, idx[:, :, None, None].expand(-1, -1, *x.shape[2:]))
        rec.add(module, "se", "top_channels", feats, layer=layer, channels=idx[0].tolist())

    return hook


def layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module at a dotted path, or a SettingsError listing some valid names."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        sample = [n for n in modules if n and n.count(".") <= 1][:25]
        raise SettingsError(
            f"layer {layer!r} does not exist in this model; valid layers include: "
            f"{', '.join(sample)} (python -m attnviz layers MODEL lists all)"
        )
    return modules[layer]


def install_simam_probe(model: nn.Module, layer: str) -> None:
    """Observe SimAM's energy at a layer's output; the hook returns None (output unchanged)."""
    module = get_layer(model, layer)
    with _INSTALL_LOCK:
        reg = _registry(model)
        key = f"probe:{layer}"
        if key not in reg:
            reg[key] = module.register_forward_hook(_probe_hook(layer))


def _probe_hook(layer: str):
    from attnviz.attention.simam import simam_energy

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        rec = current()
        if rec is None or layer not in rec.probe_layers:
            return None
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            return None
        with torch.no_grad():
            energy = simam_energy(output.detach(), rec.probe_layers[layer])
        rec.add(module, "simam-probe", "energy", energy, layer=layer)
        return None

    return hook


def install_cam_hook(model: nn.Module, layer: str) -> None:
    """Make a layer's output the start of the autograd graph when the current call asks.

    With parameter gradients off, nothing before this point builds a graph, so the backward
    pass for a CAM covers only the layers after the target: the CAM costs little more than
    the forward pass itself.
    """
    module = get_layer(model, layer)
    with _INSTALL_LOCK:
        reg = _registry(model)
        key = f"cam:{layer}"
        if key not in reg:
            reg[key] = module.register_forward_hook(_cam_hook(layer))


def _cam_hook(layer: str):
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor):
        rec = current()
        if rec is None or layer not in rec.cam_layers or not isinstance(output, torch.Tensor):
            return None
        leaf = output.detach()
        if torch.is_grad_enabled():
            leaf.requires_grad_(True)
        rec.cam_activations[layer] = leaf
        # A clone, so that an in-place op downstream never touches the leaf we differentiate.
        return leaf.clone()

    return hook
