"""Batch prediction over files and folders: anomaly scores, heatmap pictures, CSV/JSON and an HTML gallery.

Everything is checked before anything is written. A file that cannot be read is reported and skipped; rows go to
`scores.partial.csv` and heatmaps to `heatmaps.partial/` as they are produced, and only a finished run replaces
`heatmaps/`, `scores.csv`, `scores.json` and `index.html` (each as a whole), so neither a failed nor an interrupted
rerun loses or alters the previous results. One run at a time holds an output folder.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from PIL import Image
from safetensors import SafetensorError
from tqdm.auto import tqdm

from .detection import check_model_source
from .images import to_rgb_image
from .scoring import resize_map
from .settings import SETTINGS, validate_settings
from .storage import RunLock, atomic_write_json, replace_folder, safe_file_name
from .visualization import overlay_heatmap, write_gallery

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_STEM_SUFFIXES = ("_mask", "_label")
MASK_FOLDERS = ("ground_truth",)
CSV_FIELDS = ("image", "score", "label", "score_threshold", "threshold_source", "class_name", "heatmap")
PARTIAL_CSV = "scores.partial.csv"
PARTIAL_HEATMAPS = "heatmaps.partial"


class ModelUnavailableError(RuntimeError):
    """The model named by the user can be neither found locally nor downloaded."""


@dataclass
class ImageSearch:
    """Image files found under the given paths, and what was passed over with a reason (links, unreadable folders)."""

    images: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def find_images(paths: Iterable[str | Path], exclude: Sequence[str | Path] = ()) -> ImageSearch:
    """Image files under `paths`: files as given, folders walked recursively (links followed once, sorted), skipping
    ground-truth masks (stems ending in `_mask`/`_label`, folders named `ground_truth`) and anything under `exclude`
    (e.g. the run's own output folder, so outputs never become inputs). Dangling links, link loops and unreadable
    folders are reported in `skipped`.

    Raises:
        FileNotFoundError: naming a path that does not exist (or a link that leads nowhere).
        ValueError: for an empty path.
    """
    excluded = [Path(path).resolve() for path in exclude]
    search = ImageSearch()
    for text in paths:
        if not str(text).strip():
            raise ValueError("Image paths must be non-empty; got an empty path ('' would mean the current folder).")
        path = Path(text)
        if path.is_symlink() and not path.exists():
            raise FileNotFoundError(f"{path} is a dangling link or a link loop; it leads to no file or folder.")
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {path}")
        if path.is_file():
            search.images.append(path)
        else:
            _walk(path, excluded, search)
    return search


def _walk(root: Path, excluded: list[Path], search: ImageSearch) -> None:
    visited: set[Path] = set()

    def report(path: str | Path, reason: str) -> None:
        search.skipped.append({"image": str(path), "error": reason})

    def inside_excluded(path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved == folder or folder in resolved.parents for folder in excluded)

    for folder, subfolders, files in os.walk(
        root, followlinks=True, onerror=lambda error: report(error.filename, str(error))
    ):
        current = Path(folder)
        real = current.resolve()
        if real in visited or inside_excluded(current):
            if real in visited:
                report(current, "a link to a folder already visited (link loop or duplicate); not read again")
            subfolders.clear()
            continue
        visited.add(real)
        subfolders[:] = sorted(name for name in subfolders if name not in MASK_FOLDERS)
        for name in sorted(files):
            candidate = current / name
            if candidate.suffix.lower() not in IMAGE_SUFFIXES or candidate.stem.endswith(MASK_STEM_SUFFIXES):
                continue
            if not candidate.exists():
                report(candidate, "a dangling link")
            elif not inside_excluded(candidate):
                search.images.append(candidate)


def check_device(device: str | int) -> None:
    """Raise `ValueError` naming `device` unless it is a torch device name ("cpu", "cuda:1", ...) and, for CUDA, a
    device this machine has."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}."
        ) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (resolved.index or 0) >= count:
            raise ValueError(
                f"device {device!r} is not available: this machine has {count} CUDA device(s); use 'cpu'"
                + (f" or 'cuda:0' to 'cuda:{count - 1}'." if count else ".")
            )


def load_detector(
    model: str,
    device: str | int | None = None,
    precision: str = "fp32",
    compile: bool = False,
    class_names: Sequence[str] = (),
    **pipeline_kwargs: Any,
):
    """`pipeline("anomaly-detection", model=model)`, failing at once with a clear message when the model is neither a
    local folder nor cached while `HF_HUB_OFFLINE` is set, or cannot be loaded.

    Args:
        model: a detector folder, an exported ONNX folder (`genclip export`) or a Hub id.
        device: e.g. "cpu", "cuda" (default: transformers picks).
        precision: "fp32" (exact), "int8" (the faster int8 backend, onnxruntime's), "int8-onnx", "int8-torch"
            (CPU), "fp16" or "bf16" (CUDA; float32 elsewhere, with a warning). An exported folder runs "fp32" or
            "int8"; a torch checkpoint at "int8-onnx" is exported to a temporary folder first.
        compile: `torch.compile` the vision blocks of a torch model (eager, with a warning, where it fails).
        class_names: the class names to precompute when a torch checkpoint is exported for "int8-onnx".
        pipeline_kwargs: passed to `pipeline`.
    """
    from .export.loading import load_pipeline
    from .export.runtime import OptionalDependencyError

    if device is not None:
        check_device(device)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not Path(model).is_dir():
        try:
            check_model_source(model)
        except FileNotFoundError as error:
            raise ModelUnavailableError(str(error)) from None
        if offline and not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ModelUnavailableError(
                f"Model {model!r} is not a local folder and is not in the Hugging Face cache, and HF_HUB_OFFLINE is "
                "set, so it cannot be downloaded. Point --model (or GENCLIP_MODEL) at a local checkpoint folder, or "
                "unset HF_HUB_OFFLINE to download it."
            )
    elif not (Path(model) / "config.json").is_file():
        raise ModelUnavailableError(f"Model folder {model!r} has no config.json: it is not a saved checkpoint.")
    try:
        return load_pipeline(model, device, precision, compile, class_names, pipeline_kwargs)
    except (OSError, OptionalDependencyError, SafetensorError) as error:
        raise ModelUnavailableError(f"Could not load model {model!r}: {error}") from error


@dataclass
class PredictionReport:
    """What a prediction run produced."""

    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    out_dir: Path | None = None


def _heatmap_name(image_path: Path, used: set[str], root: Path) -> str:
    """A unique file name for the heatmap of `image_path`: its path below `root` with `__` between folders."""
    relative = image_path.resolve().relative_to(root) if image_path.resolve().is_relative_to(root) else image_path
    stem = "__".join(part for part in relative.with_suffix("").parts if part not in ("", "/", "..")) or "image"
    name, counter = safe_file_name(stem, ".png"), 1
    while name in used:
        counter += 1
        name = safe_file_name(f"{stem}_{counter}", ".png")
    used.add(name)
    return name


def check_prediction_options(detector: Any, batch_size: int, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options of a run before anything is written: the model's settings, `threshold`,
    `score_threshold` and a positive integer `batch_size`. Returns the validated options without `None` values."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    decisions = {name: options.pop(name) for name in ("threshold", "score_threshold") if name in options}
    checked = validate_settings(options, detector.model.detection_settings, owner=type(detector.model).__name__)
    detector.model.resolve_settings(checked)
    checked.update({name: SETTINGS[name].validate(value) for name, value in decisions.items() if value is not None})
    return checked


def predict_files(
    detector: Any,
    image_paths: Sequence[Path],
    out_dir: str | Path,
    class_name: str | None = None,
    batch_size: int = 1,
    heatmap_range: tuple[float, float] | None = None,
    skipped: Sequence[dict] = (),
    reference_images: Sequence[Any] | None = None,
    **options: Any,
) -> PredictionReport:
    """Run `detector` on `image_paths` and write `heatmaps/*.png`, `scores.csv`, `scores.json` and `index.html`.

    Args:
        detector: an [`AnomalyDetectionPipeline`].
        image_paths: image files.
        out_dir: output folder (created; locked for the run).
        class_name: class name for every image; default: the method's generic prompt.
        batch_size: images per forward pass.
        heatmap_range: `(vmin, vmax)` of the colour map; default: the model's `anomaly_map_range`, so pictures are
            comparable across images.
        skipped: files already passed over (e.g. by [`find_images`]), reported with the failures.
        reference_images: normal images of the same class for the few-shot mode (see the pipeline).
        options: `threshold` (pixel threshold: draws the predicted mask's contour), `score_threshold`, and the
            model's detection settings.
    """
    options = check_prediction_options(detector, batch_size, dict(options))
    if class_name is not None and (not isinstance(class_name, str) or not class_name.strip()):
        raise ValueError(f"class_name must be a non-empty string, got {class_name!r}.")
    out_dir = Path(out_dir)
    settings = {name: value for name, value in options.items() if name in detector.model.detection_settings}
    vmin, vmax = heatmap_range or detector.model.anomaly_map_range(**settings)
    report = PredictionReport(out_dir=out_dir, failures=list(skipped))
    with RunLock(out_dir, "genclip-predict"):
        heatmap_dir, staging = out_dir / "heatmaps", out_dir / PARTIAL_HEATMAPS
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        used_names: set[str] = set()
        root = Path(os.path.commonpath([path.resolve().parent for path in image_paths])) if image_paths else out_dir
        partial = out_dir / PARTIAL_CSV
        with open(partial, "w", newline="", encoding="utf-8") as csv_file:
            writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            with tqdm(total=len(image_paths), desc="genclip predict", unit="image") as progress:
                for start in range(0, len(image_paths), batch_size):
                    loaded = _load_batch(image_paths[start : start + batch_size], report, progress)
                    if not loaded:
                        continue
                    extra = {"reference_images": list(reference_images)} if reference_images else {}
                    results = detector([image for _, image in loaded], class_name=class_name, **options, **extra)
                    for (path, image), result in zip(loaded, results, strict=True):
                        heatmap_path = staging / _heatmap_name(path, used_names, root)
                        row = _write_result(path, image, result, heatmap_path, vmin, vmax, report)
                        if row is not None:
                            writer.writerow(row)
                            csv_file.flush()
                        progress.update(1)
        replace_folder(staging, heatmap_dir)
        for row in report.rows:
            row["heatmap"] = str(heatmap_dir / Path(row["heatmap"]).name)
        with open(partial, "w", newline="", encoding="utf-8") as csv_file:  # the rows again, with the final paths
            writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(report.rows)
        os.replace(partial, out_dir / "scores.csv")
        atomic_write_json(out_dir / "scores.json", {"results": report.rows, "failures": report.failures})
        write_gallery(out_dir / "index.html", report.rows, report.failures, title="Anomaly maps")
    return report


def _load_batch(paths: Sequence[Path], report: PredictionReport, progress: tqdm) -> list[tuple[Path, Image.Image]]:
    loaded = []
    for path in paths:
        try:
            loaded.append((path, to_rgb_image(path, str(path))))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            logger.warning("Skipping %s: %s", path, error)
            report.failures.append({"image": str(path), "error": f"{type(error).__name__}: {error}"})
            progress.update(1)
    return loaded


def _write_result(
    path: Path,
    image: Image.Image,
    result: dict,
    heatmap_path: Path,
    vmin: float,
    vmax: float,
    report: PredictionReport,
) -> dict | None:
    """Write one heatmap and return its CSV row; a heatmap that cannot be written is reported, not fatal."""
    anomaly_map, mask = result["anomaly_map"], result.get("mask")
    if anomaly_map.shape != (image.height, image.width):
        # A large JPEG is decoded reduced (genclip_hf.images); its map is at the full size: draw it at the picture's.
        anomaly_map = resize_map(torch.from_numpy(anomaly_map), (image.height, image.width)).numpy()
        mask = None if mask is None else anomaly_map >= result["pixel_threshold"]
    try:
        overlay_heatmap(image, anomaly_map, vmin, vmax, mask).save(heatmap_path)
    except OSError as error:
        report.failures.append({"image": str(path), "error": f"cannot write its heatmap: {error}"})
        return None
    row = {
        "image": str(path),
        "score": result["score"],
        "label": result["label"],
        "score_threshold": result["score_threshold"],
        "threshold_source": result["threshold_source"],
        "class_name": result["class_name"],
        "heatmap": str(heatmap_path),
    }
    report.rows.append(row)
    return row


__all__ = [
    "IMAGE_SUFFIXES",
    "ImageSearch",
    "ModelUnavailableError",
    "PredictionReport",
    "check_device",
    "check_prediction_options",
    "find_images",
    "load_detector",
    "predict_files",
]
