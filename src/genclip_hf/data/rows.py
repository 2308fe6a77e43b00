"""Decoding one row of the common schema with errors that name the row, so a reader can skip and report bad rows.

A dataset decodes its `image` and `mask` columns lazily, when a row is read; a truncated or corrupt file then
fails inside `datasets` with an error that does not name the file. Read the rows undecoded instead
(`undecoded(dataset)`) and decode each with `decode_row`:

    for row in undecoded(dataset):
        try:
            image, mask = decode_row(row)
        except RowDecodeError as error:
            skipped.append((error.image_path, str(error)))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
from PIL import Image

from ..images import open_image, to_binary_mask, to_rgb_image

_IMAGE_COLUMNS = {"image": "RGB", "mask": "L"}


class RowDecodeError(ValueError):
    """A row whose image or mask cannot be decoded; `image_path` is the row's `image_path` column."""

    def __init__(self, image_path: str, message: str):
        super().__init__(message)
        self.image_path = image_path


def undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with its `image` and `mask` columns left as `{"path", "bytes"}` dicts (no pixels are read)."""
    for column, mode in _IMAGE_COLUMNS.items():
        if column in dataset.column_names:
            dataset = dataset.cast_column(column, datasets.Image(mode=mode, decode=False))
    return dataset


def decode_row(row: Mapping[str, Any]) -> tuple[Image.Image, np.ndarray | None]:
    """The row's image and ground-truth mask, decoded with `genclip_hf.images` (orientation, bounded memory).

    Args:
        row: a row of the common schema; `image` (and `mask`, if present) either undecoded (`{"path", "bytes"}`,
            see `undecoded`) or already decoded (PIL images).

    Returns:
        `(image, mask)`: the RGB image (large JPEGs reduced, see `genclip_hf.images`) and a `(H, W)` bool mask at
        the image's size (resized with nearest neighbour when the image was reduced), or `None` without a `mask`.

    Raises:
        RowDecodeError: naming the row's `image_path`, for a missing, truncated or unreadable file, or a mask whose
            size differs from its image's.
    """
    image_path = str(row.get("image_path", "<row without image_path>"))
    image_name, mask_name = f"image of row {image_path!r}", f"mask of row {image_path!r}"
    try:
        image = to_rgb_image(_decoded(row["image"], image_name), image_name)
        if row.get("mask") is None:
            return image, None
        mask = to_binary_mask(_decoded(row["mask"], mask_name, draft=False), mask_name)
    except (OSError, ValueError) as error:
        raise RowDecodeError(image_path, f"Row {image_path!r} cannot be decoded: {error}") from error
    full_size = image.info.get("original_size", image.size)
    if mask.shape[::-1] == full_size and full_size != image.size:
        resized = Image.fromarray(mask).resize(image.size, Image.Resampling.NEAREST)
        mask = np.asarray(resized)
    if mask.shape[::-1] != image.size:
        raise RowDecodeError(
            image_path,
            f"Row {image_path!r}: its mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
            f"{image.width}x{image.height}; a mask must match its image's size.",
        )
    return image, mask


def _decoded(value: Any, name: str, draft: bool = True) -> Image.Image:
    """A PIL image from an undecoded `{"path", "bytes"}` cell (bytes first, as `datasets` does) or a PIL image."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return open_image(value["bytes"], name, draft=draft)
        if value.get("path"):
            return open_image(value["path"], f"{name} ({value['path']})", draft=draft)
    raise ValueError(f"{name} is neither an image nor a {{'path', 'bytes'}} entry: {value!r:.200}")
