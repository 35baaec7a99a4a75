"""Device choice: ``auto`` picks the fastest device present; an absent device is an error."""

from __future__ import annotations

import torch

from attnviz.errors import SettingsError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices this machine can run on now, fastest first (for menus and error messages)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a user's device choice into a ``torch.device``, refusing one that is not present."""
    choice = (name or "auto").strip().lower()
    base = choice.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        valid = ", ".join(DEVICE_CHOICES)
        raise SettingsError(f"unknown device {name!r}; valid choices: {valid}")
    present = available_devices()
    if base == "auto":
        return torch.device(present[0])
    if base not in present:
        raise SettingsError(
            f"device {name!r} is not present on this machine; available: {', '.join(present)} "
            "(or 'auto')"
        )
    if base == "cuda" and ":" in choice:
        index = choice.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise SettingsError(
                f"device {name!r} is not present; {torch.cuda.device_count()} CUDA device(s) found"
            )
    return torch.device(choice)
