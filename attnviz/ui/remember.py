"""Widget values that outlive the lazy tabs.

Only the open tab's body runs (``st.tabs(..., on_change="rerun")``), and Streamlit drops the
state of every widget a run does not draw: without help, the channel reduction picked in the
SimAM tab would be back at its default after a look at the Overview. Each tab widget therefore
takes its default from a copy kept under a key of its own, which Streamlit never clears, and
the copy is refreshed whenever the widget is drawn. Defaults, not Session State writes: a
widget given both logs a warning, and its key alone is its identity, so a changed default
never resets it. Pure functions over the session's mapping, testable without a browser.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
PREFIX = "remembered:"


def recall(state: MutableMapping[str, Any], key: str, default: T,
           options: Sequence[Any] | None = None) -> T:
    """The value last drawn under ``key``, or ``default``; with ``options``, only a value still
    among them (a list keeps its members that are), since a model change changes the choices."""
    value = state.get(PREFIX + key, default)
    if options is None:
        return value
    if isinstance(default, list):
        kept = [v for v in value if v in options]
        return kept if kept or not value else default  # type: ignore[return-value]
    return value if value in options else default


def keep(state: MutableMapping[str, Any], key: str, value: T) -> T:
    """Remember what the widget under ``key`` shows now; returns ``value``."""
    state[PREFIX + key] = value
    return value
