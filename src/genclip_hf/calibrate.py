"""The `genclip calibrate` job: run a detector over normal (or labelled) images and turn its scores and maps into
decision thresholds (`genclip_hf.metrics.thresholds`), saved as the model folder's `calibration.json`.

- From normal images only (`normal_quantile`): the image threshold is the `(1 - target_fpr)` quantile of their
  scores, the pixel threshold the same quantile of their pixels.
- From labelled images (`f1_adaptive`, anomalib's adaptive F1): the F1-optimal image and pixel thresholds.

Maps are taken at the model input size, as in evaluation; one entry per class when classes are given, plus a default
over all images. The detection settings in effect are recorded: the pipeline applies the thresholds only to calls with
the same settings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm

from .calibration import CALIBRATION_FILE, Calibration, save_calibration
from .data.rows import RowDecodeError, decode_row, undecoded
from .images import to_rgb_image
from .metrics.thresholds import calibrate
from .predict import IMAGE_SUFFIXES, check_prediction_options
from .processing_anomaly_detection import resize_mask

logger = logging.getLogger(__name__)


def calibrate_from_normal(
    detector: Any,
    folders: Sequence[str | Path],
    class_names: Sequence[str | None] | None = None,
    target_fpr: float = 0.01,
    batch_size: int = 8,
    skipped: list[str] | None = None,
    **settings: Any,
) -> Calibration:
    """Thresholds from folders of normal images (`normal_quantile`).

    Args:
        detector: an anomaly-detection pipeline.
        folders: folders of normal images (walked recursively).
        class_names: the class of each folder, for per-class entries (all folders or none); default: none, one
            default entry.
        target_fpr: the accepted share of normal images (and pixels) flagged anomalous, in (0, 1).
        batch_size: images per forward pass.
        skipped: when given, `"<file>: <reason>"` is appended for each unreadable image (skipped and logged).
        settings: the model's detection settings (recorded in the result).
    """
    settings = check_prediction_options(detector, batch_size, dict(settings))
    skipped = [] if skipped is None else skipped
    class_names = list(class_names) if class_names is not None else [None] * len(folders)
    if any(name is None for name in class_names) and any(name is not None for name in class_names):
        raise ValueError("class_names must name every folder or none of them.")
    if len(class_names) != len(folders):
        raise ValueError(f"class_names must name each of the {len(folders)} folders, got {len(class_names)} names.")
    scores, maps, names = [], [], []
    for folder, class_name in zip(folders, class_names, strict=True):
        paths = sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"No images in the normal folder {folder}.")
        images = []
        for path in paths:
            try:
                images.append(to_rgb_image(path, str(path)))
            except (OSError, ValueError) as error:
                logger.warning("Skipping %s: %s", path, error)
                skipped.append(f"{path}: {error}")
        batch_scores, batch_maps = _run(detector, images, class_name, batch_size, settings)
        scores += batch_scores
        maps += batch_maps
        names += [class_name] * len(images)
    return calibrate(
        "normal_quantile",
        scores=np.asarray(scores),
        anomaly_maps=maps,
        class_names=None if class_names[0] is None else names,
        target_fpr=target_fpr,
        settings=detector.model.resolve_settings(settings),
    )


def calibrate_from_labelled(
    detector: Any,
    dataset: datasets.Dataset,
    batch_size: int = 8,
    per_class: bool = True,
    skipped: list[str] | None = None,
    **settings: Any,
) -> Calibration:
    """F1-optimal thresholds (anomalib's adaptive F1) from a labelled dataset of the common schema (`genclip_hf.data`),
    one entry per class (with `per_class`) and a default. Unreadable rows are skipped and logged; with `skipped`
    given, a line per skipped row is appended to it."""
    settings = check_prediction_options(detector, batch_size, dict(settings))
    skipped = [] if skipped is None else skipped
    raw = undecoded(dataset)
    scores, maps, masks, labels, names = [], [], [], [], []
    for class_name in dict.fromkeys(dataset["class_name"]):
        rows = [index for index, name in enumerate(dataset["class_name"]) if name == class_name]
        images, class_masks = [], []
        for index in rows:
            try:
                image, mask = decode_row(raw[index])
            except RowDecodeError as error:
                logger.warning("Skipping %s", error)
                skipped.append(str(error))
                continue
            images.append(image)
            class_masks.append(np.zeros((image.height, image.width), bool) if mask is None else mask)
            labels.append(dataset[index]["label"])
        batch_scores, batch_maps = _run(detector, images, class_name, batch_size, settings)
        scores += batch_scores
        maps += batch_maps
        masks += [
            resize_mask(mask, anomaly_map.shape) for mask, anomaly_map in zip(class_masks, batch_maps, strict=True)
        ]
        names += [class_name] * len(images)
    return calibrate(
        "f1_adaptive",
        scores=np.asarray(scores),
        anomaly_maps=maps,
        labels=np.asarray(labels),
        masks=masks,
        class_names=names if per_class else None,
        settings=detector.model.resolve_settings(settings),
    )


def _run(
    detector: Any, images: list, class_name: str | None, batch_size: int, settings: dict
) -> tuple[list[float], list[np.ndarray]]:
    """Scores and maps (at the model input size) of `images`."""
    scores, maps = [], []
    settings = {name: value for name, value in settings.items() if name not in ("threshold", "score_threshold")}
    for start in tqdm(range(0, len(images), batch_size), desc=f"calibrate {class_name or ''}".strip(), unit="batch"):
        results = detector(
            images[start : start + batch_size],
            class_name=class_name,
            map_at_model_size=True,
            batch_size=batch_size,
            **settings,
        )
        scores += [result["score"] for result in results]
        maps += [result["anomaly_map"] for result in results]
    return scores, maps


def calibration_path(model: str, out: str | Path | None) -> Path:
    """Where a calibration goes: `out`, else `<model folder>/calibration.json` for a local model folder."""
    if out is not None:
        return Path(out)
    if Path(model).is_dir():
        return Path(model) / CALIBRATION_FILE
    raise ValueError(f"--model {model} is not a local folder: give --out (where to write the calibration).")


__all__ = ["calibrate_from_labelled", "calibrate_from_normal", "calibration_path", "save_calibration"]
