"""`evaluate` module for GenCLIP's anomaly metrics, a thin wrapper over `genclip_hf.metrics`.

Load it offline with `evaluate.load(genclip_hf.metrics.EVALUATE_MODULE_PATH, map_size=(H, W))`.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from genclip_hf.metrics.accumulator import AnomalyMetricAccumulator

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
    class_names: one class name per image.
    aupro_mode: (compute only) `"exact"` (default) or `"anomalyclip"`.
    fpr_limit: (compute only) AUPRO integration limit, default 0.3.
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
