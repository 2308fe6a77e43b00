"""A user's own images: a plain folder tree, or the AnomalyCLIP / AdaCLIP `meta.json` format."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from .builder import build_dataset
from .files import (
    NORMAL_FOLDER_NAMES,
    check_classes,
    find_mask,
    list_images,
    make_record,
    mask_index,
    natural_key,
    report_missing_masks,
    require_dir,
    subfolders,
)

FOLDER_LAYOUT = """  <root>/good/<name>.png          normal images (the folder may also be named ok or normal)
  <root>/<defect>/<name>.png      anomalous images, one folder per defect type
  <root>/ground_truth/<defect>/<name>_mask.png   optional masks (or <name>.png); non-zero = defect"""

META_LAYOUT = """  {"train": {...}, "test": {"<class>": [{"img_path": "<class>/test/crack/000.png",
      "mask_path": "<class>/ground_truth/crack/000_mask.png", "cls_name": "<class>",
      "specie_name": "crack", "anomaly": 1}, ...]}}   (paths relative to the json's folder)"""

_META_KEYS = ("img_path", "mask_path", "cls_name", "specie_name", "anomaly")


def load_folder(
    root: str | Path,
    *,
    class_name: str | None = None,
    mask_dir: str | Path | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load a user's folder: sub-folders good/ok/normal are normal, any other sub-folder is a defect type.

    Args:
        root: the folder (layout in `FOLDER_LAYOUT`).
        class_name: class name of every row; default: the folder's name.
        mask_dir: folder holding `<defect>/<stem>_mask.<ext>` masks; default: `<root>/ground_truth` when it
            exists. Without masks, anomalous images get all-zero masks (image-level use only) and a warning.
        strict: with masks present, an anomalous image without one is an error (False: a warning).
        cache_dir: folder for the Arrow cache.

    Returns:
        The common-schema dataset, sorted by defect folder then file name.
    """
    root = require_dir(Path(root), "image folder", FOLDER_LAYOUT)
    if mask_dir is not None:
        mask_root: Path | None = require_dir(Path(mask_dir), "mask folder", FOLDER_LAYOUT)
    else:
        mask_root = root / "ground_truth" if (root / "ground_truth").is_dir() else None
    loose = list_images(root, leaf=False)
    if loose:
        raise ValueError(
            f"{len(loose)} image(s) lie directly in {str(root)!r} (e.g. {loose[0].name}); put them in a "
            f"good/ or <defect>/ sub-folder so their state is known.\nExpected layout:\n{FOLDER_LAYOUT}"
        )
    name = class_name or root.name
    state_dirs = [d for d in subfolders(root) if mask_root is None or d.resolve() != mask_root.resolve()]
    records, missing = [], []
    for state_dir in state_dirs:
        anomalous = state_dir.name.lower() not in NORMAL_FOLDER_NAMES
        masks = mask_index(mask_root / state_dir.name) if anomalous and mask_root is not None else {}
        for image_path in list_images(state_dir):
            mask_path = find_mask(masks, image_path.stem) if anomalous else None
            if anomalous and mask_path is None:
                missing.append(str(image_path))
            records.append(
                make_record(
                    image_path,
                    anomalous=anomalous,
                    class_name=name,
                    defect_type=state_dir.name,
                    mask_path=mask_path,
                )
            )
    if not records:
        raise ValueError(f"No images found in the sub-folders of {str(root)!r}.\nExpected layout:\n{FOLDER_LAYOUT}")
    if mask_root is None:
        if missing:
            warnings.warn(
                f"{str(root)!r} has no ground_truth folder: its {len(missing)} anomalous image(s) get "
                "all-zero masks, so only image-level metrics are meaningful.",
                UserWarning,
                stacklevel=2,
            )
    else:
        report_missing_masks(missing, strict, f"expected in {mask_root}/<defect>/")
    return build_dataset(records, split="test", description=f"folder {root}", cache_dir=cache_dir)


def load_meta_json(
    path: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load an AnomalyCLIP / AdaCLIP `meta.json` (layout in `META_LAYOUT`), paths relative to its folder.

    Args:
        path: the json file.
        split: a top-level key of the json ("train" or "test").
        classes: subset of its class keys; default: all, in natural order.
        strict: an anomalous entry with an empty `mask_path` is an error (False: a warning).
        cache_dir: folder for the Arrow cache.

    Returns:
        The common-schema dataset; `defect_type` is `specie_name` (empty: "good" or "defect").
    """
    path = Path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"meta.json file {str(path)!r} {state}.\nExpected format:\n{META_LAYOUT}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"Cannot read {str(path)!r} as JSON: {error}") from error
    if not isinstance(meta, dict) or split not in meta:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{str(path)!r} has no split {split!r} (found {keys}).\nExpected format:\n{META_LAYOUT}")
    per_class = meta[split]
    if not isinstance(per_class, dict):
        raise ValueError(
            f"{str(path)!r}: split {split!r} must map class names to lists of entries, got "
            f"{type(per_class).__name__}.\nExpected format:\n{META_LAYOUT}"
        )
    check_classes(classes)
    names = sorted(per_class, key=natural_key) if classes is None else list(classes)
    base = path.parent
    records, missing = [], []
    for cls in names:
        if cls not in per_class:
            raise ValueError(f"{str(path)!r} has no class {cls!r} in split {split!r} (found {sorted(per_class)}).")
        entries = [
            _meta_entry(path, f"{split}/{cls}[{index}]", e)
            for index, e in enumerate(_entry_list(path, split, cls, per_class[cls]))
        ]
        for where, entry in sorted(entries, key=lambda item: natural_key(item[1]["img_path"])):
            anomalous = entry["anomaly"] == 1
            image_path = _listed_file(base, path, where, entry["img_path"])
            mask_path = (
                _listed_file(base, path, where, entry["mask_path"]) if anomalous and entry["mask_path"] else None
            )
            if anomalous and mask_path is None:
                missing.append(str(image_path))
            records.append(
                make_record(
                    image_path,
                    anomalous=anomalous,
                    class_name=entry["cls_name"],
                    defect_type=entry["specie_name"] or ("defect" if anomalous else "good"),
                    mask_path=mask_path,
                )
            )
    report_missing_masks(missing, strict, f"empty mask_path in {path}")
    return build_dataset(records, split=split, description=f"meta.json {split} ({path})", cache_dir=cache_dir)


def _entry_list(path: Path, split: str, cls: str, entries: Any) -> list:
    if not isinstance(entries, list):
        raise ValueError(
            f"{str(path)!r}: {split}/{cls} must be a list of entries, got {type(entries).__name__}."
            f"\nExpected format:\n{META_LAYOUT}"
        )
    return entries


def _meta_entry(path: Path, where: str, entry: Any) -> tuple[str, dict[str, Any]]:
    """`(where, entry)` with the entry checked: its keys, their types and `anomaly` in {0, 1}; else a `ValueError`."""
    prefix = f"{str(path)!r} entry {where}"
    if not isinstance(entry, dict):
        raise ValueError(f"{prefix} must be an object with keys {list(_META_KEYS)}, got {entry!r:.200}.")
    absent = [key for key in _META_KEYS if key not in entry]
    if absent:
        raise ValueError(f"{prefix} lacks key(s) {absent}; expected {list(_META_KEYS)}: {entry!r:.200}.")
    for key, optional in (("img_path", False), ("cls_name", False), ("mask_path", True), ("specie_name", True)):
        value = entry[key]
        if not (isinstance(value, str) and (optional or value.strip())) and not (optional and value is None):
            expected = "a string (may be empty) or null" if optional else "a non-empty string"
            raise ValueError(f"{prefix}: {key} must be {expected}, got {value!r}.")
    anomaly = entry["anomaly"]
    if not isinstance(anomaly, (int, float)) or anomaly not in (0, 1):
        raise ValueError(f"{prefix}: anomaly must be 0 (normal) or 1 (anomalous), got {anomaly!r}.")
    return where, {**entry, "anomaly": int(anomaly)}


def _listed_file(base: Path, json_path: Path, where: str, relative: str) -> Path:
    file = base / relative
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(json_path)!r} entry {where} lists {relative!r}, but {str(file)!r} does not exist."
        )
    return file
