"""The procedural defect generator: determinism, exact masks, speed, and the committed sample images."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf.data import load_benchmark, write_synthetic_benchmark
from genclip_hf.data.synthetic import CATEGORIES, SAMPLE_IMAGES, defect_types, render_sample, write_sample_images

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "sample_images"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = _files(write_synthetic_benchmark(tmp_path / "a", n_test_bad=5, seed=7))
    second = _files(write_synthetic_benchmark(tmp_path / "b", n_test_bad=5, seed=7))
    other = _files(write_synthetic_benchmark(tmp_path / "c", n_test_bad=5, seed=8))
    assert first == second
    assert first.keys() == other.keys() and first != other
    assert len(first) == len(CATEGORIES) * (4 + 4 + 2 * 5)


@pytest.mark.parametrize("category", CATEGORIES)
def test_masks_cover_exactly_the_changed_pixels(category: str) -> None:
    for index, defect in enumerate(defect_types(category)):
        for size in ((48, 48), (40, 72)):
            sample = render_sample(category, size, seed=(index, 1), defect=defect)
            assert sample.image.shape == (*size, 3) and sample.mask.shape == size
            assert sample.mask.sum() >= 6
            assert np.array_equal(sample.mask, (sample.image != sample.clean).any(axis=-1))
    normal = render_sample(category, (48, 48), seed=0)
    assert not normal.mask.any() and np.array_equal(normal.image, normal.clean)


def test_written_benchmark_loads_with_exact_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    root = write_synthetic_benchmark(
        tmp_path / "syn", classes=["ring", "weave"], n_test_good=2, n_test_bad=5, image_size=(32, 48)
    )
    dataset = load_benchmark("mvtec", root)
    assert len(dataset) == 14
    assert sorted(set(dataset["defect_type"][:])) == ["cut", "good", "hole", "missing", "scratch", "spot"]
    for row in dataset:
        assert row["image"].size == (48, 32)
        assert np.asarray(row["mask"]).any() == bool(row["label"])
    assert len(load_benchmark("mvtec", root, split="train")) == 8


def test_hundred_images_are_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    write_synthetic_benchmark(tmp_path / "fast", n_train_good=5, n_test_good=3, n_test_bad=5, image_size=(64, 64))
    assert time.perf_counter() - start < 3.0
    assert len(list((tmp_path / "fast").rglob("*.png"))) == 8 * (5 + 3 + 2 * 5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Unknown synthetic category 'sphere'"):
        render_sample("sphere", (32, 32), 0)
    with pytest.raises(ValueError, match="Defect 'cut' is not drawn for 'stripes'"):
        render_sample("stripes", (32, 32), 0, "cut")
    with pytest.raises(ValueError, match="at least 16x16"):
        render_sample("disc", (8, 32), 0)


def test_committed_sample_images_match_the_generator(tmp_path: Path) -> None:
    written = write_sample_images(tmp_path)
    assert [p.name for p in written] == [name for name, *_ in SAMPLE_IMAGES]
    sizes = set()
    for path in written:
        committed = Image.open(SAMPLE_DIR / path.name)
        assert max(committed.size) <= 256
        assert np.array_equal(np.asarray(committed), np.asarray(Image.open(path)))
        sizes.add(committed.size[0] == committed.size[1])
    assert sizes == {True, False}  # at least one non-square image
