"""What the app computes once and then only looks up: decoded images, models, analyses.

Every widget change reruns the whole page, so anything costly is keyed by exactly what it
depends on. A model depends on its zoo id, the device it runs on and the checkpoint file (by
content digest); a user's own model on a ``custom_model.CustomKey`` (source, digests of its
files, arguments, corrections of the detection). An analysis depends on the image (by pixel
digest), that model key and the analysis settings (CAM methods, target class, switched-off
layers, SimAM lambda). Display settings (colormap, opacity, normalisation, the open tab, the
attention layers shown) are deliberately not part of any key: changing them only re-renders
pictures from the cached numbers.

Models live in ``st.cache_resource`` (one per key, shared by every browser session; the
package's per-call recorder makes concurrent use safe); analyses and decoded uploads live in
byte-bounded LRUs, handed back without copying.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from attnviz import analysis as analysis_module
from attnviz.analysis import Analysis
from attnviz.devices import resolve_device
from attnviz.errors import AttnvizError, CheckpointError, WeightsUnavailableError
from attnviz.inputs import load_image
from attnviz.loader import LoadedModel, load_model
from attnviz.sources import CheckpointRequired, offline
from attnviz.ui import custom_model
from attnviz.ui.cache import BoundedCache
from attnviz.ui.custom_model import CustomKey
from attnviz.zoo import get_spec

MODEL_CACHE_ENTRIES = 4
ANALYSIS_CACHE_ENTRIES = 64
ANALYSIS_CACHE_BYTES = 768 * 2**20
IMAGE_CACHE_ENTRIES = 32
IMAGE_CACHE_BYTES = 256 * 2**20


def digest(data: bytes | memoryview) -> str:
    """Content identity for cache keys (SHA-256: hardware-accelerated, ~1 GB/s here)."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(frozen=True, eq=False)
class ImageItem:
    """One decoded photo of the page, named for menus and identified by its pixels."""

    name: str
    array: np.ndarray = field(repr=False)
    key: str  # digest of the pixels: the same photo from an upload or a sample shares analyses
    origin: str = "upload"  # "upload", "sample" or "procedural"
    original_size: tuple[int, int] = (0, 0)
    notes: tuple[str, ...] = ()
    # Ground truth where it is known (procedural samples): the object's pixels, (H, W) bool at
    # the image's size, and its class name. Never part of a key: the pixels decide the analysis.
    mask: np.ndarray | None = field(default=None, repr=False)
    true_class: str = ""


def pixel_digest(array: np.ndarray) -> str:
    arr = np.ascontiguousarray(array)
    return digest(f"{arr.shape}{arr.dtype}".encode() + arr.tobytes())


_IMAGES: BoundedCache[ImageItem] = BoundedCache(
    IMAGE_CACHE_ENTRIES, IMAGE_CACHE_BYTES, lambda item: item.array.nbytes
)


def decode_image(data: bytes, name: str, origin: str = "upload") -> ImageItem:
    """Decode an upload (or a sample file's bytes) once; an ``ImageError`` says what is wrong."""
    key = (digest(data), name, origin)

    def decode() -> ImageItem:
        loaded = load_image(data, name=name)
        return ImageItem(
            name=loaded.name, array=loaded.array, key=pixel_digest(loaded.array), origin=origin,
            original_size=loaded.original_size, notes=loaded.notes,
        )

    return _IMAGES.get_or_compute(key, decode)


def sample_image(path: Path) -> ImageItem:
    """A bundled sample photo, decoded like an upload (so it meets the same checks)."""
    path = Path(path)
    return decode_image(path.read_bytes(), path.name, origin="sample")


@dataclass(frozen=True)
class ModelKey:
    """Everything a loaded model depends on; ``device`` is resolved, so auto and cpu share one."""

    model_id: str
    device: str
    checkpoint_digest: str = ""  # "" means the zoo's own weight source
    checkpoint_name: str = ""


def model_key(
    model_id: str, device: str = "auto", checkpoint: bytes | None = None,
    checkpoint_name: str = "",
) -> ModelKey:
    """The cache key of a model choice; raises ``SettingsError`` for an absent device."""
    dev = str(resolve_device(device))
    if checkpoint is None:
        return ModelKey(model_id, dev)
    return ModelKey(model_id, dev, digest(checkpoint), checkpoint_name)


def weights_problem(key: ModelKey) -> str | None:
    """Why this choice cannot load without trying (no checkpoint for a 'needs file' model, or
    online weights while offline), or None when loading is worth a try.

    Checking first avoids building a network on every rerun only to fail on its weights.
    """
    if key.checkpoint_digest:
        return None
    source = get_spec(key.model_id).source
    if source.available_offline():
        return None
    if isinstance(source, CheckpointRequired) or offline():
        try:
            source.load()  # raises at once with the message the user should read
        except WeightsUnavailableError as exc:
            return str(exc)
    return None


@st.cache_resource(max_entries=MODEL_CACHE_ENTRIES, show_spinner=False)
def _load(model_id: str, device: str, checkpoint_digest: str, checkpoint_name: str,
          _checkpoint: bytes | None) -> LoadedModel:
    # The checkpoint bytes are not hashed again (leading underscore): their digest is in the key.
    return load_model(model_id, checkpoint=_checkpoint, checkpoint_name=checkpoint_name or None,
                      device=device)


# A checkpoint that does not fit never will: remember why, so that every later rerun of the
# page (each widget change) does not build the network again only to fail the same way.
_BAD_CHECKPOINTS: BoundedCache[str] = BoundedCache(32, 2**20, len)


def get_model(key: ModelKey, checkpoint: bytes | None = None) -> LoadedModel:
    """The shared model for a key; raises the package's errors (weights, checkpoint, device)."""
    problem = weights_problem(key)
    if problem is not None:
        raise WeightsUnavailableError(problem)
    known = _BAD_CHECKPOINTS.get(key)
    if known is not None:
        raise CheckpointError(known)
    try:
        return _load(key.model_id, key.device, key.checkpoint_digest, key.checkpoint_name,
                     checkpoint if key.checkpoint_digest else None)
    except CheckpointError as exc:
        if key.checkpoint_digest:
            _BAD_CHECKPOINTS.put(key, str(exc))
        raise


# --- your own model (a factory, a TorchScript file, a timm name) ----------------------------

CUSTOM_CACHE_ENTRIES = 4  # each correction of the detection is a model of its own


@st.cache_resource(max_entries=CUSTOM_CACHE_ENTRIES, show_spinner=False)
def _load_custom(identity: str, _key: CustomKey, _data: bytes | None) -> LoadedModel:
    # ``identity`` spells out every field of the key (digests, not bytes): it alone is hashed.
    return custom_model.load(_key, _data)


_BAD_CUSTOM: BoundedCache[AttnvizError] = BoundedCache(32, 2**20, lambda e: len(str(e)) + 1)


def get_custom_model(key: CustomKey, data: bytes | None = None) -> LoadedModel:
    """The shared own model for a key; raises ``AttnvizError`` with the message to show.

    A failure is remembered by key (see ``custom_model.remember_failure``), so a TorchScript
    file that cannot load or a checkpoint that does not fit is not tried again on every rerun.
    """
    known = _BAD_CUSTOM.get(key)
    if known is not None:
        raise type(known)(str(known))
    try:
        return _load_custom(key.identity, key, data)
    except AttnvizError as exc:
        if custom_model.remember_failure(key, exc):
            _BAD_CUSTOM.put(key, exc)
        raise


def get_own_model(
    key: CustomKey, data: bytes | None = None
) -> tuple[LoadedModel, CustomKey, str | None]:
    """The own model with the user's corrections, its key, and None; when a correction cannot
    apply (a layer that is no gate read as one), the model as detected, its key (analyses are
    cached by it) and the reason to show."""
    try:
        return get_custom_model(key, data), key, None
    except AttnvizError as exc:
        if not key.overrides:
            raise
        base = key.without_overrides()
        model = get_custom_model(base, data)
        return model, base, (f"{exc}. Showing the model as detected, without your "
                             "corrections; change the one that does not apply under "
                             "'Correct the detection' in the sidebar.")


@dataclass(frozen=True)
class AnalysisSettings:
    """The settings that change what the network computes (and so the analysis key)."""

    cam_methods: tuple[str, ...] = ("gradcam",)
    target: int | None = None  # None: each image's own top-1 class
    disabled: tuple[str, ...] = ()
    simam_lambda: float = 1e-4

    def with_target(self, target: int | None) -> AnalysisSettings:
        return AnalysisSettings(self.cam_methods, target, self.disabled, self.simam_lambda)

    def with_disabled(self, disabled: Sequence[str]) -> AnalysisSettings:
        return AnalysisSettings(self.cam_methods, self.target, tuple(sorted(disabled)),
                                self.simam_lambda)


def analysis_nbytes(a: Analysis) -> int:
    arrays = [a.image, a.model_input, a.logits, *(r.data for r in a.records), *a.cams.values()]
    return sum(int(x.nbytes) for x in arrays)


ANALYSES: BoundedCache[Analysis] = BoundedCache(
    ANALYSIS_CACHE_ENTRIES, ANALYSIS_CACHE_BYTES, analysis_nbytes
)


def analysis_key(image: ImageItem, key: ModelKey | CustomKey,
                 settings: AnalysisSettings) -> tuple:
    """A zoo model's key, or an own model's (source, digests, corrections): never shared."""
    return (image.key, key, settings)


def get_analysis(
    image: ImageItem, model: LoadedModel, key: ModelKey | CustomKey, settings: AnalysisSettings,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """The analysis of one image, computed by one network pass the first time only.

    ``progress``: see ``attnviz.analyze``; called only when the analysis is computed."""

    def compute() -> Analysis:
        # Looked up on the module at call time, so tests can count network passes.
        return analysis_module.analyze_batch(
            [image.array], model, cam_methods=settings.cam_methods, target=settings.target,
            disabled=settings.disabled, simam_lambda=settings.simam_lambda, progress=progress,
        )[0]

    return ANALYSES.get_or_compute(analysis_key(image, key, settings), compute)


def is_cached(image: ImageItem, key: ModelKey | CustomKey, settings: AnalysisSettings) -> bool:
    return analysis_key(image, key, settings) in ANALYSES
