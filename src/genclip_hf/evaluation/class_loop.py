"""Evaluating one class: the detector over its rows, metrics in both AUPRO modes, and heatmaps of what it finds,
misses and falsely flags. A row whose image or mask cannot be read is skipped and reported by its path."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..data.rows import RowDecodeError, decode_row, undecoded
from ..metrics import FPR_LIMIT, AnomalyMetricAccumulator, UndefinedMetricWarning
from ..processing_anomaly_detection import resize_mask
from ..storage import safe_file_name, slug
from ..visualization import overlay_heatmap, plot_pro_curve, plot_roc_curves, plot_score_histogram

logger = logging.getLogger(__name__)

HEATMAP_KINDS = {
    "detected": "anomalous images with the highest scores (what the model finds)",
    "missed": "anomalous images with the lowest scores (defects it misses)",
    "false_alarm": "normal images with the highest scores (false alarms)",
}


@dataclass
class _Example:
    """A heatmap candidate: `rank_key` orders candidates (largest kept)."""

    rank_key: float
    row: int
    score: float
    anomaly_map: np.ndarray
    mask: np.ndarray


def evaluate_class(
    detector: Any,
    rows: datasets.Dataset,
    class_name: str,
    batch_size: int,
    heatmap_dir: Path,
    heatmaps_per_class: int,
    settings: dict[str, Any],
    curve_dir: Path | None = None,
    reference_images: list | None = None,
) -> dict[str, Any]:
    """Run `detector` (an anomaly-detection pipeline) over one class's rows.

    Maps are taken at the model input size and ground-truth masks resized there with nearest neighbour. With
    `reference_images` (normal images of the class), the detector runs in its few-shot mode.

    Returns:
        The class record: counts, the metrics (`pixel_auroc`, `aupro_exact`, `aupro_anomalyclip`, `image_auroc`,
        `image_ap`; `None` when undefined, with the reason in `undefined`), the heatmaps written, the map range, the
        curve pictures written to `curve_dir` (ROC, PRO, score histogram), and `skipped` rows (path and error).
    """
    accumulator = AnomalyMetricAccumulator(aupro_mode="exact", fpr_limit=FPR_LIMIT)
    examples: dict[str, list[_Example]] = {kind: [] for kind in HEATMAP_KINDS}
    map_range = [math.inf, -math.inf]
    skipped: list[dict[str, str]] = []
    raw_rows = undecoded(rows)
    with tqdm(total=len(rows), desc=f"evaluate {class_name}", unit="image") as progress:
        for start in range(0, len(rows), batch_size):
            batch = _read_batch(raw_rows, range(start, min(start + batch_size, len(rows))), skipped)
            progress.update(min(batch_size, len(rows) - start))
            if not batch:
                continue
            indices, images, masks, labels, paths = zip(*batch, strict=True)
            extra = {"reference_images": reference_images} if reference_images else {}
            outputs = detector(
                list(images), class_name=class_name, batch_size=batch_size, map_at_model_size=True, **settings, **extra
            )
            anomaly_maps = np.stack([output["anomaly_map"] for output in outputs]).astype(np.float32, copy=False)
            scores = np.array([output["score"] for output in outputs], dtype=np.float64)
            _check_outputs(anomaly_maps, scores, paths)
            masks = np.stack([resize_mask(mask, anomaly_maps.shape[1:]) for mask in masks])
            labels = np.asarray(labels, dtype=bool)
            accumulator.update(anomaly_maps, masks, scores, labels, class_name, sample_ids=list(paths))
            map_range = [min(map_range[0], float(anomaly_maps.min())), max(map_range[1], float(anomaly_maps.max()))]
            if heatmaps_per_class > 0:
                _collect_examples(examples, indices, anomaly_maps, masks, scores, labels, heatmaps_per_class)
    if len(skipped) == len(rows):
        raise ValueError(f"No image of class {class_name!r} could be read, e.g. {skipped[0]['error']}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        curves = _write_curves(accumulator, class_name, curve_dir) if curve_dir is not None else []
        exact = accumulator.compute()
        accumulator.aupro_mode = "anomalyclip"
        anomalyclip = accumulator.compute()
    values = exact["per_class"][class_name]
    undefined = dict(exact["undefined"].get(class_name, {}))
    pro_undefined = {"exact": undefined.pop("aupro", None)}
    pro_undefined["anomalyclip"] = anomalyclip["undefined"].get(class_name, {}).get("aupro")
    for mode, reason in pro_undefined.items():
        if reason is not None:
            undefined[f"aupro_{mode}"] = reason
    return {
        "n_images": values["n_images"],
        "n_anomalous": values["n_anomalous"],
        "metrics": {
            "pixel_auroc": _finite_or_none(values["pixel_auroc"]),
            "aupro_exact": _finite_or_none(values["aupro"]),
            "aupro_anomalyclip": _finite_or_none(anomalyclip["per_class"][class_name]["aupro"]),
            "image_auroc": _finite_or_none(values["image_auroc"]),
            "image_ap": _finite_or_none(values["image_ap"]),
        },
        "undefined": undefined,
        "heatmaps": _write_heatmaps(examples, raw_rows, heatmap_dir, tuple(map_range), heatmaps_per_class),
        "heatmap_range": map_range,
        "curves": curves,
        "skipped": skipped,
    }


def _read_batch(raw_rows: datasets.Dataset, indices: range, skipped: list[dict]) -> list[tuple]:
    """`(row index, RGB image, boolean mask, label, path)` of each readable row; unreadable rows go to `skipped`."""
    batch = []
    for index in indices:
        row = raw_rows[index]
        try:
            image, mask = decode_row(row)
        except RowDecodeError as error:
            logger.warning("Skipping %s", error)
            skipped.append({"image_path": error.image_path, "error": str(error)})
            continue
        if mask is None:
            mask = np.zeros((image.height, image.width), dtype=bool)
        batch.append((index, image, mask, row["label"], row["image_path"]))
    return batch


def _check_outputs(anomaly_maps: np.ndarray, scores: np.ndarray, image_paths: tuple[str, ...]) -> None:
    finite = np.isfinite(anomaly_maps).reshape(len(anomaly_maps), -1).all(axis=1) & np.isfinite(scores)
    if not finite.all():
        bad = image_paths[int(np.flatnonzero(~finite)[0])]
        raise ValueError(f"The anomaly map or score of image {bad!r} contains NaN or inf; cannot evaluate it.")


def _keep_best(candidates: list[_Example], new: list[_Example], count: int) -> list[_Example]:
    return sorted(candidates + new, key=lambda example: (-example.rank_key, example.row))[:count]


def _collect_examples(
    examples: dict[str, list[_Example]],
    rows: tuple[int, ...],
    anomaly_maps: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    count: int,
) -> None:
    """Keeps, per kind, the `count` best candidates seen so far ("missed" keeps twice as many, see below)."""
    new: dict[str, list[_Example]] = {kind: [] for kind in HEATMAP_KINDS}
    for row, anomaly_map, mask, score, label in zip(rows, anomaly_maps, masks, scores, labels, strict=True):
        score = float(score)
        if label:
            new["detected"].append(_Example(score, row, score, anomaly_map.copy(), mask.copy()))
            new["missed"].append(_Example(-score, row, score, anomaly_map.copy(), mask.copy()))
        else:
            new["false_alarm"].append(_Example(score, row, score, anomaly_map.copy(), mask.copy()))
    # "missed" keeps 2 * count so that it can skip images already shown as "detected" in a small class.
    limits = {"detected": count, "missed": 2 * count, "false_alarm": count}
    for kind, candidates in new.items():
        examples[kind] = _keep_best(examples[kind], candidates, limits[kind])


def _write_heatmaps(
    examples: dict[str, list[_Example]],
    raw_rows: datasets.Dataset,
    heatmap_dir: Path,
    value_range: tuple[float, float],
    per_kind: int,
) -> list[dict[str, Any]]:
    """Saves `<kind>_<rank>_<folder>_<stem>.png` (image | overlay with the ground-truth contour) per example."""
    detected_rows = {example.row for example in examples["detected"]}
    chosen = {
        "detected": examples["detected"],
        "missed": [example for example in examples["missed"] if example.row not in detected_rows][:per_kind],
        "false_alarm": examples["false_alarm"],
    }
    written = []
    for kind, selected in chosen.items():
        for rank, example in enumerate(selected, start=1):
            image_path = Path(raw_rows[example.row]["image_path"])
            image, _ = decode_row(raw_rows[example.row])
            height, width = example.anomaly_map.shape
            image = image.resize((width, height), Image.Resampling.BICUBIC)
            name = safe_file_name(f"{kind}_{rank}_{slug(image_path.parent.name + '_' + image_path.stem)}", ".png")
            path = heatmap_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            overlay_heatmap(image, example.anomaly_map, *value_range, mask=example.mask).save(path)
            written.append(
                {"kind": kind, "rank": rank, "image_path": str(image_path), "score": example.score, "file": str(path)}
            )
    return written


def _write_curves(accumulator: AnomalyMetricAccumulator, class_name: str, curve_dir: Path) -> list[dict[str, str]]:
    """The class's image and pixel ROC curves, PRO curve and score histogram as PNGs."""
    maps, masks, scores, labels = accumulator.class_arrays(class_name)
    labels = labels.astype(bool)
    title = f"{class_name}: "
    written = [
        plot_roc_curves(
            scores, labels, curve_dir / "roc.png", anomaly_maps=maps, masks=masks, title=title + "ROC curves"
        ),
        plot_pro_curve(maps, masks, curve_dir / "pro.png", fpr_limit=FPR_LIMIT, title=title + "PRO curve"),
        plot_score_histogram(scores[~labels], scores[labels], curve_dir / "scores.png", title=title + "image scores"),
    ]
    return [{"kind": path.stem, "file": str(path)} for path in written]


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


__all__ = ["HEATMAP_KINDS", "evaluate_class"]
