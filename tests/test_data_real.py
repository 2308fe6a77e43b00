"""Loaders on real files from ../shared/data/real-mini (KolektorSDD and MPDD metal_plate; see its SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf.data import load_benchmark, summarize

DEFECTIVE_PARTS = {"kos02/Part6.jpg", "kos03/Part2.jpg", "kos04/Part3.jpg", "kos05/Part5.jpg"}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _binary_and_sized(row: dict) -> np.ndarray:
    mask = np.asarray(row["mask"])
    assert row["mask"].size == row["image"].size
    assert set(np.unique(mask)) <= {0, 255}
    return mask


def test_sdd_whole_images(real_mini_dir: Path) -> None:
    dataset = load_benchmark("sdd", real_mini_dir / "sdd" / "KolektorSDD")
    assert len(dataset) == 32
    rows = zip(dataset["image_path"][:], dataset["label"][:], strict=True)
    defective = {"/".join(path.split("/")[-2:]) for path, label in rows if label}
    assert defective == DEFECTIVE_PARTS
    for row in dataset:
        assert _binary_and_sized(row).any() == bool(row["label"])
        assert row["image"].mode == "RGB" and row["class_name"] == "electrical commutators"


def test_sdd_adaclip_crops(real_mini_dir: Path) -> None:
    root = real_mini_dir / "sdd" / "KolektorSDD"
    test = load_benchmark("sdd", root, variant="adaclip_crops")
    train = load_benchmark("sdd", root, split="train", variant="adaclip_crops")
    expected_defect_bands = 0
    for label_path in sorted(root.glob("kos*/Part*_label.bmp")):
        label = np.asarray(Image.open(label_path).convert("L")) > 0
        height = label.shape[0]
        bounds = [0, height // 3, 2 * height // 3, height]
        expected_defect_bands += sum(label[a:b].any() for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert len(test) + len(train) == 96
    assert sum(test["label"][:]) == expected_defect_bands and expected_defect_bands >= 4
    n_normal = 96 - expected_defect_bands
    assert len(train) == n_normal - int(np.ceil(0.25 * n_normal))
    for row in test:
        assert _binary_and_sized(row).any() == bool(row["label"])
        assert row["class_name"] == "SDD" and "#crop=0," in row["image_path"]


def test_mpdd_metal_plate_counts(real_mini_dir: Path) -> None:
    root = real_mini_dir / "mpdd"
    test = load_benchmark("mpdd", root)
    assert summarize(test) == {
        "metal_plate": {"bad": {"images": 25, "anomalous": 25}, "good": {"images": 13, "anomalous": 0}}
    }
    for row in test:
        mask = _binary_and_sized(row)
        assert row["image"].size == (512, 512) and mask.any() == bool(row["label"])
    train = load_benchmark("mpdd", root, split="train")
    assert len(train) == 20 and set(train["defect_type"][:]) == {"good"}
