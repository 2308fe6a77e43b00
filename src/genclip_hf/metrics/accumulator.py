"""Streaming, per-class accumulation of anomaly maps and image scores, mergeable across processes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from .aupro import AUPRO_MODES, FPR_LIMIT, aupro
from .errors import UndefinedMetricError, UndefinedMetricWarning
from .inputs import check_maps_and_masks, check_scores_and_labels
from .ranking import image_ap, image_auroc, pixel_auroc

METRIC_NAMES = ("pixel_auroc", "aupro", "image_auroc", "image_ap")


@dataclass
class _ClassRecords:
    """Everything stored for one class; each list holds one array per update."""

    anomaly_maps: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    sample_ids: list[Hashable] = field(default_factory=list)

    def consolidate(self) -> None:
        """Joins each list into a single array, so that computing twice does not copy twice."""
        for name in ("anomaly_maps", "masks", "scores", "labels"):
            arrays = getattr(self, name)
            if len(arrays) > 1:
                setattr(self, name, [np.concatenate(arrays)])


class AnomalyMetricAccumulator:
    """Collects a dataset batch by batch and computes, per class, pixel AUROC, AUPRO, image AUROC and
    image AP, plus their mean over classes.

    Storage is float32 for maps and bool for masks (`5 * N * H * W` bytes); `compute` adds about one more copy
    of the largest class.

    Distributed evaluation with Accelerate, two options that never count a sample twice:

    1. gather every batch with `accelerator.gather_for_metrics(...)` (it drops the samples that pad the last
       batch) and call `update` with the gathered batch on every process; or
    2. call `update` with each process's own batches and unique `sample_ids`, then `gather(accelerator)` once:
       it merges all processes' records and ignores repeated sample ids.

    Undefined metrics (e.g. image AUROC of a class without normal images) are stored as `nan`, their reasons
    in `compute()["undefined"]`, and an `UndefinedMetricWarning` is emitted; class means skip them.

    Args:
        aupro_mode: `"exact"` or `"anomalyclip"` (see `aupro`).
        fpr_limit: AUPRO integration limit.
    """

    def __init__(self, aupro_mode: Literal["exact", "anomalyclip"] = "exact", fpr_limit: float = FPR_LIMIT):
        if aupro_mode not in AUPRO_MODES:
            raise ValueError(f"aupro_mode must be one of {AUPRO_MODES}, got {aupro_mode!r}")
        self.aupro_mode = aupro_mode
        self.fpr_limit = fpr_limit
        self.reset()

    def reset(self) -> None:
        """Forgets every sample."""
        self._records: dict[str, _ClassRecords] = {}
        self._seen_sample_ids: set[Hashable] = set()
        self._uses_sample_ids: bool | None = None

    def __len__(self) -> int:
        return sum(sum(len(scores) for scores in records.scores) for records in self._records.values())

    def class_arrays(self, class_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Everything stored for one class: maps `(N, H, W)` float32, masks `(N, H, W)` bool, scores `(N,)`, labels
        `(N,)` (for curves and pictures of the class)."""
        if class_name not in self._records:
            raise ValueError(f"class_name {class_name!r} has no samples; the accumulator has {self.class_names}.")
        records = self._records[class_name]
        records.consolidate()
        return records.anomaly_maps[0], records.masks[0], records.scores[0], records.labels[0]

    @property
    def class_names(self) -> list[str]:
        """Classes in order of first appearance."""
        return list(self._records)

    def update(
        self,
        anomaly_maps: Any,
        masks: Any,
        scores: Any,
        labels: Any,
        class_names: str | Sequence[str],
        sample_ids: Sequence[Hashable] | None = None,
    ) -> None:
        """Adds a batch.

        Args:
            anomaly_maps: `(B, H, W)` anomaly maps (numpy or torch), stored as float32.
            masks: `(B, H, W)` binary ground truth (all zero for normal images), stored as bool.
            scores: `(B,)` image anomaly scores.
            labels: `(B,)` image labels, 1 = anomalous.
            class_names: `B` class names, or one name for the whole batch.
            sample_ids: optional `B` unique ids (e.g. image paths); a sample whose id was seen before is
                ignored. Give them on every update or on none; `gather` needs them when several processes ran.
        """
        maps, masks = check_maps_and_masks(anomaly_maps, masks)
        scores, labels = check_scores_and_labels(scores, labels)
        batch_size = len(maps)
        if len(scores) != batch_size:
            raise ValueError(f"scores has {len(scores)} entries but anomaly_maps has {batch_size} maps")
        names = [class_names] * batch_size if isinstance(class_names, str) else list(class_names)
        if len(names) != batch_size:
            raise ValueError(f"class_names has {len(names)} entries but anomaly_maps has {batch_size} maps")
        if self._uses_sample_ids is not None and self._uses_sample_ids != (sample_ids is not None):
            raise ValueError("pass sample_ids to every update or to none")
        self._uses_sample_ids = sample_ids is not None

        keep = np.ones(batch_size, dtype=bool)
        if sample_ids is not None:
            if len(sample_ids) != batch_size:
                raise ValueError(f"sample_ids has {len(sample_ids)} entries but anomaly_maps has {batch_size} maps")
            for index, sample_id in enumerate(sample_ids):
                keep[index] = sample_id not in self._seen_sample_ids
                self._seen_sample_ids.add(sample_id)

        names_array = np.asarray(names, dtype=object)
        for name in dict.fromkeys(names):
            selected = keep & (names_array == name)
            if not selected.any():
                continue
            records = self._records.setdefault(name, _ClassRecords())
            if records.anomaly_maps and records.anomaly_maps[0].shape[1:] != maps.shape[1:]:
                raise ValueError(
                    f"class {name!r}: anomaly maps of shape {maps.shape[1:]} after maps of shape "
                    f"{records.anomaly_maps[0].shape[1:]}; resize them to one size per class"
                )
            records.anomaly_maps.append(maps[selected].astype(np.float32, copy=False))
            records.masks.append(masks[selected])
            records.scores.append(scores[selected].astype(np.float64, copy=False))
            records.labels.append(labels[selected])
            if sample_ids is not None:
                records.sample_ids.extend(
                    sample_id for sample_id, kept in zip(sample_ids, selected, strict=True) if kept
                )

    def merge(self, other: AnomalyMetricAccumulator) -> None:
        """Adds the samples of `other`; with sample ids, samples already present are ignored."""
        if None not in (self._uses_sample_ids, other._uses_sample_ids) and (
            self._uses_sample_ids != other._uses_sample_ids
        ):
            raise ValueError("cannot merge an accumulator that has sample_ids with one that has none")
        for name, records in other._records.items():
            records.consolidate()
            self.update(
                records.anomaly_maps[0],
                records.masks[0],
                records.scores[0],
                records.labels[0],
                name,
                sample_ids=records.sample_ids if other._uses_sample_ids else None,
            )

    def gather(self, accelerator: Any) -> None:
        """Replaces the local records by the union of all processes' records (the same on every process).

        For accumulators fed with each process's own batches and `sample_ids`; repeated ids (the padding
        Accelerate adds to the last batch) are dropped. Every process must call it. Uses
        `accelerate.utils.gather_object`, so each process briefly holds all records.
        """
        if accelerator.num_processes == 1:
            return
        if not self._uses_sample_ids:
            raise ValueError(
                "gather() needs the sample_ids of every update to drop the samples Accelerate repeats; "
                "alternatively gather each batch with accelerator.gather_for_metrics before update()"
            )
        from accelerate.utils import gather_object

        gathered = gather_object([self])
        merged = AnomalyMetricAccumulator(self.aupro_mode, self.fpr_limit)
        for accumulator in gathered:
            merged.merge(accumulator)
        self._records, self._seen_sample_ids = merged._records, merged._seen_sample_ids

    def compute(self) -> dict[str, Any]:
        """Computes the metrics of every class (values in [0, 1]).

        Returns:
            `{"per_class": {class: {metric: value, "n_images": int, "n_anomalous": int}}, "mean": {metric:
            value}, "undefined": {class: {metric: reason}}, "aupro_mode": str, "fpr_limit": float}` with the
            metrics `pixel_auroc`, `aupro`, `image_auroc`, `image_ap`; `mean` is over the classes where the
            metric is defined.
        """
        per_class: dict[str, dict[str, float]] = {}
        undefined: dict[str, dict[str, str]] = {}
        for name, records in self._records.items():
            records.consolidate()
            maps, masks = records.anomaly_maps[0], records.masks[0]
            scores, labels = records.scores[0], records.labels[0]
            metric_functions: dict[str, Callable[[], float]] = {
                "pixel_auroc": partial(pixel_auroc, maps, masks),
                "aupro": partial(aupro, maps, masks, self.aupro_mode, self.fpr_limit),
                "image_auroc": partial(image_auroc, scores, labels),
                "image_ap": partial(image_ap, scores, labels),
            }
            values: dict[str, float] = {}
            for metric, function in metric_functions.items():
                try:
                    values[metric] = float(function())
                except UndefinedMetricError as error:
                    values[metric] = math.nan
                    undefined.setdefault(name, {})[metric] = error.reason
                    warnings.warn(f"class {name!r}: {error}", UndefinedMetricWarning, stacklevel=2)
            values["n_images"] = int(len(labels))
            values["n_anomalous"] = int(labels.sum())
            per_class[name] = values
        mean = {}
        for metric in METRIC_NAMES:
            defined = [values[metric] for values in per_class.values() if not math.isnan(values[metric])]
            mean[metric] = float(np.mean(defined)) if defined else math.nan
        return {
            "per_class": per_class,
            "mean": mean,
            "undefined": undefined,
            "aupro_mode": self.aupro_mode,
            "fpr_limit": self.fpr_limit,
        }
