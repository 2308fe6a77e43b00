"""File-system helpers shared by the loaders: listing, natural order, header reads and clear errors."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from .schema import ANOMALOUS, NORMAL, Record

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
NORMAL_FOLDER_NAMES = frozenset({"good", "ok", "normal"})
MASK_SUFFIXES = ("_mask", "")
_MAX_LISTED = 5


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value ("Part2" < "Part10"), ties broken by the plain name."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in parts), name


def require_dir(path: Path, what: str, layout: str) -> Path:
    """Return `path` if it is a folder, else raise `FileNotFoundError` naming it and the expected layout."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a folder.\nExpected layout:\n{layout}")
    return path


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder` in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` in natural order; other visible files are reported, not kept."""
    images, others = [], []
    for path in folder.iterdir():
        if not path.is_file() or path.name.startswith("."):
            continue
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
    if others:
        logger.warning("Ignoring %d non-image file(s) in %s (e.g. %s)", len(others), folder, sorted(others)[0].name)
    return sorted(images, key=lambda p: natural_key(p.name))


def read_image_size(path: Path) -> tuple[int, int]:
    """`(width, height)` from the file header; raises `ValueError` naming the file if it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from error


def mask_index(mask_dir: Path) -> dict[str, Path]:
    """Map file stem -> mask path for the images in `mask_dir` (empty when the folder is absent)."""
    return {p.stem: p for p in list_images(mask_dir)} if mask_dir.is_dir() else {}


def find_mask(index: dict[str, Path], image_stem: str) -> Path | None:
    """The mask for `image_stem`: `<stem>_mask.<ext>` (MVTec style) or `<stem>.<ext>` (BTAD style)."""
    for suffix in MASK_SUFFIXES:
        if image_stem + suffix in index:
            return index[image_stem + suffix]
    return None


def make_record(
    image_path: Path,
    *,
    anomalous: bool,
    class_name: str,
    defect_type: str,
    mask_path: Path | None = None,
) -> Record:
    """Read the image (and mask) headers and return a `Record`; a mask of another size is a `ValueError`."""
    image_size = read_image_size(image_path)
    if mask_path is not None:
        mask_size = read_image_size(mask_path)
        if mask_size != image_size:
            raise ValueError(
                f"Mask {str(mask_path)!r} is {mask_size[0]}x{mask_size[1]} (WxH) but its image "
                f"{str(image_path)!r} is {image_size[0]}x{image_size[1]}: a mask must match its image's size."
            )
    return Record(
        image_path=str(image_path.resolve()),
        label=ANOMALOUS if anomalous else NORMAL,
        class_name=class_name,
        defect_type=defect_type,
        image_size=image_size,
        mask_path=None if mask_path is None else str(mask_path.resolve()),
    )


def report_missing_masks(missing: Sequence[str], strict: bool, where: str) -> None:
    """Raise (strict) or warn about anomalous images that have no mask; they keep an all-zero mask."""
    if not missing:
        return
    listed = "\n  ".join(missing[:_MAX_LISTED]) + ("\n  ..." if len(missing) > _MAX_LISTED else "")
    message = f"{len(missing)} anomalous image(s) have no ground-truth mask ({where}):\n  {listed}"
    if strict:
        raise ValueError(
            f"{message}\nPass strict=False to keep them with an all-zero mask (a warning, not this error)."
        )
    warnings.warn(
        f"{message}\nThey are kept with an all-zero mask: pixel-level metrics will treat them as normal.",
        UserWarning,
        stacklevel=3,
    )
