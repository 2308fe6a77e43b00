"""Exact threshold-free ranking metrics: pixel AUROC, image AUROC and image AP.

All curves are exact: every distinct score is a threshold and tied scores form one step, as in
scikit-learn's `roc_auc_score` / `average_precision_score` (the results agree to float rounding).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import UndefinedMetricError
from .inputs import check_maps_and_masks, check_scores_and_labels


def partial_roc_area(
    negative_scores: np.ndarray, positive_scores: np.ndarray, positive_weights: np.ndarray, fpr_limit: float
) -> float:
    """Area under the curve `(FPR(t), P(t))` for FPR from 0 to `fpr_limit`, not normalised.

    `FPR(t)` is the share of negatives scoring `>= t`, `P(t)` the summed weight of positives scoring `>= t`;
    points sit at every distinct score, consecutive points are joined linearly, and the curve is cut at
    `fpr_limit` by linear interpolation. With weights `1 / n_pos` and `fpr_limit=1` this is the AUROC; with
    per-region weights it is the PRO curve of AUPRO.

    The negatives are reduced to those above the cut with one `np.partition`, only those are sorted (in place),
    and each positive finds its place among them by binary search: no global argsort, no extra copy.

    Args:
        negative_scores: `(n_neg,)` scores of negatives; partitioned in place, so pass a private copy.
        positive_scores: `(n_pos,)` scores of positives.
        positive_weights: `(n_pos,)` weight of each positive.
        fpr_limit: upper integration limit in `(0, 1]`.
    """
    n_neg = negative_scores.size
    n_top = min(n_neg, math.floor(fpr_limit * n_neg) + 1)
    cut = n_neg - n_top
    if cut > 0:
        negative_scores.partition(cut)
    top = negative_scores[cut:]
    top.sort()
    pivot = top[0]
    n_top_at_pivot = int(np.searchsorted(top, pivot, side="right"))
    above_pivot = top[n_top_at_pivot:]
    n_at_pivot = n_top_at_pivot + int(np.count_nonzero(negative_scores[:cut] == pivot))

    # Groups of negatives above the pivot lie wholly below the limit: each positive adds its weight over the
    # FPR span of the negatives it beats, and half of it over the span of the negatives it ties with.
    order = np.argsort(positive_scores, kind="stable")
    sorted_scores = positive_scores[order]
    n_below = np.searchsorted(above_pivot, sorted_scores, side="left")
    n_below_or_tied = np.searchsorted(above_pivot, sorted_scores, side="right")
    area = float(np.dot(positive_weights[order], (n_below + n_below_or_tied) * 0.5)) / n_neg

    # The group of negatives tied at the pivot holds the segment that crosses `fpr_limit`.
    weight_above = float(positive_weights[positive_scores > pivot].sum())
    weight_from_pivot = weight_above + float(positive_weights[positive_scores == pivot].sum())
    fpr_start = above_pivot.size / n_neg
    fpr_end = (above_pivot.size + n_at_pivot) / n_neg
    if fpr_end <= fpr_limit:
        return area + (fpr_end - fpr_start) * (weight_above + weight_from_pivot) / 2
    weight_at_limit = weight_above + (fpr_limit - fpr_start) / (fpr_end - fpr_start) * (
        weight_from_pivot - weight_above
    )
    return area + (fpr_limit - fpr_start) * (weight_above + weight_at_limit) / 2


def binary_auroc(scores: np.ndarray, is_positive: np.ndarray, metric: str = "AUROC") -> float:
    """Exact AUROC of 1-D `scores` against the bool `is_positive`; raises `UndefinedMetricError` if one class
    is absent."""
    n_pos = int(np.count_nonzero(is_positive))
    if n_pos == 0 or n_pos == is_positive.size:
        missing = "anomalous (positive)" if n_pos == 0 else "normal (negative)"
        raise UndefinedMetricError(metric, f"there are no {missing} samples")
    positives = scores[is_positive]
    weights = np.full(n_pos, 1.0 / n_pos)
    return partial_roc_area(scores[~is_positive], positives, weights, fpr_limit=1.0)


def pixel_auroc(anomaly_maps: Any, masks: Any) -> float:
    """Pixel AUROC over all pixels of all images.

    Args:
        anomaly_maps: `(N, H, W)` anomaly scores, numpy or torch.
        masks: `(N, H, W)` binary ground truth.

    Raises:
        UndefinedMetricError: no anomalous or no normal pixel.
        ValueError: invalid inputs (NaN/inf, non-binary masks, shape mismatch).
    """
    maps, masks = check_maps_and_masks(anomaly_maps, masks)
    return binary_auroc(maps.reshape(-1), masks.reshape(-1), metric="pixel AUROC")


def image_auroc(scores: Any, labels: Any) -> float:
    """Image AUROC of `(N,)` scores against `(N,)` binary labels (1 = anomalous).

    Raises:
        UndefinedMetricError: no anomalous or no normal image.
    """
    scores, labels = check_scores_and_labels(scores, labels)
    return binary_auroc(scores, labels, metric="image AUROC")


def image_ap(scores: Any, labels: Any) -> float:
    """Image average precision of `(N,)` scores against `(N,)` binary labels (1 = anomalous).

    `AP = sum_k (R_k - R_{k-1}) P_k` over distinct thresholds, as scikit-learn's `average_precision_score`.

    Raises:
        UndefinedMetricError: no anomalous image.
    """
    scores, labels = check_scores_and_labels(scores, labels)
    if not labels.any():
        raise UndefinedMetricError("image AP", "there are no anomalous (positive) samples")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    last_of_tie = np.append(np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1)
    true_positives = np.cumsum(labels[order])[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall_step = np.diff(true_positives, prepend=0) / true_positives[-1]
    return float(np.dot(recall_step, precision))
