"""render: shapes, dtypes and exact values of the pictures made from attention maps."""

from __future__ import annotations

import io
import time

import matplotlib
import numpy as np
import pytest
from PIL import Image

from attnviz import render
from attnviz.errors import ImageError, SettingsError
from attnviz.render import (
    FLAT_MESSAGE,
    NormalizedMap,
    colorbar,
    colorize,
    colormap_lut,
    colormap_names,
    contour_overlay,
    grid,
    label_image,
    normalize,
    overlay,
    resize_map,
    to_png_bytes,
)

RNG = np.random.default_rng(1)
IMAGE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
RAMP = np.arange(12, dtype=np.float64).reshape(3, 4)


# --- colormaps -----------------------------------------------------------------------------


def test_colormap_names_are_the_curated_list() -> None:
    assert colormap_names() == ["jet", "turbo", "viridis", "inferno", "magma", "plasma", "gray",
                                "coolwarm"]


def test_unknown_colormap_lists_the_valid_ones() -> None:
    with pytest.raises(SettingsError, match="unknown colormap 'rainbow'; valid choices: jet, "):
        colorize(RAMP / 11, "rainbow")
    with pytest.raises(SettingsError):
        overlay(IMAGE, RAMP, cmap="nope")


@pytest.mark.parametrize("name", colormap_names())
def test_colormap_endpoints_match_matplotlib(name: str) -> None:
    cmap = matplotlib.colormaps[name]
    out = colorize(np.array([[0.0, 1.0]]), name)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    assert out[0, 0].tolist() == np.rint(np.array(cmap(0.0)[:3]) * 255).astype(int).tolist()
    assert out[0, 1].tolist() == np.rint(np.array(cmap(1.0)[:3]) * 255).astype(int).tolist()


def test_lut_is_cached_and_read_only() -> None:
    assert colormap_lut("jet") is colormap_lut("JET")
    assert colormap_lut("gray").shape == (256, 3)
    assert not colormap_lut("gray").flags.writeable
    assert colorize(np.array([[0.5]]), "gray")[0, 0].tolist() == [128, 128, 128]


def test_colorize_clips_and_handles_nan() -> None:
    out = colorize(np.array([[-5.0, np.nan, np.inf, 7.0]]), "gray")
    assert out[0, :, 0].tolist() == [0, 0, 255, 255]


# --- normalize -----------------------------------------------------------------------------


def test_normalize_min_max() -> None:
    norm = normalize(RAMP)
    assert isinstance(norm, NormalizedMap)
    assert norm.values.dtype == np.float32 and norm.values.shape == (3, 4)
    assert norm.values.min() == 0.0 and norm.values.max() == 1.0
    assert np.allclose(norm.values, RAMP / 11)
    assert not norm.flat and norm.message is None and norm.missing is None
    assert (norm.vmin, norm.vmax) == (0.0, 11.0)


def test_normalize_with_fixed_range_clips() -> None:
    norm = normalize(RAMP, vmin=2.0, vmax=6.0)
    assert norm.values[0, 0] == 0.0 and norm.values[-1, -1] == 1.0
    assert norm.values[0, 3] == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [dict(vmin=3, vmax=3), dict(vmin=4, vmax=1),
                                 dict(vmin=float("nan")), dict(vmax="high")])
def test_normalize_rejects_nonsense_ranges(bad: dict) -> None:
    with pytest.raises(SettingsError):
        normalize(RAMP, **bad)


@pytest.mark.parametrize("flat_map", [
    np.zeros((5, 5)),
    np.full((3, 7), 0.37, np.float32),
    np.full((2, 2), np.nan),
    np.array([[np.inf, -np.inf], [np.nan, np.nan]]),
    np.ones((1, 1), np.uint8),
    np.float32(1.0) + np.float32(1e-7) * np.arange(9, dtype=np.float32).reshape(3, 3),
])
def test_flat_maps_are_flagged_and_normalise_to_zeros(flat_map: np.ndarray) -> None:
    norm = normalize(flat_map)
    assert norm.flat and norm.message == FLAT_MESSAGE
    assert norm.values.shape == flat_map.shape and not norm.values.any()
    out = overlay(IMAGE, flat_map)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8


def test_tiny_real_variation_in_float64_is_not_flat() -> None:
    assert not normalize(np.array([[1.0, 1.0 + 1e-9]])).flat


def test_nan_and_inf_are_missing_not_extremes() -> None:
    data = np.array([[0.0, 1.0, np.nan], [2.0, np.inf, -np.inf]])
    norm = normalize(data)
    assert not norm.flat
    assert (norm.vmin, norm.vmax) == (0.0, 2.0)
    assert norm.values.tolist() == [[0.0, 0.5, 0.0], [1.0, 0.0, 0.0]]
    assert norm.missing.tolist() == [[False, False, True], [False, True, True]]


def test_extreme_float_range_does_not_overflow() -> None:
    norm = normalize(np.array([[-1e308, 1e308]]))
    assert norm.values.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.uint32, np.int64, np.uint64, np.float16, np.float32,
                                   np.float64])
def test_every_numeric_dtype(dtype: type) -> None:
    data = (np.arange(16).reshape(4, 4) % 2).astype(dtype)
    norm = normalize(data)
    assert norm.values.tolist() == (np.arange(16).reshape(4, 4) % 2).tolist()
    assert colorize(norm, "jet").shape == (4, 4, 3)
    assert overlay(IMAGE, data).shape == IMAGE.shape


def test_extreme_integer_values() -> None:
    data = np.array([[0, np.iinfo(np.uint64).max]], np.uint64)
    assert normalize(data).values.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("shape", [(1, 5, 6), (1, 1, 5, 6)])
def test_leading_singleton_axes_are_dropped(shape: tuple[int, ...]) -> None:
    data = RNG.random(shape)
    assert normalize(data).values.shape == (5, 6)
    assert overlay(IMAGE, data).shape == IMAGE.shape


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4)), np.zeros(5), np.zeros((0, 4)),
                                 np.array(3.0), np.array([["a", "b"]]),
                                 np.zeros((2, 2), complex), [[1, 2], [3]]])
def test_bad_map_shapes_and_dtypes_are_image_errors(bad: object) -> None:
    with pytest.raises(ImageError):
        normalize(bad)
    with pytest.raises(ImageError):
        overlay(IMAGE, bad)


# --- resize and overlay --------------------------------------------------------------------


def test_resize_map_shapes_and_range() -> None:
    out = resize_map(RAMP, (30, 40))
    assert out.dtype == np.float32 and out.shape == (30, 40)
    assert RAMP.min() <= out.min() and out.max() <= RAMP.max()
    assert resize_map(np.array([[0.7]]), (5, 3)).tolist() == [[pytest.approx(0.7)] * 3] * 5
    same = resize_map(RAMP, (3, 4))
    assert np.array_equal(same, RAMP) and same is not RAMP


def test_resize_map_rejects_bad_size() -> None:
    with pytest.raises(SettingsError):
        resize_map(RAMP, (0, 4))


def test_overlay_alpha_zero_is_the_image() -> None:
    out = overlay(IMAGE, RAMP, alpha=0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, IMAGE)


def test_overlay_alpha_one_is_the_colormap_of_the_normalised_map() -> None:
    out = overlay(IMAGE, RAMP, cmap="viridis", alpha=1.0)
    expected = colorize(resize_map(normalize(RAMP).values, IMAGE.shape[:2]), "viridis")
    assert np.array_equal(out, expected)


def test_overlay_same_size_map_alpha_one_matches_colorize_exactly() -> None:
    data = RNG.random(IMAGE.shape[:2])
    assert np.array_equal(overlay(IMAGE, data, cmap="magma", alpha=1.0),
                          colorize(normalize(data).values, "magma"))


def test_overlay_half_alpha_blends() -> None:
    image = np.full((4, 4, 3), 100, np.uint8)
    out = overlay(image, np.zeros((2, 2)), cmap="gray", alpha=0.5, vmin=0, vmax=1)
    assert (out == 50).all()  # gray colormap at 0 is black: halfway from 100 to 0


def test_overlay_shows_photo_through_missing_values() -> None:
    data = np.ones((4, 4))
    data[0, 0] = 0.0
    data[3, 3] = np.nan
    image = np.full((40, 40, 3), 77, np.uint8)
    out = overlay(image, data, alpha=1.0)
    assert (out[-1, -1] == 77).all()
    assert not (out[20, 20] == 77).all()


def test_overlay_accepts_normalized_map_grayscale_and_pil() -> None:
    norm = normalize(RAMP)
    gray = IMAGE[..., 0]
    assert overlay(gray, norm).shape == (24, 32, 3)
    assert np.array_equal(overlay(Image.fromarray(IMAGE), norm), overlay(IMAGE, norm))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x"])
def test_overlay_rejects_bad_alpha(alpha: object) -> None:
    with pytest.raises(SettingsError):
        overlay(IMAGE, RAMP, alpha=alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("image", [IMAGE.astype(np.float32), IMAGE[..., :2],
                                   np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_overlay_rejects_non_rgb_uint8_images(image: np.ndarray) -> None:
    with pytest.raises(ImageError, match="uint8 RGB"):
        overlay(image, RAMP)


def test_one_by_one_everything() -> None:
    tiny = np.array([[[10, 20, 30]]], np.uint8)
    assert overlay(tiny, np.array([[5.0]])).shape == (1, 1, 3)
    assert overlay(tiny, RAMP).shape == (1, 1, 3)
    assert overlay(IMAGE, np.array([[5.0]])).shape == IMAGE.shape
    assert contour_overlay(tiny, np.ones((1, 1), bool)).tolist() == [[[255, 255, 255]]]
    assert label_image(tiny, "caption").shape[1] == 1
    assert grid([tiny], cols=3).shape == (1, 1, 3)


def test_twenty_overlays_are_fast() -> None:
    image = RNG.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    maps = [RNG.random((s, s)).astype(np.float32) for s in (7, 14, 28, 56) * 5]
    overlay(image, maps[0])  # builds the lookup table
    start = time.perf_counter()
    for data in maps:
        overlay(image, data)
    assert time.perf_counter() - start < 0.5  # target is < 0.1 s; loose for shared CI cores


# --- contour, grid, label, colorbar, png ---------------------------------------------------


def test_contour_overlay_draws_only_the_outline() -> None:
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:8, 3:7] = True
    out = contour_overlay(image, mask, color=(0, 255, 0))
    drawn = (out == (0, 255, 0)).all(axis=2)
    assert drawn[2, 3:7].all() and drawn[7, 3:7].all() and drawn[2:8, 3].all()
    assert not drawn[3:7, 4:6].any()  # interior untouched
    assert not drawn[~mask].any()     # nothing outside the mask
    assert np.array_equal(image, np.zeros((10, 10, 3), np.uint8))  # input not modified


def test_contour_overlay_resizes_mask_and_thickness() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255
    thin = (contour_overlay(image, mask) > 0).all(axis=2).sum()
    thick = (contour_overlay(image, mask, thickness=3) > 0).all(axis=2).sum()
    assert thin == 36 and thick > thin
    edge_mask = np.ones((5, 5), bool)
    assert (contour_overlay(image, edge_mask)[0] == 255).all()  # image border counts as edge


@pytest.mark.parametrize("kwargs", [dict(color=(0, 0)), dict(color=(0, 0, 300)),
                                    dict(thickness=0)])
def test_contour_overlay_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(SettingsError):
        contour_overlay(IMAGE, np.ones((2, 2)), **kwargs)


def test_grid_layout() -> None:
    tiles = [np.full((10, 20, 3), i * 40, np.uint8) for i in range(5)]
    tiles.append(np.full((4, 6, 3), 7, np.uint8))
    out = grid(tiles, cols=4, pad=2)
    assert out.dtype == np.uint8 and out.shape == (2 * 10 + 2, 4 * 20 + 3 * 2, 3)
    assert (out[0:10, 22:42] == 40).all()
    assert (out[:, 20:22] == 255).all()
    assert (out[12 + 3 : 12 + 7, 22 + 7 : 22 + 13] == 7).all()  # small tile centred
    assert grid(tiles[:2], cols=10, pad=0).shape == (10, 40, 3)


def test_grid_rejects_bad_input() -> None:
    with pytest.raises(ImageError):
        grid([], cols=2)
    with pytest.raises(SettingsError):
        grid([IMAGE], cols=0)
    with pytest.raises(SettingsError):
        grid([IMAGE], cols=1, pad=-1)


def test_label_image_adds_a_strip_with_text() -> None:
    out = label_image(IMAGE, "SimAM layer3.5")
    assert out.dtype == np.uint8 and out.shape[1:] == IMAGE.shape[1:]
    strip_height = out.shape[0] - IMAGE.shape[0]
    assert 8 <= strip_height <= 30
    assert np.array_equal(out[strip_height:], IMAGE)
    assert (out[:strip_height] < 128).any()  # some dark text pixels


def test_label_image_long_and_unicode_text() -> None:
    out = label_image(IMAGE, "x" * 500 + "\nsecond line")
    assert out.shape[1] == IMAGE.shape[1]
    assert label_image(IMAGE, "注意力 ✓ énergie").shape[1] == IMAGE.shape[1]
    assert label_image(IMAGE, "").shape[1] == IMAGE.shape[1]


def test_colorbar() -> None:
    bar = colorbar("jet", 0.0, 1.0, width=100, height=10, labels=False)
    assert bar.shape == (10, 100, 3) and bar.dtype == np.uint8
    assert bar[0, 0].tolist() == colormap_lut("jet")[0].tolist()
    assert bar[5, -1].tolist() == colormap_lut("jet")[255].tolist()
    labelled = colorbar("viridis", -3.5, 1e6)
    assert labelled.shape[1] == 256 and labelled.shape[0] > 20
    assert colorbar("gray", 0, 1, width=1, height=1).shape[1] == 1
    with pytest.raises(SettingsError):
        colorbar("jet", 0, 1, width=0)


def test_to_png_bytes_round_trips() -> None:
    for arr in (IMAGE, IMAGE[..., 0], np.dstack([IMAGE, IMAGE[..., :1]])):
        data = to_png_bytes(arr)
        assert data.startswith(b"\x89PNG")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)
    mask = np.eye(3, dtype=bool)
    assert np.asarray(Image.open(io.BytesIO(to_png_bytes(mask)))).max() == 255


@pytest.mark.parametrize("bad", [IMAGE.astype(np.float32), np.zeros((2, 2, 2), np.uint8),
                                 np.zeros((0, 3), np.uint8)])
def test_to_png_bytes_rejects_other_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ImageError):
        to_png_bytes(bad)


def test_render_has_no_torch_or_streamlit_imports() -> None:
    source = render.__file__
    with open(source, encoding="utf-8") as fh:
        text = fh.read()
    assert "import torch" not in text and "streamlit" not in text
