"""Result tables in the paper's formats (per class: Tables 4–9; dataset row: Table 1) and comparisons with the
paper's numbers, written as Markdown, CSV and JSON.

`results` everywhere is the dict returned by `AnomalyMetricAccumulator.compute()` (metrics in [0, 1]);
tables show percentages. Undefined (`nan`) values are written as `n/a` (Markdown), an empty cell (CSV) or
`null` (JSON).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from ..benchmark_registry import BENCHMARK_REGISTRY, paper_dataset_name
from .accumulator import METRIC_NAMES

METRIC_HEADERS = {
    "pixel_auroc": "Pixel AUROC (%)",
    "aupro": "PRO (%)",
    "image_auroc": "Image AUROC (%)",
    "image_ap": "Image AP (%)",
}
# Paper dataset name -> its per-class table (Tables 4–9), from the benchmark registry.
PER_CLASS_TABLES = {benchmark.paper_name: benchmark.per_class_table for benchmark in BENCHMARK_REGISTRY.values()}
# Former name of `genclip_hf.benchmark_registry.paper_dataset_name`, kept for importers.
canonical_dataset_name = paper_dataset_name
_MEAN = "Mean"


def _class_key(name: str) -> str:
    """Matching key for class names: `"Metal Nut"`, `"metal-nut"` and `"metal_nut"` → `"metal_nut"`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _percent(value: float | None, decimals: int) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(100.0 * value, decimals)


def _cell(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def markdown_cell(text: object) -> str:
    """`text` safe in a Markdown table cell: HTML escaped, `|` escaped, line breaks as spaces."""
    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return re.sub(r"\s*[\r\n]+\s*", " ", escaped)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv_value(value: Any, decimals: int) -> Any:
    if value is None:
        return ""
    return f"{value:.{decimals}f}" if isinstance(value, float) else value


def _csv(rows: list[dict[str, Any]], decimals: int) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{key: _csv_value(value, decimals) for key, value in row.items()} for row in rows])
    return buffer.getvalue()


def _write(
    stem: str | Path, markdown: str, rows: list[dict[str, Any]], meta: dict[str, Any], decimals: int
) -> list[Path]:
    """Writes `<stem>.md`, `<stem>.csv` (floats with `decimals` places) and `<stem>.json`; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".md", ".csv", ".json")]
    paths[0].write_text(markdown)
    paths[1].write_text(_csv(rows, decimals))
    paths[2].write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    return paths


def _meta(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "aupro_mode": results.get("aupro_mode"),
        "fpr_limit": results.get("fpr_limit"),
        "undefined": results.get("undefined", {}),
    }


def per_class_rows(results: dict[str, Any], decimals: int = 2) -> list[dict[str, Any]]:
    """One row per class plus a final `Mean` row: `{"class": name, <metric>: percent or None}`."""
    rows = [
        {"class": name, **{metric: _percent(values[metric], decimals) for metric in METRIC_NAMES}}
        for name, values in results["per_class"].items()
    ]
    rows.append({"class": _MEAN, **{metric: _percent(results["mean"][metric], decimals) for metric in METRIC_NAMES}})
    return rows


def per_class_markdown(results: dict[str, Any]) -> str:
    """The per-class table of paper Tables 4–9 (percent, 2 decimals, `Mean` row) as Markdown."""
    rows = per_class_rows(results)
    header = ["Class", *METRIC_HEADERS.values()]
    return _markdown(header, [[markdown_cell(row["class"]), *(_cell(row[m], 2) for m in METRIC_NAMES)] for row in rows])


def write_per_class_table(results: dict[str, Any], stem: str | Path) -> list[Path]:
    """Writes the per-class table to `<stem>.md`, `<stem>.csv` and `<stem>.json`."""
    return _write(stem, per_class_markdown(results), per_class_rows(results), _meta(results), decimals=2)


def dataset_row(results: dict[str, Any], dataset: str, decimals: int = 1) -> dict[str, Any]:
    """The dataset's mean metrics as in paper Table 1: `{"dataset": name, <metric>: percent or None}`."""
    mean = results["mean"]
    return {
        "dataset": paper_dataset_name(dataset),
        **{m: _percent(mean[m], decimals) for m in METRIC_NAMES},
    }


def dataset_row_markdown(results: dict[str, Any], dataset: str) -> str:
    """The dataset row of paper Table 1 as Markdown: pixel `(AUROC, PRO)` and image `(AUROC, AP)`."""
    row = dataset_row(results, dataset)
    pixel = f"({_cell(row['pixel_auroc'], 1)}, {_cell(row['aupro'], 1)})"
    image = f"({_cell(row['image_auroc'], 1)}, {_cell(row['image_ap'], 1)})"
    return _markdown(
        ["Dataset", "Pixel (AUROC, PRO)", "Image (AUROC, AP)"], [[markdown_cell(row["dataset"]), pixel, image]]
    )


def write_dataset_row(results: dict[str, Any], dataset: str, stem: str | Path) -> list[Path]:
    """Writes the Table 1 dataset row to `<stem>.md`, `<stem>.csv` and `<stem>.json`."""
    rows = [dataset_row(results, dataset)]
    return _write(stem, dataset_row_markdown(results, dataset), rows, _meta(results), decimals=1)


def paper_results(
    table: int | None = None, dataset: str | None = None, setting: str | None = None
) -> list[dict[str, Any]]:
    """The paper's numbers (packaged `paper_results.csv`), optionally filtered.

    Returns:
        Rows `{"table": int, "dataset": str, "setting": str, "class_name": str, <metric>: percent or None}`;
        the per-class tables 4–9 end with a `class_name == "mean"` row.
    """
    text = resources.files("genclip_hf.metrics").joinpath("paper_results.csv").read_text()
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {key: raw[key] for key in ("dataset", "setting", "class_name")}
        row["table"] = int(raw["table"])
        for metric, column in zip(METRIC_NAMES, ("pixel_auroc", "pro", "image_auroc", "image_ap"), strict=True):
            row[metric] = float(raw[column]) if raw[column] else None
        rows.append(row)
    if table is not None:
        rows = [row for row in rows if row["table"] == table]
    if dataset is not None:
        rows = [row for row in rows if row["dataset"] == paper_dataset_name(dataset)]
    if setting is not None:
        rows = [row for row in rows if row["setting"] == setting]
    return rows


def compare_with_paper(results: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Our per-class numbers beside the paper's (Tables 4–9, GenCLIP) and the difference, in percent.

    Classes are matched by name ignoring case and punctuation; classes only one side has get `None` on the
    other. The last row, `Mean`, averages both sides over the SAME classes: per metric, those both sides have a
    value for (`compared_classes` says which), so its difference is the mean of the per-class differences.

    Returns:
        Rows `{"class": name, "<metric>_ours": .., "<metric>_paper": .., "<metric>_diff": ..}` (diff = ours −
        paper, percentage points, 2 decimals).
    """
    paper, ours = _paper_and_ours(results, dataset)
    names = [row["class"] for row in ours.values()]
    names += [row["class_name"] for key, row in paper.items() if key not in ours]
    rows = []
    for class_name in names:
        our_row, paper_row = ours.get(_class_key(class_name)), paper.get(_class_key(class_name))
        row: dict[str, Any] = {"class": class_name}
        for metric in METRIC_NAMES:
            ours_value = None if our_row is None else our_row[metric]
            paper_value = None if paper_row is None else paper_row[metric]
            row.update(_compared(metric, ours_value, paper_value))
        rows.append(row)
    mean: dict[str, Any] = {"class": _MEAN}
    for metric in METRIC_NAMES:
        pairs = [(row[f"{metric}_ours"], row[f"{metric}_paper"]) for row in rows]
        pairs = [(mine, theirs) for mine, theirs in pairs if mine is not None and theirs is not None]
        mean.update(
            _compared(
                metric,
                sum(mine for mine, _ in pairs) / len(pairs) if pairs else None,
                sum(theirs for _, theirs in pairs) / len(pairs) if pairs else None,
            )
        )
    return [*rows, mean]


def _paper_and_ours(results: dict[str, Any], dataset: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """The paper's per-class rows and ours (percent, 2 decimals), keyed by `_class_key`, means left out."""
    name = paper_dataset_name(dataset)
    if name not in PER_CLASS_TABLES:
        raise ValueError(f"the paper has no per-class table for {dataset!r}; known: {list(PER_CLASS_TABLES)}")
    paper = {
        _class_key(row["class_name"]): row
        for row in paper_results(table=PER_CLASS_TABLES[name])
        if row["class_name"] != "mean"
    }
    ours = {_class_key(row["class"]): row for row in per_class_rows(results)[:-1]}
    return paper, ours


def _compared(metric: str, ours: float | None, paper: float | None) -> dict[str, float | None]:
    """`<metric>_ours`, `_paper` and `_diff` (ours − paper), each rounded to 2 decimals from the unrounded values."""
    difference = None if ours is None or paper is None else round(ours - paper, 2)
    return {
        f"{metric}_ours": None if ours is None else round(ours, 2),
        f"{metric}_paper": None if paper is None else round(paper, 2),
        f"{metric}_diff": difference,
    }


def compared_classes(results: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Which classes the `Mean` row of `compare_with_paper` averages.

    Returns:
        `{"both": [...], "only_ours": [...], "only_paper": [...], "undefined": {metric: [classes left out of that
        metric's mean because one side has no value]}}`, class names as we spell them (the paper's when only it
        has the class).
    """
    paper, ours = _paper_and_ours(results, dataset)
    both = [key for key in ours if key in paper]
    undefined = {
        metric: [ours[key]["class"] for key in both if ours[key][metric] is None or paper[key][metric] is None]
        for metric in METRIC_NAMES
    }
    return {
        "both": [ours[key]["class"] for key in both],
        "only_ours": [row["class"] for key, row in ours.items() if key not in paper],
        "only_paper": [row["class_name"] for key, row in paper.items() if key not in ours],
        "undefined": {metric: names for metric, names in undefined.items() if names},
    }


def comparison_markdown(results: dict[str, Any], dataset: str) -> str:
    """`compare_with_paper` as a Markdown table with `ours / paper / Δ` per metric, and the compared classes."""
    header = ["Class"] + [f"{METRIC_HEADERS[m]} ours / paper / Δ" for m in METRIC_NAMES]
    body = [
        [markdown_cell(row["class"])]
        + [
            " / ".join(_cell(row[f"{m}_{part}"], 2) for part in ("ours", "paper")) + f" / {_signed(row[f'{m}_diff'])}"
            for m in METRIC_NAMES
        ]
        for row in compare_with_paper(results, dataset)
    ]
    text = _markdown(header, body)
    classes = compared_classes(results, dataset)
    text += f"\n{_MEAN}: both sides averaged over the same {len(classes['both'])} class(es)"
    text += f": {', '.join(markdown_cell(name) for name in classes['both'])}." if classes["both"] else "."
    for key, label in (("only_ours", "Not in the paper"), ("only_paper", "Not evaluated here")):
        if classes[key]:
            text += f" {label} (left out): {', '.join(markdown_cell(name) for name in classes[key])}."
    for metric, names in classes["undefined"].items():
        text += f" {METRIC_HEADERS[metric]} also leaves out {', '.join(markdown_cell(name) for name in names)} (n/a)."
    text += "\n"
    if results.get("aupro_mode") != "anomalyclip":
        text += "\nThe paper's PRO follows the `anomalyclip` AUPRO protocol; ours is `exact` here.\n"
    return text


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def write_comparison(results: dict[str, Any], dataset: str, stem: str | Path) -> list[Path]:
    """Writes the comparison with the paper to `<stem>.md`, `<stem>.csv` and `<stem>.json`; the JSON also holds
    `compared_classes` and `ours_mean`, our mean over all our classes (percent; the `Mean` row compares classes both
    sides have)."""
    name = paper_dataset_name(dataset)
    ours_mean = {key: value for key, value in per_class_rows(results)[-1].items() if key != "class"}
    meta = {
        **_meta(results),
        "dataset": name,
        "paper_table": PER_CLASS_TABLES.get(name),
        "compared_classes": compared_classes(results, dataset),
        "ours_mean": ours_mean,
    }
    rows = compare_with_paper(results, dataset)
    return _write(stem, comparison_markdown(results, dataset), rows, meta, decimals=2)
