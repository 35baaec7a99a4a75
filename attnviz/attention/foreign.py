"""Attention inside models attnviz did not build: the type table and the recorders of gates.

A foreign attention module does not report to the recorder itself, so attnviz hooks it. What a
hook records is always what the module multiplies by, read in one of three ways, best first:

1. the output of the module's own gate child (``timm`` ``SEModule.gate``, torchvision
   ``SqueezeExcitation.scale_activation``, a user's ``nn.Sigmoid``): exact;
2. recomputed from the module's own sub-modules and checked against its output (the official
   CBAM ``ChannelGate`` and ``BAM``, whose sigmoid is functional);
3. recovered from the input ``x`` and the output ``y = x * g`` of the module: a channel gate as
   ``sum_hw(x*y) / sum_hw(x*x)``, a spatial gate as ``sum_c(x*y) / sum_c(x*x)``, a 3-D gate as
   ``y / x``. Exact wherever ``x`` is not zero; where the gate cannot be seen (a channel whose
   input is all zero) it is filled with the mean of the rest and counted in ``meta``.

Each recipe is a list of ``Part``\\ s: which module to hook and how to read it. Records use the
kinds and shapes of attnviz's own modules (``channel_weights`` (B,C), ``top_channels``,
``spatial_mask`` (B,1,H,W), ``attention`` (B,C,H,W), ``energy`` (B,C,H,W), ``affinity``
(B,HW,HW')), so every view and export works unchanged. Hooks are installed once per model and
record only into the current call's recorder; nothing is kept on modules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from attnviz.attention.se import top_channel_maps
from attnviz.attention.simam import simam_energy
from attnviz.recorder import Recorder, current

_LOCK = threading.Lock()

# Module kind -> the record kinds it produces (for listings; the hooks decide per call).
RECORD_KINDS: dict[str, tuple[str, ...]] = {
    "se": ("channel_weights", "top_channels"),
    "cam": ("channel_weights", "top_channels"),
    "eca": ("channel_weights", "top_channels"),
    "ge": ("channel_weights", "top_channels"),
    "cbam": ("channel_weights", "top_channels", "spatial_mask"),
    "sam": ("spatial_mask",),
    "simam": ("energy",),
    "bam": ("attention",),
    "gate3d": ("attention",),
    "nonlocal": ("affinity",),
}

_TIMM_KINDS = {
    "SEModule": "se", "EffectiveSEModule": "se", "SqueezeExcite": "se", "EcaModule": "eca",
    "CecaModule": "eca", "GatherExcite": "ge", "CbamModule": "cbam", "LightCbamModule": "cbam",
}


@dataclass(frozen=True)
class Part:
    """One hook of a recipe: the module at ``path`` and how to read what it attends to.

    ``index``: the positional input that is the gated feature map (or, for ``affinity`` of a
    module returning a tuple, the output element). ``lam``: SimAM's lambda.
    """

    path: str
    method: str
    index: int = 0
    lam: float = 1e-4


# --------------------------------------------------------------------------- type table


def foreign_kind(module: nn.Module) -> tuple[str, str] | None:
    """(module kind, source) of a known attention class that attnviz did not write, else None.

    Published classes (the SimAM and CBAM/BAM authors' code, copied into a user's project) are
    recognised by class name *and* the child names their code uses, so an unrelated class that
    happens to be called ``CBAM`` is left to behaviour detection.
    """
    cls = type(module)
    name, origin = cls.__name__, cls.__module__
    top = origin.split(".", 1)[0]
    if top == "attnviz":
        return None
    if top == "torchvision":
        return ("se", "torchvision") if name == "SqueezeExcitation" else None
    if top == "timm":
        kind = _TIMM_KINDS.get(name)
        if kind is None:
            return None
        if name == "SqueezeExcite" and not isinstance(getattr(module, "gate", None), nn.Module):
            return None
        return kind, "timm"
    children = dict(module.named_children())
    if name == "simam_module" and hasattr(module, "e_lambda"):
        return "simam", "published"
    if name == "CBAM" and "ChannelGate" in children:
        return "cbam", "published"
    if name == "ChannelGate" and "mlp" in children:
        return "cam", "published"
    if name == "SpatialGate" and "spatial" in children and "compress" in children:
        return "sam", "published"
    if name == "BAM" and "channel_att" in children and "spatial_att" in children:
        return "bam", "published"
    return None


def type_parts(name: str, module: nn.Module, kind: str) -> tuple[Part, ...]:
    """The recipe for a module ``foreign_kind`` recognised."""
    p = f"{name}." if name else ""
    cls = type(module).__name__
    if cls == "SqueezeExcitation":
        return (Part(f"{p}scale_activation", "gate-channel"), Part(name, "top-channels"),
                Part(name, "bypass-input"))
    if cls in ("SEModule", "EffectiveSEModule", "SqueezeExcite", "EcaModule", "CecaModule"):
        return (Part(f"{p}gate", "gate-channel"), Part(name, "top-channels"),
                Part(name, "bypass-input"))
    if cls == "GatherExcite":
        return (Part(f"{p}gate", "gate-auto"), Part(name, "top-channels"),
                Part(name, "bypass-input"))
    if cls == "CbamModule":
        return (Part(f"{p}channel.gate", "gate-channel"), Part(f"{p}channel", "top-channels"),
                Part(f"{p}spatial.gate", "gate-spatial"), Part(name, "bypass-input"))
    if cls == "LightCbamModule":  # its channel half uses a functional sigmoid
        return (Part(f"{p}channel", "mul-channel"), Part(f"{p}channel", "top-channels"),
                Part(f"{p}spatial.gate", "gate-spatial"), Part(name, "bypass-input"))
    if kind == "simam":
        return (Part(name, "simam-attr"), Part(name, "bypass-input"))
    if kind == "cbam":
        parts = [Part(f"{p}ChannelGate", "cbam-channel"), Part(f"{p}ChannelGate", "top-channels")]
        if isinstance(getattr(module, "SpatialGate", None), nn.Module):
            parts.append(Part(f"{p}SpatialGate.spatial", "sigmoid-spatial"))
        return (*parts, Part(name, "bypass-input"))
    if kind == "cam":
        return (Part(name, "cbam-channel"), Part(name, "top-channels"), Part(name, "bypass-input"))
    if kind == "sam":
        return (Part(f"{p}spatial", "sigmoid-spatial"), Part(name, "bypass-input"))
    if kind == "bam":
        return (Part(name, "bam-official"), Part(name, "bypass-input"))
    return ()


# --------------------------------------------------------------------------- recovery


def _fill(g: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, int]:
    """Replace NaN (undetermined) entries by the mean of the determined ones along ``dims``."""
    bad = torch.isnan(g)
    n = int(bad.sum())
    if n == 0:
        return g, 0
    mean = torch.nanmean(g, dim=dims, keepdim=True)
    mean = torch.nan_to_num(mean, nan=0.0)
    return torch.where(bad, mean.expand_as(g), g), n


def recover_channel_gate(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-channel gate (B,C) of ``y = x * g[:, :, None, None]`` and how many were undetermined."""
    xf, yf = x.detach().float(), y.detach().float()
    den = xf.pow(2).sum((2, 3))
    g = torch.where(den > 0, (xf * yf).sum((2, 3)) / den.clamp_min(1e-30), float("nan"))
    return _fill(g, (1,))


def recover_spatial_gate(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-position gate (B,1,H,W) of ``y = x * g`` with ``g`` shared by all channels."""
    xf, yf = x.detach().float(), y.detach().float()
    den = xf.pow(2).sum(1, keepdim=True)
    g = torch.where(den > 0, (xf * yf).sum(1, keepdim=True) / den.clamp_min(1e-30), float("nan"))
    return _fill(g, (1, 2, 3))


def recover_gate(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Element-wise gate (B,C,H,W) ``y / x``; where ``x`` is zero, the channel's mean."""
    xf, yf = x.detach().float(), y.detach().float()
    ok = xf.abs() > 1e-20
    g = torch.where(ok, yf / torch.where(ok, xf, torch.ones_like(xf)), float("nan"))
    return _fill(g, (2, 3))


def _explains(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, tol: float = 1e-4) -> bool:
    """True when ``y == x * g`` up to float rounding."""
    yf = y.detach().float()
    scale = yf.norm().clamp_min(1e-30)
    return bool(((yf - x.detach().float() * g.float()).norm() / scale) < tol)


# --------------------------------------------------------------------------- hooks


def _recorder(owner: nn.Module) -> Recorder | None:
    rec = current()
    if rec is None or not rec.keep or rec.is_disabled(owner):
        return None
    return rec


def _seen(rec: Recorder, layer: str, kind: str) -> bool:
    """A module called twice in one pass reports once (its first call)."""
    return any(r.layer == layer and r.kind == kind for r in rec.records)


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in output if isinstance(t, torch.Tensor)), None)
    return None


def _input(args: tuple, index: int) -> torch.Tensor | None:
    x = args[index] if index < len(args) else None
    return x if isinstance(x, torch.Tensor) and x.dim() == 4 else None


def _add(rec: Recorder, owner: nn.Module, layer: str, kind: str, what: str, t: torch.Tensor,
         **meta) -> None:
    if not _seen(rec, layer, what):
        rec.add(owner, kind, what, t.detach(), layer=layer, **meta)


def _add_gate(rec, owner, layer, kind, g: torch.Tensor, undetermined: int = 0) -> None:
    """Record a gate by its shape: (B,C)-like -> channel, (B,1,H,W) -> spatial, else 3-D."""
    meta = {"undetermined": undetermined} if undetermined else {}
    b = g.shape[0]
    if g.dim() == 4 and g.shape[1] == 1 and g.shape[2] * g.shape[3] > 1:
        _add(rec, owner, layer, kind, "spatial_mask", g, **meta)
    elif g.dim() == 4 and g.shape[2] * g.shape[3] > 1:
        _add(rec, owner, layer, kind, "attention", g, **meta)
    else:
        _add(rec, owner, layer, kind, "channel_weights", g.reshape(b, -1), **meta)


def _make_hook(part: Part, layer: str, kind: str, owner: nn.Module):  # noqa: C901 - a dispatch
    method = part.method

    def hook(module: nn.Module, args: tuple, output):
        if method == "bypass-input" or method == "bypass-ones":
            rec = current()
            if rec is None or not rec.is_disabled(owner):
                return None
            if method == "bypass-ones":
                y = _first_tensor(output)
                return torch.ones_like(y) if y is not None and y is output else None
            x = args[part.index] if part.index < len(args) else None
            if not isinstance(x, torch.Tensor):
                return None
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                return (x, *output[1:])
            return x if isinstance(output, torch.Tensor) and output.shape == x.shape else None
        rec = _recorder(owner)
        if rec is None:
            return None
        with torch.no_grad():
            _read(rec, module, args, output, part, layer, kind, owner)
        return None

    return hook


def _read(rec, module, args, output, part: Part, layer, kind, owner) -> None:  # noqa: C901
    method = part.method
    y = _first_tensor(output)
    if method in ("gate-channel", "gate-spatial", "gate-auto", "sigmoid-spatial"):
        if y is None:
            return
        g = torch.sigmoid(y.float()) if method == "sigmoid-spatial" else y
        if method == "gate-channel":
            _add(rec, owner, layer, kind, "channel_weights", g.reshape(g.shape[0], -1))
        else:
            _add_gate(rec, owner, layer, kind, g)
        return
    if method == "top-channels":
        _top_channels(rec, owner, layer, kind, _input(args, part.index))
        return
    if method in ("simam", "simam-attr"):
        x = _input(args, part.index)
        if x is not None:
            lam = part.lam
            if method == "simam-attr":
                lam = float(getattr(module, "e_lambda", part.lam))
            _add(rec, owner, layer, kind, "energy", simam_energy(x.float(), lam), e_lambda=lam)
        return
    if method in ("affinity", "affinity-T"):
        t = output
        if isinstance(output, (tuple, list)):
            t = output[part.index] if part.index < len(output) else None
        if isinstance(t, torch.Tensor) and t.dim() == 3:
            a = t.transpose(1, 2) if method == "affinity-T" else t
            _add(rec, owner, layer, kind, "affinity", a)
        return
    if method == "affinity-meta":
        x = _input(args, part.index)
        if x is not None:
            _affinity_meta(rec, layer, x.shape[-2], x.shape[-1])
        return
    x = _input(args, part.index)
    if x is None or y is None or y.shape != x.shape:
        return
    if method == "mul-channel":
        _add_gate(rec, owner, layer, kind, *recover_channel_gate(x, y))
    elif method == "mul-spatial":
        _add_gate(rec, owner, layer, kind, *recover_spatial_gate(x, y))
    elif method == "mul-3d":
        _add_gate(rec, owner, layer, kind, *recover_gate(x, y))
    elif method == "cbam-channel":
        g = _official_channel_gate(module, x)
        if g is not None and _explains(x, y, g):
            _add(rec, owner, layer, kind, "channel_weights", g.flatten(1))
        else:
            _add_gate(rec, owner, layer, kind, *recover_channel_gate(x, y))
    elif method == "bam-official":
        c, s = module.channel_att(x).float(), module.spatial_att(x).float()
        for att in (1 + torch.sigmoid(c * s), 1 + torch.sigmoid(c + s)):  # code, then paper
            if att.shape == x.shape and _explains(x, y, att):
                _add(rec, owner, layer, kind, "attention", att)
                return
        _add_gate(rec, owner, layer, kind, *recover_gate(x, y))


def _official_channel_gate(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The CBAM authors' ChannelGate, recomputed: sigmoid of the shared MLP over avg and max."""
    pools = list(getattr(module, "pool_types", ["avg", "max"]))
    if not pools or not set(pools) <= {"avg", "max"}:
        return None
    total = 0
    for pool in pools:
        d = x.mean((2, 3), keepdim=True) if pool == "avg" else x.amax((2, 3), keepdim=True)
        total = total + module.mlp(d).float()
    return torch.sigmoid(total).reshape(x.shape[0], x.shape[1], 1, 1)


def _top_channels(rec, owner, layer, kind, x: torch.Tensor | None) -> None:
    """The input maps of the most strongly weighted channels, as attnviz's SE records them."""
    if x is None or _seen(rec, layer, "top_channels"):
        return
    weights = next((r.tensor for r in reversed(rec.records)
                    if r.layer == layer and r.kind == "channel_weights"), None)
    if weights is None or weights.dim() != 2 or weights.shape[1] != x.shape[1]:
        return
    feats, idx = top_channel_maps(x, weights)
    rec.add(owner, kind, "top_channels", feats, layer=layer, channels=idx[0].tolist(),
            indices=idx.tolist())


def _affinity_meta(rec, layer: str, h: int, w: int) -> None:
    """Name the query and key grids of the affinity just recorded for ``layer``."""
    r = next((r for r in reversed(rec.records) if r.layer == layer and r.kind == "affinity"), None)
    if r is None or "height" in r.meta:
        return
    n, m = r.tensor.shape[-2], r.tensor.shape[-1]
    if n != h * w:
        side = round(n ** 0.5)
        h, w = (side, side) if side * side == n else (n, 1)
    if m == h * w:
        kh, kw = h, w
    elif m == (h // 2) * (w // 2):
        kh, kw = h // 2, w // 2
    elif m == ((h + 1) // 2) * ((w + 1) // 2):
        kh, kw = (h + 1) // 2, (w + 1) // 2
    else:
        side = round(m ** 0.5)
        kh, kw = (side, side) if side * side == m else (m, 1)
    r.meta.update(height=h, width=w, key_height=kh, key_width=kw)


def install_parts(model: nn.Module, layer: str, kind: str, parts: Iterable[Part]) -> None:
    """Hook every part of one attention module's recipe (once per model)."""
    modules = dict(model.named_modules())
    owner = modules.get(layer)
    if owner is None:
        return
    with _LOCK:
        reg = getattr(model, "_attnviz_hooks", None)
        if reg is None:
            reg = {}
            model._attnviz_hooks = reg  # static bookkeeping, not per-call state
        for part in parts:
            key = f"part:{layer}:{part.path}:{part.method}:{part.index}:{part.lam}"
            target = modules.get(part.path)
            if key in reg or target is None:
                continue
            reg[key] = target.register_forward_hook(_make_hook(part, layer, kind, owner))
