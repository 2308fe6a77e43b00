"""`evaluate_benchmark`: a detector over a dataset class by class, resumable, with tables, reports and heatmaps.

Protocol of AnomalyCLIP/AdaCLIP (DESIGN §3): anomaly maps at the model input size, ground-truth masks resized there
with nearest neighbour, pixel AUROC and AUPRO over each class's pixels, image AUROC and AP from the image scores,
dataset mean = mean over classes. AUPRO is computed in both modes (`exact` and `anomalyclip`); the chosen one fills
the tables, both are kept in the JSON files.

Output folder:

    run.json                         the run's identity (model, config, settings, protocol) and key
    classes/<class>.<run key>.json   one class's results, written (atomically) as soon as the class finishes
    heatmaps/<run key>/<class>/*.png detected / missed / false-alarm examples (image | overlay, GT contour in white)
    curves/<run key>/<class>/*.png   ROC curves (image and pixel), PRO curve and score histogram
    per_class.{md,csv,json}          paper Tables 4-9 format
    dataset_row.{md,csv,json}        paper Table 1 format
    comparison_with_paper.{md,csv,json}   when the benchmark is one of the paper's (PRO in the anomalyclip mode)
    results.json, report.md          everything, with the run's settings and messages
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from ..data.sources import open_dataset
from ..images import to_rgb_image
from ..metrics import AUPRO_MODES
from ..predict import check_prediction_options
from ..storage import RunLock, atomic_write_json, json_digest, slug
from .class_loop import evaluate_class
from .report import combine_records, write_reports
from .store import ClassStore, data_fingerprint, run_identity

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "mask", "label", "class_name", "image_path")


@dataclass
class EvaluationResult:
    """What `evaluate_benchmark` produced.

    Attributes:
        results: `AnomalyMetricAccumulator.compute()`-style dict (values in [0, 1], `nan` when undefined) whose
            per-class and mean entries also hold `aupro_exact` and `aupro_anomalyclip`, plus `messages` and `run`.
        computed_classes: classes evaluated in this call.
        reused_classes: classes whose saved results were reused.
        skipped: unreadable rows left out of the metrics (`class_name`, `row`, `error`).
        files: the tables, reports and per-class JSON files written.
    """

    out_dir: Path
    results: dict[str, Any]
    computed_classes: list[str] = field(default_factory=list)
    reused_classes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Human-readable notes, e.g. which metrics are undefined for which class and why."""
        return self.results["messages"]


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
    references: dict[str, list[str]] | None = None,
    **settings: Any,
) -> EvaluationResult:
    """Evaluates `detector` class by class and writes the tables, reports and heatmaps to `out_dir`.

    Args:
        detector: an anomaly-detection pipeline (e.g. from `genclip_hf.predict.load_detector`), any method.
        data: a common-schema `datasets.Dataset`, or `(source, root)` opened with `genclip_hf.data.open_dataset`.
        out_dir: output folder (created; locked for the run).
        classes: evaluate only these classes, in this order; default: all, in dataset order.
        batch_size: images per forward pass.
        aupro_mode: AUPRO mode shown in the tables; both modes are always computed and saved.
        resume: reuse the saved results of classes finished by an earlier run with the same run key and data.
        heatmaps_per_class: pictures per heatmap kind (`HEATMAP_KINDS`) and class; 0 writes none.
        split, variant: data options for the `(source, root)` form.
        dataset_name: dataset name in the tables; default: the source name, else `"dataset"`.
        references: few-shot: class name -> paths of normal reference images (see `evaluation.k_shot`); part of
            the run key.
        settings: the model's detection settings; default: its config.

    Raises:
        ValueError: a bad setting or class, or an image whose anomaly map or score holds NaN/inf (named).
    """
    if aupro_mode not in AUPRO_MODES:
        raise ValueError(f"aupro_mode must be one of {AUPRO_MODES}, got {aupro_mode!r}.")
    if isinstance(heatmaps_per_class, bool) or not isinstance(heatmaps_per_class, int) or heatmaps_per_class < 0:
        raise ValueError(f"heatmaps_per_class must be a non-negative integer, got {heatmaps_per_class!r}.")
    settings = check_prediction_options(detector, batch_size, dict(settings))
    if isinstance(data, datasets.Dataset):
        dataset = data
        dataset_name = dataset_name or "dataset"
    else:
        source, root = data
        dataset = open_dataset(root, source, split=split, classes=classes, variant=variant)
        dataset_name = dataset_name or source
    class_rows = rows_per_class(dataset, classes)

    out_dir = Path(out_dir)
    run = run_identity(detector, settings)
    if references:
        run["references"] = {name: [str(path) for path in paths] for name, paths in references.items()}
    run_key = json_digest(run)[:12]
    result = EvaluationResult(out_dir=out_dir, results={})
    with RunLock(out_dir, "genclip-evaluate"):
        store = ClassStore(out_dir, run_key)
        atomic_write_json(out_dir / "run.json", {"run_key": run_key, **run})
        if store.other_run_keys():
            logger.info(
                "%s holds results of other runs (keys %s: another model, config or settings); they are kept and not "
                "used by this run (key %s).",
                store.directory,
                ", ".join(store.other_run_keys()),
                run_key,
            )
        saved: dict[str, dict[str, Any]] = {}
        for class_name, indices in class_rows.items():
            rows = dataset.select(indices)
            fingerprint = data_fingerprint(rows)
            previous = store.load(class_name, fingerprint) if resume else None
            if previous is not None:
                logger.info("%s: reusing %s", class_name, store.path(class_name))
                saved[class_name] = previous
                result.reused_classes.append(class_name)
                continue
            started = time.perf_counter()
            heatmap_dir = out_dir / "heatmaps" / run_key / slug(class_name)
            curve_dir = out_dir / "curves" / run_key / slug(class_name)
            class_references = (references or {}).get(class_name)
            if references and not class_references:
                raise ValueError(f"references has no normal images for class {class_name!r}.")
            record = evaluate_class(
                detector,
                rows,
                class_name,
                batch_size,
                heatmap_dir,
                heatmaps_per_class,
                settings,
                curve_dir,
                [to_rgb_image(path, str(path)) for path in class_references] if class_references else None,
            )
            record.update(
                class_name=class_name,
                run_key=run_key,
                data_fingerprint=fingerprint,
                seconds=round(time.perf_counter() - started, 3),
            )
            record["heatmaps"] = [
                {**item, "file": os.path.relpath(item["file"], out_dir)} for item in record["heatmaps"]
            ]
            store.save(class_name, record)
            saved[class_name] = record
            result.computed_classes.append(class_name)
        result.files = [store.path(name) for name in saved]
        result.skipped = [
            {"class_name": name, **item} for name, record in saved.items() for item in record.get("skipped", [])
        ]
        result.results = combine_records(saved, aupro_mode)
        result.results["run"] = {"run_key": run_key, **run}
        result.files += write_reports(result.results, saved, dataset_name, split, out_dir)
    for message in result.messages:
        logger.warning(message)
    return result


def rows_per_class(dataset: datasets.Dataset, classes: Sequence[str] | None) -> dict[str, list[int]]:
    """Row indices of each class, in the order of `classes` or of first appearance."""
    missing_columns = set(REQUIRED_COLUMNS) - set(dataset.column_names)
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
        other = by_file_name.setdefault(slug(name), name)
        if other != name:
            raise ValueError(f"Classes {other!r} and {name!r} would share the result file name {slug(name)!r}.")
    return rows


__all__ = ["EvaluationResult", "evaluate_benchmark", "rows_per_class"]
