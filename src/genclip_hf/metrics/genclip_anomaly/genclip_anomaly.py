"""`evaluate` module for GenCLIP's anomaly metrics, a thin wrapper over `genclip_hf.metrics`.

Load it offline with `evaluate.load(genclip_hf.metrics.EVALUATE_MODULE_PATH, map_size=(H, W))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from genclip_hf.metrics.accumulator import AnomalyMetricAccumulator
from genclip_hf.metrics.inputs import check_maps_and_masks, check_scores_and_labels, to_numpy

_INPUT_NAMES = ("anomaly_maps", "masks", "scores", "labels", "class_names")

_DESCRIPTION = """\
Per-class pixel AUROC, AUPRO (exact or AnomalyCLIP protocol), image AUROC and image AP for zero-shot anomaly
detection, and their mean over classes (the protocol of GenCLIP, AnomalyCLIP and AdaCLIP).
"""

_KWARGS_DESCRIPTION = """
Args:
    anomaly_maps: one `(H, W)` float map per image; `(H, W)` is the `map_size` given to `evaluate.load`
        (default `(518, 518)`, the model input size of the protocol).
    masks: one `(H, W)` binary ground-truth mask per image (all zero for normal images).
    scores: one image anomaly score per image.
    labels: one label per image, 1 = anomalous.
    class_names: one class name per image (or one name for the whole batch).
    aupro_mode: (compute only) `"exact"` (default) or `"anomalyclip"`.
    fpr_limit: (compute only) AUPRO integration limit, default 0.3.
Raises:
    ValueError: (add_batch, add, compute) a missing input, inputs of different lengths, maps not of `map_size`
        or holding NaN/inf, masks or labels with values other than 0/1; the message names the input.
Returns:
    pixel_auroc, aupro, image_auroc, image_ap: means over classes, in [0, 1] (`nan` when undefined for all).
    per_class: `{class: {metric: value, "n_images": int, "n_anomalous": int}}`.
    undefined: `{class: {metric: reason}}` for metrics without a value (stored as `nan`).
Example:
    >>> metric = evaluate.load(EVALUATE_MODULE_PATH, map_size=(64, 64))
    >>> metric.add_batch(anomaly_maps=maps, masks=masks, scores=scores, labels=labels, class_names=names)
    >>> metric.compute()["aupro"]
"""

_CITATION = """\
@article{genclip2025,
  title={GenCLIP: Generalizing CLIP Prompts for Zero-shot Anomaly Detection},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenclipAnomaly(evaluate.Metric):
    """Maps, masks, scores and labels go through the Arrow cache of `evaluate` as fixed-size arrays."""

    def __init__(self, map_size: tuple[int, int] = (518, 518), **kwargs: Any):
        self.map_size = (int(map_size[0]), int(map_size[1]))
        super().__init__(**kwargs)
        # `MetricInfo` accepts a format only for `Value` features, but the numpy formatter of `datasets` reads
        # the Array2D columns as `(N, H, W)` arrays; without it `compute` would build nested Python lists.
        self.info.format = "numpy"

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "anomaly_maps": datasets.Array2D(shape=self.map_size, dtype="float32"),
                    "masks": datasets.Array2D(shape=self.map_size, dtype="bool"),
                    "scores": datasets.Value("float64"),
                    "labels": datasets.Value("int8"),
                    "class_names": datasets.Value("string"),
                }
            ),
        )

    def _validated_batch(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Checks a batch before `evaluate` casts it (a cast to bool would turn 5.0 or NaN into True)."""
        unknown = sorted(name for name, value in inputs.items() if name not in _INPUT_NAMES and value is not None)
        if unknown:
            raise ValueError(f"unknown inputs {unknown}: this module takes {list(_INPUT_NAMES)}")
        missing = [name for name in _INPUT_NAMES if inputs.get(name) is None]
        if missing:
            raise ValueError(f"missing inputs {missing}: every batch needs {list(_INPUT_NAMES)}")
        maps, masks = check_maps_and_masks(inputs["anomaly_maps"], inputs["masks"])
        if maps.shape[1:] != self.map_size:
            raise ValueError(
                f"anomaly_maps must be of map_size {self.map_size} given to evaluate.load, got {maps.shape[1:]}"
            )
        scores, labels = check_scores_and_labels(inputs["scores"], inputs["labels"])
        names = inputs["class_names"]
        if isinstance(names, str):
            names = [names] * len(maps)
        elif not isinstance(names, Sequence):
            names = to_numpy(names).tolist()
        for name, size in (("scores", len(scores)), ("class_names", len(names))):
            if size != len(maps):
                raise ValueError(f"{name} has {size} entries but anomaly_maps has {len(maps)} maps")
        return {
            "anomaly_maps": maps,
            "masks": masks,
            "scores": scores,
            "labels": labels.astype(np.int8),
            "class_names": [str(name) for name in names],
        }

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> None:
        """Adds a batch of `anomaly_maps`, `masks`, `scores`, `labels` and `class_names` (all required)."""
        super().add_batch(**self._validated_batch({"predictions": predictions, "references": references, **kwargs}))

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> None:
        """Adds one image: an `(H, W)` map and mask, a score, a label and a class name."""
        batch = {"predictions": prediction, "references": reference}
        batch.update({name: None if value is None else [value] for name, value in kwargs.items()})
        for name in ("anomaly_maps", "masks"):
            if kwargs.get(name) is not None:
                batch[name] = to_numpy(kwargs[name])[None]
        self.add_batch(**batch)

    def _compute(
        self,
        anomaly_maps: Any,
        masks: Any,
        scores: Any,
        labels: Any,
        class_names: Any,
        aupro_mode: str = "exact",
        fpr_limit: float = 0.3,
    ) -> dict[str, Any]:
        accumulator = AnomalyMetricAccumulator(aupro_mode=aupro_mode, fpr_limit=fpr_limit)
        accumulator.update(anomaly_maps, masks, scores, labels, [str(name) for name in class_names])
        results = accumulator.compute()
        return {**results["mean"], "per_class": results["per_class"], "undefined": results["undefined"]}
