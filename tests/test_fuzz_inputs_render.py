"""Property tests: arbitrary bytes and arrays end in a result or an AttnvizError, nothing else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from attnviz.errors import AttnvizError, ImageError
from attnviz.inputs import LoadedImage, load_image
from attnviz.render import colorize, colormap_names, normalize, overlay, resize_map

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Mutated headers may declare big images; a tight pixel limit keeps each example cheap while
# still running the whole decode path (the default limits are exercised in test_inputs.py).
FUZZ_MAX_PIXELS = 2_000_000


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        _encode(rgb, "PNG"),
        _encode(rgba, "PNG"),
        _encode(Image.fromarray(np.arange(204, dtype=np.uint16).reshape(12, 17)), "PNG"),
        _encode(rgb, "JPEG", quality=70, exif=exif),
        _encode(rgb, "JPEG", quality=70, progressive=True),
        _encode(rgb.convert("CMYK"), "JPEG"),
        _encode(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P")]),
        _encode(rgb, "WEBP", quality=60),
        _encode(rgb, "BMP"),
        _encode(rgb, "TIFF"),
        _encode(rgb, "TIFF", compression="tiff_lzw"),
    ]


SEEDS = _seeds()


def _check_loaded(result: LoadedImage, max_side: int) -> None:
    assert isinstance(result, LoadedImage)
    assert result.array.dtype == np.uint8
    assert result.array.ndim == 3 and result.array.shape[2] == 3
    assert 1 <= max(result.array.shape[:2]) <= max_side
    assert all(isinstance(note, str) and "\n" not in note for note in result.notes)


def _load(data: bytes, max_side: int = 256) -> None:
    try:
        result = load_image(data, name="fuzz", max_pixels=FUZZ_MAX_PIXELS, max_side=max_side)
    except ImageError as exc:
        message = str(exc)
        assert message.startswith("fuzz: ") and "\n" not in message
        return
    _check_loaded(result, max_side)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with a few bytes flipped, a cut, or a splice: the realistic corruptions."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        # Header bytes matter most: bias positions to the first 64 bytes half of the time.
        limit = min(len(data), 64) if draw(st.booleans()) else len(data)
        data[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0:
        where = draw(st.integers(0, len(data)))
        data[where:where] = draw(st.binary(max_size=64))
    return bytes(data)


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_only_image_error_or_success(data: bytes) -> None:
    _load(data)


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(data=mutated(), max_side=st.sampled_from([1, 8, 256]))
def test_mutated_real_files_only_image_error_or_success(data: bytes, max_side: int) -> None:
    _load(data, max_side)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=150, deadline=None)
@given(magic=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM",
                              b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                              b"\x00\x00\x00\x18ftypheic", b"%PDF-", b"<svg"]),
       tail=st.binary(max_size=512))
def test_magic_prefix_with_garbage(magic: bytes, tail: bytes) -> None:
    _load(magic + tail)


# --- render --------------------------------------------------------------------------------

DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
          np.uint64, np.float16, np.float32, np.float64]


@st.composite
def maps(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    shape = (1, height, width) if draw(st.booleans()) else (height, width)
    return draw(hnp.arrays(dtype, shape))  # floats include NaN, +-Inf and subnormals


ranges = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@FUZZ
@given(data=maps(), vmin=ranges, vmax=ranges)
def test_normalize_any_map(data: np.ndarray, vmin: float | None, vmax: float | None) -> None:
    try:
        norm = normalize(data, vmin=vmin, vmax=vmax)
    except AttnvizError:
        assert vmin is not None or vmax is not None  # only a bad fixed range may be refused
        return
    values = norm.values
    assert values.dtype == np.float32 and values.shape == data.shape[-2:]
    assert np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0
    if norm.flat and vmin is None and vmax is None:
        assert not values.any()
    if norm.missing is not None:
        assert not values[norm.missing].any()


@FUZZ
@given(data=maps(), cmap=st.sampled_from(colormap_names()), alpha=st.floats(0.0, 1.0),
       height=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_overlay_any_map(
    data: np.ndarray, cmap: str, alpha: float, height: int, width: int, seed: int
) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = overlay(image, data, cmap=cmap, alpha=alpha)
    assert out.dtype == np.uint8 and out.shape == image.shape
    if alpha == 0.0:
        assert np.array_equal(out, image)


@FUZZ
@given(data=maps(), cmap=st.sampled_from(colormap_names()))
def test_colorize_and_resize_any_map(data: np.ndarray, cmap: str) -> None:
    out = colorize(data, cmap)
    assert out.dtype == np.uint8 and out.shape == data.shape[-2:] + (3,)
    resized = resize_map(np.nan_to_num(data.astype(np.float64)), (7, 5))
    assert resized.shape == (7, 5) and resized.dtype == np.float32


@FUZZ
@given(shape=st.lists(st.integers(0, 4), max_size=4),
       dtype=st.sampled_from(DTYPES + [np.complex64, np.str_, np.object_]),
       alpha=st.floats(allow_nan=True, allow_infinity=True),
       cmap=st.sampled_from(colormap_names() + ["", "Jet ", "rainbow"]))
def test_odd_arrays_and_settings_only_attnviz_errors(
    shape: list[int], dtype: type, alpha: float, cmap: str
) -> None:
    data = np.zeros(shape, dtype=dtype)
    image = np.zeros((3, 4, 3), np.uint8)
    for call in (lambda: normalize(data), lambda: colorize(data, cmap),
                 lambda: overlay(image, data, cmap=cmap, alpha=alpha)):
        try:
            call()
        except AttnvizError:
            pass
