"""Attention found by what it does: one probe pass through a network attnviz does not know.

Type detection (``probe.find_attention``) knows attnviz's, torchvision's, timm's and the
published classes. Everything else is judged by behaviour, from one forward pass of a probe
batch in which every module's input and output are looked at as they happen (nothing is kept):

**Multiplicative gate** ``y = x * g`` (SE, ECA, CBAM, SimAM, BAM and their copies). A module is
one when all of these hold (a module that fails any is not reported):

- its output has the shape of a 4-D input ``x``, and differs from it (identity, fresh BN out);
- ``|y| <= 8|x|`` everywhere: no additive term (BN with a bias, residual blocks, convs fail);
- re-run with 1/8 of the entries of ``x`` set to zero, those outputs are exactly zero (a gate
  multiplies; norms and affine maps leave a bias there);
- re-run with half of the channels, then half of the rows, of ``x`` changed, the output changes
  where ``x`` did *not*: the gate depends on context. Element-wise activations (ReLU, SiLU,
  Hardswish, GELU) and per-channel scales are context-free and fail here;
- the gate is not one number per image (a global rescale is not attention).

The gate is then classified by refitting ``y`` with it: constant over space -> channel gate
(kind ``se``), constant over channels -> spatial gate (``sam``), else 3-D (``gate3d``, or
``bam`` for BAM's ``1 + sigmoid``). Its values must lie in [0, 1] (or [1, 2]); a gate outside
both, or a parameter-free gate that is not SimAM's (which could be a normalisation), gets a
confidence below the default threshold. A parameter-free 3-D gate equal to
``sigmoid(E_inv)`` of SimAM's energy for some lambda (estimated from ``logit(g)``) is
``simam``; its energy is recomputed from the input with that lambda.

**Returned gate** (``SpatialAttention`` returning ``sigmoid(conv([mean, max]))``, a
``ChannelAttention`` returning (B,C,1,1)): an output of one channel (B,1,H,W) or one value per
channel (B,C,1,1)/(B,C), with values in [0, 1], that the network then broadcasts over features
in a product (checked on the autograd graph of the probe pass). A U-Net's sigmoid output head
is never multiplied, and features multiplied *by* a gate are not broadcast, so neither is
reported.

**Non-local affinity**: a block whose output has its input's shape and that exposes its
affinity, i.e. a child (typically ``nn.Softmax``) or its own tuple output produces
(B, HW, HW') with rows summing to 1.

Nested findings are resolved to what a user thinks of as one module: a gate module whose
detected parts are a channel gate, a spatial gate, or a channel then a spatial gate is
reported once (``se``/``sam``/``cbam``) with its parts' exact maps; a container of several
unrelated attention modules is not reported, its parts are. ``overrides`` force a kind for a
layer or hide it (``"none"``). Every finding carries a confidence in [0, 1] and a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from attnviz.attention.foreign import (
    RECORD_KINDS,
    Part,
    install_parts,
    recover_channel_gate,
    recover_gate,
    recover_spatial_gate,
)
from attnviz.attention.probe import FoundAttention, find_attention, install_native_recorders
from attnviz.attention.simam import simam_energy
from attnviz.errors import SettingsError, choices_message

OVERRIDE_KINDS = ("none", "se", "cam", "eca", "sam", "simam", "gate3d", "bam")
DEFAULT_MIN_CONFIDENCE = 0.5
KIND_TITLES = {
    "se": "channel gate (SE-style)", "cam": "CBAM channel gate", "eca": "ECA channel gate",
    "ge": "Gather-Excite", "cbam": "CBAM (channel + spatial)", "sam": "spatial gate / mask",
    "simam": "SimAM", "bam": "BAM (1 + sigmoid, 3-D)", "gate3d": "3-D gate",
    "nonlocal": "non-local affinity", "stn": "spatial transformer", "sssa": "SSSA",
}

_BOUND = 8.0  # |y| <= _BOUND |x|: a gate, not an additive map
_FIT_TOL = 1e-4  # relative residual of refitting y with a channel/spatial gate
_CONTEXT_TOL = 1e-4  # relative change where x did not change: depends on context
_RANGE_TOL = 1e-4
_SHAPE_OPS = {
    "ExpandBackward0", "ViewBackward0", "UnsqueezeBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "ReshapeAliasBackward0", "UnsafeViewBackward0", "PermuteBackward0",
    "TransposeBackward0", "RepeatBackward0", "CloneBackward0", "ToCopyBackward0",
    "AliasBackward0", "ExpandAsBackward0", "SliceBackward0", "SelectBackward0",
}
_EXPAND_OPS = {"ExpandBackward0", "ExpandAsBackward0", "RepeatBackward0"}


@dataclass
class _Cand:
    name: str
    order: int
    mode: str  # "mul" (y = x * g), "ret" (returns g), "nonlocal"
    structure: str  # "channel", "spatial", "3d", "affinity"
    kind: str
    confidence: float
    reason: str
    index: int = 0  # the input that is gated (mul), or a feature input (ret), or -1
    lam: float | None = None
    parts: tuple[Part, ...] = ()
    grad_fn: object = field(default=None, repr=False)


def _depth(name: str) -> int:
    return name.count(".") + 1


def _inside(name: str, parent: str) -> bool:
    return name.startswith(parent + ".") if parent else bool(name)


def _rms(t: torch.Tensor) -> float:
    return float(t.float().pow(2).mean().sqrt())


def _main_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class _Capture:
    """Forward hooks on every candidate module; judges each call as it happens."""

    def __init__(self, model: nn.Module, skip: list[str], seed: int = 0) -> None:
        self.model = model
        self.busy = False
        self.order = 0
        self.cands: dict[str, _Cand] = {}
        self.shapes: dict[str, tuple[int, list[tuple[int, tuple]], tuple | None]] = {}
        self.affinities: list[tuple[str, int | None, bool, int, int]] = []
        self.gen = torch.Generator().manual_seed(seed)
        self.handles = []
        for name, module in model.named_modules():
            if not name or any(_inside(name, s) for s in skip):
                continue
            self.handles.append(
                module.register_forward_hook(self._hook(name), with_kwargs=True)
            )

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            if self.busy:
                return None
            self.order += 1
            self._judge(name, module, args, kwargs, output, self.order)
            return None

        return hook

    # ------------------------------------------------------------------ judging one call

    def _judge(self, name, module, args, kwargs, output, order) -> None:
        y = _main_tensor(output)
        inputs = [(i, tuple(a.shape)) for i, a in enumerate(args)
                  if isinstance(a, torch.Tensor) and a.dim() == 4]
        self.shapes.setdefault(name, (order, inputs, tuple(y.shape) if y is not None else None))
        if name in self.cands:
            return
        if y is not None and y.dim() == 4 and y.is_floating_point():
            for i, a in enumerate(args):
                if isinstance(a, torch.Tensor) and a.shape == y.shape and a.is_floating_point():
                    cand = self._gate_test(name, module, args, kwargs, i, a, y, order)
                    if cand is not None:
                        self.cands[name] = cand
                        return
        if isinstance(output, torch.Tensor):
            self._returned_gate(name, args, output, order)
        for j, t in enumerate(output if isinstance(output, (tuple, list)) else [output]):
            if isinstance(t, torch.Tensor) and t.dim() == 3 and t.is_floating_point():
                self._affinity(name, t, j if isinstance(output, (tuple, list)) else None)

    def _rerun(self, module, args, kwargs, i, x) -> torch.Tensor | None:
        new_args = list(args)
        new_args[i] = x
        self.busy = True
        try:
            with torch.no_grad():
                out = module(*new_args, **kwargs)
        except Exception:  # noqa: BLE001 - a module that cannot be re-run is not judged
            return None
        finally:
            self.busy = False
        y = _main_tensor(out)
        return y.detach().float() if y is not None else None

    def _gate_test(self, name, module, args, kwargs, i, a, y, order) -> _Cand | None:  # noqa: C901
        x = a.detach()
        yd = y.detach()
        b, c, h, w = x.shape
        if h * w < 2 or yd.data_ptr() == x.data_ptr():
            return None
        xf, yf = x.float(), yd.float()
        rx, ry = _rms(xf), _rms(yf)
        if not (math.isfinite(rx) and math.isfinite(ry)) or rx == 0 or ry == 0:
            return None
        if float((yf - xf).abs().max()) <= 1e-5 * rx:
            return None  # identity (or a fresh BatchNorm)
        if bool(((yf.abs() - _BOUND * xf.abs()) > 1e-5 * ry).any()):
            return None  # an additive term: not x times a gate
        # Zero test: a gate maps x = 0 to exactly 0.
        mask = torch.rand(x.shape, generator=self.gen) < 0.125
        mask = mask.to(x.device)
        x0 = x.clone()
        x0[mask] = 0
        y0 = self._rerun(module, args, kwargs, i, x0)
        if y0 is None or y0.shape != yf.shape:
            return None
        if float(y0[mask].abs().max()) > 1e-6 * _rms(y0) + 1e-30:
            return None
        # Context test: the output changes where the input did not.
        deltas = []
        if c >= 2:
            k = c // 2
            xc = x.clone()
            xc[:, :k] = xc[:, :k] * 3 + 1
            yc = self._rerun(module, args, kwargs, i, xc)
            if yc is not None and yc.shape == yf.shape:
                deltas.append(float((yc[:, k:] - yf[:, k:]).abs().max()) / ry)
        xs = x.clone()
        if h >= 2:
            k = h // 2
            xs[:, :, :k] = xs[:, :, :k] * 3 + 1
            ys = self._rerun(module, args, kwargs, i, xs)
            if ys is not None and ys.shape == yf.shape:
                deltas.append(float((ys[:, :, k:] - yf[:, :, k:]).abs().max()) / ry)
        else:
            k = w // 2
            xs[..., :k] = xs[..., :k] * 3 + 1
            ys = self._rerun(module, args, kwargs, i, xs)
            if ys is not None and ys.shape == yf.shape:
                deltas.append(float((ys[..., k:] - yf[..., k:]).abs().max()) / ry)
        if not deltas or max(deltas) <= _CONTEXT_TOL:
            return None  # context-free: an activation or a fixed scale
        return self._classify(name, module, i, xf, yf, order)

    def _classify(self, name, module, i, xf, yf, order) -> _Cand | None:
        b, c, h, w = xf.shape
        norm = yf.norm()
        gc, _ = recover_channel_gate(xf, yf)
        res_c = float((yf - gc[:, :, None, None] * xf).norm() / norm)
        gs, _ = recover_spatial_gate(xf, yf)
        res_s = float((yf - gs * xf).norm() / norm) if c >= 2 else math.inf
        if res_c < _FIT_TOL:
            structure, per_image = "channel", [g.flatten() for g in gc]
        elif res_s < _FIT_TOL:
            structure, per_image = "spatial", [g.flatten() for g in gs]
        else:
            structure = "3d"
            valid = xf.abs() > 1e-3 * _rms(xf)
            g3 = yf / torch.where(valid, xf, torch.ones_like(xf))
            per_image = [g3[j][valid[j]] for j in range(b)]
        per_image = [v for v in per_image if v.numel()]
        if not per_image:
            return None
        values = torch.cat(per_image)
        spread = max(float(v.max() - v.min()) for v in per_image)
        if spread <= 1e-5 * max(float(values.abs().max()), 1.0):
            return None  # one number per image: a global rescale, not attention
        lo, hi = float(values.min()), float(values.max())
        in01 = lo >= -_RANGE_TOL and hi <= 1 + _RANGE_TOL
        in12 = lo >= 1 - _RANGE_TOL and hi <= 2 + _RANGE_TOL
        has_params = any(True for _ in module.parameters())
        where = {"channel": "constant over space (one weight per channel)",
                 "spatial": "constant over channels (one weight per position)",
                 "3d": "varying over channels and positions"}[structure]
        reason = (f"output = input x gate, gate {where}, values in [{lo:.3g}, {hi:.3g}], "
                  f"depends on the input")
        if structure == "3d" and in01 and not has_params:
            lam = estimate_simam_lambda(xf, yf)
            if lam is not None:
                return _Cand(name, order, "mul", "3d", "simam", 0.95,
                             f"parameter-free, output = input x sigmoid(SimAM energy), "
                             f"lambda ~ {lam:.2g}", index=i, lam=lam)
        kind = {"channel": "se", "spatial": "sam", "3d": "bam" if in12 and not in01
                else "gate3d"}[structure]
        confidence = 0.95 if structure != "3d" else 0.8
        if not has_params:
            confidence, reason = 0.4, reason + "; parameter-free (could be a normalisation)"
        if not (in01 or in12):
            confidence, reason = 0.3, reason + "; values outside [0, 1] and [1, 2]"
        return _Cand(name, order, "mul", structure, kind, confidence, reason, index=i)

    def _returned_gate(self, name, args, out: torch.Tensor, order) -> None:
        if not out.is_floating_point() or out.grad_fn is None or out.shape[0] < 1:
            return
        s = out.shape
        if out.dim() == 4 and s[1] == 1 and s[2] * s[3] >= 2:
            structure = "spatial"
        elif (out.dim() == 4 and s[2] == 1 and s[3] == 1 and s[1] >= 2) or (
                out.dim() == 2 and s[1] >= 2):
            structure = "channel"
        else:
            return
        o = out.detach()
        lo, hi = float(o.min()), float(o.max())
        if lo < 0 or hi > 1 or hi - lo <= 1e-6:
            return
        feature = -1
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor) and a.dim() == 4 and (
                    (structure == "channel" and a.shape[1] == s[1] and a.shape[2] * a.shape[3] > 1)
                    or (structure == "spatial" and a.shape[1] >= 2 and a.shape[2:] == s[2:])):
                feature = i
                break
        what = ("a one-channel map (B,1,H,W)" if structure == "spatial"
                else "one value per channel")
        self.cands[name] = _Cand(
            name, order, "ret", structure, "sam" if structure == "spatial" else "se",
            0.9 if feature >= 0 else 0.75,
            f"returns {what} in [{lo:.3g}, {hi:.3g}] that the network multiplies features by",
            index=feature, grad_fn=out.grad_fn,
        )

    def _affinity(self, name, t: torch.Tensor, out_index: int | None) -> None:
        n, m = t.shape[1], t.shape[2]
        if n < 4 or m < 4:
            return
        d = t.detach().float()
        if float(d.min()) < 0:
            return
        for transposed, sums in ((False, d.sum(-1)), (True, d.sum(-2))):
            if bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
                nn_, mm = (m, n) if transposed else (n, m)
                self.affinities.append((name, out_index, transposed, nn_, mm))
                return


def estimate_simam_lambda(x: torch.Tensor, y: torch.Tensor, tol: float = 1e-3) -> float | None:
    """SimAM's lambda when ``y = x * sigmoid(E_inv(x; lambda))``, else None.

    ``logit(y / x) = E_inv = d^2 / (4 (var + lambda)) + 1/2`` per neuron, so every neuron gives
    an estimate of ``var + lambda``; the median over neurons, less the channel variance, is
    lambda. The estimate is accepted only when recomputing the gate with it reproduces ``y``.
    """
    xf, yf = x.detach().float(), y.detach().float()
    n = max(xf.shape[-2] * xf.shape[-1] - 1, 1)
    d2 = (xf - xf.mean((-2, -1), keepdim=True)).pow(2)
    var = d2.sum((-2, -1), keepdim=True) / n
    valid = xf.abs() > 1e-3 * _rms(xf)
    g = torch.where(valid, yf / torch.where(valid, xf, torch.ones_like(xf)), 0.5)
    g = g.clamp(1e-6, 1 - 1e-6)
    e = torch.log(g / (1 - g))
    ok = valid & (e - 0.5 > 1e-3) & (d2 > 1e-6 * var)
    if int(ok.sum()) < 8:
        return None
    est = d2 / (4 * (e - 0.5).clamp_min(1e-6)) - var
    lam = max(float(est[ok].median()), 0.0)
    recon = xf * torch.sigmoid(simam_energy(xf, lam))
    if float((yf - recon).norm() / yf.norm().clamp_min(1e-30)) > tol:
        return None
    return float(f"{lam:.3g}")


def _saved_shapes(node) -> tuple[tuple | None, tuple | None]:
    out = []
    for attr in ("_saved_self", "_saved_other"):
        try:
            t = getattr(node, attr, None)
        except RuntimeError:  # freed or not saved
            t = None
        out.append(tuple(t.shape) if isinstance(t, torch.Tensor) else None)
    return out[0], out[1]


def _multiplied(outputs: list[torch.Tensor]) -> set:
    """Autograd nodes whose value is *broadcast* in a product with another graph tensor.

    A gate is the operand that is expanded (``expand_as``, implicit broadcasting) over the
    features; the features, multiplied by the gate, are not. Shape-only steps between the
    node and the product (view, unsqueeze, expand, ...) are looked through.
    """
    feeders: set = set()
    seen: set = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        nexts = [f for f, _ in node.next_functions if f is not None]
        if type(node).__name__ == "MulBackward0" and len(nexts) == 2:
            shapes = _saved_shapes(node)
            for k, f in enumerate(nexts):
                expanded = False
                while type(f).__name__ in _SHAPE_OPS:
                    expanded |= type(f).__name__ in _EXPAND_OPS
                    inner = [g for g, _ in f.next_functions if g is not None]
                    if len(inner) != 1:
                        break
                    f = inner[0]
                mine, other = shapes[k], shapes[1 - k]
                smaller = (mine is not None and other is not None
                           and math.prod(mine) < math.prod(other))
                if expanded or smaller:
                    feeders.add(f)
        stack.extend(nexts)
    return feeders


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in _tensors(o)]
    return []


def _single_parts(c: _Cand) -> tuple[Part, ...]:
    if c.mode == "ret":
        parts = [Part(c.name, f"gate-{c.structure}")]
        if c.structure == "channel" and c.index >= 0:
            parts.append(Part(c.name, "top-channels", index=c.index))
        return (*parts, Part(c.name, "bypass-ones"))
    if c.kind == "simam":
        return (Part(c.name, "simam", index=c.index, lam=c.lam or 1e-4),
                Part(c.name, "bypass-input", index=c.index))
    method = {"channel": "mul-channel", "spatial": "mul-spatial", "3d": "mul-3d"}[c.structure]
    parts = [Part(c.name, method, index=c.index)]
    if c.structure == "channel":
        parts.append(Part(c.name, "top-channels", index=c.index))
    return (*parts, Part(c.name, "bypass-input", index=c.index))


def _exact_part(d: _Cand, cands: list[_Cand]) -> Part:
    """The best reading of a part: a returned gate inside it (exact) or its own recovery."""
    if d.mode == "ret":
        return Part(d.name, f"gate-{d.structure}")
    inner = [e for e in cands if _inside(e.name, d.name) and e.mode == "ret"
             and e.structure == d.structure]
    if inner:
        return Part(min(inner, key=lambda e: _depth(e.name)).name, f"gate-{d.structure}")
    return Part(d.name, f"mul-{d.structure}", index=d.index)


def _resolve(cands: list[_Cand]) -> list[_Cand]:
    """One finding per attention module a user would name (see the module docstring)."""
    out: list[_Cand] = []
    absorbed: set[str] = set()
    for c in sorted(cands, key=lambda c: (_depth(c.name), c.order)):
        if c.name in absorbed:
            continue
        desc = [d for d in cands if _inside(d.name, c.name) and d.name not in absorbed]
        if c.mode in ("ret", "nonlocal"):
            absorbed |= {d.name for d in desc if d.mode == c.mode or c.mode == "nonlocal"}
            out.append(c if c.parts else replace(c, parts=_single_parts(c)))
            continue
        top = sorted((d for d in desc if d.mode != "nonlocal"
                      and not any(_inside(d.name, e.name) for e in desc)),
                     key=lambda d: d.order)
        structs = [d.structure for d in top]
        if not top:
            out.append(replace(c, parts=_single_parts(c)))
            continue
        merge = {("channel",): "se", ("spatial",): "sam", ("channel", "spatial"): "cbam"}
        kind = merge.get(tuple(structs))
        fits = kind == "cbam" or (kind is not None and c.structure == structs[0])
        if not fits:
            continue  # a container of attention modules: its parts are reported instead
        parts = [_exact_part(d, cands) for d in top]
        if "channel" in structs:
            parts.insert(1, Part(c.name, "top-channels", index=c.index))
        parts.append(Part(c.name, "bypass-input", index=c.index))
        names = ", ".join(d.name.rsplit(".", 1)[-1] for d in top)
        absorbed |= {d.name for d in desc}
        out.append(replace(
            c, kind=kind, structure="3d" if kind == "cbam" else c.structure,
            confidence=max(c.confidence, min(d.confidence for d in top), 0.9),
            reason=f"{c.reason}; its parts ({names}) are the "
                   + {"se": "channel gate", "sam": "spatial gate",
                      "cbam": "channel gate, then the spatial gate"}[kind],
            parts=tuple(parts)))
    return sorted(out, key=lambda c: c.order)


def _nonlocal_blocks(cap: _Capture) -> list[_Cand]:
    found = []
    for name, out_index, transposed, n, m in cap.affinities:
        method = "affinity-T" if transposed else "affinity"
        chain = [name] if out_index is not None else []
        parts_path = name.split(".")
        chain += [".".join(parts_path[:k]) for k in range(len(parts_path) - 1, 0, -1)]
        for block in chain:
            order, inputs, out_shape = cap.shapes.get(block, (0, [], None))
            hit = next((i for i, s in inputs if s[2] * s[3] == n and out_shape == s), None)
            if hit is None:
                continue
            index = out_index if (block == name and out_index is not None) else 0
            found.append(_Cand(
                block, order, "nonlocal", "affinity", "nonlocal", 0.9,
                f"exposes a ({n} x {m}) affinity with rows summing to 1 "
                f"({'its own output' if block == name else name}); output has the input's shape",
                index=hit,
                parts=(Part(name, method, index=index), Part(block, "affinity-meta", index=hit),
                       Part(block, "bypass-input", index=hit)),
            ))
            break
    return found


def _found(c: _Cand) -> FoundAttention:
    return FoundAttention(
        c.name, c.kind, "behaviour", how="behaviour", confidence=round(c.confidence, 3),
        reason=c.reason, records=RECORD_KINDS.get(c.kind, ()), parts=c.parts,
    )


def parse_override(text: str) -> tuple[str, str]:
    """``LAYER=KIND`` (KIND may be ``simam:LAMBDA``) -> (layer, kind)."""
    if "=" not in text:
        raise SettingsError(f"attention override {text!r} must look like LAYER=KIND "
                            f"(KIND one of {', '.join(OVERRIDE_KINDS)})")
    layer, kind = text.rsplit("=", 1)
    return layer.strip(), kind.strip()


def _check_kind(kind: str) -> tuple[str, float | None]:
    base, _, lam = kind.partition(":")
    if base not in OVERRIDE_KINDS:
        raise SettingsError(choices_message("attention kind", kind, OVERRIDE_KINDS))
    if lam:
        if base != "simam":
            raise SettingsError(f"only simam takes a parameter (simam:LAMBDA), got {kind!r}")
        try:
            value = float(lam)
        except ValueError:
            raise SettingsError(f"SimAM lambda must be a number, got {lam!r}") from None
        if not value >= 0:
            raise SettingsError(f"SimAM lambda must be >= 0, got {lam!r}")
        return base, value
    return base, None


def _forced(layer: str, kind: str, lam: float | None, cap: _Capture,
            detected: dict[str, FoundAttention]) -> FoundAttention:
    if layer not in cap.shapes:
        raise SettingsError(f"layer {layer!r} did not run in the probe pass; it cannot be shown")
    _, inputs, out = cap.shapes[layer]
    same = next((i for i, s in inputs if s == out), None)
    channel_out = out is not None and (
        (len(out) == 4 and out[2] == out[3] == 1) or len(out) == 2)
    spatial_out = out is not None and len(out) == 4 and out[1] == 1
    prior = detected.get(layer)
    if kind == "simam":
        if not inputs:
            raise SettingsError(f"layer {layer!r} has no 4-D input to compute SimAM energy of")
        if lam is None:
            lam = next((p.lam for p in (prior.parts if prior else ()) if p.method == "simam"),
                       1e-4)
        index = same if same is not None else inputs[0][0]
        parts = [Part(layer, "simam", index=index, lam=lam)]
        if same is not None:
            parts.append(Part(layer, "bypass-input", index=same))
    elif same is not None:
        method = {"se": "mul-channel", "cam": "mul-channel", "eca": "mul-channel",
                  "sam": "mul-spatial", "gate3d": "mul-3d", "bam": "mul-3d"}[kind]
        parts = [Part(layer, method, index=same)]
        if method == "mul-channel":
            parts.append(Part(layer, "top-channels", index=same))
        parts.append(Part(layer, "bypass-input", index=same))
    elif kind in ("se", "cam", "eca") and channel_out:
        feature = next((i for i, s in inputs if s[1] == out[1]), None)
        parts = [Part(layer, "gate-channel")]
        if feature is not None:
            parts.append(Part(layer, "top-channels", index=feature))
        parts.append(Part(layer, "bypass-ones"))
    elif kind == "sam" and spatial_out:
        parts = [Part(layer, "gate-spatial"), Part(layer, "bypass-ones")]
    else:
        raise SettingsError(
            f"cannot show layer {layer!r} as {kind}: its output {list(out or [])} is neither "
            f"its input times a gate nor a gate itself"
        )
    return FoundAttention(
        layer, kind, "override", how="override", confidence=1.0,
        reason="set by the user" + (f" (detected: {prior.module_kind})" if prior else ""),
        records=RECORD_KINDS.get(kind, ()), parts=tuple(parts),
    )


def detect_attention(
    model: nn.Module,
    probe: torch.Tensor | None = None,
    *,
    input_size: int = 224,
    overrides: dict[str, str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    behaviour: bool = True,
) -> list[FoundAttention]:
    """Every attention module of ``model``: by type, then by behaviour from one probe pass.

    ``probe``: a (B,3,H,W) batch through the model's preprocessing (default: seeded random
    normal at ``input_size``). ``overrides``: layer -> kind (``OVERRIDE_KINDS``; ``simam:0.1``
    sets lambda; ``none`` hides a layer). ``min_confidence``: behaviour findings below it are
    left out. The model should be in eval mode; it is run once with gradients (for the
    autograd graph) and its candidate modules a few more times without.
    """
    overrides = dict(overrides or {})
    checked = {layer: _check_kind(kind) for layer, kind in overrides.items()}
    modules = dict(model.named_modules())
    for layer in checked:
        if not layer or layer not in modules:
            from attnviz.attention.probe import get_layer

            get_layer(model, layer)  # raises with valid names
    typed = find_attention(model)
    found: list[FoundAttention] = list(typed)
    cap = _Capture(model, skip=[f.layer for f in typed])
    try:
        if behaviour or checked:
            if probe is None:
                gen = torch.Generator().manual_seed(0)
                probe = torch.randn(2, 3, input_size, input_size, generator=gen)
            param = next(iter(model.parameters()), None)
            if param is not None:
                probe = probe.to(param.device)
            leaf = probe.detach().clone().requires_grad_(True)
            try:
                with torch.enable_grad():
                    output = model(leaf * 1)  # not a leaf: in-place ops on the input still work
            except Exception as exc:  # noqa: BLE001 - the user's model with gradients on
                text = str(exc).strip().splitlines()
                raise SettingsError(
                    f"the detection pass failed ({type(exc).__name__}: "
                    f"{text[0] if text else ''}); detect by type only (--no-detect)"
                ) from None
            if behaviour:
                feeders = _multiplied(_tensors(output))
                cands = [c for c in cap.cands.values()
                         if c.mode == "mul" or c.grad_fn in feeders]
                typed_names = [f.layer for f in typed]
                cands = [c for c in cands  # typed modules and what contains them are explained
                         if not any(t == c.name or _inside(t, c.name) for t in typed_names)]
                for c in _resolve(cands + _nonlocal_blocks(cap)):
                    if c.confidence >= min_confidence:
                        found.append(_found(replace(c, grad_fn=None)))
            del output
    finally:
        cap.remove()
    by_layer = {f.layer: f for f in found}
    for layer, (kind, lam) in checked.items():
        if kind == "none":
            found = [f for f in found if f.layer != layer]
            continue
        prior = by_layer.get(layer)
        if prior is not None and prior.source == "attnviz":
            raise SettingsError(
                f"layer {layer!r} is attnviz's own {prior.module_kind} module and records "
                "itself; it can only be hidden (=none)"
            )
        forced = _forced(layer, kind, lam, cap, by_layer)
        found = [f for f in found if f.layer != layer] + [forced]
    order = {name: i for i, name in enumerate(modules)}
    return sorted(found, key=lambda f: order.get(f.layer, 0))


def install_detected_recorders(model: nn.Module, found: list[FoundAttention]) -> list[str]:
    """Hook every finding that does not record itself; returns their layer names."""
    names = install_native_recorders(model, [f for f in found if f.how == "type"])
    for f in found:
        if f.how != "type" and f.parts:
            install_parts(model, f.layer, f.module_kind, f.parts)
            names.append(f.layer)
    return names


__all__ = [
    "DEFAULT_MIN_CONFIDENCE", "KIND_TITLES", "OVERRIDE_KINDS", "detect_attention",
    "estimate_simam_lambda", "install_detected_recorders", "parse_override",
    "recover_channel_gate", "recover_gate", "recover_spatial_gate",
]
