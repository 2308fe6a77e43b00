"""File-system helpers shared by the loaders: listing, natural order, header reads and clear errors.

Nothing a loader passes over goes unnoticed: non-image files are logged; files named like masks in image folders,
images in nested folders a loader does not read, dangling symlinks and symlink loops are reported with a
`UserWarning` naming them. Symlinks to folders are followed, never into a folder already on the path (a loop).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..images import LOSSY_FORMATS, read_image_header
from .schema import ANOMALOUS, NORMAL, Record

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
NORMAL_FOLDER_NAMES = frozenset({"good", "ok", "normal"})
MASK_SUFFIXES = ("_mask", "")
MASK_NAME_SUFFIX = MASK_SUFFIXES[0]  # an image file whose stem ends so is a mask, wherever it lies
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


def check_classes(classes: Sequence[str] | None) -> None:
    """Raise `ValueError` unless `classes` is `None` or a list of class names (a plain string is not)."""
    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
        raise ValueError(f"classes must be a list of class names, got {classes!r}.")


def _listed(paths: Sequence[object]) -> str:
    shown = ", ".join(str(path) for path in paths[:_MAX_LISTED])
    return shown + (f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """`(files, folders)` directly in `folder`, visible ones only, natural order; broken symlinks are reported."""
    files, folders, broken = [], [], []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        try:
            mode = path.stat().st_mode
        except OSError as error:
            if path.is_symlink():
                kind = "symlink loop" if error.errno == errno.ELOOP else "dangling symlink"
                broken.append(f"{path} ({kind} -> {os.readlink(path)})")
            else:
                broken.append(f"{path} ({error.strerror})")
            continue
        if stat.S_ISDIR(mode):
            folders.append(path)
        elif stat.S_ISREG(mode):
            files.append(path)
    if broken:
        warnings.warn(
            f"Skipping {len(broken)} unreadable entr{'y' if len(broken) == 1 else 'ies'} in {str(folder)!r}: "
            f"{_listed(sorted(broken))}",
            UserWarning,
            stacklevel=3,
        )
    return sorted(files, key=lambda p: natural_key(p.name)), sorted(folders, key=lambda p: natural_key(p.name))


def _without_loops(folder: Path, folders: list[Path]) -> list[Path]:
    """`folders` (children of `folder`) minus those resolving to `folder` or an ancestor, which are reported."""
    base = folder.resolve()
    kept, loops = [], []
    for path in folders:
        target = path.resolve()
        (loops if target == base or target in base.parents else kept).append(path)
    if loops:
        warnings.warn(
            f"Skipping {len(loops)} symlink loop(s) in {str(folder)!r} (folders pointing to themselves or above): "
            f"{_listed([f'{p} -> {p.resolve()}' for p in loops])}",
            UserWarning,
            stacklevel=3,
        )
    return kept


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder` in natural order; a symlink back to `folder` or above is reported, skipped."""
    return _without_loops(folder, _entries(folder)[1])


def is_image_file(path: Path) -> bool:
    """Whether `path` has an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, *, masks: bool = False, leaf: bool = True) -> list[Path]:
    """Image files directly inside `folder` in natural order.

    Args:
        folder: the folder.
        masks: the folder holds masks; otherwise files named `<stem>_mask.<ext>` are masks in an image folder and
            are skipped with a warning.
        leaf: the loader reads no sub-folder of `folder`: images in sub-folders (at any depth) are reported with a
            warning naming each sub-folder and its image count.

    Other visible files are logged, not kept.
    """
    files, folders = _entries(folder)
    images = [path for path in files if is_image_file(path)]
    others = [path for path in files if not is_image_file(path)]
    if others:
        logger.warning("Ignoring %d non-image file(s) in %s (e.g. %s)", len(others), folder, others[0].name)
    if not masks:
        mask_like = [path for path in images if path.stem.lower().endswith(MASK_NAME_SUFFIX)]
        if mask_like:
            warnings.warn(
                f"Skipping {len(mask_like)} file(s) named like masks in the image folder {str(folder)!r} "
                f"({_listed([p.name for p in mask_like])}): they are not counted as images. Masks belong in "
                "ground_truth/<defect>/.",
                UserWarning,
                stacklevel=2,
            )
            images = [path for path in images if path not in mask_like]
    if leaf:
        nested = {
            str(sub): count
            for sub in _without_loops(folder, folders)
            if (count := count_images(sub, {folder.resolve()}))
        }
        if nested:
            warnings.warn(
                f"Not reading {sum(nested.values())} image(s) in nested folder(s) of {str(folder)!r}: "
                f"{_listed([f'{sub} ({count})' for sub, count in nested.items()])}. Only images directly in the "
                "folder are loaded; move them there (or into their own <defect> folder) to use them.",
                UserWarning,
                stacklevel=2,
            )
    return images


def count_images(folder: Path, seen: set[Path] | None = None) -> int:
    """Image files under `folder` at any depth, each folder counted once: symlink loops are not followed."""
    seen = set() if seen is None else seen
    total, stack = 0, [folder]
    while stack:
        current = stack.pop()
        real = current.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir():
                            stack.append(Path(entry.path))
                        elif entry.is_file() and is_image_file(Path(entry.name)):
                            total += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def read_image_size(path: Path) -> tuple[int, int]:
    """`(width, height)` as displayed, from the file header; raises `ValueError` naming the file if unreadable."""
    return read_image_header(path)[0]


def mask_index(mask_dir: Path) -> dict[str, Path]:
    """Map file stem -> mask path for the images in `mask_dir` (empty when the folder is absent)."""
    return {p.stem: p for p in list_images(mask_dir, masks=True)} if mask_dir.is_dir() else {}


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
    mask_lossy = False
    if mask_path is not None:
        mask_size, mask_format = read_image_header(mask_path)
        if mask_size != image_size:
            raise ValueError(
                f"Mask {str(mask_path)!r} is {mask_size[0]}x{mask_size[1]} (WxH) but its image "
                f"{str(image_path)!r} is {image_size[0]}x{image_size[1]}: a mask must match its image's size."
            )
        mask_lossy = mask_format in LOSSY_FORMATS
    return Record(
        image_path=str(image_path.resolve()),
        label=ANOMALOUS if anomalous else NORMAL,
        class_name=class_name,
        defect_type=defect_type,
        image_size=image_size,
        mask_path=None if mask_path is None else str(mask_path.resolve()),
        mask_lossy=mask_lossy,
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
