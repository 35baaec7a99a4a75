"""'Your own model' in the app: what the user typed or uploaded, as a cache key, and what was found.

Three sources (``attnviz.custom`` loads them; ``SOURCE_NOTES`` says what each runs):

- **TorchScript file** (an upload): no Python code runs, the file's compiled program does.
- **timm model name**: timm's own code; weights from the Hugging Face cache, or a checkpoint.
- **Python factory** (``path/to/file.py:build_model`` or ``package.module:function`` typed as
  text, keyword arguments as JSON, optional checkpoint): **runs code on the server**. It is
  offered only when the server was started with ``ATTNVIZ_ALLOW_FACTORY=1`` (``true``/``yes``/
  ``on`` work too), and ``load`` refuses it otherwise, whatever a browser sends. Never turn it on
  for a public (classroom) server: anyone who can open the page could run any code it can name.
  A factory is only ever code already on the server; an uploaded ``.py`` file is never run.

A ``CustomKey`` holds everything a loaded model depends on: the source, what it names, digests
of the uploaded bytes and of a factory file's content (editing the file loads it again), the
factory's arguments, class names, input size, device, and the user's corrections of the
detection (overrides per layer and the minimum confidence). The app caches models and analyses
by it, so two different own models, or one model with different corrections, never share
anything. Its ``scope`` leaves out checkpoint, class names, input size, device and corrections:
the correction widgets are keyed by it, so they survive a new checkpoint or a new input size.

The correction widgets are drawn after the model is loaded but are needed to load it; their
values are read from the session state of the previous run (``corrections``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attnviz.attention.detect import DEFAULT_MIN_CONFIDENCE, KIND_TITLES, OVERRIDE_KINDS
from attnviz.custom import (
    SOURCE_NOTES,
    attention_table,
    load_custom_model,
    parse_factory,
    parse_factory_kwargs,
)
from attnviz.errors import CheckpointError, SettingsError
from attnviz.loader import LoadedModel

ALLOW_FACTORY_ENV = "ATTNVIZ_ALLOW_FACTORY"
SOURCES = ("torchscript", "timm", "factory")
SOURCE_TITLES = {
    "torchscript": "TorchScript file",
    "timm": "timm model name",
    "factory": "Python factory (runs code)",
}
TORCHSCRIPT_TYPES = ["pt", "pth", "ts", "jit", "torchscript", "zip"]
FACTORY_OFF = (f"A Python factory would run code on this server, so it is off here. Whoever "
               f"runs the server can allow it by starting it with {ALLOW_FACTORY_ENV}=1, but "
               "only where everyone who can open this page may run code on that machine.")
KINDS_HELP = "; ".join(f"{k}: {t}" for k, t in KIND_TITLES.items())
READ_AS = ("auto", *OVERRIDE_KINDS)  # "auto": as detected (or not read, for an added layer)
_TRUE = {"1", "true", "yes", "on"}


def factory_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this server lets users name a Python factory (which runs code here)."""
    env = os.environ if environ is None else environ
    return env.get(ALLOW_FACTORY_ENV, "").strip().lower() in _TRUE


def source_options(allow_factory: bool) -> list[str]:
    return [s for s in SOURCES if s != "factory" or allow_factory]


_SUBJECTS = {"factory": "A factory", "torchscript": "A TorchScript file",
             "timm": "A timm name uses", "checkpoint": "A checkpoint is"}


def source_note(source: str) -> str:
    """What loading from ``source`` runs, in the words of ``attnviz.custom.SOURCE_NOTES``."""
    text = f"{_SUBJECTS[source]} {SOURCE_NOTES[source]}"
    return f"**Runs code on this server.** {text}" if source == "factory" else text


def digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def parse_labels(text: str | None) -> tuple[str, ...]:
    """Class names from a text area: one per line, blank lines ignored."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())


@dataclass(frozen=True)
class OwnInputs:
    """What the sidebar's 'Your own model' widgets hold this run (nothing parsed yet)."""

    source: str
    factory: str = ""
    factory_kwargs: str = ""
    timm_name: str = ""
    num_classes: int | None = None
    allow_random: bool = False
    data: bytes | None = None  # the TorchScript file, or the checkpoint (factory, timm)
    data_name: str = ""
    labels_text: str = ""
    input_size: int | None = None


@dataclass(frozen=True)
class CustomKey:
    """Everything an own model depends on (see the module docstring); hashable, printable."""

    source: str
    target: str  # the factory spec, the timm name, or the TorchScript file's name
    device: str
    data_digest: str = ""  # TorchScript bytes, or the checkpoint's
    data_name: str = ""
    file_digest: str = ""  # a factory file's content: editing the file loads it again
    factory_kwargs: str = ""  # canonical JSON
    labels: tuple[str, ...] = ()
    input_size: int | None = None
    num_classes: int | None = None
    allow_random: bool = False
    overrides: tuple[tuple[str, str], ...] = ()
    min_confidence: float = DEFAULT_MIN_CONFIDENCE

    @property
    def identity(self) -> str:
        """A stable text of every field, for ``st.cache_resource``."""
        return repr(self)

    @property
    def scope(self) -> str:
        """Which model this is, leaving out what the correction widgets should survive."""
        model = self.data_digest if self.source == "torchscript" else ""
        return digest(repr((self.source, self.target, self.factory_kwargs, model)).encode())[:12]

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint's file name ('' for TorchScript, whose file is the model)."""
        return "" if self.source == "torchscript" else self.data_name

    @property
    def label(self) -> str:
        return {"factory": f"{self.target}", "timm": f"timm {self.target}",
                "torchscript": f"TorchScript {self.target}"}[self.source]

    def with_corrections(self, overrides: Mapping[str, str] | None,
                         min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> CustomKey:
        return replace(self, overrides=tuple(sorted((overrides or {}).items())),
                       min_confidence=round(float(min_confidence), 4))

    def without_overrides(self) -> CustomKey:
        return replace(self, overrides=())


def _file_digest(spec: str) -> str:
    kind, target, _ = parse_factory(spec)
    if kind != "file":
        return ""
    path = Path(target).expanduser()
    try:
        return digest(path.read_bytes()) if path.is_file() else ""
    except OSError:
        return ""


def make_key(inputs: OwnInputs, device: str = "auto", *,
             environ: Mapping[str, str] | None = None) -> CustomKey | None:
    """The key of the own model described by ``inputs``; None while something is missing.

    Raises ``SettingsError`` for what can be told wrong without loading: a factory where the
    server does not allow one, a factory that is not ``file.py:fn``/``module:fn``, arguments
    that are not a JSON object, an input size out of range.
    """
    from attnviz.devices import resolve_device

    dev = str(resolve_device(device))
    size = int(inputs.input_size) if inputs.input_size else None
    if size is not None and not 16 <= size <= 2048:
        raise SettingsError(f"input size must be between 16 and 2048, got {size}")
    common = dict(device=dev, labels=parse_labels(inputs.labels_text), input_size=size)
    data = inputs.data or None
    data_fields = dict(data_digest=digest(data) if data else "",
                       data_name=inputs.data_name if data else "")
    if inputs.source == "factory":
        if not factory_allowed(environ):
            raise SettingsError(FACTORY_OFF)
        spec = inputs.factory.strip()
        if not spec:
            return None
        parse_factory(spec)  # raises for a malformed spec
        kwargs = parse_factory_kwargs(inputs.factory_kwargs.strip() or None)
        try:
            canonical = json.dumps(kwargs, sort_keys=True) if kwargs else ""
        except (TypeError, ValueError):  # pragma: no cover - JSON in, JSON out
            canonical = repr(sorted(kwargs.items()))
        return CustomKey("factory", spec, file_digest=_file_digest(spec),
                         factory_kwargs=canonical, **data_fields, **common)
    if inputs.source == "timm":
        name = inputs.timm_name.strip()
        if not name:
            return None
        return CustomKey("timm", name, num_classes=int(inputs.num_classes or 0) or None,
                         allow_random=bool(inputs.allow_random), **data_fields, **common)
    if inputs.source == "torchscript":
        if not data:
            return None
        return CustomKey("torchscript", inputs.data_name or "upload.pt", **data_fields,
                         **common)
    raise SettingsError(f"unknown model source {inputs.source!r}; valid: {', '.join(SOURCES)}")


def waiting_message(source: str) -> str:
    """What to fill in before an own model can load."""
    return {
        "torchscript": "Upload a TorchScript file (torch.jit.save of a scripted or traced "
                       "model) to load your model.",
        "timm": "Type a timm model name (e.g. resnet50.a1_in1k) to load it.",
        "factory": "Type your factory, path/to/file.py:function or package.module:function, "
                   "to load your model.",
    }.get(source, "Pick where your model comes from.")


def load(key: CustomKey, data: bytes | None,
         environ: Mapping[str, str] | None = None) -> LoadedModel:
    """Load the model of ``key`` (``data``: the bytes whose digest the key holds)."""
    if key.data_digest and (data is None or digest(data) != key.data_digest):
        raise SettingsError("the uploaded file changed while loading; upload it again")
    common: dict[str, Any] = dict(
        labels=list(key.labels) or None, input_size=key.input_size, device=key.device,
        overrides=dict(key.overrides), min_confidence=key.min_confidence,
    )
    checkpoint = dict(checkpoint=data, checkpoint_name=key.data_name or None) if data else {}
    if key.source == "factory":
        if not factory_allowed(environ):  # checked again here: the key could be forged
            raise SettingsError(FACTORY_OFF)
        return load_custom_model(factory=key.target,
                                 factory_kwargs=json.loads(key.factory_kwargs or "{}"),
                                 **checkpoint, **common)
    if key.source == "timm":
        return load_custom_model(timm_name=key.target, num_classes=key.num_classes,
                                 allow_random=key.allow_random, **checkpoint, **common)
    if key.source == "torchscript":
        return load_custom_model(torchscript=data, torchscript_name=key.target, **common)
    raise SettingsError(f"unknown model source {key.source!r}")


def remember_failure(key: CustomKey, error: Exception) -> bool:
    """Whether a failed load may be remembered, not tried again on every rerun of the page.

    A TorchScript file or a timm name fails the same way every time (its bytes and name are
    the key). A factory's code can be fixed without changing the key (a module it imports, a
    ``package.module`` factory), so only a checkpoint that does not fit it is remembered.
    """
    return key.source != "factory" or isinstance(error, CheckpointError)


# --- corrections: widget keys and their values from the previous run ----------------------


def read_as_key(scope: str, layer: str) -> str:
    return f"own_read_as:{scope}:{layer}"


def min_confidence_key(scope: str) -> str:
    return f"own_min_confidence:{scope}"


def shown_key(scope: str) -> str:
    return f"own_shown:{scope}"


def known_key(scope: str) -> str:
    return f"own_shown_known:{scope}"


def extra_key(scope: str) -> str:
    return f"own_extra:{scope}"


def corrections(session: Mapping[str, Any], scope: str) -> tuple[dict[str, str], float]:
    """The overrides (layer -> kind, 'auto' left out) and minimum confidence last chosen."""
    prefix = read_as_key(scope, "")
    overrides = {k[len(prefix):]: str(v) for k, v in session.items()
                 if isinstance(k, str) and k.startswith(prefix) and v not in (None, "auto")}
    value = session.get(min_confidence_key(scope), DEFAULT_MIN_CONFIDENCE)
    return overrides, float(DEFAULT_MIN_CONFIDENCE if value is None else value)


# --- what was found: table rows, choices ---------------------------------------------------


def found_rows(model: LoadedModel, overrides: Mapping[str, str] | None = None,
               extra: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per attention module found, plus one per layer the user hid (kind ``none``)
    or asked to read (``extra``, not read yet), in network order; ``shown``: has maps."""
    rows = [{**r, "shown": True} for r in attention_table(model)]
    listed = {r["layer"] for r in rows}
    for layer, kind in (overrides or {}).items():
        if layer not in listed:  # hidden (none), or a correction that could not apply
            hidden = kind == "none"
            rows.append({"layer": layer, "kind": kind, "how": "override", "source": "override",
                         "title": "hidden by you" if hidden else "not applied",
                         "confidence": 1.0 if hidden else None, "records": [], "shown": False,
                         "reason": "read as none" if hidden else f"cannot be read as {kind}"})
            listed.add(layer)
    for layer in extra:
        if layer not in listed:
            rows.append({"layer": layer, "kind": "", "title": "not read yet", "how": "added",
                         "source": "", "confidence": None,
                         "reason": "pick how to read it under 'read as'", "records": [],
                         "shown": False})
            listed.add(layer)
    order = {name: i for i, name in enumerate(module_paths(model))}
    return sorted(rows, key=lambda r: order.get(r["layer"], len(order)))


def table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The found-modules table as shown: layer, kind, confidence, found by, what, why."""
    return [{"layer": r["layer"], "kind": r["kind"] or "—",
             "confidence": r["confidence"], "found by": r["how"],
             "what": r["title"],
             "why": r["reason"] or (f"a known {r['source']} class" if r["source"] else "")}
            for r in rows]


def shown_options(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [r["layer"] for r in rows if r["shown"]]


def carry_selection(previous: Sequence[str] | None, known: Sequence[str] | None,
                    options: Sequence[str]) -> list[str]:
    """The layers to show after the options changed: all at first; later the user's choice,
    less what is gone, plus layers that are new (found after a correction)."""
    if previous is None or known is None:
        return list(options)
    chosen, seen = set(previous), set(known)
    return [o for o in options if o in chosen or o not in seen]


def read_as_label(option: str, row: Mapping[str, Any]) -> str:
    if option == "auto":
        return "not read" if row["how"] == "added" else "as detected"
    if option == "none":
        return "none: hide it"
    return f"{option}: {KIND_TITLES.get(option, option)}"


def module_paths(model: LoadedModel) -> list[str]:
    return [name for name, _ in model.model.named_modules() if name]


def addable_layers(model: LoadedModel, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Layers the user may ask to read as attention: every module not already a row, plus the
    rows they added themselves (so the multiselect keeps them)."""
    taken = {r["layer"] for r in rows if r["how"] != "added"}
    return [name for name in module_paths(model) if name not in taken]


def layers_shown(rows: Sequence[Mapping[str, Any]], chosen: Sequence[str] | None) -> list[str]:
    """The layers whose maps the tabs show: the chosen ones that have maps."""
    have = set(shown_options(rows))
    return [layer for layer in (chosen if chosen is not None else have) if layer in have]


# --- around the analysis ---------------------------------------------------------------------


def usable_cams(model: LoadedModel | None, methods: Sequence[str]) -> tuple[str, ...]:
    """CAM methods this model can run: none when no CAM layer was found (opaque TorchScript)."""
    if model is not None and not model.cam_layer:
        return ()
    return tuple(methods)


def no_cam_message(model: LoadedModel) -> str:
    """Why the Grad-CAM tab is empty for a model without a CAM layer."""
    why = next((n for n in model.notes if "TorchScript" in n and "chain" in n), None)
    because = (why[0].upper() + why[1:] + "." if why else
               "attnviz found no convolutional stage with a spatial output to hook.")
    return f"This model has no layer to take a CAM at, so there is no Grad-CAM. {because}"


def summary(model: LoadedModel) -> str:
    return (f"**Model:** {model.spec.title} · {len(model.labels)} classes · "
            f"{model.preprocessing.size} px  \n**Weights:** {model.weights}  \n"
            f"**CAM layer:** {model.cam_layer or 'none'}")


def comparable(model: LoadedModel, choices: Sequence[Any]) -> list[str]:
    """The own model, then every zoo model usable now with the same classes (by name)."""
    from attnviz.labels import imagenet_labels

    labels = tuple(model.labels)
    classes = "imagenet" if labels == tuple(imagenet_labels()) else "|".join(labels)
    return [model.id] + [c.id for c in choices if c.ready and c.classes == classes]


__all__ = [
    "ALLOW_FACTORY_ENV", "DEFAULT_MIN_CONFIDENCE", "FACTORY_OFF", "KINDS_HELP", "READ_AS",
    "SOURCES",
    "SOURCE_TITLES", "TORCHSCRIPT_TYPES", "CustomKey", "OwnInputs", "addable_layers",
    "carry_selection", "comparable", "corrections", "extra_key", "factory_allowed", "found_rows",
    "known_key", "layers_shown", "load", "make_key", "min_confidence_key", "module_paths",
    "no_cam_message", "parse_labels", "read_as_key", "read_as_label", "remember_failure",
    "shown_key", "shown_options", "source_note", "source_options", "summary", "table",
    "usable_cams", "waiting_message",
]
