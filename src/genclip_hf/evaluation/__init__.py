"""Benchmark evaluation of any detector (DESIGN §3): per-class metrics, paper-format tables, heatmaps, resumable runs.

- `runner`: `evaluate_benchmark`, the class-by-class run.
- `class_loop`: one class through the detector, its metrics and heatmaps.
- `store`: the run key, the data fingerprint and the saved class records (resume).
- `report`: tables, `results.json` and `report.md`.
- `k_shot`: the k-shot protocol over several seeds (mean ± std).
"""

from .class_loop import HEATMAP_KINDS
from .k_shot import evaluate_k_shot
from .runner import EvaluationResult, evaluate_benchmark

__all__ = ["HEATMAP_KINDS", "EvaluationResult", "evaluate_benchmark", "evaluate_k_shot"]
