"""The one error family attnviz raises on purpose.

Every failure a user can cause (a bad file, an unknown setting, unavailable weights) is an
``AttnvizError`` with a message meant to be shown as is: one line, specific, saying what to do.
The app and the CLI catch exactly this type; anything else is a bug and is allowed to surface.
"""

from __future__ import annotations


class AttnvizError(Exception):
    """Base class: a user-facing error whose message is complete on its own."""


class ImageError(AttnvizError):
    """An image could not be decoded or is outside the documented limits."""


class CheckpointError(AttnvizError):
    """A weights file is unsafe, corrupt, or does not fit the chosen model."""


class SettingsError(AttnvizError):
    """An unknown model, CAM method, layer, class index or device was asked for."""


class WeightsUnavailableError(AttnvizError):
    """Weights live online and are neither cached nor downloadable right now."""


def choices_message(what: str, value: object, valid: list[str] | tuple[str, ...]) -> str:
    """Phrase an unknown-choice error the same way everywhere: the bad value and the valid ones."""
    listed = ", ".join(str(v) for v in valid) if valid else "(none)"
    return f"unknown {what} {value!r}; valid choices: {listed}"
