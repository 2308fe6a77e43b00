"""Turn a list of `Record`s into a `datasets.Dataset` of the common schema, lazily and reproducibly.

Whole-file images and masks that are already binary "L" are stored as paths only (`bytes` is `None`):
the Arrow cache then holds a few hundred bytes per row and pixels are decoded when a row is read.
Only derived pixels are stored as PNG bytes: all-zero masks of normal images, masks that need
binarising (palette, {0, 1} or lossy JPEG files) and crops. The Arrow cache is memory-mapped, so RSS does not
grow with the number of rows either way.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import datasets
import numpy as np
from PIL import Image

from ..images import LOSSY_MASK_THRESHOLD, binarize_mask_values, open_image
from .schema import FEATURES, Record
from .summary import format_summary, summarize_records

logger = logging.getLogger(__name__)

# Bump when the rows produced from the same records change, so old caches are not reused.
_ROW_FORMAT_VERSION = 2


def build_dataset(
    records: Sequence[Record], *, split: str, description: str, cache_dir: str | None = None
) -> datasets.Dataset:
    """Build the dataset for `records` (in the given order) and log its per-class counts.

    Args:
        records: the images, in the order the rows should have.
        split: split name given to the dataset ("train", "test").
        description: what was loaded, for the log and error messages (e.g. "mvtec test").
        cache_dir: folder for the Arrow cache; default: the `datasets` cache.

    Returns:
        A `datasets.Dataset` with `schema.FEATURES`, one row per record.
    """
    if not records:
        raise ValueError(f"No images found for {description}.")
    logger.info("%s\n%s", description, format_summary(summarize_records(records)))
    lossy = sorted({record.mask_path for record in records if record.mask_lossy and record.mask_path})
    if lossy:
        warnings.warn(
            f"{description}: {len(lossy)} ground-truth mask(s) are JPEG files (lossy), e.g. {lossy[0]!r}: they are "
            f"binarised at grey value >= {LOSSY_MASK_THRESHOLD} instead of 'any non-zero', which would count "
            "compression noise around a defect as defect.",
            UserWarning,
            stacklevel=3,
        )
    return datasets.Dataset.from_generator(
        _generate_rows,
        features=FEATURES,
        gen_kwargs={"records": tuple(records)},
        split=datasets.NamedSplit(split),
        fingerprint=_fingerprint(records, split),
        cache_dir=cache_dir,
    )


def _fingerprint(records: Sequence[Record], split: str) -> str:
    """Hash of the records plus size and mtime of every file they read, so edited files rebuild the cache."""
    digest = hashlib.sha256(f"genclip-data-v{_ROW_FORMAT_VERSION}/{split}".encode())
    for record in records:
        stamps = [_file_stamp(path) for path in (record.image_path, record.mask_path) if path is not None]
        digest.update(json.dumps([asdict(record), stamps]).encode())
    return digest.hexdigest()


def _file_stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _generate_rows(records: tuple[Record, ...]) -> Iterator[dict]:
    for record in records:
        yield {
            "image": _image_value(record),
            "mask": _mask_value(record),
            "label": record.label,
            "class_name": record.class_name,
            "defect_type": record.defect_type,
            "image_path": record.row_id,
        }


def _image_value(record: Record) -> dict:
    if record.crop_box is None:
        return {"path": record.image_path, "bytes": None}
    with open_image(record.image_path, draft=False) as image:
        return {"path": None, "bytes": _png_bytes(image.crop(record.crop_box))}


def _mask_value(record: Record) -> dict:
    if record.mask_path is None:
        return {"path": None, "bytes": _zero_mask_png(record.size)}
    try:
        with open_image(record.mask_path, draft=False) as mask:
            if record.crop_box is not None:
                mask = mask.crop(record.crop_box)
            values = np.asarray(mask.convert("L"))
            if record.crop_box is None and mask.mode == "L" and np.isin(values, (0, 255)).all():
                return {"path": record.mask_path, "bytes": None}
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Cannot read mask file {record.mask_path!r} of image {record.image_path!r}: {error}"
        ) from error
    binary = Image.fromarray(np.where(binarize_mask_values(values, record.mask_lossy), 255, 0).astype(np.uint8))
    return {"path": None, "bytes": _png_bytes(binary)}


@functools.lru_cache(maxsize=64)
def _zero_mask_png(size: tuple[int, int]) -> bytes:
    return _png_bytes(Image.new("L", size, 0))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
