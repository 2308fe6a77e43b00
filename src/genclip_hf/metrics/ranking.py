"""Exact threshold-free ranking metrics: pixel AUROC, image AUROC and image AP, and the exact ROC curve points.

All curves are exact: every distinct score is a threshold and tied scores form one step, as in
scikit-learn's `roc_auc_score` / `average_precision_score` / `roc_curve` (the results agree to float rounding).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .errors import UndefinedMetricError
from .inputs import check_maps_and_masks, check_scores_and_labels


class TopNegatives(NamedTuple):
    """The negatives that decide a curve up to an FPR limit, from `top_negatives`.

    Attributes:
        sorted_top: `(n_top,)` ascending; its first value, the pivot, is the lowest threshold that can matter.
        n_negatives: number of all negatives.
        n_tied_below: negatives equal to the pivot that are not in `sorted_top`.
    """

    sorted_top: np.ndarray
    n_negatives: int
    n_tied_below: int


def top_negatives(negative_scores: np.ndarray, fpr_limit: float) -> TopNegatives:
    """Selects and sorts the `floor(fpr_limit * n_neg) + 1` highest negatives with one `np.partition`.

    Every threshold above the pivot (the lowest selected score) has an FPR of at most `fpr_limit`; the pivot's
    tie group holds the segment that crosses it. No global argsort, no extra copy.

    Args:
        negative_scores: `(n_neg,)` scores of negatives, `n_neg >= 1`; partitioned in place, so pass a private copy.
        fpr_limit: in `(0, 1]`.
    """
    n_neg = negative_scores.size
    n_top = min(n_neg, math.floor(fpr_limit * n_neg) + 1)
    cut = n_neg - n_top
    if cut > 0:
        negative_scores.partition(cut)
    top = negative_scores[cut:]
    top.sort()
    return TopNegatives(top, n_neg, int(np.count_nonzero(negative_scores[:cut] == top[0])))


def area_under_top(
    top: TopNegatives, positive_scores: np.ndarray, positive_weights: np.ndarray, fpr_limit: float
) -> float:
    """Area under the curve `(FPR(t), P(t))` for FPR from 0 to `fpr_limit`, not normalised.

    `FPR(t)` is the share of negatives scoring `>= t`, `P(t)` the summed weight of positives scoring `>= t`;
    points sit at every distinct score, consecutive points are joined linearly, and the curve is cut at
    `fpr_limit` by linear interpolation. With weights `1 / n_pos` and `fpr_limit=1` this is the AUROC; with
    per-region weights it is the PRO curve of AUPRO. Each positive finds its place among the sorted top
    negatives by binary search.

    Args:
        top: `top_negatives(negative_scores, fpr_limit)`.
        positive_scores: `(n_pos,)` scores of positives.
        positive_weights: `(n_pos,)` weight of each positive.
        fpr_limit: upper integration limit in `(0, 1]`, the one `top` was selected with.
    """
    sorted_top, n_neg = top.sorted_top, top.n_negatives
    pivot = sorted_top[0]
    n_top_at_pivot = int(np.searchsorted(sorted_top, pivot, side="right"))
    above_pivot = sorted_top[n_top_at_pivot:]
    n_at_pivot = n_top_at_pivot + top.n_tied_below
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


def partial_roc_area(
    negative_scores: np.ndarray, positive_scores: np.ndarray, positive_weights: np.ndarray, fpr_limit: float
) -> float:
    """`area_under_top` of the negatives' `top_negatives`; partitions `negative_scores` in place."""
    return area_under_top(top_negatives(negative_scores, fpr_limit), positive_scores, positive_weights, fpr_limit)


def _first_of_ties(sorted_values: np.ndarray) -> np.ndarray:
    """`(n,)` bool: True at the first of each group of equal values of an ascending array."""
    first = np.empty(sorted_values.size, dtype=bool)
    first[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return first


def _spread(sorted_values: np.ndarray, budget: int | None) -> np.ndarray:
    """The distinct values of an ascending array, or, if there are more than `budget`, the distinct values at
    `budget` evenly spaced ranks (the lowest and highest included)."""
    first = _first_of_ties(sorted_values)
    if budget is None or np.count_nonzero(first) <= budget:
        return sorted_values[first]
    ranks = np.linspace(0, sorted_values.size - 1, budget).round().astype(np.intp)
    return np.unique(sorted_values[ranks])


def partial_roc_points(
    top: TopNegatives,
    positive_scores: np.ndarray,
    positive_weights: np.ndarray,
    fpr_limit: float,
    max_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of the curve whose area `area_under_top` computes: `(FPR(t), P(t))` at every distinct score `t`
    (predicted positive: score `>= t`), from `(0, 0)` at `t = +inf` up to `fpr_limit`.

    When the curve crosses `fpr_limit` between two thresholds, its last point is the exact linear interpolation
    at `fpr_limit`, with threshold `nan`. With `max_points`, a curve with more points keeps exact points only:
    the distinct scores at evenly spaced ranks among positives and among negatives, the first and the last point,
    and the two thresholds around the limit; joining them linearly follows the exact curve within one rank step.

    Args:
        top: `top_negatives(negative_scores, fpr_limit)`.
        positive_scores: `(n_pos,)` scores of positives.
        positive_weights: `(n_pos,)` weight of each positive.
        fpr_limit: in `(0, 1]`, the one `top` was selected with.
        max_points: most points returned (at least 8), or None for every distinct score.

    Returns:
        `(fpr, y, thresholds)`, each `(P,)`: FPR and summed weight non-decreasing, thresholds decreasing.
    """
    if max_points is not None and max_points < 8:
        raise ValueError(f"max_points must be at least 8 or None, got {max_points}")
    negatives, n_neg = top.sorted_top, top.n_negatives
    pivot = negatives[0]
    order = np.argsort(positive_scores, kind="stable")
    sorted_positives = positive_scores[order]
    weight_from = np.append(np.cumsum(positive_weights[order][::-1])[::-1], 0.0)
    # The whole curve (down to the lowest positive) lies within the limit only when the pivot's FPR is 1 and
    # fpr_limit is 1; otherwise the pivot's point lies beyond the limit and positives below it do not matter.
    whole = (negatives.size + top.n_tied_below) / n_neg <= fpr_limit
    positives = sorted_positives if whole else sorted_positives[np.searchsorted(sorted_positives, pivot) :]

    budget_positive = budget_negative = None
    if max_points is not None:
        budget_positive = min(int(np.count_nonzero(_first_of_ties(positives))), (max_points - 2) // 2)
        budget_negative = max_points - 2 - budget_positive
    next_above_pivot = [
        values[index]
        for values in (negatives, positives)
        if (index := int(np.searchsorted(values, pivot, side="right"))) < values.size
    ]
    candidates = np.union1d(_spread(negatives, budget_negative), _spread(positives, budget_positive))
    required = np.asarray([min(next_above_pivot)] if next_above_pivot else [], dtype=candidates.dtype)
    thresholds = np.union1d(candidates, required)[::-1]

    false_positives = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    false_positives += top.n_tied_below * (thresholds <= pivot)
    fpr = np.concatenate([[0.0], false_positives / n_neg])
    y = np.concatenate([[0.0], weight_from[np.searchsorted(sorted_positives, thresholds, side="left")]])
    thresholds = np.concatenate([[np.inf], thresholds])
    if fpr[-1] > fpr_limit:
        if fpr[-2] == fpr_limit:
            return fpr[:-1], y[:-1], thresholds[:-1]
        y[-1] = y[-2] + (fpr_limit - fpr[-2]) / (fpr[-1] - fpr[-2]) * (y[-1] - y[-2])
        fpr[-1], thresholds[-1] = fpr_limit, np.nan
    return fpr, y, thresholds


def check_both_classes(is_positive: np.ndarray, metric: str) -> int:
    """Number of positives of the bool `is_positive`; raises `UndefinedMetricError` if one class is absent."""
    n_pos = int(np.count_nonzero(is_positive))
    if n_pos == 0 or n_pos == is_positive.size:
        missing = "anomalous (positive)" if n_pos == 0 else "normal (negative)"
        raise UndefinedMetricError(metric, f"there are no {missing} samples")
    return n_pos


def binary_auroc(scores: np.ndarray, is_positive: np.ndarray, metric: str = "AUROC") -> float:
    """Exact AUROC of 1-D `scores` against the bool `is_positive`; raises `UndefinedMetricError` if one class
    is absent."""
    n_pos = check_both_classes(is_positive, metric)
    weights = np.full(n_pos, 1.0 / n_pos)
    return partial_roc_area(scores[~is_positive], scores[is_positive], weights, fpr_limit=1.0)


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
