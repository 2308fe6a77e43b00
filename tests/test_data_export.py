"""Parquet export with embedded images, save_to_disk, and `genclip data convert`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf.cli import main
from genclip_hf.data import export_parquet, load_benchmark, write_synthetic_benchmark


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    return write_synthetic_benchmark(
        tmp_path / "synthetic", classes=["disc", "stripes"], n_train_good=1, n_test_good=3, n_test_bad=5, seed=3
    )


def decoded_rows(dataset: datasets.Dataset) -> list[dict]:
    """Every row with its image and mask as `(size, pixels)`, so the source files can be deleted after."""
    return [
        {**row, **{c: (row[c].size, row[c].mode, np.asarray(row[c])) for c in ("image", "mask")}} for row in dataset
    ]


def assert_same_rows(expected: list[dict], actual: datasets.Dataset) -> None:
    assert len(expected) == len(actual)
    for left, right in zip(expected, decoded_rows(actual), strict=True):
        for column in ("image", "mask"):
            assert left[column][:2] == right[column][:2]
            assert np.array_equal(left[column][2], right[column][2])
        for column in ("label", "class_name", "defect_type", "image_path"):
            assert left[column] == right[column]


def test_parquet_round_trip_is_pixel_exact(tmp_path: Path, synthetic_root: Path) -> None:
    dataset = load_benchmark("mvtec", synthetic_root)
    expected = decoded_rows(dataset)
    paths = export_parquet(dataset, tmp_path / "parquet", max_shard_size="40KB")
    assert len(paths) > 1
    assert [p.name for p in paths][0] == f"test-00000-of-{len(paths):05d}.parquet"
    shutil.rmtree(synthetic_root)  # the shards must not need the source files
    reloaded = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in paths], split="train", cache_dir=str(tmp_path / "pq-cache")
    )
    assert reloaded.features == dataset.features
    assert_same_rows(expected, reloaded)


def test_save_to_disk_round_trip(tmp_path: Path, synthetic_root: Path) -> None:
    dataset = load_benchmark("mvtec", synthetic_root)
    expected = decoded_rows(dataset)
    dataset.save_to_disk(str(tmp_path / "saved"))
    shutil.rmtree(synthetic_root)
    assert_same_rows(expected, datasets.load_from_disk(str(tmp_path / "saved")))


def test_shard_size_errors(tmp_path: Path, synthetic_root: Path) -> None:
    dataset = load_benchmark("mvtec", synthetic_root)
    with pytest.raises(ValueError, match="max_shard_size must be bytes or a string like '500MB', got 'big'"):
        export_parquet(dataset, tmp_path / "out", max_shard_size="big")
    with pytest.raises(ValueError, match="max_shard_size must be positive"):
        export_parquet(dataset, tmp_path / "out", max_shard_size=0)


def test_cli_data_convert(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "hf"
    status = main(["data", "convert", "--benchmark", "mvtec", "--root", str(synthetic_root), "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "(total)" in printed and "test-00000-of-00001.parquet" in printed
    reloaded = datasets.load_dataset(
        "parquet", data_files=str(out / "*.parquet"), split="train", cache_dir=str(tmp_path / "pq-cache")
    )
    assert len(reloaded) == 16 and sum(reloaded["label"][:]) == 10


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--benchmark", "mvtech"], r"Unknown benchmark 'mvtech'; expected one of \['btad'"),
        (["--benchmark", "mvtec", "--variant", "x"], r"'mvtec' does not take option\(s\) \['variant'\]"),
        (["--benchmark", "visa"], r"VisA split file '.*1cls.csv' does not exist"),
        (["--benchmark", "mvtec", "--root", "{missing}"], r"mvtec root '.*missing' does not exist"),
        (["--benchmark", "mvtec", "--out", "{file}"], r"Output folder '.*a-file' is a file, not a folder"),
    ],
)
def test_cli_data_convert_errors_are_one_line(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    defaults = {"--root": str(synthetic_root), "--out": str(tmp_path / "out")}
    given = dict(zip(arguments[::2], arguments[1::2], strict=True))
    options = {**defaults, **given}
    options = {
        key: value.format(missing=tmp_path / "missing", file=tmp_path / "a-file") for key, value in options.items()
    }
    assert main(["data", "convert", *[item for pair in options.items() for item in pair]]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar of the loading
    assert error.startswith("genclip data: ") and re.search(message, error), error


def test_parquet_round_trip_of_crops_and_binarised_masks(tmp_path: Path) -> None:
    root = tmp_path / "KolektorSDD" / "kos01"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part in range(2):
        Image.fromarray(rng.integers(0, 256, (33, 12), dtype=np.uint8)).save(root / f"Part{part}.jpg")
        label = np.zeros((33, 12), dtype=np.uint8)
        label[5:25, 2:6] = part  # palette index 1 on Part1 only
        palette_label = Image.fromarray(label).convert("P")
        palette_label.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
        palette_label.save(root / f"Part{part}_label.bmp")
    for variant in ("whole", "adaclip_crops"):
        dataset = load_benchmark("sdd", root.parent, variant=variant)
        expected = decoded_rows(dataset)
        assert any(row["label"] for row in expected)
        paths = export_parquet(dataset, tmp_path / variant)
        reloaded = datasets.load_dataset(
            "parquet", data_files=[str(p) for p in paths], split="train", cache_dir=str(tmp_path / "pq-cache")
        )
        assert_same_rows(expected, reloaded)
