"""Reading images and masks for every reader of this package: files, PIL images and arrays to 8-bit RGB, and
ground-truth masks to booleans.

Files are decoded in their displayed orientation and with bounded memory:
- EXIF orientation is applied (`ImageOps.exif_transpose`), so sizes and maps are those of the photo as displayed.
- A JPEG whose shorter side is at least `2 * DRAFT_MIN_SIDE` is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
  (`Image.draft`): the smallest scale that keeps its shorter side >= `DRAFT_MIN_SIDE` (1024 px, above the
  <= ~1000 px detector inputs). A map computed for such an image has that reduced size; the file's own
  `(width, height)` is kept in `image.info["original_size"]`. Other formats cannot be decoded reduced.
- At most `MAX_IMAGE_PIXELS` pixels are decoded (after the JPEG reduction); a larger file is a `ValueError`
  naming it, its size and the limit.

Masks: any non-zero pixel is anomalous (grey, palette such as KolektorSDD's BMPs, {0, 1} or {0, 255} files),
except in lossy files (JPEG), whose compression noise turns the zeros around a defect into small non-zero values:
those are binarised at `LOSSY_MASK_THRESHOLD` (128), with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

ImageLike = Image.Image | np.ndarray | str | Path

MAX_IMAGE_PIXELS = 50_000_000
DRAFT_MIN_SIDE = 1024
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
LOSSY_MASK_THRESHOLD = 128
_JPEG_SCALES = (8, 4, 2)
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def open_image(source: str | Path | bytes, name: str | None = None, *, draft: bool = True) -> Image.Image:
    """Decode an image file (a path, or the bytes of a file), oriented, reduced (large JPEGs) and size-checked.

    Args:
        source: the file's path or its encoded bytes.
        name: what to call it in errors (default: the path, or "image bytes").
        draft: decode large JPEGs at reduced size (module docstring); False decodes every pixel (masks).

    Returns:
        The loaded PIL image in the file's own mode; `image.format` is the file's format.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: naming the file, when it is not an image PIL can read, is truncated or corrupt, has zero size
            or has more than `MAX_IMAGE_PIXELS` pixels.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "image bytes")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"Image file {label!r} does not exist.")
        if path.is_dir():
            raise ValueError(f"{label!r} is a folder, not an image file.")
        if path.stat().st_size == 0:
            raise ValueError(f"Image file {label!r} is empty (0 bytes).")
        opener: str | Path | io.BytesIO = path
    else:
        if len(source) == 0:
            raise ValueError(f"{label} are empty (0 bytes).")
        opener = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            image = Image.open(opener)
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
        raise ValueError(_too_large(label, count)) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{label!r} is not an image file PIL can read: {error}") from None
    try:
        return _decode(image, label, draft)
    except BaseException:
        image.close()
        raise


def _decode(image: Image.Image, label: str, draft: bool) -> Image.Image:
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"Image {label!r} has zero size ({width}x{height}).")
    original = _oriented((width, height), _orientation(image))
    if draft and image.format in LOSSY_FORMATS and min(width, height) >= 2 * DRAFT_MIN_SIDE:
        shorter = min(width, height)
        image.draft(image.mode, (width * DRAFT_MIN_SIDE // shorter, height * DRAFT_MIN_SIDE // shorter))
    if image.width * image.height > MAX_IMAGE_PIXELS:
        size = f"{original[0]}x{original[1]} = {original[0] * original[1]:,} pixels"
        if image.size != (width, height):
            size += f", {image.width * image.height:,} at the reduced JPEG scale"
        raise ValueError(_too_large(label, size))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ValueError(f"Cannot decode image {label!r} (truncated or corrupt file?): {error}") from None
    ImageOps.exif_transpose(image, in_place=True)
    if image.size != original:
        image.info["original_size"] = original
    return image


def _too_large(label: str, size: str) -> str:
    return (
        f"Image {label!r} is too large to decode: {size}; at most {MAX_IMAGE_PIXELS:,} pixels are decoded "
        "(genclip_hf.images.MAX_IMAGE_PIXELS). Downscale the file first."
    )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent), read without decoding pixels (PNG's late eXIf chunk is not read)."""
    if "exif" not in image.info and image.format != "TIFF":
        return 1
    return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def _oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _TRANSPOSING_ORIENTATIONS else size


def read_image_header(path: str | Path) -> tuple[tuple[int, int], str | None]:
    """`((width, height), format)` of an image file as displayed (EXIF orientation applied), from its header only.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: naming the file, when it is not a readable image or has zero size.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size, image_format = _oriented(image.size, _orientation(image)), image.format
    except Image.DecompressionBombError as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from None
    if 0 in size:
        raise ValueError(f"Image file {str(path)!r} has zero size ({size[0]}x{size[1]}).")
    return size, image_format


def to_rgb_image(image: ImageLike, name: str = "image") -> Image.Image:
    """Convert a path, a PIL image or a numpy array to an 8-bit RGB PIL image in its displayed orientation.

    Paths are decoded by `open_image` (bounded memory, large JPEGs reduced). Grayscale, palette, RGBA and CMYK
    images are converted; 16-bit and float images are rescaled by their dtype's range (uint16 by 65535, float in
    [0, 1]). Arrays must be `(H, W)` or `(H, W, C)` with C in {1, 3, 4}; negative integers and floats outside [0, 1]
    (or NaN) are refused.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: naming `name` when the input cannot be an image (shape, dtype, values, zero size, unreadable
            file).
    """
    if isinstance(image, (str, Path)):
        label = _file_label(image, name, "image")
        return to_rgb_image(open_image(image, label), label)
    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise ValueError(f"{name} has zero size ({image.width}x{image.height}).")
        if _orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        if image.mode in _HIGH_BIT_DEPTH_MODES:
            return to_rgb_image(np.asarray(image), name)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            raise ValueError(
                f"{name} must be an array of shape (H, W) or (H, W, C) with C in {{1, 3, 4}} channels, "
                f"got shape {image.shape}."
            )
        if 0 in array.shape[:2]:
            raise ValueError(f"{name} has zero size (shape {image.shape}).")
        if array.dtype == np.uint8:
            scaled = array
        elif array.dtype == np.uint16:
            scaled = (array.astype(np.float32) / 65535.0 * 255.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.integer):
            if array.min() < 0:
                raise ValueError(f"{name} has negative values (min {array.min()}); expected pixel values >= 0.")
            scaled = (array.astype(np.float64) / max(float(array.max()), 1.0) * 255.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_:
            values = array.astype(np.float32)
            if not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
                finite = values[np.isfinite(values)]
                found = f"values in [{finite.min()}, {finite.max()}]" if finite.size else "no finite value"
                nan = ", with NaN or infinite values" if finite.size < values.size else ""
                raise ValueError(
                    f"{name} is a float image with {found}{nan}; expected finite values in [0, 1] "
                    "(divide 0-255 pixels by 255, or pass uint8)."
                )
            scaled = (values * 255.0).round().astype(np.uint8)
        else:
            raise ValueError(f"{name} has unsupported dtype {array.dtype}; expected an integer or float image.")
        return Image.fromarray(scaled).convert("RGB")
    raise ValueError(f"{name} must be a PIL image, a path or a numpy array, got {type(image).__name__}.")


def binarize_mask_values(values: np.ndarray, lossy: bool) -> np.ndarray:
    """`(H, W)` uint8 grey values -> bool: any non-zero pixel, or `>= LOSSY_MASK_THRESHOLD` for a lossy file."""
    return values >= LOSSY_MASK_THRESHOLD if lossy else values > 0


def to_binary_mask(mask: ImageLike, name: str = "mask") -> np.ndarray:
    """A ground-truth mask as a `(H, W)` bool array in its displayed orientation.

    Accepted: mask files and PIL images (any non-zero grey value is anomalous, palette images through their grey
    values; JPEG files are binarised at `LOSSY_MASK_THRESHOLD` with a warning naming the file), and arrays of
    `(H, W)` or `(H, W, 1)`: booleans, non-negative integers (any non-zero is anomalous) or finite floats in
    [0, 1] (any non-zero is anomalous).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: naming `name`, for another shape, negative integers, floats outside [0, 1] or NaN, or an
            unreadable file.
    """
    if isinstance(mask, (str, Path)):
        label = _file_label(mask, name, "mask")
        return to_binary_mask(open_image(mask, label, draft=False), label)
    if isinstance(mask, Image.Image):
        if _orientation(mask) != 1:
            mask = ImageOps.exif_transpose(mask)
        if mask.mode in _HIGH_BIT_DEPTH_MODES:
            return to_binary_mask(np.asarray(mask), name)
        lossy = mask.format in LOSSY_FORMATS
        if lossy:
            warnings.warn(
                f"Mask {name!r} is a {mask.format} file (lossy): binarised at grey value >= {LOSSY_MASK_THRESHOLD} "
                "instead of 'any non-zero', which would count compression noise as defect. Store masks as PNG.",
                UserWarning,
                stacklevel=2,
            )
        return binarize_mask_values(np.asarray(mask.convert("L")), lossy)
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{name} must be a PIL image, a path or a numpy array, got {type(mask).__name__}.")
    array = _single_channel(mask, name)
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.integer):
        if array.size and array.min() < 0:
            raise ValueError(f"{name} has negative values (min {array.min()}); expected a mask of values >= 0.")
        return array > 0
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            finite = array[np.isfinite(array)]
            found = f"range [{finite.min()}, {finite.max()}]" if finite.size else "no finite value"
            nan = ", with NaN or infinite values" if not np.isfinite(array).all() else ""
            raise ValueError(
                f"{name} is a float mask with {found}{nan}; expected finite values in [0, 1] "
                "(or booleans, or integer grey values)."
            )
        return array > 0
    raise ValueError(f"{name} has unsupported dtype {array.dtype}; expected bool, integer or float values.")


def _file_label(path: str | Path, name: str, default: str) -> str:
    """How errors call a file given as `name`: its path, after the caller's name when there is one."""
    return str(path) if name in (default, str(path)) else f"{name} ({path})"


def _single_channel(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a single-channel mask of shape (H, W), got shape {array.shape}.")
    return array


def image_content_hash(image: Image.Image) -> str:
    """SHA-256 of an image's decoded RGB pixels and size (independent of file name and encoding)."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


__all__ = [
    "image_content_hash",
    "DRAFT_MIN_SIDE",
    "LOSSY_FORMATS",
    "LOSSY_MASK_THRESHOLD",
    "MAX_IMAGE_PIXELS",
    "ImageLike",
    "binarize_mask_values",
    "open_image",
    "read_image_header",
    "to_binary_mask",
    "to_rgb_image",
]
