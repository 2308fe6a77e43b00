"""Decision thresholds from anomaly scores, for image scores and for anomaly-map pixels (`genclip calibrate`).

A value is anomalous when it is `>= threshold`, the rule of the pipeline. Two methods:

- `normal_quantile`, from normal values only: with `n` normal values and `m = floor(target_fpr * n)`, let `q` be
  the `(m + 1)`-th largest normal value, i.e. numpy's `quantile(values, 1 - target_fpr, method="inverted_cdf")`.
  The threshold is the next float above `q` (`np.nextafter`, in float32 when every value is float32 or float16,
  else float64): at most `m` normal values, a share of at most `target_fpr`, are `>= threshold`, and every
  smaller float of that precision flags more than `m`. `target_fpr` is read as the decimal it prints as
  (`0.57` is 57/100).
- `f1_adaptive`, from normal and anomalous values: anomalib's `F1AdaptiveThreshold` (the distinct value `t`
  maximising the F1 score of `value >= t` over torchmetrics' exact precision-recall curve; on ties the lowest
  such `t`). Computed exactly, `F1 = 2 TP / (TP + FP + P)` compared as fractions, where anomalib adds `1e-10` to
  the float denominator; they differ only between F1 values closer than float rounding. Like anomalib, it
  returns the lowest value when there are no anomalous values (F1 is 0 everywhere) or no normal ones, and warns.

Pixel thresholds read the maps block by block, as often as needed, so the maps may be a list of arrays or a
memory-mapped array: `normal_quantile` selects the exact quantile by radix selection on the bits of the values
(one 65536-bin histogram, then at most `2**22` gathered values), `f1_adaptive` keeps the anomalous pixels and
streams the normal ones. Nothing here loads models or images: callers pass scores and maps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from ..calibration import CALIBRATION_METHODS, Calibration, Thresholds, check_target_fpr
from .errors import UndefinedMetricWarning
from .inputs import as_binary, as_float, check_finite, check_scores_and_labels, to_numpy

_DIGIT_BITS = 16
_GATHER_LIMIT = 1 << 22
_BLOCK_PIXELS = 1 << 20
_SIGN_BIT = np.uint64(1 << 63)


def _check_values(values: Any, name: str) -> np.ndarray:
    """`(N,)` finite float values, `N >= 1`."""
    values = to_numpy(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    values = as_float(values)
    check_finite(values, name)
    return values


class _PixelSource:
    """Anomaly maps (and masks) read block by block, as many times as needed, validated on every read.

    `anomaly_maps` is an `(N, H, W)` array or tensor, or a list or tuple of `(H, W)` maps or `(B, H, W)` batches
    (sizes may differ between items); `masks`, if given, has the same structure. Errors name images by their
    index over all items.
    """

    def __init__(self, anomaly_maps: Any, masks: Any = None):
        self.maps = self._items(anomaly_maps, "anomaly_maps")
        self.masks = None if masks is None else self._items(masks, "masks")
        if self.masks is not None and len(self.masks) != len(self.maps):
            raise ValueError(f"masks has {len(self.masks)} items but anomaly_maps has {len(self.maps)}")

    @staticmethod
    def _items(values: Any, name: str) -> list[Any]:
        if hasattr(values, "shape"):
            return [values]
        if isinstance(values, (list, tuple)):
            return list(values)
        raise TypeError(
            f"{name} must be an (N, H, W) array or tensor, or a list of maps that can be read several times; "
            f"got {type(values).__name__}"
        )

    @staticmethod
    def _batch(item: Any, name: str, item_index: int) -> np.ndarray:
        batch = to_numpy(item)
        if batch.ndim == 2:
            return batch[None]
        if batch.ndim != 3:
            raise ValueError(f"{name} item {item_index} must be an (H, W) map or a (B, H, W) batch, got {batch.shape}")
        return batch

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yields `(maps, masks)`: `(B, H, W)` float32/float64 finite maps and bool masks (or None)."""
        first_index = 0
        for item_index, map_item in enumerate(self.maps):
            maps = self._batch(map_item, "anomaly_maps", item_index)
            masks = None
            if self.masks is not None:
                masks = self._batch(self.masks[item_index], "masks", item_index)
                if masks.shape != maps.shape:
                    raise ValueError(
                        f"masks item {item_index} has shape {masks.shape} but its anomaly maps have {maps.shape}"
                    )
            step = max(1, _BLOCK_PIXELS // max(1, maps[0].size))
            for start in range(0, len(maps), step):
                block = as_float(maps[start : start + step])
                check_finite(block, "anomaly_maps", first_index + start)
                mask_block = (
                    None if masks is None else as_binary(masks[start : start + step], "masks", first_index + start)
                )
                yield block, mask_block
            first_index += len(maps)

    def normal_values(self) -> Iterator[np.ndarray]:
        """Yields the 1-D values of normal pixels: all pixels, or those outside the masks."""
        for maps, masks in self.blocks():
            yield maps.reshape(-1) if masks is None else maps[~masks]

    def labelled_values(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields 1-D pixel values and whether each is anomalous (masks required)."""
        for maps, masks in self.blocks():
            yield maps.reshape(-1), masks.reshape(-1)


def _order_keys(chunk: np.ndarray) -> np.ndarray:
    """`(n,)` uint64 keys ordered as the finite values of `chunk` (`-0.0` counts as `0.0`): the float64 bits with
    the sign bit set for positive values, all bits flipped for negative ones."""
    keys = np.add(chunk, 0.0, dtype=np.float64).view(np.uint64)
    flips = keys >> np.uint64(63)
    flips *= np.uint64((1 << 63) - 1)
    flips |= _SIGN_BIT
    keys ^= flips
    return keys


def _value_of_key(key: int) -> float:
    bits = key ^ (1 << 63) if key >> 63 else ~key & (1 << 64) - 1
    return float(np.array(bits, dtype=np.uint64).view(np.float64))


def _keys_in_bin(chunks: Callable[[], Iterable[np.ndarray]], prefix: int, prefix_shift: int) -> Iterator[np.ndarray]:
    """Yields the keys of each chunk with `key >> prefix_shift == prefix` (all of them when `prefix_shift` is 64)."""
    for chunk in chunks():
        keys = _order_keys(chunk)
        yield keys if prefix_shift == 64 else keys[(keys >> np.uint64(prefix_shift)) == np.uint64(prefix)]


def _value_at_rank(chunks: Callable[[], Iterable[np.ndarray]], rank_of: Callable[[int], int]) -> tuple[float, int]:
    """The value of 0-based rank `rank_of(n)` from the top among the `n` finite values of `chunks()`, exactly.

    Radix selection on order-preserving 64-bit keys: each pass histograms the next 16 bits of the keys in the
    bin that holds the rank; once that bin holds at most `_GATHER_LIMIT` keys, a last pass gathers them for
    `np.partition`. Memory: a few copies of one chunk, 65536 counters and the gathered keys.

    Returns:
        `(value, n)`.
    """
    prefix, shift, n, rank, count = 0, 64, 0, 0, 0
    while shift == 64 or (shift > 0 and count > _GATHER_LIMIT):
        shift -= _DIGIT_BITS
        histogram = np.zeros(1 << _DIGIT_BITS, dtype=np.int64)
        for keys in _keys_in_bin(chunks, prefix, shift + _DIGIT_BITS):
            digits = keys >> np.uint64(shift)
            digits &= np.uint64((1 << _DIGIT_BITS) - 1)
            histogram += np.bincount(digits.view(np.int64), minlength=1 << _DIGIT_BITS)
        if shift == 64 - _DIGIT_BITS:
            n = int(histogram.sum())
            rank = rank_of(n)
        from_top = np.cumsum(histogram[::-1])
        position = int(np.searchsorted(from_top, rank, side="right"))
        if position:
            rank -= int(from_top[position - 1])
        digit = (1 << _DIGIT_BITS) - 1 - position
        prefix = (prefix << _DIGIT_BITS) | digit
        count = int(histogram[digit])
    if shift > 0:
        gathered = np.concatenate(list(_keys_in_bin(chunks, prefix, shift)))
        prefix = int(np.partition(gathered, gathered.size - 1 - rank)[gathered.size - 1 - rank])
    return _value_of_key(prefix), n


def _normal_quantile(chunks: Callable[[], Iterable[np.ndarray]], target_fpr: Fraction, empty: str) -> tuple[float, int]:
    """The `normal_quantile` threshold of the values of `chunks()` (1-D, float32/float64, finite).

    Returns:
        `(threshold, n)`; raises `ValueError(empty)` when there is no value.
    """
    dtypes = set()

    def tracked() -> Iterator[np.ndarray]:
        for chunk in chunks():
            dtypes.add(chunk.dtype)
            yield chunk

    def rank_of(n: int) -> int:
        if n == 0:
            raise ValueError(empty)
        return math.floor(target_fpr * n)

    value, n = _value_at_rank(tracked, rank_of)
    precision = np.float32 if dtypes == {np.dtype(np.float32)} else np.float64
    return float(np.nextafter(precision(value), precision(np.inf))), n


def _best_f1(true_positives: np.ndarray, false_positives: np.ndarray, n_positive: int) -> int:
    """Index of the highest `F1 = 2 TP / (TP + FP + P)`, compared exactly; the first one on ties."""
    denominators = true_positives + false_positives + n_positive
    ratios = true_positives / denominators
    near = np.flatnonzero(ratios >= ratios.max() * (1 - 1e-9))
    return int(min(near, key=lambda j: (-Fraction(int(true_positives[j]), int(denominators[j])), j)))


def _f1_adaptive(chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], name: str) -> tuple[float, int, int]:
    """The `f1_adaptive` threshold of the `(values, is_anomalous)` pairs of `chunks()` (1-D, finite).

    The F1 score is highest at a value of an anomalous sample: between two consecutive anomalous values TP is
    constant and FP only falls as `t` rises, and a value of normal samples alone scores below the next anomalous
    value. So the candidates are the distinct anomalous values; one more pass counts the normal values above each.

    Returns:
        `(threshold, n_normal, n_anomalous)`.
    """
    anomalous, n_normal, lowest = [], 0, math.inf
    for values, is_anomalous in chunks():
        anomalous.append(values[is_anomalous].astype(np.float64))
        n_normal += values.size - int(np.count_nonzero(is_anomalous))
        if values.size:
            lowest = min(lowest, float(values.min()))
    if lowest == math.inf:
        raise ValueError(f"{name} holds no value")
    positives = np.concatenate(anomalous)
    if positives.size == 0 or n_normal == 0:
        missing = "anomalous" if positives.size == 0 else "normal"
        warnings.warn(
            f"{name}: no {missing} value, so the F1-adaptive threshold is the lowest value ({lowest}) and flags "
            "everything as anomalous (as anomalib's F1AdaptiveThreshold)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return lowest, n_normal, positives.size
    candidates, counts = np.unique(positives, return_counts=True)
    true_positives = np.cumsum(counts[::-1])[::-1]
    beyond = np.zeros(candidates.size + 1, dtype=np.int64)
    for values, is_anomalous in chunks():
        above = np.searchsorted(candidates, values[~is_anomalous], side="right")
        beyond += np.bincount(above, minlength=candidates.size + 1)
    false_positives = np.cumsum(beyond[::-1])[::-1][1:]
    best = _best_f1(true_positives, false_positives, positives.size)
    return float(candidates[best]), n_normal, positives.size


def threshold_from_normal(values: Any, target_fpr: float) -> float:
    """Image threshold from the scores of normal images: the smallest threshold that flags at most a share
    `target_fpr` of them (see the module docstring for the exact quantile).

    Args:
        values: `(N,)` scores of normal images, finite, `N >= 1`.
        target_fpr: accepted false positive rate, in (0, 1).

    Raises:
        ValueError: empty or non-finite `values`, `target_fpr` outside (0, 1).
    """
    fpr = check_target_fpr(target_fpr)
    values = _check_values(values, "values")
    return _normal_quantile(lambda: [values], fpr, "values is empty")[0]


def pixel_threshold_from_normal(anomaly_maps: Any, target_fpr: float, masks: Any = None) -> float:
    """Pixel threshold from normal pixels, as `threshold_from_normal`: all pixels of `anomaly_maps`, or those
    outside `masks`. Bounded memory (see the module docstring).

    Args:
        anomaly_maps: `(N, H, W)` array or tensor, or a list of `(H, W)` maps or `(B, H, W)` batches; finite.
        target_fpr: accepted pixel false positive rate, in (0, 1).
        masks: optional binary masks of the same structure; pixels inside them are left out.

    Raises:
        ValueError: no normal pixel, non-finite maps, non-binary masks, `target_fpr` outside (0, 1).
    """
    fpr = check_target_fpr(target_fpr)
    source = _PixelSource(anomaly_maps, masks)
    return _normal_quantile(source.normal_values, fpr, "anomaly_maps holds no normal pixel")[0]


def f1_optimal_threshold(scores: Any, labels: Any) -> float:
    """Image threshold maximising the F1 score (anomalib's `F1AdaptiveThreshold`, see the module docstring).

    Args:
        scores: `(N,)` image scores, finite, `N >= 1`.
        labels: `(N,)` binary, 1 = anomalous.

    Warns:
        UndefinedMetricWarning: one class is absent; the lowest score is returned, as anomalib does.
    """
    scores, labels = check_scores_and_labels(scores, labels)
    return _f1_adaptive(lambda: [(scores, labels)], "scores")[0]


def pixel_f1_optimal_threshold(anomaly_maps: Any, masks: Any) -> float:
    """Pixel threshold maximising the F1 score over all pixels, exact over every distinct value.

    Memory: the anomalous pixels plus one block of maps; the normal pixels are streamed twice.

    Args:
        anomaly_maps: `(N, H, W)` array or tensor, or a list of `(H, W)` maps or `(B, H, W)` batches; finite.
        masks: binary masks of the same structure (all zero for normal images).

    Warns:
        UndefinedMetricWarning: no anomalous or no normal pixel; the lowest value is returned, as anomalib does.
    """
    if masks is None:
        raise ValueError("masks are required: the F1 score needs anomalous and normal pixels")
    source = _PixelSource(anomaly_maps, masks)
    return _f1_adaptive(source.labelled_values, "anomaly_maps")[0]


def calibrate(
    method: Literal["normal_quantile", "f1_adaptive"] = "normal_quantile",
    *,
    scores: Any = None,
    anomaly_maps: Any = None,
    labels: Any = None,
    masks: Any = None,
    class_names: Sequence[str] | None = None,
    target_fpr: float | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Calibration:
    """Thresholds over all images and, with `class_names`, per class.

    `normal_quantile` uses the normal values: the scores of images with label 0 (all scores without `labels`),
    and the pixels outside `masks` (without `masks`: all pixels of the images with label 0, or of all images).
    `f1_adaptive` needs `labels` for the image threshold and `masks` for the pixel threshold.

    Args:
        method: `"normal_quantile"` or `"f1_adaptive"`.
        scores: `(N,)` image scores, or None for no image threshold.
        anomaly_maps: `(N, H, W)` array or tensor, or a list of `N` `(H, W)` maps; None for no pixel threshold.
        labels: `(N,)` binary image labels, 1 = anomalous.
        masks: `(N, H, W)` or `N` binary masks, like `anomaly_maps`.
        class_names: `N` class names, for per-class entries.
        target_fpr: in (0, 1), required by `normal_quantile` only.
        settings: the detection settings the scores and maps were made with (recorded in the result).

    Raises:
        ValueError: invalid inputs, or a class with no normal value for `normal_quantile`.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if method == "normal_quantile":
        fpr = check_target_fpr(target_fpr)
    elif target_fpr is not None:
        raise ValueError("target_fpr applies to method 'normal_quantile' only")
    if scores is None and anomaly_maps is None:
        raise ValueError("give scores, anomaly_maps or both")
    if scores is not None:
        scores = _check_values(scores, "scores")
    if labels is not None:
        labels = as_binary(to_numpy(labels).reshape(-1), "labels")
    if anomaly_maps is not None and not hasattr(anomaly_maps, "shape") and not isinstance(anomaly_maps, list | tuple):
        raise TypeError(f"anomaly_maps must be an (N, H, W) array or a list of maps, got {type(anomaly_maps).__name__}")
    sizes = {
        name: len(value)
        for name, value in (
            ("scores", scores),
            ("anomaly_maps", anomaly_maps),
            ("labels", labels),
            ("masks", masks),
            ("class_names", class_names),
        )
        if value is not None
    }
    if len(set(sizes.values())) > 1:
        raise ValueError(f"scores, anomaly_maps, labels, masks and class_names must have one entry per image: {sizes}")
    if method == "f1_adaptive" and scores is not None and labels is None:
        raise ValueError("method 'f1_adaptive' needs labels for the image threshold")
    if method == "f1_adaptive" and anomaly_maps is not None and masks is None:
        raise ValueError("method 'f1_adaptive' needs masks for the pixel threshold")
    n_images = next(iter(sizes.values()))

    def entry(indices: np.ndarray, where: str) -> Thresholds:
        counts: dict[str, Any] = {}
        if scores is not None:
            selected = scores[indices]
            if method == "f1_adaptive":
                image, n_normal, n_anomalous = _f1_adaptive(lambda: [(selected, labels[indices])], f"{where} scores")
            else:
                normal = selected if labels is None else selected[~labels[indices]]
                image, n_normal = _normal_quantile(lambda: [normal], fpr, f"{where}: no normal image to calibrate on")
                n_anomalous = 0
            counts.update(image_threshold=image, n_normal_images=n_normal, n_anomalous_images=n_anomalous)
        if anomaly_maps is not None:
            images = indices
            if method == "normal_quantile" and masks is None and labels is not None:
                images = indices[~labels[indices]]
            source = _PixelSource(
                [anomaly_maps[i] for i in images], None if masks is None else [masks[i] for i in images]
            )
            if method == "f1_adaptive":
                pixel, n_normal, n_anomalous = _f1_adaptive(source.labelled_values, f"{where} anomaly_maps")
            else:
                pixel, n_normal = _normal_quantile(
                    source.normal_values, fpr, f"{where}: no normal pixel to calibrate on"
                )
                n_anomalous = 0
            counts.update(pixel_threshold=pixel, n_normal_pixels=n_normal, n_anomalous_pixels=n_anomalous)
        return Thresholds(**counts)

    per_class = {}
    if class_names is not None:
        names = np.asarray([str(name) for name in class_names], dtype=object)
        for name in dict.fromkeys(names):
            per_class[name] = entry(np.flatnonzero(names == name), f"class {name!r}")
    return Calibration(
        method=method,
        target_fpr=float(target_fpr) if method == "normal_quantile" else None,
        default=entry(np.arange(n_images), "all images"),
        per_class=per_class,
        settings=dict(settings or {}),
    )


__all__ = [
    "calibrate",
    "f1_optimal_threshold",
    "pixel_f1_optimal_threshold",
    "pixel_threshold_from_normal",
    "threshold_from_normal",
]
