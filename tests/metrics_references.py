"""Slow, literal reference implementations and random data for the metric tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def regions_of(masks: np.ndarray, structure: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """`(image index, region mask)` for every connected component of every mask."""
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=structure)
        regions += [(index, labelled == label) for label in range(1, count + 1)]
    return regions


def brute_force_aupro(
    maps: np.ndarray, masks: np.ndarray, fpr_limit: float, structure: np.ndarray = EIGHT_CONNECTED
) -> float:
    """Every distinct score as threshold (`map >= t`), curve from (0, 0), linear interpolation at the limit."""
    regions = regions_of(masks, structure)
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fprs.append((predicted & normal).sum() / normal.sum())
        pros.append(np.mean([predicted[index][region].mean() for index, region in regions]))
    area = 0.0
    for start in range(len(fprs) - 1):
        x0, x1, y0, y1 = fprs[start], fprs[start + 1], pros[start], pros[start + 1]
        if x0 >= fpr_limit:
            break
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_limit = y0 + (fpr_limit - x0) / (x1 - x0) * (y1 - y0)
            area += (fpr_limit - x0) * (y0 + y_limit) / 2
            break
    return area / fpr_limit


def loop_aupro_anomalyclip(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """The AnomalyCLIP protocol as a direct loop: 200 thresholds, `map > t`, FPRs below the limit min-max
    rescaled, trapezoid via scikit-learn's `auc`."""
    lowest, highest = maps.min(), maps.max()
    regions = regions_of(masks, EIGHT_CONNECTED)
    normal = ~masks
    fprs, pros = [], []
    for threshold in np.arange(lowest, highest, (highest - lowest) / 200):
        predicted = maps > threshold
        pros.append(np.mean([predicted[index][region].sum() / region.sum() for index, region in regions]))
        fprs.append((predicted & normal).sum() / normal.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    kept = fprs < fpr_limit
    rescaled = (fprs[kept] - fprs[kept].min()) / (fprs[kept].max() - fprs[kept].min())
    return auc(rescaled, pros[kept])


def random_maps_and_masks(
    rng: np.random.Generator, n_images: int, size: int, n_levels: int | None = None, blobs: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Maps (ties when `n_levels` is set) and masks with blobs, scattered pixels and some empty masks."""
    maps = rng.random((n_images, size, size))
    if n_levels is not None:
        maps = np.floor(maps * n_levels) / n_levels
    masks = np.zeros((n_images, size, size), dtype=bool)
    for index in range(n_images):
        if index % 3 == 2:
            continue
        if blobs:
            row, col = rng.integers(0, size - 3, 2)
            masks[index, row : row + rng.integers(1, 4), col : col + rng.integers(1, 5)] = True
        masks[index] |= rng.random((size, size)) < 0.04
        maps[index][masks[index]] += rng.random() * 0.5
    return maps, masks


def anomalib_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """anomalib's `F1AdaptiveThreshold` written out: torchmetrics' exact precision-recall curve (thresholds are the
    distinct scores, ascending; recall is 1 when there is no positive; a last point (P=1, R=0) has no threshold),
    `F1 = 2PR / (P + R + 1e-10)` with NaN as 0, and the threshold at the first argmax."""
    labels = labels.astype(bool)
    thresholds = np.unique(scores)
    true_positives = np.array([np.sum((scores >= t) & labels) for t in thresholds])
    false_positives = np.array([np.sum((scores >= t) & ~labels) for t in thresholds])
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / labels.sum() if labels.any() else np.ones(thresholds.size)
    precision, recall = np.append(precision, 1.0), np.append(recall, 0.0)
    f1 = np.nan_to_num(2 * precision * recall / (precision + recall + 1e-10), nan=0.0)
    return float(thresholds[np.argmax(f1)])
