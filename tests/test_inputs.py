"""load_image on every kind of upload we expect from strangers; files are made here, not stored."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from attnviz import inputs
from attnviz.errors import ImageError, SettingsError
from attnviz.inputs import MAX_PIXELS, MAX_SIDE, SUPPORTED_LABEL, LoadedImage, load_image

RNG = np.random.default_rng(0)


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo(width: int = 80, height: int = 60) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue: any rotation or flip is visible in the corners."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite IHDR's width/height and CRC: a tiny file that declares a huge image."""
    ihdr = bytearray(data[8 : 8 + 25])
    ihdr[8:16] = struct.pack(">II", width, height)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    return data[:8] + bytes(ihdr) + data[33:]


def assert_rgb(result: LoadedImage, height: int, width: int) -> None:
    assert isinstance(result, LoadedImage)
    assert result.array.dtype == np.uint8
    assert result.array.shape == (height, width, 3)
    assert result.array.flags.c_contiguous and result.array.flags.writeable


def error_of(data: bytes, **kwargs: object) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(data, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


# --- ordinary files and sources ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_supported_format_decodes(fmt: str) -> None:
    img = photo(33, 21)
    if fmt == "GIF":
        img = img.convert("P")
    result = load_image(encode(img, fmt), name=f"x.{fmt.lower()}")
    assert_rgb(result, 21, 33)
    assert result.original_size == (33, 21)
    assert result.notes == ()
    assert result.name == f"x.{fmt.lower()}"


def test_lossless_pixels_are_exact() -> None:
    img = photo()
    assert np.array_equal(load_image(encode(img, "PNG")).array, np.asarray(img))


def test_path_str_stream_and_upload_like_sources(tmp_path: Path) -> None:
    data = encode(photo(), "PNG")
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    assert load_image(path).name == "cat.png"
    assert load_image(str(path)).name == "cat.png"
    with path.open("rb") as fh:
        assert load_image(fh).name == "cat.png"
    stream = io.BytesIO(data)
    stream.read()  # a Streamlit rerun hands back an upload that was already read
    assert_rgb(load_image(stream, name="upload.png"), 60, 80)
    assert load_image(bytearray(data)).name == "image"
    assert load_image(memoryview(data), name="given").name == "given"


def test_missing_path_folder_and_wrong_source_type(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="pass bytes"):
        load_image(42)  # type: ignore[arg-type]


def test_text_mode_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(encode(photo(), "PNG"))
    with path.open("r", encoding="latin-1") as fh:
        with pytest.raises(ImageError, match="binary mode"):
            load_image(fh)  # type: ignore[arg-type]


def test_file_over_byte_limit_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(inputs, "MAX_BYTES", 1000)
    data = encode(photo(), "BMP")
    assert len(data) > 1000
    assert "MiB limit" in str(error_of(data))
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="big.bmp: the file is .* MiB limit"):
        load_image(path)


def test_nonsense_limits_are_a_settings_error() -> None:
    with pytest.raises(SettingsError):
        load_image(encode(photo(), "PNG"), max_side=0)


# --- broken and foreign files --------------------------------------------------------------


def test_zero_byte_file() -> None:
    assert str(error_of(b"", name="empty.jpg")) == "empty.jpg: the file is empty (0 bytes)"


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
def test_truncated_jpeg_is_refused_not_padded(fraction: float) -> None:
    data = encode(photo(), "JPEG")
    err = error_of(data[: int(len(data) * fraction)], name="cut.jpg")
    assert "JPEG data ends early" in str(err)
    assert err.__cause__ is not None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
def test_truncated_png_is_refused_not_padded(fraction: float) -> None:
    data = encode(photo(), "PNG")
    assert "PNG data ends early" in str(error_of(data[: int(len(data) * fraction)]))


def test_truncated_webp_says_truncated() -> None:
    data = encode(photo(), "WEBP")
    assert "ends early" in str(error_of(data[: len(data) // 2]))


def test_text_file_named_jpg() -> None:
    err = error_of(b"name,score\nalice,3\nbob,4\n", name="photo.jpg")
    assert str(err).startswith("photo.jpg: this is a text file, not an image")
    assert SUPPORTED_LABEL in str(err)


def test_pdf_named_jpg() -> None:
    err = error_of(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n", name="scan.jpg")
    assert "PDF document" in str(err) and "export the page as PNG" in str(err)


def test_svg_says_export_as_png() -> None:
    svg = (b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
           b'width="10" height="10"><rect width="10" height="10"/></svg>')
    assert "SVG is not supported; export it as PNG" in str(error_of(svg, name="logo.svg"))


def test_html_page_saved_instead_of_picture() -> None:
    assert "web page" in str(error_of(b"<!DOCTYPE html><html><body>x</body></html>"))


def test_heic_is_named_and_supported_formats_listed() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    err = str(error_of(heic, name="IMG_0001.HEIC"))
    assert "HEIC images are not supported" in err
    assert "JPEG, PNG, WebP, GIF, BMP, TIFF" in err


def test_avif_decodes_with_the_pinned_pillow() -> None:
    """Pillow's wheels carry libavif: AVIF (what browsers save many web pictures as) is a
    supported format, picked in the app and found in folders like the others."""
    assert inputs.AVIF_READABLE and "AVIF" in SUPPORTED_LABEL
    img = halves(40, 20)
    result = load_image(encode(img, "AVIF", quality=95), name="web.avif")
    assert_rgb(result, 20, 40)
    assert result.array[10, 5, 0] > 200 and result.array[10, 35, 2] > 200  # red left, blue right
    from attnviz.datasets.folder import IMAGE_SUFFIXES

    assert ".avif" in IMAGE_SUFFIXES


def test_avif_is_refused_by_name_where_pillow_cannot_read_it(monkeypatch) -> None:
    monkeypatch.setattr(inputs, "AVIF_READABLE", False)
    monkeypatch.setattr(inputs, "SUPPORTED_FORMATS",
                        tuple(f for f in inputs.SUPPORTED_FORMATS if f != "AVIF"))
    err = str(error_of(encode(photo(16, 16), "AVIF")))
    assert "AVIF images are not supported" in err


def test_a_damaged_avif_is_called_damaged_not_unsupported() -> None:
    data = encode(photo(16, 16), "AVIF")
    err = str(error_of(data[:40]))
    assert "starts like an AVIF but its header is damaged" in err


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "ICO"])
def test_other_pillow_formats_are_not_let_through(fmt: str) -> None:
    err = str(error_of(encode(photo(16, 16), fmt)))
    assert SUPPORTED_LABEL in err


def test_random_binary_garbage() -> None:
    assert "not a recognised image format" in str(error_of(bytes(range(256)) * 4))


def test_damaged_png_header_names_the_format() -> None:
    data = bytearray(encode(photo(), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: CRC no longer matches
    assert "starts like a PNG" in str(error_of(bytes(data)))


# --- limits --------------------------------------------------------------------------------


def test_decompression_bomb_header_refused_by_pillow_guard() -> None:
    bomb = patch_png_size(encode(Image.new("L", (1, 1)), "PNG"), 30000, 30000)
    assert len(bomb) < 100
    err = error_of(bomb, name="bomb.png")
    assert "possible decompression bomb" in str(err)
    assert "900 megapixels" in str(err)
    assert isinstance(err.__cause__, Image.DecompressionBombError)


def test_decompression_bomb_refused_by_our_limit_before_decoding() -> None:
    bomb = patch_png_size(encode(Image.new("L", (1, 1)), "PNG"), 12000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        err = str(error_of(bomb))
    assert "12000x9000" in err and "over the 100-megapixel limit" in err
    assert MAX_PIXELS == 100_000_000


def test_max_pixels_argument_is_honoured() -> None:
    err = str(error_of(encode(photo(100, 100), "PNG"), max_pixels=9999))
    assert "over the 0.009999-megapixel limit" in err


def test_large_real_jpeg_is_downscaled_not_refused() -> None:
    big = Image.new("RGB", (6000, 4000), (30, 90, 200))
    result = load_image(encode(big, "JPEG", quality=80), name="big.jpg")
    assert_rgb(result, 1365, 2048)
    assert result.original_size == (6000, 4000)
    assert "downscaled from 6000x4000 to 2048x1365" in result.notes
    assert np.abs(result.array.astype(int) - (30, 90, 200)).max() <= 3


def test_large_png_is_downscaled_with_custom_side() -> None:
    result = load_image(encode(photo(900, 300), "PNG"), max_side=300)
    assert_rgb(result, 100, 300)
    assert result.notes == ("downscaled from 900x300 to 300x100",)
    assert MAX_SIDE == 2048


def test_one_pixel_image() -> None:
    result = load_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert_rgb(result, 1, 1)
    assert result.array[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("size", [(1, 4000), (4000, 1), (3, 1000)])
def test_very_thin_images_are_accepted(size: tuple[int, int]) -> None:
    result = load_image(encode(Image.new("RGB", size, (9, 9, 9)), "PNG"))
    width, height = size
    scale = min(1.0, MAX_SIDE / max(size))
    assert result.array.shape == (max(1, round(height * scale)), max(1, round(width * scale)), 3)
    assert result.original_size == size


# --- colour modes and depth ----------------------------------------------------------------


def test_16bit_png_is_scaled_by_its_range_not_clipped() -> None:
    values = np.linspace(1000, 3000, 64 * 32).reshape(32, 64).astype(np.uint16)
    result = load_image(encode(Image.fromarray(values), "PNG"))
    assert_rgb(result, 32, 64)
    gray = result.array[..., 0]
    assert gray.min() == 0 and gray.max() == 255
    assert any(n.startswith("16-bit image scaled to 8-bit") for n in result.notes)


def test_16bit_tiff_is_scaled_by_its_range() -> None:
    values = np.linspace(40000, 41000, 200).reshape(10, 20).astype(np.uint16)
    result = load_image(encode(Image.fromarray(values), "TIFF"))
    assert result.array[..., 1].min() == 0 and result.array[..., 1].max() == 255
    assert any("16-bit" in n for n in result.notes)


def test_float32_tiff_is_scaled_by_its_range() -> None:
    values = np.linspace(-1.0, 3.0, 200, dtype=np.float32).reshape(10, 20)
    result = load_image(encode(Image.fromarray(values), "TIFF"))
    assert result.array[0, 0, 0] == 0 and result.array[-1, -1, 0] == 255
    assert any("floating-point image scaled to 8-bit by its range [-1, 3]" in n
               for n in result.notes)


def test_float_tiff_with_nan_and_inf_still_decodes() -> None:
    values = np.linspace(0.0, 1.0, 200, dtype=np.float32).reshape(10, 20)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    result = load_image(encode(Image.fromarray(values), "TIFF"))
    assert result.array[0, :3, 0].tolist() == [0, 255, 0]
    assert result.array[-1, -1, 0] == 255


def test_int32_tiff_mode_i() -> None:
    values = (np.arange(200, dtype=np.int32).reshape(10, 20) - 100) * 100000
    img = Image.fromarray(values)
    assert img.mode == "I"
    result = load_image(encode(img, "TIFF"))
    assert result.array[0, 0, 0] == 0 and result.array[-1, -1, 0] == 255


def test_flat_16bit_image_keeps_its_brightness() -> None:
    result = load_image(encode(Image.fromarray(np.full((4, 4), 65535, np.uint16)), "PNG"))
    assert (result.array == 255).all()


def test_16bit_rgb_png_is_reduced_with_a_note() -> None:
    width, height = 4, 3
    row = b"\x00" + np.full((width, 3), [0, 32896, 65535], ">u2").tobytes()
    data = (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(row * height)) + png_chunk(b"IEND", b""))
    result = load_image(data)
    assert result.array[0, 0].tolist() == [0, 128, 255]
    assert "16-bit colour image reduced to 8-bit" in result.notes


def test_cmyk_jpeg() -> None:
    result = load_image(encode(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG"))
    assert_rgb(result, 8, 16)
    assert "CMYK converted to RGB" in result.notes
    red = result.array[4, 8].astype(int)
    assert red[0] > 200 and red[1] < 50 and red[2] < 50


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    result = load_image(encode(img, "PNG", transparency=0))
    assert result.array[0, 0].tolist() == [255, 0, 0]
    assert result.array[1, 1].tolist() == [255, 255, 255]
    assert "transparency composited on white" in result.notes


def test_rgba_is_composited_on_white() -> None:
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 0)      # invisible red -> white
    arr[0, 1] = (0, 0, 255, 255)    # opaque blue
    arr[0, 2] = (0, 0, 0, 128)      # half-transparent black -> mid grey
    result = load_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert result.array[0, 0].tolist() == [255, 255, 255]
    assert result.array[0, 1].tolist() == [0, 0, 255]
    assert result.array[0, 2].tolist() == [127, 127, 127]
    assert "transparency composited on white" in result.notes


def test_opaque_rgba_has_no_transparency_note() -> None:
    result = load_image(encode(photo().convert("RGBA"), "PNG"))
    assert result.notes == ()


def test_grayscale_l_and_la_and_bilevel() -> None:
    gray = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    result = load_image(encode(gray, "PNG"))
    assert (result.array == np.asarray(gray)[..., None]).all()
    la = Image.merge("LA", (gray, Image.new("L", gray.size, 0)))
    assert (load_image(encode(la, "PNG")).array == 255).all()
    bilevel = Image.new("1", (5, 5), 1)
    assert (load_image(encode(bilevel, "PNG")).array == 255).all()


def test_animated_gif_first_frame_and_note() -> None:
    palette = [v for i in range(256) for v in (i * 20 % 256, 0, 0)]
    palette[3:6] = [255, 0, 0]
    frames = [Image.new("P", (8, 6), i) for i in range(1, 13)]  # twelve distinct frames
    for frame in frames:
        frame.putpalette(palette)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    result = load_image(data)
    assert "animated image: first frame of 12 shown" in result.notes
    assert result.array[0, 0].tolist() == [255, 0, 0]


def test_animated_webp_first_frame_and_note() -> None:
    frames = [Image.new("RGB", (8, 6), c) for c in ((0, 255, 0), (255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    result = load_image(data)
    assert "animated image: first frame of 3 shown" in result.notes
    assert result.array[0, 0].tolist() == [0, 255, 0]


def test_multipage_tiff_note() -> None:
    pages = [photo(8, 8), photo(8, 8)]
    result = load_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert "multi-page TIFF: first page of 2 shown" in result.notes


# --- orientation and metadata --------------------------------------------------------------


def with_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def test_exif_orientation_6_jpeg_is_shown_upright() -> None:
    data = encode(halves(), "JPEG", quality=95, exif=with_orientation(6))
    result = load_image(data)
    assert_rgb(result, 40, 20)  # stored 40 wide x 20 high; upright it is 20 wide x 40 high
    assert result.original_size == (20, 40)
    assert "EXIF orientation applied" in result.notes
    top, bottom = result.array[2, 10].astype(int), result.array[-3, 10].astype(int)
    assert top[0] > 200 and top[2] < 60       # left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_exif_orientation_8_png_is_shown_upright() -> None:
    result = load_image(encode(halves(), "PNG", exif=with_orientation(8)))
    assert_rgb(result, 40, 20)
    assert result.array[0, 0].tolist() == [0, 0, 255]    # right (blue) half is now on top
    assert result.array[-1, -1].tolist() == [255, 0, 0]


def test_exif_orientation_with_downscale_reports_upright_sizes() -> None:
    result = load_image(encode(halves(600, 300), "PNG", exif=with_orientation(6)), max_side=100)
    assert_rgb(result, 100, 50)
    assert result.original_size == (300, 600)
    assert "downscaled from 300x600 to 50x100" in result.notes


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_orientation_out_of_range_is_ignored(value: int) -> None:
    result = load_image(encode(halves(), "JPEG", exif=with_orientation(value)))
    assert_rgb(result, 20, 40)
    if value != 0:
        assert f"invalid EXIF orientation {value} ignored" in result.notes


GARBAGE_EXIF = b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + bytes(40)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_garbage_exif_block_is_ignored() -> None:
    assert_rgb(load_image(encode(halves(), "JPEG", exif=GARBAGE_EXIF)), 20, 40)


@pytest.mark.filterwarnings("error")
def test_pillow_warning_turned_error_still_ends_as_image_error() -> None:
    """Under ``-W error`` Pillow's EXIF warning is raised inside ``Image.open``: wrapped too."""
    with pytest.raises(ImageError, match="Corrupt EXIF"):
        load_image(encode(halves(), "JPEG", exif=GARBAGE_EXIF))


def test_huge_exif_and_icc_in_jpeg_decode_anyway() -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60000  # ImageDescription, close to the 64 KiB APP1 ceiling
    icc = RNG.integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()
    data = encode(photo(), "JPEG", exif=exif, icc_profile=icc)
    assert len(data) > 3 * 2**20
    assert_rgb(load_image(data), 60, 80)


def test_huge_icc_and_text_chunks_in_png_decode_anyway() -> None:
    icc = RNG.integers(0, 256, 2 * 2**20, dtype=np.uint8).tobytes()
    result = load_image(encode(photo(), "PNG", icc_profile=icc))
    assert_rgb(result, 60, 80)
    assert "oversized PNG metadata ignored" in result.notes
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "z" * (20 * 2**20), zip=True)  # compresses to ~20 KB
    result = load_image(encode(photo(), "PNG", pnginfo=info))
    assert_rgb(result, 60, 80)


def test_bogus_dpi_is_ignored() -> None:
    assert_rgb(load_image(encode(photo(), "JPEG", dpi=(0, 65535))), 60, 80)
    assert_rgb(load_image(encode(photo(), "PNG", dpi=(1e-9, 1e7))), 60, 80)
    assert_rgb(load_image(encode(photo(), "TIFF", dpi=(0, 0))), 60, 80)


def test_pillow_globals_are_left_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    load_image(encode(photo(), "PNG"))
    assert Image.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- bundled samples -----------------------------------------------------------------------


def test_bundled_samples_decode_and_are_licensed() -> None:
    from attnviz.samples import sample_paths

    paths = sample_paths()
    assert list(paths)[:2] == ["chelsea (cat)", "coffee (espresso)"]
    licences = (Path(__file__).resolve().parent.parent / "assets" / "samples"
                / "LICENSES.md").read_text(encoding="utf-8")
    for label, path in paths.items():
        assert path.stat().st_size < 200_000, label
        assert f"## {path.name}" in licences, label
        result = load_image(path)
        assert result.array.ndim == 3 and result.notes == (), label


def test_samples_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from attnviz.samples import sample_paths

    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "mine.png").write_bytes(encode(photo(4, 4), "PNG"))
    (tmp_path / "samples" / "LICENSES.md").write_text("x")
    monkeypatch.setenv("ATTNVIZ_ASSETS", str(tmp_path))
    assert sample_paths() == {"mine": tmp_path / "samples" / "mine.png"}
    monkeypatch.setenv("ATTNVIZ_ASSETS", str(tmp_path / "missing"))
    assert "chelsea (cat)" in sample_paths()
