"""Batch prediction over files and folders: anomaly scores, heatmap pictures, CSV/JSON and an HTML gallery.

A file that cannot be read is reported and skipped; results are appended to the CSV as they are produced, so an
interrupted run keeps what it finished.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from PIL import Image
from tqdm.auto import tqdm

from .processing_genclip import to_rgb_image
from .visualization import overlay_heatmap, write_gallery

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_STEM_SUFFIXES = ("_mask", "_label")
MASK_FOLDERS = ("ground_truth",)
CSV_FIELDS = ("image", "score", "label", "class_name", "heatmap")


class ModelUnavailableError(RuntimeError):
    """The model named by the user can be neither found locally nor downloaded."""


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files under `paths` (files as given, folders walked recursively, sorted), skipping ground-truth masks
    (files whose stem ends in `_mask`/`_label` and folders named `ground_truth`).

    Raises:
        FileNotFoundError: naming a path that does not exist.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {path}")
        if path.is_file():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            if (
                candidate.is_file()
                and candidate.suffix.lower() in IMAGE_SUFFIXES
                and not candidate.stem.endswith(MASK_STEM_SUFFIXES)
                and not set(candidate.relative_to(path).parts[:-1]) & set(MASK_FOLDERS)
            ):
                found.append(candidate)
    return found


def load_detector(model: str, device: str | int | None = None, **pipeline_kwargs):
    """`pipeline("anomaly-detection", model=model)`, failing at once with a clear message when the model is neither a
    local folder nor cached while `HF_HUB_OFFLINE` is set."""
    from transformers import pipeline

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not Path(model).is_dir() and offline and not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise ModelUnavailableError(
            f"Model {model!r} is not a local folder and is not in the Hugging Face cache, and HF_HUB_OFFLINE is set, "
            "so it cannot be downloaded. Point --model (or GENCLIP_MODEL) at a local GenCLIP checkpoint folder, or "
            "unset HF_HUB_OFFLINE to download it."
        )
    try:
        return pipeline("anomaly-detection", model=model, device=device, **pipeline_kwargs)
    except OSError as error:
        raise ModelUnavailableError(f"Could not load GenCLIP model {model!r}: {error}") from error


@dataclass
class PredictionReport:
    """What a prediction run produced."""

    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    out_dir: Path | None = None


def _heatmap_name(image_path: Path, used: set[str]) -> str:
    stem = "__".join(part for part in image_path.with_suffix("").parts if part not in ("", "/", ".."))
    stem = stem.replace(os.sep, "__").lstrip("_") or "image"
    name, counter = f"{stem}.png", 1
    while name in used:
        counter += 1
        name = f"{stem}_{counter}.png"
    used.add(name)
    return name


def predict_files(
    detector,
    image_paths: Sequence[Path],
    out_dir: str | Path,
    class_name: str | None = None,
    threshold: float | None = None,
    batch_size: int = 1,
    heatmap_range: tuple[float, float] | None = None,
    **switches,
) -> PredictionReport:
    """Run `detector` on `image_paths` and write `heatmaps/*.png`, `scores.csv`, `scores.json` and `index.html`.

    Args:
        detector: an [`AnomalyDetectionPipeline`].
        image_paths: image files.
        out_dir: output folder (created).
        class_name: class name for every image; default the generic term.
        threshold: pixel threshold; draws the predicted mask's contour on the heatmaps.
        batch_size: images per forward pass.
        heatmap_range: `(vmin, vmax)` of the colour map; default `(0, number of feature layers)`, the range of the
            fused map, so pictures are comparable across images.
        switches: ablation switches passed to the pipeline.
    """
    out_dir = Path(out_dir)
    heatmap_dir = out_dir / "heatmaps"
    heatmap_dir.mkdir(parents=True, exist_ok=True)
    vmin, vmax = heatmap_range or (0.0, float(detector.model.config.num_feature_layers))
    report = PredictionReport(out_dir=out_dir)
    used_names: set[str] = set()
    with open(out_dir / "scores.csv", "w", newline="", encoding="utf-8") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
        writer.writeheader()
        progress = tqdm(total=len(image_paths), desc="genclip predict", unit="image")
        for start in range(0, len(image_paths), batch_size):
            loaded: list[tuple[Path, Image.Image]] = []
            for path in image_paths[start : start + batch_size]:
                try:
                    loaded.append((path, to_rgb_image(path, str(path))))
                except (OSError, ValueError) as error:
                    logger.warning("Skipping %s: %s", path, error)
                    report.failures.append({"image": str(path), "error": f"{type(error).__name__}: {error}"})
                    progress.update(1)
            if not loaded:
                continue
            results = detector([image for _, image in loaded], class_name=class_name, threshold=threshold, **switches)
            for (path, image), result in zip(loaded, results, strict=True):
                heatmap_path = heatmap_dir / _heatmap_name(path, used_names)
                overlay_heatmap(image, result["anomaly_map"], vmin, vmax, result.get("mask")).save(heatmap_path)
                row = {
                    "image": str(path),
                    "score": result["score"],
                    "label": result["label"],
                    "class_name": result["class_name"],
                    "heatmap": str(heatmap_path),
                }
                writer.writerow(row)
                csv_file.flush()
                report.rows.append(row)
                progress.update(1)
        progress.close()
    summary = {"results": report.rows, "failures": report.failures}
    (out_dir / "scores.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_gallery(out_dir / "index.html", report.rows, report.failures, title="GenCLIP anomaly maps")
    return report


__all__ = [
    "IMAGE_SUFFIXES",
    "ModelUnavailableError",
    "PredictionReport",
    "find_images",
    "load_detector",
    "predict_files",
]
