"""One way to open data of the common schema from wherever it lives: a benchmark's native folders, a user's image
folder, Parquet shards (`genclip data convert`), a `Dataset.save_to_disk` folder, or an AnomalyCLIP/AdaCLIP
`meta.json`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets

from ..benchmark_registry import BENCHMARK_REGISTRY, find_benchmark

SOURCES = ("folder", "parquet", "disk", "meta_json")
"""Kinds of data other than the benchmarks' native layouts."""


def open_dataset(
    root: str | Path,
    source: str | None = None,
    split: str = "test",
    classes: Sequence[str] | None = None,
    variant: str | None = None,
) -> datasets.Dataset:
    """Open `root` as a common-schema `datasets.Dataset`.

    Args:
        root: the benchmark's top folder, an image folder, a Parquet folder or file, a `save_to_disk` folder, or a
            `meta.json` file.
        source: a benchmark (name or alias, `genclip_hf.benchmark_registry`), one of `SOURCES`, or `None` to
            recognise `root`: `*.parquet` shards, a `save_to_disk` folder, a `.json` file, else an image folder.
        split: the split to read (benchmarks, Parquet shards `<split>-*.parquet`, `DatasetDict`s, meta.json).
        classes: keep only these class names.
        variant: SDD only: `"whole"` or `"adaclip_crops"`.

    Raises:
        FileNotFoundError: `root` does not exist or holds no data of the kind.
        ValueError: an unknown source, or no rows of the requested classes.
    """
    from .benchmarks import load_benchmark
    from .folders import load_folder, load_meta_json

    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"Data {str(path)!r} does not exist.")
    if source is None:
        source = _recognise(path)
    benchmark = find_benchmark(source) if source not in SOURCES else None
    if benchmark is not None:
        options: dict = {"variant": variant} if variant else {}
        if classes and "classes" in benchmark.options:
            options["classes"] = list(classes)
        dataset = load_benchmark(benchmark.name, path, split=split, **options)
    elif source == "folder":
        dataset = load_folder(path)
    elif source == "meta_json":
        dataset = load_meta_json(path, split, classes=classes)
    elif source == "parquet":
        dataset = _load_parquet(path, split)
    elif source == "disk":
        dataset = _load_from_disk(path, split)
    else:
        known = list(BENCHMARK_REGISTRY) + list(SOURCES)
        raise ValueError(f"Unknown data source {source!r}; expected a benchmark or a kind of data: {known}.")
    return _keep_classes(dataset, classes, path)


def _recognise(path: Path) -> str:
    if path.is_file():
        return "parquet" if path.suffix == ".parquet" else "meta_json"
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        return "disk"
    if any(path.rglob("*.parquet")):
        return "parquet"
    return "folder"


def _load_parquet(path: Path, split: str) -> datasets.Dataset:
    if path.is_file():
        shards = [path]
    else:
        shards = sorted(path.glob(f"{split}-*.parquet")) or sorted(path.rglob("*.parquet"))
    if not shards:
        raise FileNotFoundError(
            f"No Parquet shards in {str(path)!r} (written by `genclip data convert --split {split}`)."
        )
    return datasets.load_dataset("parquet", data_files=[str(shard) for shard in shards], split="train")


def _load_from_disk(path: Path, split: str) -> datasets.Dataset:
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"{str(path)!r} holds splits {sorted(dataset)}, not split {split!r}.")
        dataset = dataset[split]
    return dataset


def _keep_classes(dataset: datasets.Dataset, classes: Sequence[str] | None, path: Path) -> datasets.Dataset:
    if not classes:
        return dataset
    wanted = set(classes)
    present = set(dataset.unique("class_name")) if "class_name" in dataset.column_names else set()
    if not wanted & present:
        raise ValueError(f"No rows of {str(path)!r} have a class name in {sorted(wanted)}; it has {sorted(present)}.")
    if present <= wanted:
        return dataset
    return dataset.filter(lambda name: name in wanted, input_columns="class_name")


__all__ = ["SOURCES", "open_dataset"]
