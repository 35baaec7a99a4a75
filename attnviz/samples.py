"""Where the bundled sample photos live, and what to call them in a menu.

The photos (public domain / CC0, see ``assets/samples/LICENSES.md``) sit next to the package in
a source checkout (``attnviz/`` and ``assets/`` are siblings). An installed package has no such
sibling, so the ``ATTNVIZ_ASSETS`` environment variable may name the ``assets`` folder; when it
is set (and holds a ``samples`` folder) it wins, because someone set it on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "ATTNVIZ_ASSETS"
_SAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}

# File stem -> menu label, in menu order; a new photo needs no code, it is listed by its stem.
_LABELS = {
    "chelsea": "chelsea (cat)",
    "coffee": "coffee (espresso)",
    "astronaut": "astronaut (Eileen Collins)",
    "rocket": "rocket (Falcon 9 launch)",
    "clock": "clock (grayscale, motion blur)",
}


def samples_dir() -> Path | None:
    """The folder holding the sample photos, or None when neither layout provides one."""
    override = os.environ.get(ASSETS_ENV)
    candidates = [Path(override) / "samples"] if override else []
    candidates.append(Path(__file__).resolve().parent.parent / "assets" / "samples")
    return next((path for path in candidates if path.is_dir()), None)


def sample_paths() -> dict[str, Path]:
    """Menu label -> photo path, known photos first in a fixed order; empty if none found."""
    folder = samples_dir()
    if folder is None:
        return {}
    files = {p.stem: p for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in _SAMPLE_SUFFIXES}
    ordered = [stem for stem in _LABELS if stem in files]
    ordered += [stem for stem in files if stem not in _LABELS]
    return {_LABELS.get(stem, stem): files[stem] for stem in ordered}
