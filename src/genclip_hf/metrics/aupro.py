"""AUPRO: area under the per-region-overlap curve, in the `exact` and `anomalyclip` protocols (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from .errors import UndefinedMetricError
from .inputs import check_maps_and_masks
from .ranking import partial_roc_area

AUPRO_MODES = ("exact", "anomalyclip")
FPR_LIMIT = 0.3
"""The protocol's AUPRO integration limit (false-positive rate)."""
ANOMALYCLIP_N_THRESHOLDS = 200
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _labelled_images(masks: np.ndarray) -> Iterator[tuple[int, np.ndarray, int]]:
    """8-connected ground-truth regions of each non-empty mask.

    Yields:
        `(image_index, region_ids, n_regions)`: `region_ids` `(n_anomalous_pixels,)` numbers the image's regions
        from 0, for its anomalous pixels in the order of `mask[mask]`.
    """
    for index in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)):
        labelled, count = ndimage.label(masks[index], structure=_EIGHT_CONNECTED)
        yield int(index), labelled[masks[index]] - 1, count


def _check_defined(masks: np.ndarray) -> None:
    if not masks.any():
        raise UndefinedMetricError("AUPRO", "the masks contain no anomalous region")
    if masks.all():
        raise UndefinedMetricError("AUPRO", "there is no normal pixel, so the false positive rate is undefined")


def exact_pro_inputs(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PRO curve as a weighted ROC curve: PRO(t) is the mean over regions of the covered share of each
    region, i.e. a sum over anomalous pixels of `1 / (n_regions * area(region))`.

    Returns:
        `(negatives, positives, weights)`: `(n_neg,)` scores of normal pixels (a private copy), `(n_pos,)` scores
        of anomalous pixels and their `(n_pos,)` weights (summing to 1).
    """
    _check_defined(masks)
    scores, inverse_areas = [], []
    n_regions = 0
    for index, region_ids, count in _labelled_images(masks):
        scores.append(maps[index][masks[index]])
        inverse_areas.append(1.0 / np.bincount(region_ids, minlength=count)[region_ids])
        n_regions += count
    return maps[~masks], np.concatenate(scores), np.concatenate(inverse_areas) / n_regions


def _aupro_exact(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Every distinct score is a threshold; PRO is integrated over FPR in `[0, fpr_limit]`, divided by it."""
    negatives, positives, weights = exact_pro_inputs(maps, masks)
    return partial_roc_area(negatives, positives, weights, fpr_limit) / fpr_limit


def anomalyclip_thresholds(maps: np.ndarray) -> np.ndarray:
    """The 200 evenly spaced thresholds of the AnomalyCLIP protocol (`arange(min, max, (max - min) / 200)`;
    float rounding may yield 201)."""
    lowest, highest = maps.min(), maps.max()
    if lowest == highest:
        raise UndefinedMetricError("AUPRO (anomalyclip)", "the anomaly maps are constant, so there is no threshold")
    return np.arange(lowest, highest, (highest - lowest) / ANOMALYCLIP_N_THRESHOLDS)


def anomalyclip_pro_points(
    maps: np.ndarray, masks: np.ndarray, fpr_limit: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points of the AnomalyCLIP protocol's PRO curve that it integrates: at each threshold `t` the
    prediction is `map > t`; PRO is the mean covered share over all regions; FPR is over all normal pixels; only
    points with `FPR < fpr_limit` are kept.

    Vectorised: a pixel with score `s` is predicted anomalous exactly at the thresholds below `s`, so
    histograms of that count (per region, and over normal pixels) give every point of the curve at once.
    Computed image by image, so memory stays at a few maps.

    Returns:
        `(thresholds, fprs, pros)`, each `(P,)`, by increasing threshold (decreasing FPR).

    Raises:
        UndefinedMetricError: no region, no normal pixel, constant maps, or fewer than two distinct kept FPRs.
    """
    _check_defined(masks)
    thresholds = anomalyclip_thresholds(maps)
    n_levels = thresholds.size + 1
    normal_histogram = np.zeros(n_levels, dtype=np.int64)
    for image_map, mask in zip(maps, masks, strict=True):
        normal_histogram += np.bincount(np.searchsorted(thresholds, image_map[~mask]), minlength=n_levels)
    region_histograms = []
    for index, region_ids, count in _labelled_images(masks):
        levels = np.searchsorted(thresholds, maps[index][masks[index]])
        histogram = np.bincount(region_ids * n_levels + levels, minlength=count * n_levels)
        region_histograms.append(histogram.reshape(count, n_levels))
    region_histogram = np.concatenate(region_histograms)

    # Predicted anomalous at threshold k <=> more than k thresholds lie below the score.
    false_positives = np.cumsum(normal_histogram[::-1])[::-1][1:]
    fprs = false_positives / normal_histogram.sum()
    covered = np.cumsum(region_histogram[:, ::-1], axis=1)[:, ::-1][:, 1:]
    pros = (covered / region_histogram.sum(axis=1, keepdims=True)).mean(axis=0)

    kept = fprs < fpr_limit
    if np.unique(fprs[kept]).size < 2:
        raise UndefinedMetricError(
            "AUPRO (anomalyclip)", f"fewer than two distinct false positive rates below {fpr_limit}"
        )
    return thresholds[kept], fprs[kept], pros[kept]


def anomalyclip_area(fprs: np.ndarray, pros: np.ndarray) -> float:
    """AUPRO of the AnomalyCLIP protocol from `anomalyclip_pro_points`: FPRs min-max rescaled to [0, 1], then
    the trapezoid rule by increasing FPR."""
    rescaled = ((fprs - fprs.min()) / (fprs.max() - fprs.min()))[::-1]
    heights = pros[::-1]
    return float((np.diff(rescaled) * (heights[1:] + heights[:-1]) / 2).sum())


def _aupro_anomalyclip(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """The protocol behind the paper's PRO numbers (see `anomalyclip_pro_points` and `anomalyclip_area`)."""
    _, fprs, pros = anomalyclip_pro_points(maps, masks, fpr_limit)
    return anomalyclip_area(fprs, pros)


def aupro(
    anomaly_maps: Any,
    masks: Any,
    mode: Literal["exact", "anomalyclip"] = "exact",
    fpr_limit: float = FPR_LIMIT,
) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`.

    Regions are the 8-connected components of each ground-truth mask; PRO at a threshold is the covered share
    of a region averaged over all regions of all images; FPR is over all normal pixels of all images.

    - `exact` (default): every distinct score is a threshold, linear interpolation at `fpr_limit`, area
      divided by `fpr_limit` (MVTec reference definition). Constant maps give `fpr_limit / 2` (the chance
      diagonal).
    - `anomalyclip`: 200 evenly spaced thresholds, FPRs below `fpr_limit` min-max rescaled before the
      trapezoid (the protocol of AnomalyCLIP and of the paper's PRO column). Undefined for constant maps.

    Args:
        anomaly_maps: `(N, H, W)` anomaly scores, numpy or torch, finite.
        masks: `(N, H, W)` binary ground truth (all zero for normal images).
        mode: `"exact"` or `"anomalyclip"`.
        fpr_limit: integration limit in `(0, 1]`.

    Raises:
        UndefinedMetricError: no anomalous region, no normal pixel, or (anomalyclip) no usable curve.
        ValueError: invalid inputs or arguments.
    """
    if mode not in AUPRO_MODES:
        raise ValueError(f"mode must be one of {AUPRO_MODES}, got {mode!r}")
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    maps, masks = check_maps_and_masks(anomaly_maps, masks)
    if mode == "exact":
        return _aupro_exact(maps, masks, fpr_limit)
    return _aupro_anomalyclip(maps, masks, fpr_limit)
