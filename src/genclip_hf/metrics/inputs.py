"""Conversion and validation of metric inputs (numpy arrays, torch tensors or sequences)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(values: Any) -> np.ndarray:
    """Returns `values` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if values.is_floating_point() and values.element_size() < 4:
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def as_float(values: np.ndarray) -> np.ndarray:
    """Keeps float32/float64, widens float16 to float32 and everything else to float64."""
    if values.dtype in (np.float32, np.float64):
        return values
    if values.dtype == np.float16:
        return values.astype(np.float32)
    return values.astype(np.float64)


def check_finite(values: np.ndarray, name: str, first_index: int = 0) -> None:
    """Raises a ValueError naming the first item (index along axis 0, plus `first_index`) that holds NaN or inf."""
    if values.size == 0 or (np.isfinite(values.min()) and np.isfinite(values.max())):
        return
    finite_per_item = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    index = first_index + int(np.flatnonzero(~finite_per_item)[0])
    raise ValueError(f"{name}[{index}] contains NaN or inf; every value must be finite")


def as_binary(values: np.ndarray, name: str, first_index: int = 0) -> np.ndarray:
    """Returns `values` as bool; raises a ValueError naming the first item (index along axis 0, plus
    `first_index`) with a value other than 0/1."""
    if values.dtype == bool:
        return values
    binary = (values == 0) | (values == 1)
    if not binary.all():
        position = int(np.flatnonzero(~binary.reshape(len(values), -1).all(axis=1))[0])
        index = first_index + position
        found = np.unique(values[position])[:5].tolist()
        raise ValueError(
            f"{name} must be binary (bool or 0/1); {name}[{index}] holds values {found} "
            "(binarise it first, e.g. `mask > 0`)"
        )
    return values.astype(bool)


def check_maps_and_masks(anomaly_maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validates pixel-level inputs.

    Args:
        anomaly_maps: `(N, H, W)` anomaly scores (numpy or torch), finite.
        masks: `(N, H, W)` ground truth, bool or 0/1; all-zero for normal images.

    Returns:
        `(maps, masks)`: maps as float32/float64 `(N, H, W)`, masks as bool `(N, H, W)`.
    """
    maps = to_numpy(anomaly_maps)
    masks = to_numpy(masks)
    if maps.ndim != 3:
        raise ValueError(f"anomaly_maps must have shape (N, H, W), got shape {maps.shape}")
    if masks.shape != maps.shape:
        raise ValueError(f"masks shape {masks.shape} does not match anomaly_maps shape {maps.shape}")
    maps = as_float(maps)
    check_finite(maps, "anomaly_maps")
    return maps, as_binary(masks, "masks")


def check_scores_and_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validates image-level inputs.

    Args:
        scores: `(N,)` anomaly scores (numpy, torch or a sequence), finite.
        labels: `(N,)` ground truth, bool or 0/1 (1 = anomalous).

    Returns:
        `(scores, labels)`: scores as float32/float64 `(N,)`, labels as bool `(N,)`.
    """
    scores = to_numpy(scores)
    labels = to_numpy(labels)
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (N,), got shape {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels shape {labels.shape} does not match scores shape {scores.shape}")
    scores = as_float(scores)
    check_finite(scores, "scores")
    return scores, as_binary(labels, "labels")
