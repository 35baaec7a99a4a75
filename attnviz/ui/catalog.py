"""The model picker's view of the zoo: what each entry is, where its weights come from, whether
they are here, and which models to suggest when the current one lacks a module.

The picker lists whatever ``zoo.list_specs()`` returns, so models registered later (bundled
trained ones) appear without a change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attnviz.errors import AttnvizError
from attnviz.zoo import DEFAULT_MODEL_ID, ModelSpec, list_specs

BADGES = {
    "offline": "offline", "cached": "cached", "download": "needs download",
    "needs file": "needs checkpoint", "missing": "file missing",
}
AVAILABILITY_HELP = {
    "offline": "weights are on this machine",
    "cached": "online weights already in their cache on this machine",
    "download": "weights are downloaded once, which needs a network connection",
    "needs file": "no package or hub serves these weights: upload a checkpoint file",
    "missing": "the weights file this entry points at is not there",
}
MODULE_NAMES = {  # short names; attention.detect.KIND_TITLES says what each kind is
    "simam": "SimAM", "se": "SE", "cbam": "CBAM", "cam": "CAM",
    "sam": "SAM", "bam": "BAM", "nonlocal": "Non-local", "stn": "STN",
    "sssa": "SSSA", "eca": "ECA", "ge": "Gather-Excite", "gate3d": "3-D gate",
    "none": "no attention",
}


@dataclass(frozen=True)
class ModelChoice:
    id: str
    title: str
    attention: str
    placement: str
    weights: str  # where the weights come from, in words
    availability: str  # offline, cached, download, needs file, missing
    notes: str = ""
    classes: str = "imagenet"  # the label set; models compare on one target only if it is shared

    @property
    def ready(self) -> bool:
        """Loadable right now without a network or a file from the user."""
        return self.availability in ("offline", "cached")

    @property
    def label(self) -> str:
        default = " (default)" if self.id == DEFAULT_MODEL_ID else ""
        return f"[{BADGES.get(self.availability, self.availability)}] {self.title}{default}"


def describe(spec: ModelSpec) -> ModelChoice:
    try:
        weights, availability = spec.source.describe(), spec.source.availability()
    except AttnvizError as exc:  # a source that cannot even say where it points
        weights, availability = str(exc), "missing"
    classes = spec.labels if isinstance(spec.labels, str) else "|".join(spec.labels)
    return ModelChoice(spec.id, spec.title, spec.attention, spec.placement, weights,
                       availability, spec.notes, classes)


def model_choices() -> list[ModelChoice]:
    return [describe(s) for s in list_specs()]


def comparable(current: str, choices: Sequence[ModelChoice]) -> list[str]:
    """The current model, then every model usable now that has the same classes: only those
    can be asked about one shared target class."""
    by_id = {c.id: c for c in choices}
    classes = by_id[current].classes if current in by_id else "imagenet"
    return [current] + [c.id for c in choices
                        if c.ready and c.id != current and c.classes == classes]


def zoo_rows(choices: Sequence[ModelChoice]) -> list[dict[str, str]]:
    """The zoo as a table: one row per model, availability in words."""
    return [{"model": c.id, "title": c.title,
             "attention": MODULE_NAMES.get(c.attention, c.attention), "placement": c.placement,
             "availability": BADGES.get(c.availability, c.availability),
             "classes": c.classes if "|" not in c.classes else
             f"{c.classes.count('|') + 1} classes",
             "weights": c.weights}
            for c in choices]


def suggestions(attention: Sequence[str], choices: Sequence[ModelChoice] | None = None,
                limit: int = 3) -> list[ModelChoice]:
    """Models that have one of these attention modules, those usable right now first."""
    pool = model_choices() if choices is None else list(choices)
    found = [c for c in pool if c.attention in attention]
    return sorted(found, key=lambda c: (not c.ready, c.availability == "needs file"))[:limit]


def missing_message(what: str, attention: Sequence[str],
                    choices: Sequence[ModelChoice] | None = None) -> str:
    """'This model has no X; pick a model with A or B (e.g. ...)' for a tab with nothing to show."""
    names = " or ".join(MODULE_NAMES.get(a, a) for a in attention)
    picks = suggestions(attention, choices)
    examples = ", ".join(
        f"`{c.id}`" + ("" if c.ready else f" ({BADGES.get(c.availability, c.availability)})")
        for c in picks
    )
    hint = f" (e.g. {examples})" if examples else ""
    return f"This model has no {what}; pick a model with {names}{hint} in the sidebar."
