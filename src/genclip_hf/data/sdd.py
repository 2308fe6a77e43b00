"""KolektorSDD ("SDD") in the two variants of the zero-shot literature.

- "whole" (AnomalyCLIP): every `kosNN/PartK.jpg` is one test image of class "electrical commutators".
- "adaclip_crops" (AdaCLIP): every image is cut into three horizontal bands (rows `[0, h//3)`,
  `[h//3, 2h//3)`, `[2h//3, h)`) of class "SDD"; a band is anomalous when its label is non-zero there.
  Normal bands are split 75 % train / 25 % test with scikit-learn's `train_test_split` rule at
  `random_state=42` (a `RandomState(42)` permutation, the first ceil(n/4) go to test); all anomalous
  bands are in test. AdaCLIP applied that rule to the bands in `os.listdir` order, which is not
  portable; here they are in natural order (kos01/Part0 band 0, band 1, ...), so the membership of the
  split follows that rule exactly but can differ from a particular AdaCLIP installation.
"""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np

from ..benchmark_registry import BENCHMARK_REGISTRY
from ..images import binarize_mask_values, open_image
from .builder import build_dataset
from .files import list_images, read_image_size, require_dir, subfolders
from .schema import ANOMALOUS, NORMAL, Record

WHOLE_CLASS_NAME = "electrical commutators"
CROPS_CLASS_NAME = "SDD"
VARIANTS = ("whole", "adaclip_crops")
_N_BANDS = 3
_TEST_FRACTION = 0.25
_SPLIT_SEED = 42


def load_sdd(
    root: str | Path, split: str = "test", *, variant: str = "whole", cache_dir: str | None = None
) -> datasets.Dataset:
    """KolektorSDD from the folder holding kos01..kos50, as whole images or AdaCLIP's three bands.

    Args:
        root: the KolektorSDD folder.
        split: "test"; "train" exists only for `variant="adaclip_crops"` (normal bands only).
        variant: "whole" (default) or "adaclip_crops".
        cache_dir: folder for the Arrow cache.

    Returns:
        The common-schema dataset; `defect_type` is "good" or "defect"; masks are binarised labels.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown SDD variant {variant!r}; expected one of {VARIANTS}.")
    allowed_splits = ("test",) if variant == "whole" else ("train", "test")
    if split not in allowed_splits:
        raise ValueError(f"SDD variant {variant!r} has splits {allowed_splits}, not {split!r}.")
    items = _scan(Path(root))
    records = _whole_records(items) if variant == "whole" else _crop_records(items, split)
    return build_dataset(records, split=split, description=f"sdd {variant} {split} ({root})", cache_dir=cache_dir)


def _scan(root: Path) -> list[tuple[Path, Path, np.ndarray]]:
    """`(image, label file, defect mask (H, W) bool)` for every part image, in natural order."""
    layout = BENCHMARK_REGISTRY["sdd"].layout
    require_dir(root, "KolektorSDD root", layout)
    items = []
    for item_dir in subfolders(root):
        for image_path in list_images(item_dir, masks=True):
            if image_path.stem.endswith("_label"):
                continue
            label_path = image_path.with_name(f"{image_path.stem}_label.bmp")
            if not label_path.is_file():
                raise FileNotFoundError(
                    f"KolektorSDD image {str(image_path)!r} has no label file {str(label_path)!r}; "
                    "without it the image's state is unknown."
                )
            defect = _read_label(label_path)
            image_size = read_image_size(image_path)
            if defect.shape[::-1] != image_size:
                raise ValueError(
                    f"Label {str(label_path)!r} is {defect.shape[1]}x{defect.shape[0]} (WxH) but its image "
                    f"{str(image_path)!r} is {image_size[0]}x{image_size[1]}: a mask must match its image."
                )
            items.append((image_path.resolve(), label_path.resolve(), defect))
    if not items:
        raise FileNotFoundError(f"No KolektorSDD images under {str(root)!r}.\nExpected layout:\n{layout}")
    return items


def _read_label(path: Path) -> np.ndarray:
    """`(H, W)` bool defect mask of a label file (palette BMPs through their grey values)."""
    try:
        with open_image(path, draft=False) as label:
            return binarize_mask_values(np.asarray(label.convert("L")), lossy=False)  # BMP: lossless
    except ValueError as error:
        raise ValueError(f"Cannot read label file {str(path)!r}: {error}") from error


def _whole_records(items: list[tuple[Path, Path, np.ndarray]]) -> list[Record]:
    records = []
    for image_path, label_path, defect in items:
        anomalous = bool(defect.any())
        records.append(
            Record(
                image_path=str(image_path),
                label=ANOMALOUS if anomalous else NORMAL,
                class_name=WHOLE_CLASS_NAME,
                defect_type="defect" if anomalous else "good",
                image_size=defect.shape[::-1],
                mask_path=str(label_path) if anomalous else None,
            )
        )
    return records


def _crop_records(items: list[tuple[Path, Path, np.ndarray]], split: str) -> list[Record]:
    bands = []
    for image_path, label_path, defect in items:
        height, width = defect.shape
        bounds = [height * k // _N_BANDS for k in range(_N_BANDS + 1)]
        for upper, lower in zip(bounds[:-1], bounds[1:], strict=True):
            anomalous = bool(defect[upper:lower].any())
            bands.append(
                Record(
                    image_path=str(image_path),
                    label=ANOMALOUS if anomalous else NORMAL,
                    class_name=CROPS_CLASS_NAME,
                    defect_type="defect" if anomalous else "good",
                    image_size=(width, height),
                    mask_path=str(label_path) if anomalous else None,
                    crop_box=(0, upper, width, lower),
                )
            )
    normal_positions = [i for i, band in enumerate(bands) if band.label == NORMAL]
    train_idx, test_idx = adaclip_normal_split(len(normal_positions))
    chosen = {normal_positions[i] for i in (train_idx if split == "train" else test_idx)}
    if split == "test":
        chosen |= {i for i, band in enumerate(bands) if band.label == ANOMALOUS}
    return [bands[i] for i in sorted(chosen)]


def adaclip_normal_split(n_normal: int) -> tuple[list[int], list[int]]:
    """Train/test positions of `n_normal` normal bands as `train_test_split(test_size=0.25, random_state=42)`.

    Returns:
        `(train_positions, test_positions)`, each in the permutation's order.
    """
    permutation = np.random.RandomState(_SPLIT_SEED).permutation(n_normal)
    n_test = math.ceil(_TEST_FRACTION * n_normal)
    return permutation[n_test:].tolist(), permutation[:n_test].tolist()
