"""Training batches as a pure function of the step, so a resumed run sees the same data.

Both sources answer ``train_batch(step, batch_size)`` with uint8 images and labels; neither
keeps an iterator, so resuming at step k needs nothing but k.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from attnviz.datasets.folder import FolderData
from attnviz.datasets.procedural import CLASS_NAMES, GENERATOR_VERSION, IMAGE_SIZE, sample_batch

PROCEDURAL_EPOCH = 10_000  # samples per "epoch" of the endless procedural stream


@dataclass(frozen=True)
class ProceduralSource:
    """Fresh samples every step: the training stream never repeats, so no overfitting."""

    seed: int
    heldout_samples: int = 2000
    classes: tuple[str, ...] = CLASS_NAMES

    @property
    def epoch_size(self) -> int:
        return PROCEDURAL_EPOCH

    def train_batch(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        start = step * batch_size
        images, _, labels = sample_batch(self.seed, range(start, start + batch_size), "train")
        return images, labels

    def heldout_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.heldout_samples, batch_size):
            stop = min(start + batch_size, self.heldout_samples)
            images, _, labels = sample_batch(self.seed, range(start, stop), "heldout")
            yield images, labels

    def describe(self) -> dict:
        return {"kind": "procedural", "seed": self.seed, "image_size": IMAGE_SIZE,
                "generator_version": GENERATOR_VERSION, "train_split": "train",
                "heldout_split": "heldout", "heldout_samples": self.heldout_samples,
                "classes": len(self.classes)}


@dataclass(frozen=True)
class FolderSource:
    """A user's folder, shuffled per epoch by the seed, with random horizontal flips."""

    data: FolderData
    seed: int

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    @property
    def epoch_size(self) -> int:
        return len(self.data.train)

    def train_batch(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.data.train)
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        picks = np.empty(batch_size, dtype=np.int64)
        for epoch in np.unique(positions // n):
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
            here = positions // n == epoch
            picks[here] = order[positions[here] % n]
        images = self.data.train.images[picks].copy()
        flip = np.random.default_rng([self.seed, int(step), 1]).random(batch_size) < 0.5
        images[flip] = images[flip, :, ::-1]
        return images, self.data.train.labels[picks]

    def heldout_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        split = self.data.heldout
        for start in range(0, len(split), batch_size):
            yield split.images[start:start + batch_size], split.labels[start:start + batch_size]

    def describe(self) -> dict:
        return self.data.describe()
