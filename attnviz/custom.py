"""Bring your own model: a factory in your code, a TorchScript file, or a timm model name.

What each source runs -- say it to users exactly like this (``SOURCE_NOTES``):

- **factory** (``path/to/file.py:build_model`` or ``package.module:function``, keyword
  arguments from JSON): imports the file or module and calls the function. **This runs your
  Python code**, exactly as ``python`` would. Only ever point it at your own code on this
  machine; attnviz never imports code from an uploaded file.
- **checkpoint** for a factory (or a timm model): read as data only (safetensors, or a
  weights-only pickle), loaded strictly. Never runs code.
- **TorchScript** (``torch.jit.save`` / ``torch.jit.trace`` output): ``torch.jit.load`` runs no
  Python code and unpickles no Python objects; the file's compiled TorchScript program runs in
  PyTorch's TorchScript interpreter every time the model is called. That program can call any
  operator of this PyTorch build, so load only TorchScript files you would run as a program.
- **timm name**: timm's own architecture code; weights from the Hugging Face cache (downloaded
  only when online). With ``allow_random`` a model without cached weights runs with random
  weights, which is said in ``LoadedModel.weights`` and ``notes``.

TorchScript limits: forward hooks are not supported on ScriptModules, so attnviz rebuilds the
network's top level as a chain of its compiled children (``nn.Sequential`` containers opened up
recursively) when that chain reproduces the model's output exactly. Attention modules, CAM
layers and layer paths at those levels work as usual; a module inside a compiled block (say an
SE inside a residual block) cannot be observed and is listed in ``notes``. When no exact chain
exists, the model gives predictions only (no CAM, no attention).

Models that are not classifiers (a U-Net, a detector) are analysed too: their output is turned
into class scores (a dense map is averaged over space, the first tensor of a tuple is used),
which is said in ``notes``; the CAM then explains that score.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import re
import sys
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from attnviz.attention.detect import (
    DEFAULT_MIN_CONFIDENCE,
    KIND_TITLES,
    detect_attention,
    install_detected_recorders,
    parse_override,
)
from attnviz.attention.probe import FoundAttention, install_cam_hook
from attnviz.checkpoints import load_strict, read_state_dict
from attnviz.devices import resolve_device
from attnviz.errors import AttnvizError, SettingsError, WeightsUnavailableError
from attnviz.labels import imagenet_labels
from attnviz.loader import LoadedModel
from attnviz.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from attnviz.sources import FileSource, InlineSource, TimmSource, WeightSource
from attnviz.zoo import ModelSpec

SOURCE_NOTES = {
    "factory": "runs your Python code: the file or module you name is imported and the "
               "function called. Only your own code on this machine, never an uploaded file.",
    "checkpoint": "read as data only (safetensors or weights-only pickle); never runs code.",
    "torchscript": "runs no Python code and unpickles no Python objects, but the file's "
                   "compiled TorchScript program runs whenever the model is called: load only "
                   "files you trust as a program.",
    "timm": "timm's own architecture; weights from the Hugging Face cache; no user code.",
}
CAM_CANDIDATES = ("layer4", "stages.3", "trunk_output", "bn2", "features")
_ATTENTION_NAME = re.compile(r"SE|Squeeze|Excit|Attention|Attn|CBAM|Cbam|BAM|SimAM|simam|"
                             r"ECA|Eca|NonLocal|Gate")

FileLike = str | os.PathLike | bytes | BinaryIO


# --------------------------------------------------------------------------- factories


def parse_factory(spec: str) -> tuple[str, str, str]:
    """``file.py:fn`` -> ("file", path, fn); ``pkg.mod:fn`` -> ("module", "pkg.mod", fn)."""
    text = (spec or "").strip()
    target, sep, fn = text.rpartition(":")
    if not sep or not target or not fn or not re.fullmatch(r"[A-Za-z_][\w.]*", fn):
        raise SettingsError(
            f"factory {spec!r} must look like path/to/file.py:function or package.module:function"
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        return "file", target, fn
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", target):
        raise SettingsError(f"factory module {target!r} is not a Python module name")
    return "module", target, fn


def parse_factory_kwargs(text: str | dict | None) -> dict[str, Any]:
    """Keyword arguments for a factory from a JSON object (or a dict, passed through)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"factory arguments are not valid JSON ({exc.msg} at column "
                            f"{exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"factory arguments must be a JSON object like "
                            f'{{"num_classes": 10}}, got {text!r}')
    return value


def _user_error(what: str, exc: BaseException, origin: str | None) -> SettingsError:
    """One line naming the exception and the last line of the user's code it came from."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if origin and os.path.abspath(f.filename) == origin] or frames[-1:]
    if mine:
        where = f" (at {os.path.basename(mine[-1].filename)}:{mine[-1].lineno})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SettingsError(f"{what} failed: {type(exc).__name__}"
                         + (f": {message}" if message else "") + where)


def call_factory(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Import the factory the user named and call it. THIS RUNS THE USER'S CODE (see module doc).

    A file's own folder is put first on ``sys.path`` while it is imported and called, so it
    can import its neighbours; a module is imported from ``sys.path`` plus the current folder.
    """
    kind, target, fn = parse_factory(spec)
    origin = None
    if kind == "file":
        path = Path(target).expanduser()
        if not path.is_file():
            raise SettingsError(f"factory file {target!r} does not exist")
        if path.suffix != ".py":
            raise SettingsError(f"factory file {target!r} is not a .py file")
        path = path.resolve()
        origin = str(path)
        folder = str(path.parent)
        name = "user_factory_" + re.sub(r"\W", "_", path.stem) + f"_{abs(hash(origin)):x}"
    else:
        folder = os.getcwd()
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        try:
            if kind == "file":
                mspec = importlib.util.spec_from_file_location(name, origin)
                if mspec is None or mspec.loader is None:
                    raise SettingsError(f"cannot import factory file {target!r}")
                module = importlib.util.module_from_spec(mspec)
                sys.modules[name] = module  # dataclasses and pickling look modules up by name
                mspec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
        except SettingsError:
            raise
        except ModuleNotFoundError as exc:
            if kind == "module" and exc.name and target.startswith(exc.name):
                raise SettingsError(f"cannot import module {target!r} (not on the Python path; "
                                    "run from your project folder or set PYTHONPATH)") from None
            raise _user_error(f"importing {target}", exc, origin) from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code can raise anything
            raise _user_error(f"importing {target}", exc, origin) from None
        func: Any = module
        for attr in fn.split("."):
            func = getattr(func, attr, None)
            if func is None:
                raise SettingsError(f"{target} has no {fn!r}")
        if not callable(func):
            raise SettingsError(f"{target}:{fn} is not callable")
        try:
            model = func(**(kwargs or {}))
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            raise _user_error(f"calling {fn}(**{json.dumps(kwargs or {})})", exc,
                              origin) from None
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    if not isinstance(model, nn.Module):
        raise SettingsError(f"{target}:{fn} returned {type(model).__name__}, not a torch.nn.Module")
    return model


# --------------------------------------------------------------------------- TorchScript


class CompiledModule(nn.Module):
    """A compiled TorchScript sub-module called as a whole: hookable from outside, opaque inside.

    The script module is deliberately not registered as a child, so layer paths stay those of
    the original network (its insides are compiled and cannot be hooked anyway).
    """

    def __init__(self, script: nn.Module) -> None:
        super().__init__()
        self.__dict__["script"] = script
        self.original_name = str(getattr(script, "original_name", type(script).__name__))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.script(*args, **kwargs)

    def parameters(self, recurse: bool = True):  # noqa: D102 - detection asks "has weights?"
        return self.script.parameters(recurse)

    def extra_repr(self) -> str:
        return f"compiled {self.original_name}"


class ScriptChain(nn.Module):
    """A TorchScript model's top level as a chain of its children, checked to be exact."""

    def __init__(self, children: Iterable[tuple[str, nn.Module]], flatten_before: set[str],
                 script: nn.Module) -> None:
        super().__init__()
        for name, child in children:
            self.add_module(name, child)
        self.flatten_before = frozenset(flatten_before)
        self.__dict__["script"] = script

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, child in self.named_children():
            if name in self.flatten_before:
                x = torch.flatten(x, 1)
            x = child(x)
        return x


class OpaqueScript(nn.Module):
    """A TorchScript model that is not a chain: predictions only."""

    def __init__(self, script: nn.Module) -> None:
        super().__init__()
        self.__dict__["script"] = script

    def forward(self, x: torch.Tensor) -> Any:
        return self.script(x)


def _open(script: nn.Module, x: Any) -> tuple[nn.Module, Any]:
    """``script`` as hookable modules, opened as deep as exact chains go, and its output on x.

    A ``Sequential`` is a chain by definition. Any other compiled module is replaced by the
    chain of its children only when that chain reproduces its output on ``x`` exactly (a
    residual block is not a chain; an ``InvertedResidual`` without a shortcut is).
    """
    children = list(script.named_children())
    if getattr(script, "original_name", "") == "Sequential":
        opened = []
        for name, child in children:
            module, x = _open(child, x)
            opened.append((name, module))
        return nn.Sequential(OrderedDict(opened)), x
    expected = script(x)
    if children and isinstance(expected, torch.Tensor) and isinstance(x, torch.Tensor):
        chain = _try_chain(script, children, x, expected)
        if chain is not None:
            return chain, expected
    return CompiledModule(script), expected


def _try_chain(script, children, x, expected) -> ScriptChain | None:
    built, flatten = [], set()
    y = x
    for name, child in children:
        try:
            module, nxt = _open(child, y)
        except Exception:  # noqa: BLE001 - shapes decide; retried flattened once
            if not isinstance(y, torch.Tensor) or y.dim() <= 2:
                return None
            try:
                module, nxt = _open(child, torch.flatten(y, 1))
            except Exception:  # noqa: BLE001
                return None
            flatten.add(name)
        built.append((name, module))
        y = nxt
    if not isinstance(y, torch.Tensor) or y.shape != expected.shape:
        return None
    if not _same(y, expected):
        return None
    return ScriptChain(built, flatten, script)


def _same(y: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding, relative to the size of ``expected`` (never absolute: a
    residual block whose branch is tiny must not pass for a chain)."""
    e = expected.detach().float()
    scale = float(e.norm())
    if scale == 0.0:
        return bool((y == 0).all())
    return float((y.detach().float() - e).norm()) <= 1e-4 * scale


def _script_chain(script: nn.Module, probe: torch.Tensor) -> nn.Module | None:
    """The model as a chain of (opened) children, or None when no exact chain exists.

    A top-level ``Sequential`` opens into an ``nn.Sequential``, itself a chain.
    """
    with torch.no_grad():
        module, _ = _open(script, probe)
    return module if isinstance(module, (ScriptChain, nn.Sequential)) else None


def _load_script(source: FileLike, name: str | None, device: torch.device) -> nn.Module:
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "upload")
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise SettingsError(f"TorchScript file {label!r} does not exist")
        target: Any = str(source)
    else:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else source.read()
        if not data:
            raise SettingsError(f"TorchScript file {label!r} is empty")
        target = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
            return torch.jit.load(target, map_location=device)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError/zip errors
        text = str(exc).strip().splitlines()
        raise SettingsError(f"{label!r} is not a TorchScript file torch can load "
                            f"({text[0] if text else type(exc).__name__}); save one with "
                            "torch.jit.save(torch.jit.script(model), path)") from None


def _hidden_attention(script: nn.Module, reachable: set[str]) -> list[str]:
    """Attention-like modules inside compiled blocks (listed by their class names)."""
    out = []
    for name, m in script.named_modules():
        cls = str(getattr(m, "original_name", ""))
        if name and name not in reachable and _ATTENTION_NAME.search(cls):
            parent = next((r for r in sorted(reachable, key=len, reverse=True)
                           if r and name.startswith(r + ".")), "")
            if not any(name.startswith(o.split(" ")[0] + ".") for o in out):
                out.append(f"{name} ({cls})" + (f" inside compiled {parent}" if parent else ""))
    return out


# --------------------------------------------------------------------------- timm


def _timm_model(name: str, num_classes: int | None) -> nn.Module:
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:12]}*")[:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise SettingsError(f"timm has no model named {name!r}{hint}")
    kwargs = {"num_classes": num_classes} if num_classes else {}
    return timm.create_model(name, pretrained=False, **kwargs)


def _timm_preprocessing(name: str, size: int | None) -> Preprocessing:
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - no cfg: ImageNet defaults
        cfg = None
    mean = tuple(cfg.mean) if cfg is not None and len(cfg.mean) == 3 else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg is not None and len(cfg.std) == 3 else IMAGENET_STD
    default = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    return Preprocessing(size=size or default, mean=mean, std=std,
                         resample=getattr(cfg, "interpolation", "bicubic") or "bicubic")


# --------------------------------------------------------------------------- outputs


def _to_scores(out: Any) -> torch.Tensor:
    """Class scores (B, K) from whatever the model returns."""
    if isinstance(out, dict):
        out = out["out"] if "out" in out else next(iter(out.values()))
    while isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, (torch.Tensor, tuple, list, dict))), None)
        if isinstance(out, dict):
            return _to_scores(out)
    if not isinstance(out, torch.Tensor):
        raise SettingsError("the model returned no tensor; attnviz needs scores to explain")
    if out.dim() == 2:
        return out
    if out.dim() == 1:
        return out[:, None]
    if out.dim() == 4:
        return out.mean((2, 3))
    if out.dim() == 3:
        return out.mean(1)
    return out.flatten(1)


def _output_note(out: Any) -> str | None:
    """None for class scores (B, K); else how the output is turned into scores."""
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return None
    count = _to_scores(out).shape[1]
    if isinstance(out, torch.Tensor):
        rule = {4: "averaged over space", 3: "averaged over its dimension 1",
                1: "used as one score"}.get(out.dim(), "flattened")
        what = f"a tensor of shape {tuple(out.shape)}"
    else:
        rule, what = "reduced to its first tensor (then to scores)", f"a {type(out).__name__}"
    return (f"the model returns {what}, not class scores (B, K); its output is {rule}, giving "
            f"{count} score(s) for the predictions and the CAM")


def _adapter_hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return None
    return _to_scores(output)


# --------------------------------------------------------------------------- probe input


def probe_batch(prep: Preprocessing, device: torch.device) -> torch.Tensor:
    """Two inputs for detection: a sample photo (when present) and seeded noise."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, prep.size, prep.size, generator=gen)
    photo = None
    try:
        from attnviz.inputs import load_image
        from attnviz.samples import sample_paths

        paths = list(sample_paths().values())
        if paths:
            photo = prep.to_tensor([load_image(paths[0]).array])
    except (AttnvizError, OSError):
        photo = None
    batch = torch.cat([photo, noise]) if photo is not None else torch.cat([noise, noise * 0.5])
    return batch.to(device)


class _Shapes:
    """One plain pass: each module's output shape, completion order and call count."""

    def __init__(self, model: nn.Module) -> None:
        self.rows: dict[str, list] = {}
        self.order = 0
        self._handles = [m.register_forward_hook(self._hook(n))
                         for n, m in model.named_modules() if n]

    def _hook(self, name: str):
        def hook(_m, _a, out):
            self.order += 1
            row = self.rows.setdefault(name, [0, 0, None])
            row[0], row[1] = self.order, row[1] + 1
            if isinstance(out, torch.Tensor):
                row[2] = tuple(out.shape)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _cam_layer(shapes: _Shapes, attention: Sequence[FoundAttention]) -> str:
    """The last stage a CAM is usually taken at: known names first, else the last 4-D output."""
    busy = [f.layer for f in attention]

    def ok(name: str) -> bool:
        row = shapes.rows.get(name)
        return (row is not None and row[1] == 1 and row[2] is not None and len(row[2]) == 4
                and row[2][2] * row[2][3] >= 2
                and not any(name == b or name.startswith(b + ".") for b in busy))

    for name in CAM_CANDIDATES:
        if ok(name):
            return name
    ranked = sorted((row[0], name) for name, row in shapes.rows.items() if ok(name))
    return ranked[-1][1] if ranked else ""


# --------------------------------------------------------------------------- labels


def read_labels(labels: str | os.PathLike | Sequence[str] | None, count: int) -> tuple[str, ...]:
    """Class names: a file (one per line), a list, ImageNet for 1000 classes, else ``class i``."""
    if labels is None:
        if count == 1000:
            return imagenet_labels()
        return tuple(f"class {i}" for i in range(count))
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise SettingsError(f"labels file {str(labels)!r} does not exist")
        try:
            names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise SettingsError(f"labels file {str(labels)!r} is not UTF-8 text") from None
        names = [n for n in names if n]
    else:
        names = [str(n) for n in labels]
    if len(names) != count:
        raise SettingsError(f"{len(names)} label(s) given but the model gives {count} "
                            "score(s); give one class name per line")
    return tuple(names)


# --------------------------------------------------------------------------- loading


def load_custom_model(
    *,
    factory: str | None = None,
    factory_kwargs: dict[str, Any] | str | None = None,
    checkpoint: FileLike | None = None,
    checkpoint_name: str | None = None,
    torchscript: FileLike | None = None,
    torchscript_name: str | None = None,
    timm_name: str | None = None,
    num_classes: int | None = None,
    labels: str | os.PathLike | Sequence[str] | None = None,
    input_size: int | None = None,
    device: str = "auto",
    detect: bool = True,
    overrides: dict[str, str] | Sequence[str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    allow_random: bool = False,
) -> LoadedModel:
    """Load a user's own network and find the attention inside it (see the module docstring).

    Exactly one of ``factory`` (runs the user's code), ``torchscript`` (a path, or bytes of an
    upload with ``torchscript_name``) or ``timm_name``. ``checkpoint`` (path, or bytes with
    ``checkpoint_name``) goes with a factory or a timm model. ``num_classes``: for timm.
    ``labels``: a file with one class name per line, or a list. ``overrides``: layer -> kind
    (or ``["LAYER=KIND", ...]``), kind ``none`` hides a layer. ``detect=False`` skips
    behaviour detection (attention known by type is still found).
    """
    started = time.perf_counter()
    chosen = [n for n, v in (("factory", factory), ("torchscript", torchscript),
                             ("timm", timm_name)) if v]
    if len(chosen) != 1:
        raise SettingsError("give exactly one of a factory, a TorchScript file or a timm name"
                            + (f" (got {', '.join(chosen)})" if chosen else ""))
    if input_size is not None and not 16 <= int(input_size) <= 2048:
        raise SettingsError(f"input size must be between 16 and 2048, got {input_size}")
    if checkpoint is not None and torchscript is not None:
        raise SettingsError("a TorchScript file carries its own weights; drop the checkpoint")
    if isinstance(overrides, (list, tuple)):
        overrides = dict(parse_override(o) for o in overrides)
    dev = resolve_device(device)
    notes: list[str] = []
    source: WeightSource
    prep = Preprocessing(size=int(input_size or 224))

    if factory:
        kwargs = parse_factory_kwargs(factory_kwargs)
        model = call_factory(factory, kwargs)
        kind, target, fn = parse_factory(factory)
        model_id = f"custom:{Path(target).name if kind == 'file' else target}:{fn}"
        title = f"{fn}() from {Path(target).name if kind == 'file' else target}"
        backbone = "custom"
        source, weights = _factory_weights(model, checkpoint, checkpoint_name)
    elif timm_name:
        model = _timm_model(timm_name, num_classes)
        prep = _timm_preprocessing(timm_name, input_size)
        model_id, title, backbone = f"timm:{timm_name}", f"timm {timm_name}", f"timm:{timm_name}"
        source, weights = _timm_weights(model, timm_name, checkpoint, checkpoint_name,
                                        allow_random, notes)
    else:
        label = torchscript_name or (Path(torchscript).name if isinstance(
            torchscript, (str, os.PathLike)) else "upload.pt")
        script = _load_script(torchscript, label, dev)
        script.eval()
        for param in script.parameters():  # requires_grad_ is not supported on ScriptModules
            param.requires_grad_(False)
        probe = probe_batch(prep, dev)
        model = _wrap_script(script, probe, label, notes)
        model_id, title, backbone = f"torchscript:{label}", f"TorchScript {label}", "torchscript"
        source = InlineSource(f"TorchScript file {label} (weights inside)", kind="torchscript")
        weights = source.describe()

    model.eval().requires_grad_(False).to(dev)
    probe = probe_batch(prep, dev)
    shapes = _Shapes(model)
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:  # noqa: BLE001 - the user's model on our probe input
        raise _user_error(f"running the model on a (2, 3, {prep.size}, {prep.size}) input "
                          "(set the input size?)", exc, None) from None
    finally:
        shapes.remove()
    note = _output_note(out)
    if note:
        notes.append(note)
        _install_adapter(model)
    count = int(_to_scores(out).shape[1])
    names = read_labels(labels, count)

    found = detect_attention(model, probe, overrides=overrides, min_confidence=min_confidence,
                             behaviour=detect)
    install_detected_recorders(model, found)
    cam_layer = _cam_layer(shapes, found)
    if cam_layer:
        install_cam_hook(model, cam_layer)
    else:
        notes.append("no layer to take a CAM at was found: predictions and attention only")
    kinds = sorted({f.module_kind for f in found})
    spec = ModelSpec(
        id=model_id, title=title, backbone=backbone, attention="+".join(kinds) or "none",
        placement="native", source=source, num_classes=count, labels=names,
        preprocessing=prep, notes="; ".join(notes),
    )
    return LoadedModel(
        spec=spec, model=model, device=dev, weights=weights, labels=names, cam_layer=cam_layer,
        attention=tuple(found), load_seconds=time.perf_counter() - started, notes=tuple(notes),
    )


def _install_adapter(model: nn.Module) -> None:
    reg = getattr(model, "_attnviz_hooks", None)
    if reg is None:
        reg = {}
        model._attnviz_hooks = reg
    if "output-adapter" not in reg:
        reg["output-adapter"] = model.register_forward_hook(_adapter_hook)


def _factory_weights(model, checkpoint, checkpoint_name) -> tuple[WeightSource, str]:
    if checkpoint is None:
        source = InlineSource("weights set by the factory", kind="factory")
        return source, source.describe()
    name = checkpoint_name or (Path(checkpoint).name if isinstance(
        checkpoint, (str, os.PathLike)) else None)
    state = read_state_dict(checkpoint, name=name)
    label = f"checkpoint {name or 'upload'}"
    load_strict(model, state, source=label)
    if isinstance(checkpoint, (str, os.PathLike)):
        return FileSource(str(checkpoint)), label
    return InlineSource(label, kind="upload"), label


def _timm_weights(model, name, checkpoint, checkpoint_name, allow_random,
                  notes: list[str]) -> tuple[WeightSource, str]:
    if checkpoint is not None:
        return _factory_weights(model, checkpoint, checkpoint_name)
    source = TimmSource(name)
    try:
        state = source.load()
    except WeightsUnavailableError as exc:
        if not allow_random:
            raise WeightsUnavailableError(
                f"{exc}; or pass a checkpoint, or allow random weights (--allow-random) to "
                "look at the architecture only"
            ) from None
        notes.append(f"RANDOM weights: {exc}")
        random = InlineSource(f"random weights (timm {name}; no cached weights)", kind="random")
        return random, random.describe()
    load_strict(model, state, source=source.describe())
    return source, source.describe()


def _wrap_script(script: nn.Module, probe: torch.Tensor, label: str,
                 notes: list[str]) -> nn.Module:
    try:
        chain = _script_chain(script, probe)
    except Exception:  # noqa: BLE001 - a model that fails here fails below with a message
        chain = None
    if chain is None:
        notes.append(f"TorchScript {label}: its forward is not a chain of its children, so "
                     "only predictions are available (no CAM, no attention: hooks do not work "
                     "inside compiled code)")
        hidden = _hidden_attention(script, {""})
        if hidden:
            notes.append("attention-like modules that cannot be observed: " + ", ".join(hidden))
        return OpaqueScript(script)
    reachable = {n for n, _ in chain.named_modules()}
    hidden = _hidden_attention(script, reachable)
    if hidden:
        notes.append("TorchScript: attention-like modules inside compiled blocks cannot be "
                     "observed: " + ", ".join(hidden))
    return chain


# --------------------------------------------------------------------------- after analysis


def attention_table(model: LoadedModel) -> list[dict[str, Any]]:
    """One row per attention module found: for listings, pickers and ``attnviz inspect``."""
    return [
        {"layer": f.layer, "kind": f.module_kind, "title": KIND_TITLES.get(f.module_kind,
                                                                         f.module_kind),
         "how": f.how, "source": f.source, "confidence": f.confidence, "reason": f.reason,
         "records": list(f.records)}
        for f in model.attention
    ]


def select_records(analysis, layers: Iterable[str] | None):
    """The analysis with only the records of ``layers`` (None: unchanged)."""
    if layers is None:
        return analysis
    keep = set(layers)
    return replace(analysis, records=tuple(r for r in analysis.records if r.layer in keep))


def check_layers(model: LoadedModel, layers: Iterable[str]) -> list[str]:
    """``layers`` if each is an attention layer of ``model``, else a SettingsError naming them."""
    known = [f.layer for f in model.attention] + list(model.probe_layers)
    chosen = list(layers)
    bad = [layer for layer in chosen if layer not in known]
    if bad:
        raise SettingsError(f"not an attention layer of this model: {', '.join(bad)}; found: "
                            f"{', '.join(known) or '(none)'}")
    return chosen


__all__ = [
    "SOURCE_NOTES", "attention_table", "call_factory", "check_layers", "load_custom_model",
    "parse_factory", "parse_factory_kwargs", "probe_batch", "read_labels", "select_records",
]
