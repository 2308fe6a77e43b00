"""One loader per benchmark, each reading the dataset's native layout into the common schema.

The benchmarks' names, layouts and loaders are listed in `genclip_hf.benchmark_registry.BENCHMARK_REGISTRY`.
"""

from __future__ import annotations

import csv
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets

from ..benchmark_registry import BENCHMARK_REGISTRY, get_benchmark
from .builder import build_dataset
from .files import (
    NORMAL_FOLDER_NAMES,
    check_classes,
    count_images,
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

_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VISA_REQUIRED = ("object", "split", "label", "image")
_VISA_LABELS = {"normal": False, "anomaly": True}
_CLASS_FOLDER_PARTS = ("train", "test", "ground_truth")


def load_category_tree(
    root: str | Path,
    split: str = "test",
    *,
    benchmark: str,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load any MVTec-style tree `<root>/<class>/{<split>/<defect>, ground_truth/<defect>}`.

    Folders named good/ok/normal hold normal images; every other folder under `<split>` is a defect
    type whose masks are `ground_truth/<defect>/<stem>_mask.<ext>` or `<stem>.<ext>`. `benchmark` is a
    registry name; its layout is shown in errors.
    """
    layout = BENCHMARK_REGISTRY[benchmark].layout
    root = require_dir(Path(root), f"{benchmark} root", layout)
    class_dirs = _class_dirs(root, classes, benchmark, layout)
    records, missing = [], []
    for class_dir in class_dirs:
        split_dir = require_dir(class_dir / split, f"{benchmark} split folder", layout)
        found = len(records)
        stray = list_images(split_dir, leaf=False)
        if stray:
            warnings.warn(
                f"Not reading {len(stray)} image(s) directly in {str(split_dir)!r} (e.g. {stray[0].name}): images "
                "belong in <defect> folders, so their state is unknown.",
                UserWarning,
                stacklevel=2,
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
        if len(records) == found:
            warnings.warn(
                f"Class {class_dir.name!r} has no images in {str(split_dir)!r}: it is left out.",
                UserWarning,
                stacklevel=2,
            )
    report_missing_masks(missing, strict, f"expected in <class>/ground_truth/<defect>/ under {root}")
    return build_dataset(records, split=split, description=f"{benchmark} {split} ({root})", cache_dir=cache_dir)


def _class_dirs(root: Path, classes: Sequence[str] | None, benchmark: str, layout: str) -> list[Path]:
    if classes is not None:
        return [require_dir(root / name, f"{benchmark} class folder", layout) for name in classes]
    found, others = [], []
    for folder in subfolders(root):
        (found if any((folder / part).is_dir() for part in _CLASS_FOLDER_PARTS) else others).append(folder)
    if not found:
        raise FileNotFoundError(f"No {benchmark} class folders under {str(root)!r}.\nExpected layout:\n{layout}")
    unread = {str(folder): count for folder in others if (count := count_images(folder))}
    if unread:
        warnings.warn(
            f"Not reading {sum(unread.values())} image(s) under {str(root)!r} in folder(s) that are not {benchmark} "
            f"class folders (no {'/, '.join(_CLASS_FOLDER_PARTS)}/ inside): "
            + ", ".join(f"{folder} ({count})" for folder, count in unread.items()),
            UserWarning,
            stacklevel=3,
        )
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
    return load_category_tree(root, split, benchmark="mvtec", classes=classes, strict=strict, cache_dir=cache_dir)


def load_mpdd(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """MPDD (same layout as MVTec-AD) from the folder holding its 6 category folders."""
    return load_category_tree(root, split, benchmark="mpdd", classes=classes, strict=strict, cache_dir=cache_dir)


def load_btad(
    root: str | Path,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    strict: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """BTAD from the folder holding 01, 02, 03 (`ok` normal, `ko` anomalous; bmp or png masks)."""
    return load_category_tree(root, split, benchmark="btad", classes=classes, strict=strict, cache_dir=cache_dir)


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
        root, split, benchmark="dtd_synthetic", classes=classes, strict=strict, cache_dir=cache_dir
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
    layout = BENCHMARK_REGISTRY["visa"].layout
    root = require_dir(Path(root), "visa root", layout)
    csv_path = root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"VisA split file {str(csv_path)!r} does not exist.\nExpected layout:\n{layout}")
    rows = _read_visa_csv(csv_path)
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
        anomalous = _VISA_LABELS[row["label"]]
        image_path = _csv_file(root, csv_path, row, "image")
        mask_path = _csv_file(root, csv_path, row, "mask") if anomalous and row["mask"] else None
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


def _read_visa_csv(csv_path: Path) -> list[dict[str, str]]:
    """The csv's rows, stripped, each with its `line` number; a malformed row is a `ValueError` naming its line."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            absent = [c for c in _VISA_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(f"{str(csv_path)!r} lacks column(s) {absent}; expected {list(_VISA_COLUMNS)}.")
            rows = []
            for row in reader:
                where = f"{str(csv_path)!r} line {reader.line_num}"
                if None in row:
                    raise ValueError(f"{where} has more fields than the {len(reader.fieldnames)} columns: {row[None]}.")
                empty = [c for c in _VISA_REQUIRED if not (row[c] or "").strip()]
                if empty:
                    raise ValueError(f"{where} has no value for {empty}; every row needs {list(_VISA_REQUIRED)}.")
                cleaned = {c: (row[c] or "").strip() for c in _VISA_COLUMNS}
                if cleaned["label"] not in _VISA_LABELS:
                    raise ValueError(
                        f"{where}: label {cleaned['label']!r} for {cleaned['image']!r} is not one of "
                        f"{list(_VISA_LABELS)}."
                    )
                rows.append({**cleaned, "line": str(reader.line_num)})
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"Cannot read {str(csv_path)!r} as a UTF-8 csv: {error}") from error
    return rows


def _csv_file(root: Path, csv_path: Path, row: dict[str, str], column: str) -> Path:
    path = root / row[column]
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(csv_path)!r} line {row['line']} lists {column} {row[column]!r}, but {str(path)!r} does not exist."
        )
    return path


def _loader(name: str) -> Callable[..., datasets.Dataset]:
    return getattr(sys.modules[__name__], BENCHMARK_REGISTRY[name].loader_name)


BENCHMARKS: dict[str, Callable[..., datasets.Dataset]] = {name: _loader(name) for name in BENCHMARK_REGISTRY}


def load_benchmark(name: str, root: str | Path, split: str = "test", **options: Any) -> datasets.Dataset:
    """Load benchmark `name` from its native folder layout into the common schema.

    Args:
        name: a name of `BENCHMARK_REGISTRY` ("mvtec", "visa", "mpdd", "btad", "sdd", "dtd_synthetic") or an alias
            of one ("MVTec-AD", "kolektorsdd", ...).
        root: the dataset's top folder as distributed (for SDD: the KolektorSDD folder holding kos01..kos50).
        split: "test" (default) or "train".
        **options: loader options: `classes` (a list of class names), `strict` (False turns a missing mask into a
            warning), `cache_dir`; for "sdd", `variant="whole"` (default) or `"adaclip_crops"`.

    Returns:
        A `datasets.Dataset` with columns image, mask, label, class_name, defect_type, image_path.
    """
    benchmark = get_benchmark(name)
    accepted = benchmark.options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"Benchmark {benchmark.name!r} does not take option(s) {unknown}; it takes {accepted}.")
    check_classes(options.get("classes"))
    return BENCHMARKS[benchmark.name](root, split, **options)


__all__ = [
    "BENCHMARKS",
    "load_benchmark",
    "load_btad",
    "load_category_tree",
    "load_dtd_synthetic",
    "load_mpdd",
    "load_mvtec",
    "load_sdd",
    "load_visa",
]
