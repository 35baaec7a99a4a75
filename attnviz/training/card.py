"""Model cards: the JSON beside every weights file ``attnviz fit`` writes.

A weights file alone cannot be used: it does not say its classes, its input size and
normalisation, which attention sits where, or how good it is. The card says all of that and
how to make the file again (the exact command, seed, versions), and the zoo builds bundled
entries from it (``attnviz.bundled.spec_from_card``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from attnviz.errors import CheckpointError

CARD_FORMAT = "attnviz-model-card/1"
_REQUIRED = ("id", "weights", "classes", "architecture", "preprocessing", "data")
_REQUIRED_ARCH = ("backbone", "attention", "placement")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def machine_description(device: str) -> str:
    """What the training ran on, in words a reader can compare (CPU model or GPU name)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)"


def write_card(path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write a card (sorted keys, indented) atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": CARD_FORMAT, **card}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a card; a missing field is a ``CheckpointError`` naming it."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"model card {str(path)!r} is not readable JSON ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"model card {str(path)!r} is not an {CARD_FORMAT} card")
    missing = [k for k in _REQUIRED if k not in card]
    missing += [f"architecture.{k}" for k in _REQUIRED_ARCH
                if k not in card.get("architecture", {})]
    if missing:
        raise CheckpointError(f"model card {str(path)!r} lacks {', '.join(missing)}")
    return card
