"""Training data: the run's sources opened and concatenated, rows turned into model inputs (cached frozen features
or pixels, masks at the model size, labels, class names), and an epoch order that depends only on the seed."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data.sources import open_dataset
from ..images import to_rgb_image
from ..processing_anomaly_detection import AnomalyDetectionProcessor
from .feature_cache import FeatureCache

REQUIRED_COLUMNS = ("image", "mask", "label", "class_name")


def open_training_data(
    sources: Sequence[str], benchmark: str | None = None, split: str = "test", classes: Sequence[str] | None = None
) -> datasets.Dataset:
    """Open and concatenate the training sources (`[SOURCE=]PATH` each; see `genclip_hf.data.open_dataset`)."""
    if not sources:
        raise ValueError("Give training data: at least one --data [SOURCE=]PATH (or pass a dataset to train).")
    parts = []
    for entry in sources:
        source, separator, path = entry.partition("=")
        if not separator:
            source, path = benchmark, entry
        parts.append(open_dataset(path, source or None, split=split, classes=classes))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def check_training_dataset(dataset: datasets.Dataset) -> None:
    """Raise `ValueError` when `dataset` cannot train a detector (missing columns, no rows)."""
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"Training data must be a datasets.Dataset, got {type(dataset).__name__}.")
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"Training data lacks column(s) {missing}; it has {dataset.column_names}. "
            "Load it with genclip_hf.data (schema: image, mask, label, class_name, defect_type, image_path)."
        )
    if len(dataset) == 0:
        raise ValueError("Training data has no rows.")


class EpochShuffleSampler(Sampler[int]):
    """A permutation of `range(num_samples)` that depends only on `(seed, epoch)`: the same on every process, in
    every run and after a resume."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        return iter(order.tolist())


class TrainingSamples(Dataset):
    """Rows of a training dataset as model inputs.

    Each item holds `masks` `(S, S)` float32, `labels` (0/1), `class_name`, and either `frozen_features` (float16,
    from `cache`) or `pixel_values` `(3, S, S)` when there is no cache.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        processor: AnomalyDetectionProcessor,
        cache: FeatureCache | None = None,
        image_hashes: Sequence[str] | None = None,
    ):
        if (cache is None) != (image_hashes is None):
            raise ValueError("cache and image_hashes go together: give both or neither.")
        columns = ["mask", "label", "class_name"] + ([] if cache is not None else ["image"])
        self.rows = dataset.select_columns(columns)
        self.processor = processor
        self.cache = cache
        self.image_hashes = image_hashes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        size = self.processor.image_size
        sample = {"class_name": row["class_name"], "labels": torch.tensor(int(row["label"]))}
        if self.cache is not None:
            sample["frozen_features"] = self.cache.load(self.image_hashes[index])
            image_size = None if row["mask"] is None else row["mask"].size
        else:
            image = to_rgb_image(row["image"], f"image of row {index}")
            sample["pixel_values"] = self.processor.pixel_values(image)[0]
            image_size = image.size
        if row["mask"] is None:
            sample["masks"] = torch.zeros(size, size)
        else:
            sample["masks"] = self.processor.resize_masks([row["mask"]], [image_size])[0]
        return sample


def collate_samples(samples: list[dict]) -> dict:
    """Stack [`TrainingSamples`] items; `class_names` stays a list."""
    batch: dict = {"class_names": [sample["class_name"] for sample in samples]}
    for name in ("masks", "labels", "frozen_features", "pixel_values"):
        if name in samples[0]:
            batch[name] = torch.stack([sample[name] for sample in samples])
    return batch


__all__ = [
    "EpochShuffleSampler",
    "TrainingSamples",
    "check_training_dataset",
    "collate_samples",
    "open_training_data",
]
