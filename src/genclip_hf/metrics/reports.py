"""Result tables in the paper's formats (per class: Tables 4–9; dataset row: Table 1) and comparisons with the
paper's numbers, written as Markdown, CSV and JSON.

`results` everywhere is the dict returned by `AnomalyMetricAccumulator.compute()` (metrics in [0, 1]);
tables show percentages. Undefined (`nan`) values are written as `n/a` (Markdown), an empty cell (CSV) or
`null` (JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .accumulator import METRIC_NAMES

METRIC_HEADERS = {
    "pixel_auroc": "Pixel AUROC (%)",
    "aupro": "PRO (%)",
    "image_auroc": "Image AUROC (%)",
    "image_ap": "Image AP (%)",
}
PER_CLASS_TABLES = {"MVTec": 4, "VisA": 5, "MPDD": 6, "BTAD": 7, "SDD": 8, "DTD-Synthetic": 9}
_DATASET_ALIASES = {
    "mvtec": "MVTec",
    "mvtecad": "MVTec",
    "visa": "VisA",
    "mpdd": "MPDD",
    "btad": "BTAD",
    "sdd": "SDD",
    "kolektorsdd": "SDD",
    "dtd": "DTD-Synthetic",
    "dtdsynthetic": "DTD-Synthetic",
    "average": "Average",
}
_MEAN = "Mean"


def canonical_dataset_name(dataset: str) -> str:
    """The paper's spelling of a dataset name (`"mvtec_ad"` → `"MVTec"`); unknown names are returned as is."""
    return _DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", dataset.lower()), dataset)


def _class_key(name: str) -> str:
    """Matching key for class names: `"Metal Nut"`, `"metal-nut"` and `"metal_nut"` → `"metal_nut"`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _percent(value: float | None, decimals: int) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(100.0 * value, decimals)


def _cell(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


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
    return _markdown(header, [[row["class"], *(_cell(row[m], 2) for m in METRIC_NAMES)] for row in rows])


def write_per_class_table(results: dict[str, Any], stem: str | Path) -> list[Path]:
    """Writes the per-class table to `<stem>.md`, `<stem>.csv` and `<stem>.json`."""
    return _write(stem, per_class_markdown(results), per_class_rows(results), _meta(results), decimals=2)


def dataset_row(results: dict[str, Any], dataset: str, decimals: int = 1) -> dict[str, Any]:
    """The dataset's mean metrics as in paper Table 1: `{"dataset": name, <metric>: percent or None}`."""
    mean = results["mean"]
    return {
        "dataset": canonical_dataset_name(dataset),
        **{m: _percent(mean[m], decimals) for m in METRIC_NAMES},
    }


def dataset_row_markdown(results: dict[str, Any], dataset: str) -> str:
    """The dataset row of paper Table 1 as Markdown: pixel `(AUROC, PRO)` and image `(AUROC, AP)`."""
    row = dataset_row(results, dataset)
    pixel = f"({_cell(row['pixel_auroc'], 1)}, {_cell(row['aupro'], 1)})"
    image = f"({_cell(row['image_auroc'], 1)}, {_cell(row['image_ap'], 1)})"
    return _markdown(["Dataset", "Pixel (AUROC, PRO)", "Image (AUROC, AP)"], [[row["dataset"], pixel, image]])


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
        rows = [row for row in rows if row["dataset"] == canonical_dataset_name(dataset)]
    if setting is not None:
        rows = [row for row in rows if row["setting"] == setting]
    return rows


def compare_with_paper(results: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Our per-class numbers beside the paper's (Tables 4–9, GenCLIP) and the difference, in percent.

    Classes are matched by name ignoring case and punctuation; classes only one side has get `None` on the
    other. The last row compares the means.

    Returns:
        Rows `{"class": name, "<metric>_ours": .., "<metric>_paper": .., "<metric>_diff": ..}` (diff = ours −
        paper, percentage points, 2 decimals).
    """
    name = canonical_dataset_name(dataset)
    if name not in PER_CLASS_TABLES:
        raise ValueError(f"the paper has no per-class table for {dataset!r}; known: {list(PER_CLASS_TABLES)}")
    paper = {_class_key(row["class_name"]): row for row in paper_results(table=PER_CLASS_TABLES[name])}
    ours = {_class_key(row["class"]): row for row in per_class_rows(results)}
    paper_classes = [row["class_name"] for row in paper.values() if row["class_name"] != "mean"]
    names = [row["class"] for row in per_class_rows(results)[:-1]]
    names += [paper_name for paper_name in paper_classes if _class_key(paper_name) not in ours]
    names.append(_MEAN)
    rows = []
    for class_name in names:
        our_row, paper_row = ours.get(_class_key(class_name)), paper.get(_class_key(class_name))
        row: dict[str, Any] = {"class": class_name}
        for metric in METRIC_NAMES:
            ours_value = None if our_row is None else our_row[metric]
            paper_value = None if paper_row is None else paper_row[metric]
            difference = None if ours_value is None or paper_value is None else round(ours_value - paper_value, 2)
            row.update({f"{metric}_ours": ours_value, f"{metric}_paper": paper_value, f"{metric}_diff": difference})
        rows.append(row)
    return rows


def comparison_markdown(results: dict[str, Any], dataset: str) -> str:
    """`compare_with_paper` as a Markdown table with `ours / paper / Δ` per metric."""
    header = ["Class"] + [f"{METRIC_HEADERS[m]} ours / paper / Δ" for m in METRIC_NAMES]
    body = [
        [row["class"]]
        + [
            " / ".join(_cell(row[f"{m}_{part}"], 2) for part in ("ours", "paper")) + f" / {_signed(row[f'{m}_diff'])}"
            for m in METRIC_NAMES
        ]
        for row in compare_with_paper(results, dataset)
    ]
    text = _markdown(header, body)
    if results.get("aupro_mode") != "anomalyclip":
        text += "\nThe paper's PRO follows the `anomalyclip` AUPRO protocol; ours is `exact` here.\n"
    return text


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def write_comparison(results: dict[str, Any], dataset: str, stem: str | Path) -> list[Path]:
    """Writes the comparison with the paper to `<stem>.md`, `<stem>.csv` and `<stem>.json`."""
    name = canonical_dataset_name(dataset)
    meta = {**_meta(results), "dataset": name, "paper_table": PER_CLASS_TABLES.get(name)}
    rows = compare_with_paper(results, dataset)
    return _write(stem, comparison_markdown(results, dataset), rows, meta, decimals=2)
