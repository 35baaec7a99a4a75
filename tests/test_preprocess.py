"""The model's view of a photo: PIL's resampling filters, to within rounding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnviz.preprocess import Preprocessing

PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
@pytest.mark.parametrize("shape", [(300, 451), (97, 301), (50, 60), (224, 225)])
def test_resize_matches_pil(resample: str, shape: tuple[int, int]) -> None:
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = Preprocessing(size=224, resample=resample).resize(rgb).astype(int)
    pil = np.asarray(Image.fromarray(rgb).resize((224, 224), PIL_FILTERS[resample])).astype(int)
    assert ours.shape == (224, 224, 3)
    diff = np.abs(ours - pil)
    assert diff.max() <= 2 and diff.mean() < 0.02


def test_resize_keeps_a_photo_already_at_size_and_drops_alpha() -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    view = Preprocessing(size=64).resize(rgba)
    assert view.dtype == np.uint8 and view.flags.c_contiguous
    np.testing.assert_array_equal(view, rgba[..., :3])


def test_normalize_uses_the_imagenet_statistics() -> None:
    view = np.full((8, 8, 3), 255, dtype=np.uint8)
    prep = Preprocessing(size=8)
    x = prep.normalize([view, view])
    expected = (1.0 - np.array(prep.mean)) / np.array(prep.std)
    assert tuple(x.shape) == (2, 3, 8, 8) and x.is_contiguous()
    np.testing.assert_allclose(x[1, :, 3, 5].numpy(), expected, rtol=1e-6)
