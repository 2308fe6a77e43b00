"""Evaluation reports: the saved class records combined into the metrics dict, the paper-format tables (Markdown, CSV,
JSON), the comparison with the paper, `results.json` and `report.md`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import FPR_LIMIT, METRIC_NAMES
from ..metrics.reports import (
    PER_CLASS_TABLES,
    comparison_markdown,
    dataset_row_markdown,
    paper_dataset_name,
    per_class_markdown,
    write_comparison,
    write_dataset_row,
    write_per_class_table,
)
from ..storage import atomic_write_json, atomic_write_text
from .class_loop import HEATMAP_KINDS

_METRIC_LABELS = {
    "pixel_auroc": "pixel AUROC",
    "aupro": "AUPRO",
    "aupro_exact": "AUPRO (exact)",
    "aupro_anomalyclip": "AUPRO (anomalyclip)",
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
}


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def combine_records(saved: dict[str, dict[str, Any]], aupro_mode: str) -> dict[str, Any]:
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


def write_reports(
    results: dict[str, Any], saved: dict[str, dict[str, Any]], dataset_name: str, split: str, out_dir: Path
) -> list[Path]:
    """Writes the tables (Markdown, CSV, JSON), the paper comparison when there is one, results.json and report.md."""
    files = write_per_class_table(results, out_dir / "per_class")
    files += write_dataset_row(results, dataset_name, out_dir / "dataset_row")
    paper_name = paper_dataset_name(dataset_name)
    in_paper = paper_name in PER_CLASS_TABLES
    paper_protocol = combine_records(saved, "anomalyclip")
    if in_paper:
        files += write_comparison(paper_protocol, dataset_name, out_dir / "comparison_with_paper")
    heatmaps = {name: record["heatmaps"] for name, record in saved.items()}
    atomic_write_json(out_dir / "results.json", _json_ready({**results, "dataset": dataset_name, "heatmaps": heatmaps}))
    files.append(out_dir / "results.json")

    run = results["run"]
    settings = ", ".join(f"{name}={value}" for name, value in run["settings"].items()) or "none"
    lines = [
        f"# Anomaly detection evaluation: {paper_name} ({split})",
        "",
        f"- model: `{run['model']}` (run key `{run['run_key']}`)",
        f"- method: `{run['method']}`; settings: {settings}",
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
    skipped = [(name, item) for name, record in saved.items() for item in record.get("skipped", [])]
    if skipped:
        lines += ["## Skipped files (unreadable, left out of the metrics)", ""]
        lines += [f"- {name}: {item['error']}" for name, item in skipped]
        lines.append("")
    if in_paper:
        lines += [
            "## Comparison with the paper (GenCLIP)",
            "",
            "PRO here is the `anomalyclip`-mode AUPRO, the protocol behind the paper's numbers.",
            "",
            comparison_markdown(paper_protocol, dataset_name),
        ]
    lines += ["## Curves", "", "Per class: ROC (image and pixel), PRO up to the FPR limit, image-score histogram.", ""]
    for class_name, record in saved.items():
        links = ", ".join(f"[{item['kind']}]({item['file']})" for item in record.get("curves", []))
        lines.append(f"- {class_name}: {links or 'none'}")
    lines.append("")
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
    atomic_write_text(report, "\n".join(lines) + "\n")
    files.append(report)
    return files


__all__ = ["combine_records", "write_reports"]
