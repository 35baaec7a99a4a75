"""Turn untrusted image bytes into an upright RGB uint8 array, or one clear ``ImageError``.

Uploads come from strangers, so decoding is the attack surface: only six well-trodden formats
are let through to Pillow (no EPS/Ghostscript, no exotic plugins), the declared pixel count is
checked before a single pixel is decoded, and truncated data is an error rather than a photo
silently padded with grey (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at ``False`` and never
touched, because it is process-wide). Everything a user can get wrong ends as ``ImageError``
with a one-line message meant to be shown as is; the original exception stays chained.

Limits (module constants, all overridable per call except ``MAX_BYTES``):

- ``MAX_BYTES``: files above 50 MiB are refused before decoding.
- ``MAX_PIXELS``: a file whose header declares more than 100 megapixels is refused as a possible
  decompression bomb. Pillow's own guard (``Image.MAX_IMAGE_PIXELS``, process-wide) refuses
  above twice its limit first, and that refusal is reported the same way; Pillow may also emit a
  ``DecompressionBombWarning`` for files between its limit (about 89.5 MP) and ours.
- ``MAX_SIDE``: larger images below the pixel limit are downscaled to 2048 px on the long side,
  not refused (JPEGs are decoded at reduced DCT scale first, which makes this cheap).
- ``MIN_SIDE``: 1 px. Tiny and very thin images are accepted; the model's preprocessing resizes.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, features

from attnviz.errors import ImageError, SettingsError

MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 100_000_000
MAX_SIDE = 2048
MIN_SIDE = 1

# Pillow format ids handed to ``Image.open(formats=...)``; MPO (phone JPEGs with extra
# pictures) arrives through the JPEG plugin and is therefore accepted too. AVIF (what browsers
# save many web pictures as, and some phones shoot) where this Pillow decodes it: its wheels
# carry libavif; a Pillow built without it refuses AVIF by name.
AVIF_READABLE: bool = bool(features.check("avif"))
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF",
                                      *(("AVIF",) if AVIF_READABLE else ()))
SUPPORTED_LABEL = "JPEG, PNG, WebP, GIF, BMP, TIFF" + (", AVIF" if AVIF_READABLE else "")
# File name endings of those formats, for upload pickers and folder scans.
SUPPORTED_SUFFIXES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff",
                                       *(("avif",) if AVIF_READABLE else ()))

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA_CHUNKS = {b"iCCP", b"zTXt", b"iTXt", b"tEXt", b"eXIf"}


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded upload plus what was done to it, so the UI can say so instead of hiding it.

    ``array`` is (H, W, 3) uint8, C-contiguous, writable and owned by the caller.
    ``original_size`` is (width, height) of the upright image before any downscaling.
    ``notes`` are short human-readable remarks ("EXIF orientation applied", ...).
    """

    array: np.ndarray
    name: str
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()
    format: str = ""


def load_image(
    source: bytes | str | Path | BinaryIO,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
) -> LoadedImage:
    """Decode ``source`` (bytes, a path, or a binary file object) into an RGB uint8 array.

    Raises ``ImageError`` for every problem with the image itself, whatever Pillow, zlib or
    numpy raised underneath; ``SettingsError`` only for nonsensical limits.
    """
    if max_pixels < 1 or max_side < MIN_SIDE:
        raise SettingsError(f"image limits must be positive, got max_pixels={max_pixels}, "
                            f"max_side={max_side}")
    data, derived = _read_source(source)
    label = name or derived or "image"
    try:
        return _decode(data, label, max_pixels, max_side)
    except ImageError:
        raise
    except Exception as exc:  # untrusted input: whatever the decoder raises is the file's fault
        raise ImageError(f"{label}: {_describe(exc, data)}") from exc


# --- reading the source -------------------------------------------------------------------


def _read_source(source: object) -> tuple[bytes, str]:
    """Get the raw bytes (at most MAX_BYTES) and a display name from whatever we were given."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_size(len(data), "image")
        return data, ""
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source))
    if hasattr(source, "read") or hasattr(source, "getvalue"):
        return _read_stream(source)
    raise ImageError(f"cannot read an image from a {type(source).__name__}; "
                     "pass bytes, a file path or a binary file object")


def _read_path(path: Path) -> tuple[bytes, str]:
    label = path.name or str(path)
    try:
        if not path.exists():
            raise ImageError(f"{label}: file not found ({path})")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image file ({path})")
        _check_byte_size(path.stat().st_size, label)
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except ImageError:
        raise
    except (OSError, ValueError) as exc:
        raise ImageError(f"{label}: cannot read the file ({exc.__class__.__name__}: "
                         f"{_one_line(exc)})") from exc
    _check_byte_size(len(data), label)
    return data, label


def _read_stream(stream: object) -> tuple[bytes, str]:
    """Prefer ``getvalue()``: Streamlit re-runs hand back the same, already-read upload object."""
    raw_name = getattr(stream, "name", None)
    label = Path(raw_name).name if isinstance(raw_name, str) and raw_name else ""
    try:
        getvalue = getattr(stream, "getvalue", None)
        data = getvalue() if callable(getvalue) else stream.read(MAX_BYTES + 1)  # type: ignore[attr-defined]
    except Exception as exc:  # a broken stream is still a user-facing read failure
        raise ImageError(f"{label or 'image'}: cannot read the upload ({exc.__class__.__name__}: "
                         f"{_one_line(exc)})") from exc
    if isinstance(data, str):
        raise ImageError(f"{label or 'image'}: the file was opened in text mode; open it "
                         "in binary mode ('rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"{label or 'image'}: the upload did not yield bytes "
                         f"(got {type(data).__name__})")
    data = bytes(data)
    _check_byte_size(len(data), label or "image")
    return data, label


def _check_byte_size(size: int, label: str) -> None:
    if size > MAX_BYTES:
        raise ImageError(f"{label}: the file is {size / 2**20:.1f} MiB, over the "
                         f"{MAX_BYTES / 2**20:.0f} MiB limit; save a smaller version of it")


# --- decoding -----------------------------------------------------------------------------


def _decode(data: bytes, label: str, max_pixels: int, max_side: int) -> LoadedImage:
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes)")
    try:
        return _decode_once(data, label, max_pixels, max_side, [])
    except ValueError as exc:
        if not (data.startswith(_PNG_MAGIC) and "MAX_TEXT" in str(exc)):
            raise
    # Oversized metadata (a huge ICC profile or text chunk) must not hide the pixels.
    stripped = _strip_png_metadata(data)
    return _decode_once(stripped, label, max_pixels, max_side, ["oversized PNG metadata ignored"])


def _decode_once(
    data: bytes, label: str, max_pixels: int, max_side: int, notes: list[str]
) -> LoadedImage:
    img = _open(data, label)
    fmt = img.format or _guess_format(data)
    width, height = img.size
    _check_declared_size(width, height, label, max_pixels)
    notes.extend(_frame_notes(img))
    if _is_16bit_colour(img):
        notes.append("16-bit colour image reduced to 8-bit")
    if fmt in ("JPEG", "MPO") and max(width, height) > max_side:
        img.draft(None, _fit(width, height, max_side))  # decode at 1/2, 1/4 or 1/8 scale
    img.load()
    orientation = _orientation(img, notes)

    stored_mode = img.mode
    img = _to_resizable_mode(img, notes)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    shown = _upright(img.size, orientation)
    if shown != (width, height):
        notes.append(f"downscaled from {width}x{height} to {shown[0]}x{shown[1]}")
    rgb = _to_rgb_array(img, stored_mode, notes)
    if orientation in _TRANSPOSE:
        rgb = np.ascontiguousarray(_transpose_array(rgb, orientation))
        notes.append("EXIF orientation applied")
    return LoadedImage(array=rgb, name=label, original_size=(width, height),
                       notes=tuple(notes), format=fmt)


def _open(data: bytes, label: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.UnidentifiedImageError as exc:
        raise ImageError(f"{label}: {_unsupported_message(data, label)}") from exc


def _check_declared_size(width: int, height: int, label: str, max_pixels: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"{label}: the image declares no pixels ({width}x{height}); "
                         "the file is corrupt")
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: refused: the file declares {width}x{height} pixels "
            f"({width * height / 1e6:.0f} megapixels), over the {max_pixels / 1e6:g}-megapixel "
            "limit (possible decompression bomb); resize it before uploading")


def _frame_notes(img: Image.Image) -> list[str]:
    """Say how much of a multi-frame file is not shown; counting frames may itself fail."""
    try:
        frames = int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a broken later frame must not hide the first one
        return ["animated or multi-page image: first frame shown"]
    if frames <= 1:
        return []
    if img.format == "TIFF":
        return [f"multi-page TIFF: first page of {frames} shown"]
    if img.format == "MPO":
        return [f"multi-picture JPEG: first of {frames} pictures shown"]
    return [f"animated image: first frame of {frames} shown"]


def _is_16bit_colour(img: Image.Image) -> bool:
    """Pillow reads 16-bit RGB(A) as 8-bit by keeping the high byte; tell the user."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    try:
        return any(";16" in str(tile.args) for tile in img.tile)
    except Exception:  # noqa: BLE001 - only decides whether to add a note
        return False


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(img: Image.Image, notes: list[str]) -> int:
    """Read the EXIF orientation; absurd or unreadable EXIF means 'as stored', not an error."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        orientation = int(value)
    except Exception:  # noqa: BLE001 - absurd EXIF of any kind means "as stored"
        notes.append("EXIF metadata unreadable: orientation not applied")
        return 1
    if orientation != 1 and orientation not in _TRANSPOSE:
        notes.append(f"invalid EXIF orientation {orientation} ignored")
        return 1
    return orientation


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def _transpose_array(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF transposes on the final (small) array: cheaper than on the full-size image."""
    if orientation == 2:
        return rgb[:, ::-1]
    if orientation == 3:
        return rgb[::-1, ::-1]
    if orientation == 4:
        return rgb[::-1]
    if orientation == 5:
        return rgb.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(rgb, k=-1)
    if orientation == 7:
        return np.rot90(rgb, k=2).transpose(1, 0, 2)
    return np.rot90(rgb, k=1)  # 8


def _to_resizable_mode(img: Image.Image, notes: list[str]) -> Image.Image:
    """Bring every mode to one that resizes smoothly and keeps depth and alpha for later."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I;16"):
        return img.convert("I")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return img.convert("RGB")
    if mode == "La":
        return img.convert("LA")
    if mode in ("RGBa", "RGBX"):
        return img.convert("RGBA" if mode == "RGBa" else "RGB")
    notes.append(f"{mode} colour converted to RGB")
    return img.convert("RGB")


def _to_rgb_array(img: Image.Image, stored_mode: str, notes: list[str]) -> np.ndarray:
    if img.mode in ("I", "F"):
        gray = _scale_to_8bit(np.asarray(img), stored_mode, notes)
        return np.repeat(gray[:, :, None], 3, axis=2)
    arr = np.asarray(img)
    if img.mode in ("LA", "RGBA"):
        arr = _composite_on_white(arr, notes)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    # np.asarray(PIL image) is a read-only view; callers (torch.from_numpy) want their own.
    return np.array(arr, dtype=np.uint8, order="C", copy=not arr.flags.writeable or None)


def _scale_to_8bit(values: np.ndarray, stored_mode: str, notes: list[str]) -> np.ndarray:
    """Stretch the actual value range to 0..255: clipping would turn most 16-bit photos white."""
    if stored_mode.startswith("I;16"):
        kind = "16-bit"
    elif stored_mode == "F":
        kind = "floating-point"
    else:
        kind = "32-bit integer"
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        notes.append(f"{kind} image has no finite values: shown black")
        return np.zeros(data.shape, np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if hi > lo:
        scaled = (np.where(finite, data, lo) - lo) * (255.0 / (hi - lo))
        scaled[np.isposinf(data)] = 255.0
        notes.append(f"{kind} image scaled to 8-bit by its range [{lo:g}, {hi:g}]")
    else:
        top = 65535.0 if kind == "16-bit" else 255.0
        scaled = np.full(data.shape, min(max(lo, 0.0), top) * 255.0 / top)
        notes.append(f"{kind} image is one flat value ({lo:g})")
    if not finite.all():
        notes.append("non-finite pixel values shown as black (NaN, -inf) or white (+inf)")
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_white(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    alpha = arr[..., -1:].astype(np.uint16)
    colour = arr[..., :-1].astype(np.uint16)
    if alpha.min() == 255:
        return arr[..., :-1]
    notes.append("transparency composited on white")
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _strip_png_metadata(data: bytes) -> bytes:
    """Drop ancillary metadata chunks so Pillow's metadata size guard no longer trips."""
    out = bytearray(_PNG_MAGIC)
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if kind not in _PNG_METADATA_CHUNKS:
            out += data[pos:end]
        pos = end
    return bytes(out)


# --- messages -----------------------------------------------------------------------------

_FTYP_BRANDS = {
    b"avif": "AVIF", b"avis": "AVIF",
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC",
    b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
}


def _guess_format(data: bytes) -> str:
    """Name the container from its magic bytes, for messages only (Pillow decides for real)."""
    head = data[:16]
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "")
    if head.startswith(b"BM"):
        return "BMP"
    return ""


def _unsupported_message(data: bytes, label: str) -> str:
    """Say what the file actually is when we can tell; that is the fix the user needs."""
    supported = f"supported formats: {SUPPORTED_LABEL}"
    head = data[:4096]
    guessed = _guess_format(data)
    if guessed in ("HEIC", "HEIF") or (guessed == "AVIF" and not AVIF_READABLE):
        return (f"{guessed} images are not supported; convert it to JPEG or PNG "
                f"(on iPhone: Settings > Camera > Formats > Most Compatible); {supported}")
    if guessed and guessed != "BMP":
        article = "an" if guessed[0] in "AEIOU" else "a"
        return (f"the file starts like {article} {guessed} but its header is damaged or "
                f"unreadable; export it again ({supported})")
    if head.startswith(b"%PDF"):
        return f"this is a PDF document, not an image; export the page as PNG or JPEG ({supported})"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return f"SVG is not supported; export it as PNG ({supported})"
    if text.startswith((b"<!doctype html", b"<html")):
        return ("this is a web page (HTML), not an image; save the picture itself "
                f"({supported})")
    if _looks_like_text(head):
        return f"this is a text file, not an image ({supported})"
    if guessed == "BMP":
        return f"the file starts like a BMP but its header is damaged; re-export it ({supported})"
    return f"not a recognised image format ({supported})"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # The 4 KiB cut may split a multi-byte character; a real binary fails much earlier.
        try:
            decoded = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in decoded)
    return printable >= 0.95 * max(1, len(decoded))


def _describe(exc: BaseException, data: bytes) -> str:
    """Turn a decoder exception into the line a user can act on."""
    what = _guess_format(data) or "image"
    text = _one_line(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        match = re.search(r"\((\d+) pixels\)", text)
        size = f" ({int(match.group(1)) / 1e6:.0f} megapixels)" if match else ""
        return (f"refused: the file declares too many pixels{size} (possible decompression "
                "bomb); resize it before uploading")
    if isinstance(exc, MemoryError):
        return "not enough memory to decode this image; try a smaller one"
    lowered = text.lower()
    truncated = "truncated" in lowered or "broken data stream" in lowered or _riff_short(data)
    if isinstance(exc, EOFError) or truncated:
        return (f"the {what} data ends early: the file is truncated or incomplete; "
                "download or export it again")
    if isinstance(exc, zlib.error):
        return f"the {what} data is corrupt (compressed stream is damaged); export it again"
    return (f"the {what} file is corrupt or uses a variant that cannot be decoded "
            f"({exc.__class__.__name__}: {text})")


def _riff_short(data: bytes) -> bool:
    """WebP's decoder only says 'could not create decoder'; its RIFF header knows the length."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return len(data) < 8 + int.from_bytes(data[4:8], "little")


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
