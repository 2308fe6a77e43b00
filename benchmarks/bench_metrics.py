"""Speed and memory of the metrics on an MVTec-sized class (one run; prints figures and ratios).

Compares exact AUPRO with scikit-learn's pixel AUROC on the same pixels (target: at most 2x its time) and with
the 200-threshold protocol written as the direct loop (target: at least 20x faster), and reports the peak
memory of AUPRO relative to the input size.

    python benchmarks/bench_metrics.py [--n-images 200] [--size 518] [--loop-thresholds 6]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from genclip_hf.metrics import EVALUATE_MODULE_PATH, aupro, pixel_auroc
from genclip_hf.metrics.aupro import anomalyclip_thresholds


def make_class(n_images: int, size: int, anomalous_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth maps (a 37x37 grid upsampled, like the model's) and 1-3 elliptic defects on anomalous images."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    maps = np.empty((n_images, size, size), dtype=np.float32)
    masks = np.zeros((n_images, size, size), dtype=bool)
    for index in range(n_images):
        grid = rng.random((37, 37))
        background = ndimage.zoom(grid, size / 37, order=1)[:size, :size]
        if rng.random() < anomalous_share:
            for _ in range(rng.integers(1, 4)):
                center_row, center_col = rng.integers(40, size - 40, 2)
                radius_row, radius_col = rng.integers(10, 70, 2)
                masks[index] |= ((rows - center_row) / radius_row) ** 2 + ((cols - center_col) / radius_col) ** 2 <= 1
        defect = ndimage.gaussian_filter(masks[index].astype(np.float32), sigma=6)
        maps[index] = 0.5 * background + 0.8 * defect * rng.uniform(0.3, 1.0)
    return maps, masks


def loop_protocol(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> list[tuple[float, float]]:
    """The 200-threshold protocol as a direct loop (regions relabelled per threshold, as the reference does)."""
    structure = np.ones((3, 3), dtype=bool)
    normal = ~masks
    points = []
    for threshold in thresholds:
        predicted = maps > threshold
        overlaps = []
        for image_prediction, mask in zip(predicted, masks, strict=True):
            labelled, count = ndimage.label(mask, structure=structure)
            for region in range(1, count + 1):
                coords = np.nonzero(labelled == region)
                overlaps.append(image_prediction[coords].sum() / coords[0].size)
        fpr = np.logical_and(normal, predicted).sum() / normal.sum()
        points.append((float(np.mean(overlaps)), float(fpr)))
    return points


def evaluate_module_run(maps: np.ndarray, masks: np.ndarray, batch_size: int = 8) -> dict:
    """The `evaluate` module fed batch by batch through its Arrow cache (in a temporary directory)."""
    import evaluate

    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.max(axis=(1, 2)).astype(np.float64)
    with tempfile.TemporaryDirectory() as cache_dir:
        metric = evaluate.load(EVALUATE_MODULE_PATH, map_size=maps.shape[1:], cache_dir=cache_dir)
        for start in range(0, len(maps), batch_size):
            batch = slice(start, start + batch_size)
            metric.add_batch(
                anomaly_maps=maps[batch],
                masks=masks[batch],
                scores=scores[batch],
                labels=labels[batch],
                class_names=["bench"] * len(labels[batch]),
            )
        return metric.compute()


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def traced_peak(function: Callable[[], object]) -> int:
    """Peak bytes allocated (numpy buffers included) while `function` runs."""
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--anomalous-share", type=float, default=0.7)
    parser.add_argument("--loop-thresholds", type=int, default=6, help="thresholds timed for the direct loop")
    args = parser.parse_args()

    generation_time, (maps, masks) = timed(lambda: make_class(args.n_images, args.size, args.anomalous_share, 0))
    input_bytes = maps.nbytes + masks.nbytes
    n_anomalous = int(masks.any(axis=(1, 2)).sum())
    print(
        f"data: {args.n_images} maps of {args.size}x{args.size} ({maps.size / 1e6:.1f} M pixels), "
        f"{n_anomalous} anomalous images, {masks.mean() * 100:.2f}% anomalous pixels, input "
        f"{input_bytes / 2**20:.0f} MiB (float32 maps + bool masks), generated in {generation_time:.1f} s"
    )

    sklearn_time, sklearn_value = timed(lambda: roc_auc_score(masks.ravel(), maps.ravel()))
    auroc_time, auroc_value = timed(lambda: pixel_auroc(maps, masks))
    exact_time, exact_value = timed(lambda: aupro(maps, masks))
    anomalyclip_time, anomalyclip_value = timed(lambda: aupro(maps, masks, mode="anomalyclip"))

    thresholds = anomalyclip_thresholds(maps)
    subset = thresholds[np.linspace(0, thresholds.size - 1, args.loop_thresholds).astype(int)]
    subset_time, _ = timed(lambda: loop_protocol(maps, masks, subset))
    loop_time = subset_time / subset.size * thresholds.size

    evaluate_time, evaluate_results = timed(lambda: evaluate_module_run(maps, masks))

    print(f"sklearn roc_auc_score (pixels)  {sklearn_time:8.2f} s   value {sklearn_value:.12f}")
    print(f"pixel_auroc                     {auroc_time:8.2f} s   value {auroc_value:.12f}")
    print(f"aupro exact                     {exact_time:8.2f} s   value {exact_value:.6f}")
    print(f"aupro anomalyclip (vectorised)  {anomalyclip_time:8.2f} s   value {anomalyclip_value:.6f}")
    print(
        f"direct 200-threshold loop       {loop_time:8.2f} s   (extrapolated from {subset.size} of "
        f"{thresholds.size} thresholds: {subset_time:.2f} s)"
    )
    print(
        f"evaluate module (add_batch x8 + compute, all four metrics) {evaluate_time:.2f} s   "
        f"aupro {evaluate_results['aupro']:.6f}"
    )
    print(f"ratio aupro exact / sklearn pixel AUROC       {exact_time / sklearn_time:6.3f}  (target <= 2)")
    print(f"ratio direct loop / aupro exact               {loop_time / exact_time:6.1f}  (target >= 20)")
    print(f"ratio direct loop / aupro anomalyclip         {loop_time / anomalyclip_time:6.1f}")
    print(f"ratio sklearn / pixel_auroc                   {sklearn_time / auroc_time:6.1f}")

    for name, function in (
        ("aupro exact", lambda: aupro(maps, masks)),
        ("aupro anomalyclip", lambda: aupro(maps, masks, mode="anomalyclip")),
        ("pixel_auroc", lambda: pixel_auroc(maps, masks)),
    ):
        peak = traced_peak(function)
        print(f"peak extra memory {name:18s} {peak / 2**20:7.0f} MiB = {peak / input_bytes:.2f} x input")
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"process peak RSS (incl. sklearn)  {max_rss / 2**20:7.0f} MiB = {max_rss / input_bytes:.2f} x input")


if __name__ == "__main__":
    main()
