"""Exact ROC and PRO curves as arrays a plot can draw, with the area the matching metric reports.

Every point is exact: `(FPR(t), TPR(t))` or `(FPR(t), PRO(t))` at a threshold `t` that is one of the scores
(predicted anomalous: score `>= t`), computed by the same ranking code as the metrics. Pixel curves keep at most
`max_points` of their points (the first and last included); image curves keep every distinct score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .aupro import AUPRO_MODES, FPR_LIMIT, anomalyclip_area, anomalyclip_pro_points, exact_pro_inputs
from .inputs import check_maps_and_masks, check_scores_and_labels
from .ranking import area_under_top, check_both_classes, partial_roc_points, top_negatives

DEFAULT_MAX_POINTS = 2000
"""Points kept on pixel curves: enough for a smooth line, small enough for a plot or a JSON file."""


@dataclass(frozen=True)
class RocCurve:
    """An ROC curve from `(0, 0)` to `(1, 1)`.

    Attributes:
        fpr: `(P,)` false positive rates, non-decreasing.
        tpr: `(P,)` true positive rates, non-decreasing.
        thresholds: `(P,)` decreasing; `+inf` for the first point.
        auroc: the area under the exact curve (equal to `image_auroc` / `pixel_auroc`).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auroc: float


@dataclass(frozen=True)
class ProCurve:
    """A per-region-overlap curve from FPR 0 up to `fpr_limit`.

    Attributes:
        fpr: `(P,)` false positive rates over normal pixels, non-decreasing.
        pro: `(P,)` mean covered share of the ground-truth regions.
        thresholds: `(P,)` decreasing. `exact`: starts at `+inf`, and the last point is `nan` when it is the
            linear interpolation at `fpr_limit`. `anomalyclip`: the protocol's thresholds (`map > t`) whose FPR is
            below `fpr_limit`.
        aupro: `aupro(anomaly_maps, masks, mode, fpr_limit)`; for `anomalyclip` it is computed on FPRs min-max
            rescaled to [0, 1], as in the protocol, while `fpr` holds them unscaled.
        mode: `"exact"` or `"anomalyclip"`.
        fpr_limit: the integration limit.
    """

    fpr: np.ndarray
    pro: np.ndarray
    thresholds: np.ndarray
    aupro: float
    mode: str
    fpr_limit: float


def _roc_curve(scores: np.ndarray, is_positive: np.ndarray, metric: str, max_points: int | None) -> RocCurve:
    """ROC curve of 1-D `scores` against the bool `is_positive`."""
    n_pos = check_both_classes(is_positive, metric)
    positives = scores[is_positive]
    top = top_negatives(scores[~is_positive], fpr_limit=1.0)
    auroc = area_under_top(top, positives, np.full(n_pos, 1.0 / n_pos), fpr_limit=1.0)
    fpr, true_positives, thresholds = partial_roc_points(top, positives, np.ones(n_pos), 1.0, max_points)
    return RocCurve(fpr=fpr, tpr=true_positives / n_pos, thresholds=thresholds, auroc=auroc)


def image_roc_curve(scores: Any, labels: Any) -> RocCurve:
    """Exact image ROC curve, one point per distinct score (scikit-learn's `roc_curve(labels, scores,
    drop_intermediate=False)`).

    Args:
        scores: `(N,)` image anomaly scores, finite.
        labels: `(N,)` binary, 1 = anomalous.

    Raises:
        UndefinedMetricError: no anomalous or no normal image.
    """
    scores, labels = check_scores_and_labels(scores, labels)
    return _roc_curve(scores, labels, "image ROC", max_points=None)


def pixel_roc_curve(anomaly_maps: Any, masks: Any, max_points: int | None = DEFAULT_MAX_POINTS) -> RocCurve:
    """Pixel ROC curve over all pixels of all images, with at most `max_points` exact points.

    Args:
        anomaly_maps: `(N, H, W)` anomaly scores, numpy or torch, finite.
        masks: `(N, H, W)` binary ground truth.
        max_points: most points kept (at least 8), or None for every distinct score.

    Raises:
        UndefinedMetricError: no anomalous or no normal pixel.
    """
    maps, masks = check_maps_and_masks(anomaly_maps, masks)
    return _roc_curve(maps.reshape(-1), masks.reshape(-1), "pixel ROC", max_points)


def pro_curve(
    anomaly_maps: Any,
    masks: Any,
    mode: Literal["exact", "anomalyclip"] = "exact",
    fpr_limit: float = FPR_LIMIT,
    max_points: int | None = DEFAULT_MAX_POINTS,
) -> ProCurve:
    """The PRO curve that `aupro` integrates, in either mode.

    - `exact`: a point at every distinct score with FPR up to `fpr_limit` (at most `max_points` of them), and the
      exact linear interpolation at `fpr_limit`; the trapezoid area of the full curve divided by `fpr_limit` is
      the AUPRO.
    - `anomalyclip`: the points at the protocol's 200 evenly spaced thresholds with FPR below `fpr_limit`.

    Args:
        anomaly_maps: `(N, H, W)` anomaly scores, numpy or torch, finite.
        masks: `(N, H, W)` binary ground truth (all zero for normal images).
        mode: `"exact"` or `"anomalyclip"`.
        fpr_limit: in `(0, 1]`.
        max_points: most points kept for `exact` (at least 8), or None for every distinct score.

    Raises:
        UndefinedMetricError: as `aupro`.
        ValueError: invalid inputs or arguments.
    """
    if mode not in AUPRO_MODES:
        raise ValueError(f"mode must be one of {AUPRO_MODES}, got {mode!r}")
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    maps, masks = check_maps_and_masks(anomaly_maps, masks)
    if mode == "anomalyclip":
        thresholds, fprs, pros = anomalyclip_pro_points(maps, masks, fpr_limit)
        area = anomalyclip_area(fprs, pros)
        return ProCurve(fprs[::-1], pros[::-1], thresholds[::-1], area, mode, fpr_limit)
    negatives, positives, weights = exact_pro_inputs(maps, masks)
    top = top_negatives(negatives, fpr_limit)
    area = area_under_top(top, positives, weights, fpr_limit) / fpr_limit
    fpr, pro, thresholds = partial_roc_points(top, positives, weights, fpr_limit, max_points)
    return ProCurve(fpr, pro, thresholds, area, mode, fpr_limit)
