"""Benchmark evaluation (DESIGN §3): per-class metrics, paper-format tables, heatmaps, resumable runs.

Protocol of AnomalyCLIP/AdaCLIP: anomaly maps at the model input size (`image_size`²), ground-truth masks resized
there with nearest neighbour, pixel AUROC and AUPRO over each class's pixels, image AUROC and AP from the image
scores, dataset mean = mean over classes. AUPRO is computed in both modes (`exact` and `anomalyclip`); the chosen
one fills the tables, both are kept in the JSON files.

Output folder:

    classes/<class>.<run key>.json   one class's results, written (atomically) as soon as the class finishes
    heatmaps/<run key>/<class>/*.png detected / missed / false-alarm examples (image | overlay, GT contour in white)
    per_class.{md,csv,json}          paper Tables 4-9 format
    dataset_row.{md,csv,json}        paper Table 1 format
    comparison_with_paper.{md,csv,json}   when the benchmark is one of the paper's (PRO in the anomalyclip mode)
    results.json, report.md          everything, with the run's settings and messages

The run key hashes the model (path, weight-file stamps, config, processor settings) and the effective ablation
switches, so a rerun reuses only results made by the same model and switches on the same images.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from huggingface_hub import try_to_load_from_cache
from PIL import Image
from tqdm.auto import tqdm

from .metrics import (
    AUPRO_MODES,
    METRIC_NAMES,
    AnomalyMetricAccumulator,
    UndefinedMetricWarning,
)
from .metrics.reports import (
    PER_CLASS_TABLES,
    canonical_dataset_name,
    comparison_markdown,
    dataset_row_markdown,
    paper_results,
    per_class_markdown,
    write_comparison,
    write_dataset_row,
    write_per_class_table,
)
from .pipeline_anomaly_detection import SWITCHES
from .visualization import overlay_heatmap

logger = logging.getLogger(__name__)

RESULTS_FORMAT_VERSION = 1
FPR_LIMIT = 0.3
DATA_SOURCES = ("folder", "parquet", "meta_json")
HEATMAP_KINDS = {
    "detected": "anomalous images with the highest scores (what the model finds)",
    "missed": "anomalous images with the lowest scores (defects it misses)",
    "false_alarm": "normal images with the highest scores (false alarms)",
}
_METRIC_LABELS = {
    "pixel_auroc": "pixel AUROC",
    "aupro": "AUPRO",
    "aupro_exact": "AUPRO (exact)",
    "aupro_anomalyclip": "AUPRO (anomalyclip)",
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
}


@dataclass
class EvaluationResult:
    """What `evaluate_benchmark` produced.

    Attributes:
        results: `AnomalyMetricAccumulator.compute()`-style dict (values in [0, 1], `nan` when undefined) whose
            per-class and mean entries also hold `aupro_exact` and `aupro_anomalyclip`, plus `messages` and `run`.
        computed_classes: classes evaluated in this call.
        reused_classes: classes whose saved results were reused.
        files: the tables, reports and per-class JSON files written.
    """

    out_dir: Path
    results: dict[str, Any]
    computed_classes: list[str] = field(default_factory=list)
    reused_classes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Human-readable notes, e.g. which metrics are undefined for which class and why."""
        return self.results["messages"]


def load_evaluation_dataset(
    benchmark: str,
    root: str | Path,
    split: str = "test",
    classes: Sequence[str] | None = None,
    variant: str | None = None,
) -> datasets.Dataset:
    """Loads evaluation data in the common schema.

    Args:
        benchmark: a benchmark of `genclip_hf.data.BENCHMARKS` (native layout), `"folder"` (a user's folder, see
            `load_folder`), `"parquet"` (a folder written by `genclip data convert`) or `"meta_json"` (an
            AnomalyCLIP/AdaCLIP `meta.json` file).
        root: the benchmark's top folder, the Parquet folder, or the meta.json file.
        split: split to load; for `"parquet"`, the shards `<split>-*.parquet` are read.
        classes: load only these classes where the loader can (others are filtered later).
        variant: SDD only: `"whole"` or `"adaclip_crops"`.
    """
    from .data import BENCHMARKS, load_benchmark, load_folder, load_meta_json

    if benchmark == "folder":
        return load_folder(root)
    if benchmark == "meta_json":
        return load_meta_json(root, split, classes=classes)
    if benchmark == "parquet":
        folder = Path(root)
        if not folder.is_dir():
            raise FileNotFoundError(f"Parquet folder {str(folder)!r} does not exist.")
        shards = sorted(folder.glob(f"{split}-*.parquet"))
        if not shards:
            raise FileNotFoundError(
                f"No {split}-*.parquet shards in {str(folder)!r} (written by `genclip data convert --split {split}`)."
            )
        return datasets.load_dataset("parquet", data_files=[str(path) for path in shards], split="train")
    if benchmark not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {benchmark!r}; expected one of {sorted(BENCHMARKS) + list(DATA_SOURCES)}.")
    options: dict[str, Any] = {"variant": variant} if variant else {}
    if classes and "classes" in inspect.signature(BENCHMARKS[benchmark]).parameters:
        options["classes"] = list(classes)
    return load_benchmark(benchmark, root, split=split, **options)


def evaluate_benchmark(
    detector: Any,
    data: datasets.Dataset | tuple[str, str | Path],
    out_dir: str | Path,
    classes: Sequence[str] | None = None,
    batch_size: int = 8,
    aupro_mode: Literal["exact", "anomalyclip"] = "exact",
    resume: bool = True,
    heatmaps_per_class: int = 3,
    *,
    split: str = "test",
    variant: str | None = None,
    dataset_name: str | None = None,
    **switches: Any,
) -> EvaluationResult:
    """Evaluates `detector` class by class and writes the tables, reports and heatmaps to `out_dir`.

    Args:
        detector: an [`AnomalyDetectionPipeline`] (e.g. from `genclip_hf.predict.load_detector`).
        data: a common-schema `datasets.Dataset`, or `(benchmark, root)` loaded with `load_evaluation_dataset`.
        out_dir: output folder (created).
        classes: evaluate only these classes, in this order; default: all, in dataset order.
        batch_size: images per forward pass.
        aupro_mode: AUPRO mode shown in the tables; both modes are always computed and saved.
        resume: reuse the saved results of classes finished by an earlier run with the same run key and images.
        heatmaps_per_class: pictures per heatmap kind (`HEATMAP_KINDS`) and class; 0 writes none.
        split, variant: data options for the `(benchmark, root)` form.
        dataset_name: dataset name in the tables; default: the benchmark name, else `"dataset"`.
        switches: ablation switches of the pipeline (`SWITCHES`); default: the model config.

    Raises:
        ValueError: an unknown switch or class, or an image whose anomaly map or score holds NaN/inf (named).
    """
    if aupro_mode not in AUPRO_MODES:
        raise ValueError(f"aupro_mode must be one of {AUPRO_MODES}, got {aupro_mode!r}")
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise ValueError(f"Unknown switch(es) {unknown}; expected some of {list(SWITCHES)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    switches = {name: value for name, value in switches.items() if value is not None}
    if isinstance(data, datasets.Dataset):
        dataset = data
        dataset_name = dataset_name or "dataset"
    else:
        benchmark, root = data
        dataset = load_evaluation_dataset(benchmark, root, split=split, classes=classes, variant=variant)
        dataset_name = dataset_name or benchmark
    class_rows = _rows_per_class(dataset, classes)

    out_dir = Path(out_dir)
    class_dir = out_dir / "classes"
    class_dir.mkdir(parents=True, exist_ok=True)
    run = _run_identity(detector, switches)
    run_key = _hash(run)[:12]
    _atomic_write_json(out_dir / "run.json", {"run_key": run_key, **run})
    _log_other_runs(class_dir, run_key)

    result = EvaluationResult(out_dir=out_dir, results={})
    saved: dict[str, dict[str, Any]] = {}
    for class_name, indices in class_rows.items():
        rows = dataset.select(indices)
        fingerprint = _hash([list(rows["image_path"]), list(rows["label"])])
        path = class_dir / f"{_slug(class_name)}.{run_key}.json"
        previous = _read_saved(path, class_name, fingerprint) if resume else None
        if previous is not None:
            logger.info("%s: reusing %s", class_name, path)
            saved[class_name] = previous
            result.reused_classes.append(class_name)
            continue
        started = time.perf_counter()
        record = _evaluate_class(
            detector,
            rows,
            class_name,
            batch_size,
            out_dir / "heatmaps" / run_key / _slug(class_name),
            heatmaps_per_class,
            switches,
        )
        record.update(
            class_name=class_name,
            run_key=run_key,
            data_fingerprint=fingerprint,
            seconds=round(time.perf_counter() - started, 3),
        )
        record["heatmaps"] = [{**item, "file": os.path.relpath(item["file"], out_dir)} for item in record["heatmaps"]]
        _atomic_write_json(path, record)
        saved[class_name] = record
        result.computed_classes.append(class_name)
    result.files = [class_dir / f"{_slug(name)}.{run_key}.json" for name in saved]

    result.results = _combine(saved, aupro_mode)
    result.results["run"] = {"run_key": run_key, **run}
    result.files += _write_reports(result.results, saved, dataset_name, split, out_dir)
    for message in result.messages:
        logger.warning(message)
    return result


def _rows_per_class(dataset: datasets.Dataset, classes: Sequence[str] | None) -> dict[str, list[int]]:
    """Row indices of each class, in the order of `classes` or of first appearance."""
    missing_columns = {"image", "mask", "label", "class_name", "image_path"} - set(dataset.column_names)
    if missing_columns:
        raise ValueError(
            f"The dataset lacks column(s) {sorted(missing_columns)}; load it with genclip_hf.data (common schema)."
        )
    rows: dict[str, list[int]] = {}
    for index, name in enumerate(dataset["class_name"]):
        rows.setdefault(name, []).append(index)
    if classes is not None:
        unknown = [name for name in classes if name not in rows]
        if unknown:
            raise ValueError(f"Class(es) {unknown} are not in the dataset; it has {list(rows)}.")
        rows = {name: rows[name] for name in classes}
    by_file_name: dict[str, str] = {}
    for name in rows:
        other = by_file_name.setdefault(_slug(name), name)
        if other != name:
            raise ValueError(f"Classes {other!r} and {name!r} would share the result file name {_slug(name)!r}.")
    return rows


def _run_identity(detector: Any, switches: dict[str, Any]) -> dict[str, Any]:
    """Everything that changes the numbers: model path, weight-file stamps, config, processor, effective switches."""
    model = detector.model
    config = model.config
    name_or_path = str(getattr(model, "name_or_path", "") or config._name_or_path)
    if Path(name_or_path).is_dir():
        name_or_path = str(Path(name_or_path).resolve())
        weights: Any = [
            [path.name, path.stat().st_size, path.stat().st_mtime_ns]
            for path in sorted(Path(name_or_path).iterdir())
            if path.suffix in (".safetensors", ".bin")
        ]
    else:
        weights = {"revision": _hub_revision(name_or_path) or getattr(config, "_commit_hash", None)}
    image_processor = getattr(detector.processor, "image_processor", None)
    config_dict = {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}
    return {
        "format": RESULTS_FORMAT_VERSION,
        "model": name_or_path,
        "weights": weights,
        "dtype": str(model.dtype),
        "config": config_dict,
        "image_processor": image_processor.to_dict() if image_processor is not None else None,
        "switches": {name: switches.get(name, getattr(config, name, None)) for name in SWITCHES},
        "fpr_limit": FPR_LIMIT,
    }


def _hub_revision(repo_id: str) -> str | None:
    """The commit of the cached Hub snapshot of `repo_id` (the folder name under `snapshots/`), if cached."""
    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _slug(name: str) -> str:
    """A file-name-safe form of a class name or image stem."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "_"


def _log_other_runs(class_dir: Path, run_key: str) -> None:
    others = sorted(
        {path.suffixes[-2][1:] for path in class_dir.glob("*.*.json") if len(path.suffixes) >= 2} - {run_key}
    )
    if others:
        logger.info(
            "%s holds results of other runs (keys %s: a different model, config or switches); they are kept and "
            "not used by this run (key %s).",
            class_dir,
            ", ".join(others),
            run_key,
        )


def _read_saved(path: Path, class_name: str, fingerprint: str) -> dict[str, Any] | None:
    """A saved class record when it is complete and made on the same images; else None (recompute)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("%s: cannot read %s (%s); recomputing", class_name, path, error)
        return None
    if record.get("class_name") != class_name or record.get("data_fingerprint") != fingerprint:
        logger.warning("%s: the images changed since %s was written; recomputing", class_name, path)
        return None
    return record


def _atomic_write_json(path: Path, value: Any) -> None:
    """Writes `value` as JSON via a temporary file and a rename, so a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(value, file, indent=2, allow_nan=False)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class _Example:
    """A heatmap candidate: `rank_key` orders candidates (largest kept)."""

    rank_key: float
    row: int
    score: float
    anomaly_map: np.ndarray
    mask: np.ndarray


def _keep_best(candidates: list[_Example], new: list[_Example], count: int) -> list[_Example]:
    return sorted(candidates + new, key=lambda example: (-example.rank_key, example.row))[:count]


def _evaluate_class(
    detector: Any,
    rows: datasets.Dataset,
    class_name: str,
    batch_size: int,
    heatmap_dir: Path,
    heatmaps_per_class: int,
    switches: dict[str, Any],
) -> dict[str, Any]:
    """Runs the detector over one class and computes its metrics in both AUPRO modes and its heatmaps."""
    image_size = detector.model.config.image_size
    accumulator = AnomalyMetricAccumulator(aupro_mode="exact", fpr_limit=FPR_LIMIT)
    examples: dict[str, list[_Example]] = {kind: [] for kind in HEATMAP_KINDS}
    map_range = [math.inf, -math.inf]
    with tqdm(total=len(rows), desc=f"evaluate {class_name}", unit="image") as progress:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            images = [image.convert("RGB") for image in batch["image"]]
            outputs = detector(images, class_name=class_name, batch_size=batch_size, map_at_model_size=True, **switches)
            anomaly_maps = np.stack([output["anomaly_map"] for output in outputs]).astype(np.float32, copy=False)
            scores = np.array([output["score"] for output in outputs], dtype=np.float64)
            _check_outputs(anomaly_maps, scores, batch["image_path"], image_size)
            masks = detector.processor.resize_masks(batch["mask"], [image.size for image in images]).numpy() > 0
            labels = np.asarray(batch["label"], dtype=bool)
            accumulator.update(anomaly_maps, masks, scores, labels, class_name, sample_ids=batch["image_path"])
            map_range = [min(map_range[0], float(anomaly_maps.min())), max(map_range[1], float(anomaly_maps.max()))]
            if heatmaps_per_class > 0:
                _collect_examples(examples, start, anomaly_maps, masks, scores, labels, heatmaps_per_class)
            progress.update(len(images))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
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
        "heatmaps": _write_heatmaps(examples, rows, heatmap_dir, image_size, tuple(map_range), heatmaps_per_class),
        "heatmap_range": map_range,
    }


def _check_outputs(anomaly_maps: np.ndarray, scores: np.ndarray, image_paths: list[str], image_size: int) -> None:
    if anomaly_maps.shape[1:] != (image_size, image_size):
        raise ValueError(
            f"The detector returned maps of shape {anomaly_maps.shape[1:]}, expected the model size "
            f"({image_size}, {image_size}); pass map_at_model_size=True."
        )
    finite = np.isfinite(anomaly_maps).reshape(len(anomaly_maps), -1).all(axis=1) & np.isfinite(scores)
    if not finite.all():
        bad = image_paths[int(np.flatnonzero(~finite)[0])]
        raise ValueError(f"The anomaly map or score of image {bad!r} contains NaN or inf; cannot evaluate it.")


def _collect_examples(
    examples: dict[str, list[_Example]],
    start: int,
    anomaly_maps: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    count: int,
) -> None:
    """Keeps, per kind, the `count` best candidates seen so far ("missed" keeps twice as many, see below)."""
    new: dict[str, list[_Example]] = {kind: [] for kind in HEATMAP_KINDS}
    for offset, (anomaly_map, mask, score, label) in enumerate(zip(anomaly_maps, masks, scores, labels, strict=True)):
        row, score = start + offset, float(score)
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
    rows: datasets.Dataset,
    heatmap_dir: Path,
    image_size: int,
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
            row = rows[example.row]
            image = row["image"].convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
            image_path = Path(row["image_path"])
            path = heatmap_dir / f"{kind}_{rank}_{_slug(image_path.parent.name + '_' + image_path.stem)}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            overlay_heatmap(image, example.anomaly_map, *value_range, mask=example.mask).save(path)
            written.append(
                {
                    "kind": kind,
                    "rank": rank,
                    "image_path": row["image_path"],
                    "score": example.score,
                    "file": str(path),
                }
            )
    return written


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _combine(saved: dict[str, dict[str, Any]], aupro_mode: str) -> dict[str, Any]:
    """The saved class records as one `AnomalyMetricAccumulator.compute()`-style dict, AUPRO from `aupro_mode`."""
    per_class: dict[str, dict[str, Any]] = {}
    undefined: dict[str, dict[str, str]] = {}
    messages = []
    for class_name, record in saved.items():
        metrics = {name: _nan_if_none(value) for name, value in record["metrics"].items()}
        per_class[class_name] = {
            "pixel_auroc": metrics["pixel_auroc"],
            "aupro": metrics[f"aupro_{aupro_mode}"],
            "image_auroc": metrics["image_auroc"],
            "image_ap": metrics["image_ap"],
            "aupro_exact": metrics["aupro_exact"],
            "aupro_anomalyclip": metrics["aupro_anomalyclip"],
            "n_images": record["n_images"],
            "n_anomalous": record["n_anomalous"],
        }
        reasons = dict(record["undefined"])
        if f"aupro_{aupro_mode}" in reasons:
            reasons["aupro"] = reasons[f"aupro_{aupro_mode}"]
        shown = {name: reasons[name] for name in METRIC_NAMES if name in reasons}
        if shown:
            undefined[class_name] = shown
        messages += [
            f"{class_name}: {_METRIC_LABELS[name]} is undefined ({reason}); shown as n/a and left out of the mean."
            for name, reason in shown.items()
        ]
    mean = {}
    for name in (*METRIC_NAMES, "aupro_exact", "aupro_anomalyclip"):
        defined = [values[name] for values in per_class.values() if not math.isnan(values[name])]
        mean[name] = float(np.mean(defined)) if defined else math.nan
    return {
        "per_class": per_class,
        "mean": mean,
        "undefined": undefined,
        "aupro_mode": aupro_mode,
        "fpr_limit": FPR_LIMIT,
        "messages": messages,
    }


def _json_ready(value: Any) -> Any:
    """`value` with every `nan` replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _write_reports(
    results: dict[str, Any], saved: dict[str, dict[str, Any]], dataset_name: str, split: str, out_dir: Path
) -> list[Path]:
    """Writes the tables (Markdown, CSV, JSON), the paper comparison when there is one, results.json and report.md."""
    files = write_per_class_table(results, out_dir / "per_class")
    files += write_dataset_row(results, dataset_name, out_dir / "dataset_row")
    paper_name = canonical_dataset_name(dataset_name)
    in_paper = paper_name in PER_CLASS_TABLES
    paper_protocol = _combine(saved, "anomalyclip")
    if in_paper:
        files += write_comparison(paper_protocol, dataset_name, out_dir / "comparison_with_paper")
    heatmaps = {name: record["heatmaps"] for name, record in saved.items()}
    _atomic_write_json(
        out_dir / "results.json", _json_ready({**results, "dataset": dataset_name, "heatmaps": heatmaps})
    )
    files.append(out_dir / "results.json")

    run = results["run"]
    switches = ", ".join(f"{name}={value}" for name, value in run["switches"].items())
    lines = [
        f"# GenCLIP evaluation: {paper_name} ({split})",
        "",
        f"- model: `{run['model']}` (run key `{run['run_key']}`)",
        f"- switches: {switches}",
        f"- AUPRO mode in the tables: `{results['aupro_mode']}` (integrated up to FPR {FPR_LIMIT}); results.json "
        "holds both `aupro_exact` and `aupro_anomalyclip`",
        "- protocol: maps at the model input size, ground-truth masks resized with nearest neighbour; percentages",
        "",
        "## Dataset row (paper Table 1 format)",
        "",
        dataset_row_markdown(results, dataset_name),
        "## Per class (paper Tables 4-9 format)",
        "",
        per_class_markdown(results),
    ]
    if results["messages"]:
        lines += ["## Notes", "", *(f"- {message}" for message in results["messages"]), ""]
    if in_paper:
        lines += [
            "## Comparison with the paper (GenCLIP)",
            "",
            "PRO here is the `anomalyclip`-mode AUPRO, the protocol behind the paper's numbers.",
            "",
            comparison_markdown(paper_protocol, dataset_name),
        ]
        paper_classes = [
            row for row in paper_results(table=PER_CLASS_TABLES[paper_name]) if row["class_name"] != "mean"
        ]
        if len(results["per_class"]) < len(paper_classes):
            lines += [
                f"Classes evaluated: {len(results['per_class'])} of the paper's {len(paper_classes)}, so the Mean "
                "rows are not comparable.",
                "",
            ]
    lines += [
        "## Heatmaps",
        "",
        "Left: the image at the model input size; right: the anomaly map over it "
        "(colour range: the class's lowest to highest map value), ground truth outlined in white.",
        "",
    ]
    lines += [f"- `{kind}`: {meaning}" for kind, meaning in HEATMAP_KINDS.items()]
    lines.append("")
    for class_name, items in heatmaps.items():
        links = ", ".join(f"[{item['kind']} {item['rank']} ({item['score']:.3f})]({item['file']})" for item in items)
        lines.append(f"- {class_name}: {links or 'none'}")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    files.append(report)
    return files


__all__ = [
    "DATA_SOURCES",
    "HEATMAP_KINDS",
    "EvaluationResult",
    "evaluate_benchmark",
    "load_evaluation_dataset",
]
