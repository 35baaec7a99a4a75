"""Attention found and observed in place: in models attnviz did not build, or as a probe.

Foreign attention modules (torchvision ``SqueezeExcitation`` in MobileNetV3, EfficientNet and
RegNetY; timm's SE/ECA/Gather-Excite/CBAM modules; the published SimAM/CBAM/BAM classes) are
found by type and their gate is read from the gate module's own output where there is one, so
the numbers are exactly the ones the network multiplies by (``attention.foreign``). Attention
of any other class is found by behaviour (``attention.detect``). SimAM can run as a probe: a
forward hook computes the energy of a layer's output and returns nothing, so the network's
output is untouched.

Hooks are installed once per model and stay; whether they record is decided per call by the
current recorder, so a shared model serves concurrent callers safely.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnviz.errors import SettingsError
from attnviz.recorder import current

_INSTALL_LOCK = threading.Lock()


@dataclass(frozen=True)
class FoundAttention:
    layer: str
    module_kind: str  # "se", "cbam", "simam", ...
    source: str  # "attnviz", "torchvision", "timm", "published", "behaviour", "override"
    how: str = "type"  # "type": by class; "behaviour": from a probe pass; "override": by the user
    confidence: float = 1.0
    reason: str = ""
    records: tuple[str, ...] = ()  # record kinds it produces
    # How to record it when it does not record itself (see attention.foreign.Part).
    parts: tuple = field(default=(), compare=False, repr=False)


def _own_kinds() -> dict[type, str]:
    from attnviz import attention as A

    pairs = {
        "SimAM": "simam", "SE": "se", "CBAM": "cbam", "CAM": "cam", "SAM": "sam",
        "BAM": "bam", "NonLocalBlock": "nonlocal", "SpatialTransformer": "stn", "SSSA": "sssa",
    }
    return {getattr(A, cls): kind for cls, kind in pairs.items() if hasattr(A, cls)}


def find_attention(model: nn.Module) -> list[FoundAttention]:
    """Every attention module in a model, by type, in order of registration.

    attnviz's own modules; torchvision ``SqueezeExcitation``; timm ``SEModule``,
    ``EffectiveSEModule``, ``SqueezeExcite``, ``EcaModule``, ``CecaModule``, ``GatherExcite``,
    ``CbamModule``, ``LightCbamModule``; and the published classes ``simam_module``, ``CBAM``,
    ``ChannelGate``, ``SpatialGate``, ``BAM`` (see ``attention.foreign``). Modules inside a
    found one are its parts, not separate findings. Anything else: ``attention.detect``.
    """
    from attnviz.attention.foreign import RECORD_KINDS, foreign_kind, type_parts

    own = _own_kinds()
    found: list[FoundAttention] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in inside):
            continue
        kind = own.get(type(module))
        if kind is not None:
            found.append(FoundAttention(name, kind, "attnviz", records=RECORD_KINDS.get(kind, ())))
            inside.append(f"{name}." if name else "")
            continue
        foreign = foreign_kind(module)
        if foreign is not None:
            kind, source = foreign
            found.append(FoundAttention(
                name, kind, source, reason=f"{source} {type(module).__name__}",
                records=RECORD_KINDS.get(kind, ()), parts=type_parts(name, module, kind),
            ))
            inside.append(f"{name}." if name else "")
    return found


def _registry(model: nn.Module) -> dict[str, object]:
    reg = getattr(model, "_attnviz_hooks", None)
    if reg is None:
        reg = {}
        model._attnviz_hooks = reg  # static bookkeeping, not per-call state
    return reg


def _hook_once(model: nn.Module, key: str, module: nn.Module, make_hook, layer: str) -> None:
    """Register a forward hook unless one under ``key`` is there: hooks stay for the model's
    life and are installed once, under a lock, however many callers ask."""
    with _INSTALL_LOCK:
        reg = _registry(model)
        if key not in reg:
            reg[key] = module.register_forward_hook(make_hook(layer))


def install_native_recorders(
    model: nn.Module, found: list[FoundAttention] | None = None
) -> list[str]:
    """Hook the foreign attention modules (those that do not record themselves).

    ``found``: what to hook (default: ``find_attention(model)``); returns their layer names.
    Each hook records what the module multiplies by, exactly (``attention.foreign``).
    """
    from attnviz.attention.foreign import install_parts

    names = []
    for f in find_attention(model) if found is None else found:
        if f.parts:
            install_parts(model, f.layer, f.module_kind, f.parts)
            names.append(f.layer)
    return names


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
    _hook_once(model, f"probe:{layer}", get_layer(model, layer), _ProbeHook, layer)


def probe_energy(x: torch.Tensor, e_lambda: float) -> torch.Tensor:
    """SimAM's ``E_inv`` for observation only: ``attention.simam.simam_energy``'s numbers
    (tested). The probe hook runs the same two steps, ``normalized`` and ``finish_energy``,
    with the second (or both) deferred until the forward pass is over."""
    return finish_energy(normalized(x, e_lambda))


def normalized(x: torch.Tensor, e_lambda: float) -> torch.Tensor:
    """A new (B,C,H,W) tensor ``y`` with ``E_inv = y^2 + 1/2``: one fused statistics and
    normalisation pass (``group_norm`` with a group per channel), which doubles as the copy
    a probe needs when later layers may overwrite ``x`` in place.

    With ``M = H*W``, SimAM's unbiased variance is ``var_b * M / (M - 1)``, so
    ``(x - mu)^2 / (4 (var + lambda)) = k (x - mu)^2 / (var_b + eps)`` with
    ``eps = lambda (M - 1) / M`` and ``k = (M - 1) / (4 M)``; ``sqrt(k)`` is the weight.
    Measured on the default model, this took a third less time than copying, then centring,
    squaring and scaling in place.
    """
    with torch.no_grad():
        x = x.detach()
        b, c, h, w = x.shape
        m = h * w
        if m == 1:  # no spread: every neuron gets SimAM's neutral 1/2 (y = 0)
            return torch.zeros_like(x, memory_format=torch.contiguous_format)
        k = (m - 1) / (4 * m)
        weight = torch.full((c,), k ** 0.5, dtype=x.dtype, device=x.device)
        return F.group_norm(x, c, weight=weight, eps=e_lambda * (m - 1) / m)


@functools.cache
def _half(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(0.5, device=device, dtype=dtype)


def finish_energy(y: torch.Tensor) -> torch.Tensor:
    """``y^2 + 1/2`` in place, in one pass instead of a square and an add."""
    with torch.no_grad():
        return torch.addcmul(_half(y.device, y.dtype), y, y, out=y)


class _ProbeHook:
    """Observes one layer's output for SimAM probes.

    The energy needs its own copy of the output only when a later layer overwrites that
    output in place (an in-place ReLU, say). The first call takes the copy and watches the
    output's version counter to learn whether that happens; once it is known not to, later
    calls keep a reference and compute everything after the forward pass, which spares the
    forward pass a copy per probed layer. Should the version ever change after all, the
    recorder is marked stale and ``analysis`` runs the pass again, copying this time.
    """

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.overwritten: bool | None = None  # None: not yet seen

    def __call__(self, module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        rec = current()
        if rec is None or not rec.keep or self.layer not in rec.probe_layers:
            return None
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            return None
        lam = rec.probe_layers[self.layer]
        watch = not output.is_inference()  # inference tensors have no version counter
        if self.overwritten is False and watch:
            raw = rec.add(module, "simam-probe", "energy", output, layer=self.layer)
            rec.defer(functools.partial(self._from_reference, rec, raw, output._version, lam))
            return None
        raw = rec.add(module, "simam-probe", "energy", normalized(output, lam), layer=self.layer)
        rec.defer(functools.partial(finish_energy, raw.tensor))
        if watch and self.overwritten is None:
            rec.defer(functools.partial(self._learn, output, output._version))
        return None

    def _learn(self, output: torch.Tensor, version: int) -> None:
        self.overwritten = output._version != version

    def _from_reference(self, rec, raw, version: int, lam: float) -> None:
        if raw.tensor._version != version:
            self.overwritten = True
            rec.stale = True
            return
        raw.tensor = finish_energy(normalized(raw.tensor, lam))


def install_cam_hook(model: nn.Module, layer: str) -> None:
    """Make a layer's output the start of the autograd graph when the current call asks.

    With parameter gradients off, nothing before this point builds a graph, so the backward
    pass for a CAM covers only the layers after the target: the CAM costs little more than
    the forward pass itself.
    """
    _hook_once(model, f"cam:{layer}", get_layer(model, layer), _cam_hook, layer)


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
