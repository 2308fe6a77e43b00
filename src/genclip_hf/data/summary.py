"""Counts per class and defect type, so nothing a loader found (or skipped) goes unnoticed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import datasets

from .schema import ANOMALOUS, Record

Summary = dict[str, dict[str, dict[str, int]]]


def summarize(dataset: datasets.Dataset) -> Summary:
    """Counts of a dataset of the common schema, read from its label/class columns only (no decoding).

    Returns:
        `{class_name: {defect_type: {"images": n, "anomalous": k}}}`, classes and types in first-seen order.
    """
    columns = dataset.select_columns(["class_name", "defect_type", "label"]).to_dict()
    return _count(zip(columns["class_name"], columns["defect_type"], columns["label"], strict=True))


def summarize_records(records: Iterable[Record]) -> Summary:
    """Same counts as `summarize`, from the records a loader collected."""
    return _count((r.class_name, r.defect_type, r.label) for r in records)


def format_summary(summary: Summary) -> str:
    """A plain-text table: one line per class and defect type, then a total line per class and overall."""
    lines = [f"{'class':<24} {'defect_type':<20} {'images':>7} {'anomalous':>9}"]
    total_images = total_anomalous = 0
    for class_name, per_type in summary.items():
        for defect_type, counts in per_type.items():
            lines.append(f"{class_name:<24} {defect_type:<20} {counts['images']:>7} {counts['anomalous']:>9}")
        images = sum(c["images"] for c in per_type.values())
        anomalous = sum(c["anomalous"] for c in per_type.values())
        lines.append(f"{class_name:<24} {'(all)':<20} {images:>7} {anomalous:>9}")
        total_images, total_anomalous = total_images + images, total_anomalous + anomalous
    lines.append(f"{'(total)':<24} {'':<20} {total_images:>7} {total_anomalous:>9}")
    return "\n".join(lines)


def _count(rows: Iterable[tuple[str, str, int]]) -> Summary:
    images: Counter = Counter()
    anomalous: Counter = Counter()
    for class_name, defect_type, label in rows:
        images[class_name, defect_type] += 1
        anomalous[class_name, defect_type] += int(label == ANOMALOUS)
    summary: Summary = {}
    for (class_name, defect_type), count in images.items():
        summary.setdefault(class_name, {})[defect_type] = {
            "images": count,
            "anomalous": anomalous[class_name, defect_type],
        }
    return summary
