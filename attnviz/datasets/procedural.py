"""Procedural shapes on cluttered, textured backgrounds, with a pixel-exact ground-truth mask.

Why procedural: learned attention needs trained weights, and the checkpoints for SE, CBAM,
BAM and friends cannot be downloaded offline. A generated dataset trains small models in
minutes on a CPU and, unlike photos, says exactly where the object is, so what each attention
map attends to can be *measured* (see ``attnviz.localization``), not only looked at.

Every sample is a pure function of ``(seed, split, index)``: no files, no state, any order,
any process. The object is drawn last, with one solid colour, through its own mask, so the
mask is exactly the object's visible pixels. Distractors (strokes, jagged blobs, bars, dots)
belong to no class and are drawn first; the textured background and the distractors make the
task one where looking at the right place matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from attnviz.errors import SettingsError, choices_message

IMAGE_SIZE = 64
GENERATOR_VERSION = 1  # bump when a change alters any sample: cards record it

CLASS_NAMES: tuple[str, ...] = (
    "circle", "ring", "triangle", "square", "star",
    "cross", "crescent", "arrow", "ell", "bowtie",
)
SPLITS = {"train": 0, "heldout": 1, "test": 2, "gallery": 3}

# Normalisation for models trained on this data (close to the data's own per-channel stats).
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)

_OBJECT_RADIUS = (0.20, 0.34)  # of the image side
_MIN_CONTRAST = 0.45  # RGB distance (0..sqrt 3) between object and the background beneath it
_CIRCLE = 40  # polygon vertices for round outlines


@dataclass(frozen=True)
class ProceduralSample:
    """One generated picture: ``image`` (H,W,3) uint8, ``mask`` (H,W) bool, the class."""

    image: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    label: int
    class_name: str
    seed: int
    index: int
    split: str = "train"


# --- shapes, in unit coordinates (circumradius about 1) -------------------------------------

Polygon = np.ndarray  # (N, 2) x, y
Part = tuple[Polygon, bool]  # polygon, True = fill, False = cut out


def _disc(radius: float, cx: float = 0.0, cy: float = 0.0) -> Polygon:
    t = np.linspace(0, 2 * np.pi, _CIRCLE, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _star(points: int, outer: float, inner: float) -> Polygon:
    t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _poly(*points: tuple[float, float]) -> Polygon:
    return np.asarray(points, dtype=np.float64)


_SHAPES: dict[str, list[Part]] = {
    "circle": [(_disc(0.85), True)],
    "ring": [(_disc(1.0), True), (_disc(0.55), False)],
    "triangle": [(_star(3, 1.0, 0.5)[::2], True)],
    "square": [(_poly((-0.72, -0.72), (0.72, -0.72), (0.72, 0.72), (-0.72, 0.72)), True)],
    "star": [(_star(5, 1.0, 0.42), True)],
    "cross": [(_poly((-0.28, -1), (0.28, -1), (0.28, -0.28), (1, -0.28), (1, 0.28),
                     (0.28, 0.28), (0.28, 1), (-0.28, 1), (-0.28, 0.28), (-1, 0.28),
                     (-1, -0.28), (-0.28, -0.28)), True)],
    "crescent": [(_disc(1.0), True), (_disc(0.85, 0.5, 0.0), False)],
    "arrow": [(_poly((-1, -0.22), (0.15, -0.22), (0.15, -0.62), (1, 0), (0.15, 0.62),
                     (0.15, 0.22), (-1, 0.22)), True)],
    "ell": [(_poly((-0.65, -1), (-0.15, -1), (-0.15, 0.5), (0.75, 0.5), (0.75, 1),
                   (-0.65, 1)), True)],
    "bowtie": [(_poly((-1, -0.8), (0, -0.05), (0, 0.05), (-1, 0.8)), True),
               (_poly((1, -0.8), (0, -0.05), (0, 0.05), (1, 0.8)), True)],
}
assert tuple(_SHAPES) == CLASS_NAMES


def _place(poly: Polygon, angle: float, sx: float, sy: float, cx: float, cy: float) -> list:
    c, s = np.cos(angle), np.sin(angle)
    x, y = poly[:, 0] * sx, poly[:, 1] * sy
    return list(zip((cx + c * x - s * y).tolist(), (cy + s * x + c * y).tolist()))


# --- background and distractors -------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth two-colour field, a grating and pixel noise: texture with no shapes in it.

    Plane waves are built from 1-D sines as outer products (sin(a+b) = sin a cos b +
    cos a sin b), which keeps a sample near a millisecond: training draws tens of thousands.
    """
    t = np.arange(size, dtype=np.float32) / size

    def wave(fx: float, fy: float, phase: float) -> np.ndarray:
        ax, by = 2 * np.pi * fx * t, 2 * np.pi * fy * t + phase
        return np.outer(np.cos(by), np.sin(ax)) + np.outer(np.sin(by), np.cos(ax))

    blend = sum(wave(*rng.uniform(-2.0, 2.0, 2), rng.uniform(0, 2 * np.pi)) for _ in range(3))
    blend = (blend - blend.min()) / max(float(np.ptp(blend)), 1e-6)
    c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
    img = c0 + (c1 - c0) * blend[..., None]
    freq, theta = rng.uniform(3.0, 12.0), rng.uniform(0, np.pi)
    grating = wave(freq * np.cos(theta), freq * np.sin(theta), rng.uniform(0, 2 * np.pi))
    img += rng.uniform(0.05, 0.2) * grating[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    img += rng.uniform(0.02, 0.07) * rng.standard_normal((size, size, 3), dtype=np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _draw_distractors(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int) -> None:
    """Things of no class: strokes, jagged blobs, thin bars and dots."""
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(4)
        cx, cy = rng.uniform(0, size, 2)
        if kind == 0:  # a stroke of a few segments
            pts = [(float(cx), float(cy))]
            for _ in range(int(rng.integers(2, 5))):
                pts.append((float(pts[-1][0] + rng.normal(0, size * 0.15)),
                            float(pts[-1][1] + rng.normal(0, size * 0.15))))
            draw.line(pts, fill=_colour(rng), width=int(rng.integers(1, 4)))
        elif kind == 1:  # a jagged blob: many vertices, random radii
            n = int(rng.integers(9, 15))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = size * rng.uniform(0.05, 0.2) * rng.uniform(0.4, 1.0, n)
            draw.polygon(list(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist())),
                         fill=_colour(rng))
        elif kind == 2:  # a thin bar, long and narrow (no class is)
            bar = _poly((-1, -0.12), (1, -0.12), (1, 0.12), (-1, 0.12))
            length = size * rng.uniform(0.1, 0.3)
            draw.polygon(_place(bar, rng.uniform(0, np.pi), length, length * rng.uniform(0.3, 0.7),
                                cx, cy), fill=_colour(rng))
        else:  # a scatter of dots
            for _ in range(int(rng.integers(4, 12))):
                x, y = rng.uniform(0, size, 2)
                d = float(rng.uniform(0.5, 1.5))
                draw.ellipse((x - d, y - d, x + d, y + d), fill=_colour(rng))


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour that stands out from the mean background under the object."""
    mean = under.reshape(-1, 3).mean(axis=0) / 255.0
    best, best_gap = None, -1.0
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        gap = float(np.linalg.norm(c / 255.0 - mean))
        if gap >= _MIN_CONTRAST:
            return tuple(int(v) for v in c)
        if gap > best_gap:
            best, best_gap = c, gap
    return tuple(int(v) for v in best)


# --- samples --------------------------------------------------------------------------------


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise SettingsError(choices_message("procedural split", split, list(SPLITS)))
    return SPLITS[split]


def sample(
    seed: int, index: int, split: str = "train", size: int = IMAGE_SIZE, *,
    draw_object: bool = True,
) -> ProceduralSample:
    """The sample ``index`` of the stream ``(seed, split)``; the same arguments, the same pixels.

    Splits are independent streams: a model trained on ``train`` is scored on ``heldout``,
    and tests draw from ``test`` (the app's gallery from ``gallery``). ``draw_object=False``
    gives the same scene without its object (same mask), which is how the mask is checked.
    """
    if seed < 0 or index < 0:
        raise SettingsError(f"seed and index must be non-negative, got {seed}, {index}")
    rng = np.random.default_rng([int(seed), _split_code(split), int(index), GENERATOR_VERSION])
    label = int(rng.integers(len(CLASS_NAMES)))
    name = CLASS_NAMES[label]

    image = _background(rng, size)
    canvas = Image.fromarray(image)
    _draw_distractors(rng, ImageDraw.Draw(canvas), size)

    radius = size * rng.uniform(*_OBJECT_RADIUS)
    sx, sy = radius * rng.uniform(0.85, 1.15, 2)
    reach = max(sx, sy)
    cx, cy = rng.uniform(reach, size - reach, 2)
    angle = rng.uniform(0, 2 * np.pi)
    outline = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(outline)
    for poly, fill in _SHAPES[name]:
        pen.polygon(_place(poly, angle, sx, sy, cx, cy), fill=255 if fill else 0)
    mask = np.asarray(outline) > 0

    pixels = np.array(canvas)
    if draw_object:
        pixels[mask] = _object_colour(rng, pixels[mask] if mask.any() else pixels)
    return ProceduralSample(image=pixels, mask=mask, label=label, class_name=name,
                            seed=int(seed), index=int(index), split=split)


def sample_batch(
    seed: int, indices: Sequence[int], split: str = "train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N,H,W,3) uint8, masks (N,H,W) bool and labels (N,) int64 for many indices."""
    samples = [sample(seed, int(i), split) for i in indices]
    return (np.stack([s.image for s in samples]), np.stack([s.mask for s in samples]),
            np.asarray([s.label for s in samples], dtype=np.int64))


@dataclass(frozen=True)
class ProceduralDataset:
    """A fixed-length view of one stream: ``len`` samples, ``ds[i]`` the i-th."""

    seed: int
    split: str = "train"
    length: int = 1000

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> ProceduralSample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return sample(self.seed, index, self.split)

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_NAMES
