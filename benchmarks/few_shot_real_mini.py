"""Few-shot vs zero-shot on synthetic defects and real MPDD images, with random-weight CLIPs (issue 12).

For each CLIP seed: a small CLIP with random weights (`SMALL_CLIP` of `learning_real_mini.py`, 128 px, 16x16 patch
grid) and on it WinCLIP and an untrained GenCLIP (built as `genclip train` builds one, not trained). Each is
evaluated with `genclip_hf.evaluation` on

- synthetic defects (`write_synthetic_benchmark`, all eight categories, 8 normal training images per class),
- MPDD metal_plate of ../shared/data/real-mini (20 train/good, 13 normal and 25 defective test images),

zero-shot, then `--k-shot K` for each K (references drawn from `train/good`, one draw per seed) with the method's
`few_shot_weight` (the fused map), and with `few_shot_weight=1` (the nearest-neighbour map alone). Figures are the
mean ± std over CLIP seeds x reference draws of the class-mean pixel AUROC, AUPRO and image AUROC, in percent.

Random weights carry no learnt notion of "defect": the zero-shot text side is noise. The nearest-neighbour part
compares patch features of the test image with those of normal references, which works on any features that keep
local appearance; this script measures how much of that survives in a random tower.

    python benchmarks/few_shot_real_mini.py [--clip-seeds 0 1 2] [--draw-seeds 0 1 2] [--k-shot 1 4]

Outputs (evaluation folders) go to outputs/few_shot_real_mini, which git ignores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from common import REPO_ROOT, print_table
from learning_real_mini import FEATURE_LAYERS, IMAGE_SIZE, SMALL_CLIP, training_arguments

from genclip_hf import AnomalyDetectionProcessor, WinCLIPModel
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.evaluation import evaluate_benchmark, evaluate_k_shot
from genclip_hf.metrics import UndefinedMetricWarning
from genclip_hf.predict import load_detector
from genclip_hf.testing import CLIP_TOKENIZER_DIR, save_random_clip
from genclip_hf.training import build_model

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "real-mini"
DEFAULT_OUT = REPO_ROOT / "outputs" / "few_shot_real_mini"
METRICS = ("pixel_auroc", "aupro", "image_auroc")
WINDOW_SCALES = [2, 3]


def build_detectors(clip_dir: Path, out: Path, seed: int) -> dict[str, Path]:
    """Saved WinCLIP and untrained GenCLIP folders on the CLIP at `clip_dir`, by method name."""
    folders = {"WinCLIP": out / "winclip", "GenCLIP (untrained)": out / "genclip"}
    winclip = WinCLIPModel.from_clip(str(clip_dir), image_size=IMAGE_SIZE, window_scales=WINDOW_SCALES)
    winclip.save_pretrained(folders["WinCLIP"])
    AnomalyDetectionProcessor.from_clip(str(clip_dir), config=winclip.config).save_pretrained(folders["WinCLIP"])
    arguments = training_arguments(clip_dir, folders["GenCLIP (untrained)"], out / "cache", seed, 1, 1e-3)
    genclip, processor = build_model(arguments)
    genclip.save_pretrained(folders["GenCLIP (untrained)"])
    processor.save_pretrained(folders["GenCLIP (untrained)"])
    return folders


def percent(mean_row: dict[str, Any]) -> dict[str, float]:
    return {metric: 100 * float(mean_row[metric]) for metric in METRICS if mean_row.get(metric) is not None}


def run_one(
    detector: Any, source: str, root: Path, out: Path, k: int, draw_seeds: list[int], weight: float | None
) -> list[dict[str, float]]:
    """Class-mean metrics (percent) of one setting: zero-shot (`k == 0`, one run) or one run per reference draw."""
    settings = {} if weight is None else {"few_shot_weight": weight}
    options = {"heatmaps_per_class": 0, "batch_size": 8, **settings}
    if k == 0:
        return [percent(evaluate_benchmark(detector, (source, root), out, **options).results["mean"])]
    evaluate_k_shot(detector, source, root, out, k, draw_seeds, **options)
    runs = []
    for seed in draw_seeds:
        results = json.loads((out / f"seed_{seed}" / "results.json").read_text())
        runs.append(percent(results["mean"]))
    return runs


def summary(runs: list[dict[str, float]]) -> dict[str, str]:
    cells = {}
    for metric in METRICS:
        values = [run[metric] for run in runs if metric in run]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells[metric] = f"{statistics.fmean(values):.1f} ± {spread:.1f}" if values else "n/a"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="real-mini root (with mpdd/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--clip-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k-shot", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    if not (args.data / "mpdd").is_dir():
        raise SystemExit(f"MPDD real-mini images not found under {args.data}; pass --data ROOT.")
    warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
    shutil.rmtree(args.out, ignore_errors=True)
    synthetic_root = write_synthetic_benchmark(
        args.out / "synthetic", n_train_good=8, n_test_good=4, n_test_bad=4, image_size=(96, 96)
    )
    datasets = {"synthetic": ("mvtec", synthetic_root), "MPDD (real)": ("mpdd", args.data / "mpdd")}
    settings = [("zero-shot", 0, None)]
    for k in args.k_shot:
        settings += [(f"{k}-shot fused", k, None), (f"{k}-shot NN map only", k, 1.0)]
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    started = time.perf_counter()
    for clip_seed in args.clip_seeds:
        seed_dir = args.out / f"clip_{clip_seed}"
        clip_dir = save_random_clip(seed_dir / "clip", CLIP_TOKENIZER_DIR, SMALL_CLIP, seed=clip_seed)
        for method, folder in build_detectors(clip_dir, seed_dir, clip_seed).items():
            detector = load_detector(str(folder))
            for dataset, (source, root) in datasets.items():
                for label, k, weight in settings:
                    out = seed_dir / "runs" / f"{folder.name}-{source}-{label.replace(' ', '_')}"
                    result = run_one(detector, source, root, out, k, args.draw_seeds, weight)
                    runs.setdefault((method, dataset, label), []).extend(result)
    elapsed = time.perf_counter() - started
    header = ("method", "data", "setting", "runs", "pixel AUROC", "AUPRO", "image AUROC")
    rows = [header]
    for (method, dataset, label), values in runs.items():
        cells = summary(values)
        rows.append((method, dataset, label, str(len(values)), *(cells[metric] for metric in METRICS)))
    print(
        f"\nRandom-weight SMALL_CLIP ({IMAGE_SIZE} px, GenCLIP layers {FEATURE_LAYERS}, WinCLIP scales "
        f"{WINDOW_SCALES}); CLIP seeds {args.clip_seeds}, reference draws {args.draw_seeds}; {elapsed:.0f} s\n"
    )
    print_table(rows)
    (args.out / "summary.json").write_text(
        json.dumps({" | ".join(key): value for key, value in runs.items()}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
