"""``attnviz fit``: train or fine-tune a zoo backbone with its attention module in place.

Why this exists: a fitted attention module with untrained weights draws noise, and published
checkpoints need a network. ``fit`` trains on the procedural shapes (minutes on a CPU) or on
a user's folder, and writes what the rest of attnviz needs to use the result: a
``.safetensors`` file and a model card (``attnviz.training.card``) that records the exact
command, seed, device, time and held-out accuracy.

Resuming: every ``save_every`` steps (and on Ctrl-C) the full training state goes to
``<out>/<id>.state.pt``; ``--resume`` that file continues from the same step with the same
data (batches are a function of the step), optimizer and schedule. The state file is removed
once the run finishes unless ``keep_state`` is set.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attnviz.errors import CheckpointError, SettingsError
from attnviz.preprocess import Preprocessing
from attnviz.training.card import machine_description, sha256_of, write_card
from attnviz.training.data import FolderSource, ProceduralSource
from attnviz.zoo import ModelSpec

DEFAULT_PROCEDURAL_STEPS = 2000
DEFAULT_FOLDER_EPOCHS = 10.0
STATE_SUFFIX = ".state.pt"
_RESUMABLE = ("model", "data", "batch_size", "lr", "weight_decay", "seed", "size", "name",
              "warmup", "heldout_samples", "heldout_fraction")


@dataclass(frozen=True)
class FitConfig:
    """Everything a run depends on; the card stores it and ``--resume`` checks it."""

    model: str
    out: Path
    data: str = "procedural"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: float = 0.05  # share of the steps with a linear learning-rate warm-up
    seed: int = 0
    device: str = "auto"
    size: int | None = None  # input size; default: the model's own
    name: str | None = None  # id of the fitted model; default derived from model and data
    heldout_samples: int = 5000  # procedural data
    heldout_fraction: float = 0.2  # folder data without its own val/ split
    resume: Path | None = None
    save_every: int = 200
    keep_state: bool = False
    progress: bool = True
    command: str = field(default="", compare=False)


@dataclass(frozen=True)
class FitResult:
    weights: Path
    card_path: Path
    card: dict[str, Any]
    accuracy: float


def current_command(argv: list[str] | None = None) -> str:
    """How to run this again from the repository root: ``python -m attnviz ...``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", "attnviz", *args])


# --- setting up ------------------------------------------------------------------------------


def _resolve(config: FitConfig):
    """(spec of the fitted model, data source, the zoo spec it starts from)."""
    from attnviz.bundled import PROCEDURAL_PREFIX, procedural_preprocessing, procedural_spec
    from attnviz.datasets.folder import load_folder
    from attnviz.sources import FileSource
    from attnviz.zoo import get_spec

    procedural_model = config.model.startswith(PROCEDURAL_PREFIX)
    base = procedural_spec(config.model) if procedural_model else get_spec(config.model)
    prep = procedural_preprocessing() if procedural_model else base.preprocessing
    if config.size is not None:
        if not 16 <= config.size <= 1024:
            raise SettingsError(f"--size must be between 16 and 1024, got {config.size}")
        prep = replace(prep, size=config.size)
    if config.data == "procedural":
        source = ProceduralSource(config.seed, config.heldout_samples)
        default_id = base.id if procedural_model else f"{base.id}-procedural"
        title = base.title if procedural_model else f"{base.title}, fitted on procedural shapes"
    else:
        folder = load_folder(config.data, prep, seed=config.seed,
                             heldout_fraction=config.heldout_fraction)
        source = FolderSource(folder, config.seed)
        data_name = _slug(Path(config.data).resolve().name)
        default_id = f"{base.id}-{data_name}"
        title = f"{base.title}, fitted on {data_name}"
    model_id = config.name or default_id
    spec = replace(
        base, id=model_id, title=title, num_classes=len(source.classes),
        labels=tuple(source.classes),
        preprocessing=prep,
        source=FileSource(str(config.out / f"{model_id}.safetensors"), label="fitted model"),
    )
    return spec, source, base


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower()).strip("-")
    return cleaned or "data"


def _total_steps(config: FitConfig, source) -> int:
    if config.steps is not None and config.epochs is not None:
        raise SettingsError("give --steps or --epochs, not both")
    if config.steps is not None:
        steps = config.steps
    else:
        epochs = config.epochs
        if epochs is None and isinstance(source, ProceduralSource):
            return DEFAULT_PROCEDURAL_STEPS
        epochs = DEFAULT_FOLDER_EPOCHS if epochs is None else epochs
        steps = math.ceil(epochs * source.epoch_size / config.batch_size)
    if steps < 1:
        raise SettingsError(f"training needs at least one step, got {steps}")
    return steps


def _check(config: FitConfig) -> None:
    if config.batch_size < 1:
        raise SettingsError(f"--batch-size must be at least 1, got {config.batch_size}")
    if not config.lr > 0:
        raise SettingsError(f"--lr must be positive, got {config.lr}")
    if config.seed < 0:
        raise SettingsError(f"--seed must be non-negative, got {config.seed}")
    if config.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}",
                                                    config.name):
        raise SettingsError(f"--name {config.name!r} must be letters, digits, '.', '_' or '-' "
                            "(it names the output files)")
    if config.heldout_samples < 1:
        raise SettingsError(f"held-out samples must be at least 1, got {config.heldout_samples}")


def _to_batch(images: np.ndarray, prep: Preprocessing, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> normalised NCHW, resizing only when the data is not at the model's size."""
    if images.shape[1:3] != (prep.size, prep.size):
        images = np.stack([prep.resize(im) for im in images])
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    batch = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # NHWC memory
    return batch.to(device).contiguous(memory_format=torch.channels_last)


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up, then cosine to zero: a function of the step, so resuming needs no state."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def heldout_accuracy(
    model: nn.Module, source, prep: Preprocessing, device: torch.device, batch_size: int = 250
) -> tuple[float, float, int]:
    """(accuracy, mean cross-entropy, images) on the source's held-out split."""
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for images, labels in source.heldout_batches(batch_size):
        logits = model(_to_batch(images, prep, device))
        target = torch.as_tensor(labels, device=device)
        correct += int((logits.argmax(1) == target).sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        n += len(labels)
    model.train(was_training)
    return correct / max(n, 1), loss / max(n, 1), n


# --- state for resuming ------------------------------------------------------------------------


def _state_path(config: FitConfig, model_id: str) -> Path:
    return config.out / f"{model_id}{STATE_SUFFIX}"


def _config_record(config: FitConfig) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    out.pop("command", None)
    return out


def _save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int,
                total: int, elapsed: float, config: FitConfig, commands: list[str],
                init_note: str) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "total_steps": total, "elapsed": elapsed, "config": _config_record(config),
             "commands": commands, "init_note": init_note, "torch_rng": torch.get_rng_state()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, config: FitConfig) -> dict[str, Any]:
    if not path.is_file():
        raise SettingsError(f"--resume: training state {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: refuse, never load unsafely
        raise CheckpointError(f"--resume: {str(path)!r} is not an attnviz training state "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                              ) from exc
    if not isinstance(state, dict) or "optimizer" not in state or "config" not in state:
        raise CheckpointError(f"--resume: {str(path)!r} is not an attnviz training state "
                              "(expected the .state.pt file that fit writes)")
    then, now = state["config"], _config_record(config)
    changed = [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in _RESUMABLE
               if then.get(k) != now.get(k)]
    if changed:
        raise SettingsError("--resume: these settings differ from the interrupted run: "
                            + "; ".join(changed))
    return state


# --- the run ---------------------------------------------------------------------------------


def fit(config: FitConfig) -> FitResult:
    """Train, evaluate on held-out data, write weights + card; see the module docstring."""
    from tqdm import tqdm

    from attnviz.checkpoints import save_safetensors
    from attnviz.devices import resolve_device
    from attnviz.loader import build_architecture
    from attnviz.training.pretrained import initialise_from_pretrained

    _check(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    spec, source, base = _resolve(config)
    total = _total_steps(config, source)
    config.out.mkdir(parents=True, exist_ok=True)
    state_path = _state_path(config, spec.id)
    command = config.command or current_command()

    model = build_architecture(spec)
    step, elapsed, commands = 0, 0.0, [command]
    if config.resume is not None:
        state = _load_state(Path(config.resume), config)
        model.load_state_dict(state["model"], strict=True)
        step, elapsed = int(state["step"]), float(state["elapsed"])
        commands = [*state["commands"], command]
        init_note = state["init_note"]
        torch.set_rng_state(state["torch_rng"])
    else:
        init_note = initialise_from_pretrained(base, model)
    # channels-last runs these small convolutions about 1.3x faster on CPU; same weights.
    model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.resume is not None:
        opt.load_state_dict(state["optimizer"])

    bar = tqdm(total=total, initial=step, desc=f"fit {spec.id}", unit="step", file=sys.stderr,
               disable=not config.progress, mininterval=2.0, dynamic_ncols=True)
    loss_avg = acc_avg = None
    started = time.perf_counter()
    try:
        while step < total:
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, total, config.lr, config.warmup)
            images, labels = source.train_batch(step, config.batch_size)
            x = _to_batch(images, spec.preprocessing, device)
            y = torch.as_tensor(labels, device=device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            acc = float((logits.detach().argmax(1) == y).float().mean())
            value = float(loss.detach())
            loss_avg = value if loss_avg is None else 0.95 * loss_avg + 0.05 * value
            acc_avg = acc if acc_avg is None else 0.95 * acc_avg + 0.05 * acc
            bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.3f}", refresh=False)
            bar.update(1)
            if not math.isfinite(loss_avg):
                raise SettingsError(f"training diverged at step {step} (loss {loss_avg}); "
                                    "try a smaller --lr")
            if config.save_every and step % config.save_every == 0 and step < total:
                _save_state(state_path, model, opt, step, total,
                            elapsed + time.perf_counter() - started, config, commands, init_note)
    except KeyboardInterrupt:
        _save_state(state_path, model, opt, step, total, elapsed + time.perf_counter() - started,
                    config, commands, init_note)
        bar.write(f"attnviz: interrupted at step {step}; resume with --resume {state_path}",
                  file=sys.stderr)
        raise
    finally:
        bar.close()
    train_seconds = elapsed + time.perf_counter() - started

    accuracy, heldout_loss, n_heldout = heldout_accuracy(model, source, spec.preprocessing, device)
    weights = save_safetensors(model, config.out / f"{spec.id}.safetensors",
                               metadata={"attnviz_model": spec.id})
    card = _card(spec, source, config, total, train_seconds, accuracy, heldout_loss, n_heldout,
                 commands, init_note, device, weights,
                 sum(p.numel() for p in model.parameters()))
    card_path = write_card(config.out / f"{spec.id}.json", card)
    if config.keep_state:
        _save_state(state_path, model, opt, step, total, train_seconds, config, commands,
                    init_note)
    else:
        state_path.unlink(missing_ok=True)
    return FitResult(weights=weights, card_path=card_path, card=card, accuracy=accuracy)


def _card(spec: ModelSpec, source, config: FitConfig, total: int, seconds: float,
          accuracy: float, loss: float, n: int, commands: list[str], init_note: str,
          device: torch.device, weights: Path, parameters: int) -> dict[str, Any]:
    import torchvision

    import attnviz
    from attnviz.bundled import architecture_of

    arch: dict[str, Any] = {
        "backbone": spec.backbone, "attention": spec.attention, "placement": spec.placement,
        "layout": spec.layout, "simam_lambda": spec.simam_lambda,
    }
    if spec.family == "bundled":
        arch.update(architecture_of(spec).as_dict())
    prep = spec.preprocessing
    return {
        "id": spec.id,
        "title": spec.title,
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "size_bytes": weights.stat().st_size,
        "parameters": parameters,
        "classes": list(spec.labels),
        "preprocessing": {"size": prep.size, "mean": list(prep.mean), "std": list(prep.std),
                          "resample": prep.resample, "crop": "none (whole image resized)"},
        "architecture": arch,
        "data": source.describe(),
        "heldout": {"accuracy": round(accuracy, 5), "loss": round(loss, 5), "samples": n},
        "training": {
            "command": commands[0],
            "commands": commands,
            "resumed": len(commands) > 1,
            "seed": config.seed,
            "steps": total,
            "batch_size": config.batch_size,
            "samples_seen": total * config.batch_size,
            "optimizer": f"AdamW(lr={config.lr}, weight_decay={config.weight_decay})",
            "schedule": f"linear warm-up over {config.warmup:.0%} of steps, then cosine to 0",
            "loss": "cross-entropy",
            "initial_weights": init_note,
            "device": str(device),
            "machine": machine_description(str(device)),
            "seconds": round(seconds, 1),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "attnviz": attnviz.__version__,
            "python": platform.python_version(),
        },
    }
