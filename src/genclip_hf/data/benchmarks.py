"""One loader per benchmark, each reading the dataset's native layout into the common schema."""

from __future__ import annotations

import csv
import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets

from .builder import build_dataset
from .files import (
    NORMAL_FOLDER_NAMES,
    find_mask,
    list_images,
    make_record,
    mask_index,
    natural_key,
    report_missing_masks,
    require_dir,
    subfolders,
)
from .sdd import load_sdd

logger = logging.getLogger(__name__)

MVTEC_LAYOUT = """  <root>/<class>/train/good/<name>.png
  <root>/<class>/test/good/<name>.png
  <root>/<class>/test/<defect>/<name>.png
  <root>/<class>/ground_truth/<defect>/<name>_mask.png"""

BTAD_LAYOUT = """  <root>/01|02|03/train/ok/<name>.bmp|.png
  <root>/01|02|03/test/ok/<name>.bmp|.png
  <root>/01|02|03/test/ko/<name>.bmp|.png
  <root>/01|02|03/ground_truth/ko/<name>.png|.bmp"""

DTD_LAYOUT = """  <root>/<texture, e.g. Blotchy_099>/train/good/<name>.png
  <root>/<texture>/test/good/<name>.png
  <root>/<texture>/test/bad/<name>.png
  <root>/<texture>/ground_truth/bad/<name>_mask.png"""

VISA_LAYOUT = """  <root>/split_csv/1cls.csv   (object,split,label,image,mask; paths from <root>)
  <root>/<class, e.g. pcb1>/Data/Images/{Normal,Anomaly}/<name>.JPG
  <root>/<class>/Data/Masks/Anomaly/<name>.png"""

_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VISA_LABELS = {"normal": False, "anomaly": True}


def load_category_tree(
    root: str | Path,
    split: str = "test",
    *,
    benchmark: str,
    layout: str,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load any MVTec-style tree `<root>/<class>/{<split>/<defect>, ground_truth/<defect>}`.

    Folders named good/ok/normal hold normal images; every other folder under `<split>` is a defect
    type whose masks are `ground_truth/<defect>/<stem>_mask.<ext>` or `<stem>.<ext>`.
    """
    root = require_dir(Path(root), f"{benchmark} root", layout)
    class_dirs = _class_dirs(root, classes, benchmark, layout)
    records, missing = [], []
    for class_dir in class_dirs:
        split_dir = require_dir(class_dir / split, f"{benchmark} split folder", layout)
        stray = list_images(split_dir)
        if stray:
            logger.warning(
                "Ignoring %d image(s) directly in %s: images belong in <defect> folders",
                len(stray),
                split_dir,
            )
        for defect_dir in subfolders(split_dir):
            anomalous = defect_dir.name not in NORMAL_FOLDER_NAMES
            masks = mask_index(class_dir / "ground_truth" / defect_dir.name) if anomalous else {}
            for image_path in list_images(defect_dir):
                mask_path = find_mask(masks, image_path.stem) if anomalous else None
                if anomalous and mask_path is None:
                    missing.append(str(image_path))
                records.append(
                    make_record(
                        image_path,
                        anomalous=anomalous,
                        class_name=class_dir.name,
                        defect_type=defect_dir.name,
                        mask_path=mask_path,
                    )
                )
    report_missing_masks(missing, strict, f"expected in <class>/ground_truth/<defect>/ under {root}")
    return build_dataset(records, split=split, description=f"{benchmark} {split} ({root})", cache_dir=cache_dir)


def _class_dirs(root: Path, classes: Sequence[str] | None, benchmark: str, layout: str) -> list[Path]:
    if classes is not None:
        return [require_dir(root / name, f"{benchmark} class folder", layout) for name in classes]
    found = [d for d in subfolders(root) if any((d / sub).is_dir() for sub in ("train", "test", "ground_truth"))]
    if not found:
        raise FileNotFoundError(f"No {benchmark} class folders under {str(root)!r}.\nExpected layout:\n{layout}")
    return found


def load_mvtec(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """MVTec-AD from the folder holding its 15 category folders (bottle, cable, ...)."""
    return load_category_tree(
        root,
        split,
        benchmark="mvtec",
        layout=MVTEC_LAYOUT,
        classes=classes,
        strict=strict,
        cache_dir=cache_dir,
    )


def load_mpdd(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """MPDD (same layout as MVTec-AD) from the folder holding its 6 category folders."""
    return load_category_tree(
        root,
        split,
        benchmark="mpdd",
        layout=MVTEC_LAYOUT,
        classes=classes,
        strict=strict,
        cache_dir=cache_dir,
    )


def load_btad(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """BTAD from the folder holding 01, 02, 03 (`ok` normal, `ko` anomalous; bmp or png masks)."""
    return load_category_tree(
        root, split, benchmark="btad", layout=BTAD_LAYOUT, classes=classes, strict=strict, cache_dir=cache_dir
    )


def load_dtd_synthetic(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """DTD-Synthetic from the folder holding its 12 texture folders (Blotchy_099, ..., Woven_127)."""
    return load_category_tree(
        root,
        split,
        benchmark="dtd_synthetic",
        layout=DTD_LAYOUT,
        classes=classes,
        strict=strict,
        cache_dir=cache_dir,
    )


def load_visa(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """VisA through its `split_csv/1cls.csv`; class names as in the csv ("pcb1", "pipe_fryum", ...).

    `defect_type` is the csv's label ("normal" or "anomaly"); VisA has no finer defect types.
    """
    root = require_dir(Path(root), "visa root", VISA_LAYOUT)
    csv_path = root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"VisA split file {str(csv_path)!r} does not exist.\nExpected layout:\n{VISA_LAYOUT}")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in _VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{str(csv_path)!r} lacks column(s) {absent}; expected {list(_VISA_COLUMNS)}.")
        rows = list(reader)
    wanted = set(classes) if classes is not None else None
    chosen = [r for r in rows if r["split"] == split and (wanted is None or r["object"] in wanted)]
    if not chosen:
        found_splits = sorted({r["split"] for r in rows})
        found_classes = sorted({r["object"] for r in rows})
        raise ValueError(
            f"{str(csv_path)!r} has no rows for split={split!r} and classes={classes}; "
            f"it has splits {found_splits} and classes {found_classes}."
        )
    chosen.sort(key=lambda r: (natural_key(r["object"]), natural_key(r["image"])))
    records, missing = [], []
    for row in chosen:
        if row["label"] not in _VISA_LABELS:
            raise ValueError(
                f"{str(csv_path)!r}: label {row['label']!r} for {row['image']!r} is not one of {list(_VISA_LABELS)}."
            )
        anomalous = _VISA_LABELS[row["label"]]
        image_path = _csv_file(root, csv_path, row["image"])
        mask_path = _csv_file(root, csv_path, row["mask"]) if anomalous and row["mask"].strip() else None
        if anomalous and mask_path is None:
            missing.append(str(image_path))
        records.append(
            make_record(
                image_path,
                anomalous=anomalous,
                class_name=row["object"],
                defect_type=row["label"],
                mask_path=mask_path,
            )
        )
    report_missing_masks(missing, strict, f"empty mask column in {csv_path}")
    return build_dataset(records, split=split, description=f"visa {split} ({root})", cache_dir=cache_dir)


def _csv_file(root: Path, csv_path: Path, relative: str) -> Path:
    path = root / relative.strip()
    if not path.is_file():
        raise FileNotFoundError(f"{str(csv_path)!r} lists {relative!r}, but {str(path)!r} does not exist.")
    return path


BENCHMARKS: dict[str, Callable[..., datasets.Dataset]] = {
    "mvtec": load_mvtec,
    "visa": load_visa,
    "mpdd": load_mpdd,
    "btad": load_btad,
    "sdd": load_sdd,
    "dtd_synthetic": load_dtd_synthetic,
}


def load_benchmark(name: str, root: str | Path, split: str = "test", **variant) -> datasets.Dataset:
    """Load benchmark `name` from its native folder layout into the common schema.

    Args:
        name: one of "mvtec", "visa", "mpdd", "btad", "sdd", "dtd_synthetic".
        root: the dataset's top folder as distributed (for SDD: the KolektorSDD folder holding kos01..kos50).
        split: "test" (default) or "train".
        **variant: loader options: `classes` (subset of class names), `strict` (False turns a missing mask
            into a warning), `cache_dir`; for "sdd", `variant="whole"` (default) or `"adaclip_crops"`.

    Returns:
        A `datasets.Dataset` with columns image, mask, label, class_name, defect_type, image_path.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}.")
    loader = BENCHMARKS[name]
    accepted = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(variant) - set(accepted))
    if unknown:
        raise ValueError(f"Benchmark {name!r} does not take option(s) {unknown}; it takes {accepted}.")
    return loader(root, split, **variant)
