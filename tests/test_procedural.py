"""The procedural dataset: deterministic per seed, and masks that are exactly the object."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.datasets import CLASS_NAMES, IMAGE_SIZE, ProceduralDataset, sample, sample_batch
from attnviz.errors import SettingsError


def test_same_seed_same_sample_in_any_order() -> None:
    first = {i: sample(3, i) for i in (5, 1, 9)}
    again = {i: sample(3, i) for i in (9, 5, 1)}
    for i, a in first.items():
        b = again[i]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert (a.label, a.class_name) == (b.label, b.class_name)


def test_seeds_indices_and_splits_differ() -> None:
    base = sample(3, 5).image
    for other in (sample(4, 5), sample(3, 6), sample(3, 5, "heldout"), sample(3, 5, "test")):
        assert not np.array_equal(base, other.image)


def test_sample_layout() -> None:
    s = sample(0, 0)
    assert s.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and s.mask.dtype == bool
    assert s.class_name == CLASS_NAMES[s.label]
    assert len(CLASS_NAMES) >= 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_covers_exactly_the_drawn_object(seed: int) -> None:
    for index in range(40):
        with_object = sample(seed, index)
        scene = sample(seed, index, draw_object=False)  # same background and distractors
        mask = with_object.mask
        np.testing.assert_array_equal(mask, scene.mask)
        assert 0.03 < mask.mean() < 0.5, "object too small or too large"
        changed = (with_object.image != scene.image).any(axis=2)
        assert not (changed & ~mask).any(), "pixels outside the mask were drawn"
        colours = np.unique(with_object.image[mask], axis=0)
        assert len(colours) == 1, "the object is one solid colour on every mask pixel"
        differs = (scene.image[mask] != colours[0]).any(axis=1)
        np.testing.assert_array_equal(changed[mask], differs)


def test_every_class_appears_and_object_stands_out() -> None:
    images, masks, labels = sample_batch(0, range(300))
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))
    assert images.shape == (300, IMAGE_SIZE, IMAGE_SIZE, 3) and masks.shape[0] == 300
    s = sample(0, 0)
    inside = s.image[s.mask].astype(float).mean(axis=0)
    ring = s.image[~s.mask].astype(float).mean(axis=0)
    assert np.linalg.norm(inside - ring) > 20


def test_batch_equals_single_samples() -> None:
    images, masks, labels = sample_batch(7, [2, 4], "heldout")
    for row, index in enumerate([2, 4]):
        single = sample(7, index, "heldout")
        np.testing.assert_array_equal(images[row], single.image)
        np.testing.assert_array_equal(masks[row], single.mask)
        assert labels[row] == single.label


def test_dataset_view_and_errors() -> None:
    ds = ProceduralDataset(seed=1, split="gallery", length=3)
    assert len(ds) == 3 and ds.classes == CLASS_NAMES
    np.testing.assert_array_equal(ds[2].image, sample(1, 2, "gallery").image)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(SettingsError, match="valid choices"):
        sample(0, 0, "validation")
    with pytest.raises(SettingsError):
        sample(-1, 0)
