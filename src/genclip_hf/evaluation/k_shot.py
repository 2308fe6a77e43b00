"""The k-shot protocol: for each seed, `k` normal images per class drawn from the benchmark's `train` split (its
`good` folder) are the few-shot references; each seed is a full evaluation (resumable, in `seed_<s>/`), and the
summary gives every metric's mean and standard deviation over the seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..data.sources import open_dataset
from ..metrics import METRIC_NAMES
from ..storage import atomic_write_json, atomic_write_text
from .runner import evaluate_benchmark


def draw_references(train: datasets.Dataset, classes: Sequence[str], k: int, seed: int) -> dict[str, list[str]]:
    """`k` normal images per class from `train`, drawn without replacement with `seed` (same draw for same seed).

    Raises:
        ValueError: a class with fewer than `k` normal training images (named).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k_shot must be a positive integer, got {k!r}.")
    references = {}
    normal = train.filter(lambda label: label == 0, input_columns="label")
    for class_name in classes:
        paths = sorted(
            path for path, name in zip(normal["image_path"], normal["class_name"], strict=True) if name == class_name
        )
        if len(paths) < k:
            raise ValueError(f"Class {class_name!r} has {len(paths)} normal training image(s); k_shot={k} needs more.")
        chosen = np.random.default_rng([seed, k]).choice(len(paths), size=k, replace=False)
        references[class_name] = [paths[index] for index in sorted(chosen)]
    return references


def evaluate_k_shot(
    detector: Any,
    source: str,
    root: str | Path,
    out_dir: str | Path,
    k: int,
    seeds: Sequence[int],
    classes: Sequence[str] | None = None,
    dataset_name: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate `detector` few-shot with `k` normal references per class, once per seed, and summarise.

    Args:
        detector: an anomaly-detection pipeline whose model has a few-shot mode.
        source, root: the benchmark (its `test` split is evaluated, its `train` split gives the references).
        out_dir: output folder; each seed's evaluation goes to `seed_<s>/`, the summary to `k_shot.{json,md}`.
        k: references per class.
        seeds: the draws.
        classes: evaluate only these classes.
        options: `evaluate_benchmark` options (batch size, AUPRO mode, settings, ...).
    Returns:
        The summary: per class and for the dataset mean, each metric's mean and std over seeds.
    """
    if not seeds or any(isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be one or more non-negative integers, got {list(seeds)!r}.")
    if not detector.model.supports_few_shot:
        raise ValueError(f"{type(detector.model).__name__} has no few-shot mode.")
    out_dir = Path(out_dir)
    test = open_dataset(root, source, split="test", classes=classes)
    train = open_dataset(root, source, split="train", classes=classes)
    class_names = list(classes or dict.fromkeys(test["class_name"]))
    runs = []
    for seed in seeds:
        references = draw_references(train, class_names, k, seed)
        result = evaluate_benchmark(
            detector,
            test,
            out_dir / f"seed_{seed}",
            classes=class_names,
            dataset_name=dataset_name or source,
            references=references,
            **options,
        )
        runs.append(result.results)
    summary = {
        "k_shot": k,
        "seeds": list(seeds),
        "per_class": {name: _mean_std([run["per_class"][name] for run in runs]) for name in class_names},
        "mean": _mean_std([run["mean"] for run in runs]),
    }
    atomic_write_json(out_dir / "k_shot.json", summary)
    atomic_write_text(out_dir / "k_shot.md", _markdown(summary))
    return summary


def _mean_std(values: list[dict[str, float]]) -> dict[str, dict[str, float | None]]:
    summary = {}
    for name in METRIC_NAMES:
        finite = [value[name] for value in values if value[name] is not None and not math.isnan(value[name])]
        summary[name] = {
            "mean": float(np.mean(finite)) if finite else None,
            "std": float(np.std(finite)) if finite else None,
        }
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    header = "| Class | " + " | ".join(f"{name} (%)" for name in METRIC_NAMES) + " |"
    lines = [
        f"# {summary['k_shot']}-shot evaluation over seeds {', '.join(map(str, summary['seeds']))}",
        "",
        "Mean ± standard deviation over the seeds; each seed draws its own normal references from `train/good`.",
        "",
        header,
        "|" + "---|" * (len(METRIC_NAMES) + 1),
    ]
    rows = {**summary["per_class"], "Mean": summary["mean"]}
    for name, metrics in rows.items():
        cells = [
            "n/a" if value["mean"] is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"
            for value in metrics.values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["draw_references", "evaluate_k_shot"]
