"""Training attention models offline: ``fit`` and the model cards it writes."""

from __future__ import annotations

from attnviz.training.fit import FitConfig, FitResult, current_command, fit

__all__ = ["FitConfig", "FitResult", "current_command", "fit"]
