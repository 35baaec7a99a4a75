"""Reading weights files safely and loading them strictly, with reports a user can act on.

Weights come from strangers (uploads, links in READMEs), so a file is data, never code:
``.pth`` goes through ``torch.load(weights_only=True)`` and anything that needs more than
tensors is refused, not retried unsafely. Loading is strict because a silently half-loaded
model draws plausible but meaningless attention maps; when keys do not match, the error lists
them by name so the user can see *which* layout the file was made for.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load_bytes
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save_file as _st_save_file
from torch import Tensor, nn

from attnviz.errors import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".tar")
SUPPORTED_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

# Training scripts wrap the weights with epoch, optimizer state and so on; these are the keys
# under which the SimAM, CBAM and common training templates keep the model itself.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_NBT = "num_batches_tracked"
_LIST_LIMIT = 10

Source = str | os.PathLike[str] | bytes | bytearray | BinaryIO


def read_state_dict(source: Source, *, name: str | None = None) -> dict[str, Tensor]:
    """Read a state dict from a path, bytes or a binary file object, without running code.

    ``name`` gives the file name (for its extension and for messages) when ``source`` is
    bytes or an upload stream, which carry no name of their own.
    """
    label, suffix, data, path = _open_source(source, name)
    if suffix in SAFETENSORS_SUFFIXES:
        sd = _read_safetensors(label, data, path)
    else:
        sd = _read_pickle(label, data, path)
    return _as_state_dict(sd, label)


def _open_source(
    source: Source, name: str | None
) -> tuple[str, str, bytes | None, Path | None]:
    """Normalise the input to (label, suffix, bytes or None, path or None); refuse it empty."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise CheckpointError(f"weights file {label!r} does not exist or is not a file")
        size = path.stat().st_size
        data = None
    else:
        if name is None:
            name = getattr(source, "name", None)
            if not isinstance(name, str):
                raise CheckpointError(
                    "a weights upload needs a file name to tell its format; supported: "
                    + ", ".join(SUPPORTED_SUFFIXES)
                )
        label = name
        path = None
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else source.read()
        size = len(data)
    suffix = _suffix_of(label)
    if size == 0:
        raise CheckpointError(f"weights file {label!r} is empty (0 bytes)")
    return label, suffix, data, path


def _suffix_of(label: str) -> str:
    suffix = Path(label).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise CheckpointError(
            f"weights file {label!r} has an unsupported extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def _read_safetensors(label: str, data: bytes | None, path: Path | None) -> dict[str, Tensor]:
    try:
        if data is not None:
            return _st_load_bytes(data)
        return _st_load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"weights file {label!r} is not a valid safetensors file ({_first_line(exc)})"
        ) from exc


def _read_pickle(label: str, data: bytes | None, path: Path | None) -> object:
    target: str | io.BytesIO = io.BytesIO(data) if data is not None else str(path)
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise _corrupt(label, exc) from exc
        raise CheckpointError(
            f"weights file {label!r} was refused: it contains code or objects other than "
            f"tensors ({_unpickler_reason(exc)}); nothing in it was run. Re-save it as a plain "
            "state dict or as .safetensors"
        ) from exc
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _corrupt(label, exc) from exc


def _corrupt(label: str, exc: BaseException) -> CheckpointError:
    reason = _first_line(exc) if str(exc).strip() else "unexpected end of file"
    return CheckpointError(f"weights file {label!r} is truncated or corrupt ({reason})")


def _unpickler_reason(exc: BaseException) -> str:
    """Pick the one useful sentence out of torch's long weights-only message."""
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it refers to {m.group(1)}"
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.DOTALL)
    if m and m.group(1).strip():
        return m.group(1).strip().splitlines()[0]
    return "not a weights-only pickle"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_state_dict(obj: object, label: str) -> dict[str, Tensor]:
    """Unwrap training checkpoints and insist on a flat mapping of names to tensors."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"weights file {label!r} does not hold a state dict (a mapping of names to tensors)"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"weights file {label!r} does not hold a plain state dict: {len(bad)} entries are "
            f"not tensors ({_listing(bad)})"
        )
    return dict(obj)


def strip_prefix(
    sd: Mapping[str, Tensor], prefixes: tuple[str, ...] = ("module.",)
) -> dict[str, Tensor]:
    """Drop a wrapper prefix such as DataParallel's ``module.``, only when every key has it.

    Stripping only when all keys agree keeps a model that legitimately has a child called
    ``module`` intact.
    """
    out = dict(sd)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def check_finite(sd: Mapping[str, Tensor]) -> None:
    """Refuse NaN/Inf weights: they turn every map into NaN and the failure shows up far away."""
    bad = [
        k
        for k, v in sd.items()
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"weights contain NaN or infinite values in {_count(bad, 'tensor')} "
            f"({_listing(bad, 5)})"
        )


def load_strict(model: nn.Module, sd: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``sd`` into ``model`` strictly, or raise a CheckpointError that lists every problem.

    ``num_batches_tracked`` is a training counter, not a weight: files from before PyTorch 0.4.1
    (torchvision's own ImageNet files among them) have none, and PyTorch fills them with 0 on
    load, so a file with *no* counters is accepted; one with some counters missing is reported.
    Counters the model does not have are dropped.
    """
    sd = strip_prefix(sd)
    check_finite(sd)
    own = model.state_dict()
    if not any(k.endswith(_NBT) for k in sd):
        sd = {**sd, **{k: torch.zeros_like(v) for k, v in own.items() if k.endswith(_NBT)}}
    sd = {k: v for k, v in sd.items() if k in own or not k.endswith(_NBT)}

    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k}: file {_shape(sd[k])} vs model {_shape(own[k])}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{_count(missing, 'missing key')} ({_listing(missing)})")
        if unexpected:
            parts.append(f"{_count(unexpected, 'unexpected key')} ({_listing(unexpected)})")
        if wrong:
            parts.append(f"{_count(wrong, 'shape mismatch')} ({_listing(wrong)})")
        raise CheckpointError(
            f"weights from {source!r} do not fit the model: " + "; ".join(parts) + _hint(unexpected)
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # e.g. a dtype torch cannot copy; keys and shapes already agree
        raise CheckpointError(
            f"weights from {source!r} could not be loaded: {_first_line(exc)}"
        ) from exc


def _hint(unexpected: list[str]) -> str:
    """Name the layout the file seems to use, since that is the usual cause of a mismatch."""
    if any(".cbam." in k for k in unexpected):
        return " (the file places CBAM as a block child 'cbam': layout 'cbam-official')"
    if any(re.search(r"\.bn[23]\.1\.", k) for k in unexpected):
        return " (the file wraps the last BN as Sequential(bn, attention): layout 'simam-repo')"
    if any(re.search(r"\.conv2\.0\.", k) for k in unexpected):
        return " (the file has SimAM inside conv2: attention 'simam')"
    return ""


def _shape(t: Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _count(items: list[str], noun: str) -> str:
    plural = "" if len(items) == 1 else ("es" if noun.endswith("h") else "s")
    return f"{len(items)} {noun}{plural}"


def _listing(items: list[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


def save_safetensors(
    model_or_sd: nn.Module | Mapping[str, Tensor],
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write weights as safetensors, the format the project prefers for what it writes.

    Tensors are cloned contiguous on CPU so tied or viewed tensors (which safetensors refuses
    to write as shared storage) save as independent copies; the file is written beside the
    target and renamed so a crash never leaves a half-written file under the real name.
    """
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    if metadata is not None:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise CheckpointError(f"safetensors metadata must map str to str; bad entries: {bad}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The usual file mode, 0o666 less the umask: safetensors writes owner-only 0600, which
    # would hide a shared or bundled model from other users. Creating the file with 0o666 reads
    # the umask without setting the process-wide one, which other threads may rely on.
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = os.stat(tmp).st_mode & 0o777
        _st_save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
