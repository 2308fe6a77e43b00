"""Does training move GenCLIP's fused map (Eq. 8) and image score (Eqs. 9-10) on unseen real images? (issue 15)

For each seed: a small CLIP with random weights (`SMALL_CLIP`, 128 px, 16x16 patch grid), GenCLIP on it as built
before training (untrained) and after `genclip_hf.training.train` on the real MPDD metal_plate images of
../shared/data/real-mini (train/good and test with masks, 58 images), both evaluated with `evaluate_benchmark` (the
pipeline: fused, smoothed map and image score; pixel AUROC, AUPRO, image AUROC; heatmaps) on

- KolektorSDD (real, whole images, never trained on),
- synthetic defects (`write_synthetic_benchmark`, all eight categories, never trained on),
- MPDD metal_plate itself, marked "seen": the training images, so it measures fitting, not generalisation.

Training and evaluation images share no file: the model trains on MPDD only and the held-out sets are other
datasets. Beside the model, a trivial detector scores each image by its darkness (and, separately, brightness),
smoothed and scored with the same Eqs. 8-10 machinery; every model map is correlated with the image's darkness, pixel
by pixel, to see whether a model lights up dark regions rather than defects; and each model's mean map, put on every
image, gives the pixel AUROC of a content-blind positional prior.

    python benchmarks/learning_real_mini.py [--seeds 0 1 2 3 4] [--epochs 6] [--learning-rate 1e-3] [--quick]
    python benchmarks/learning_real_mini.py --sweep 4e-5 3e-4 1e-3 3e-3 1e-2   # loss curves only, no evaluation

The write-up with measured figures is benchmarks/LEARNING.md. Random weights: nothing here says anything about the
paper's numbers. Outputs (results.json, evaluation folders with heatmaps) go to outputs/learning_real_mini, which git
ignores: the heatmaps show non-commercial images that must not be committed.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from common import REPO_ROOT, print_table
from PIL import Image

from genclip_hf import GenCLIPConfig
from genclip_hf.data import load_benchmark, write_synthetic_benchmark
from genclip_hf.data.sources import open_dataset
from genclip_hf.evaluation import evaluate_benchmark
from genclip_hf.images import to_rgb_image
from genclip_hf.losses import genclip_loss
from genclip_hf.metrics import AnomalyMetricAccumulator, UndefinedMetricWarning, pixel_auroc
from genclip_hf.predict import load_detector
from genclip_hf.scoring import gaussian_smooth, image_scores
from genclip_hf.testing import save_random_clip
from genclip_hf.training import TrainingArguments, build_model, train

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "real-mini"
DEFAULT_OUT = REPO_ROOT / "outputs" / "learning_real_mini"

# Larger than testing.TINY_CLIP (64 px, 8x8 grid, width 48), which is too coarse for real defects: an MPDD rust spot
# or a KolektorSDD crack covers well under one of its 8 px patches at 64 px. Here 128 px with 8 px patches gives a
# 16x16 grid and six vision layers of width 96; a training epoch over 58 cached images takes seconds on 2 CPU cores.
SMALL_CLIP = {
    "projection_dim": 64,
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "projection_dim": 64,
    },
    "vision_config": {
        "hidden_size": 96,
        "intermediate_size": 384,
        "num_attention_heads": 4,
        "num_hidden_layers": 6,
        "image_size": 128,
        "patch_size": 8,
        "projection_dim": 64,
    },
}
IMAGE_SIZE = 128
FEATURE_LAYERS = [2, 4, 6]
"""Every second of the six layers, as the paper's 6, 12, 18, 24 of ViT-L's 24; sigma, N1, N2 scale with the size."""
METRICS = {"pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "image_auroc": "image AUROC"}
CHECKS = ("darkness_correlation", "mean_map_pixel_auroc")
STATES = ("untrained", "trained")
SYNTHETIC_IMAGE_SIZE = (128, 128)


def evaluation_sets(data_root: Path, synthetic_root: Path) -> dict[str, dict]:
    """The evaluation sets by name: data source, root, SDD variant, and `seen` for the training images."""
    return {
        "KolektorSDD": {"source": "sdd", "root": data_root / "sdd" / "KolektorSDD", "variant": "whole", "seen": False},
        "synthetic": {"source": "mvtec", "root": synthetic_root, "variant": None, "seen": False},
        "MPDD (seen)": {"source": "mpdd", "root": data_root / "mpdd", "variant": None, "seen": True},
    }


def training_rows(data_root: Path) -> datasets.Dataset:
    """MPDD metal_plate, train/good and test (normal and defective with masks): the only images trained on."""
    root = data_root / "mpdd"
    return datasets.concatenate_datasets(
        [load_benchmark("mpdd", root, split="train"), load_benchmark("mpdd", root, split="test")]
    )


def constant_map_losses(rows: datasets.Dataset, size: int) -> dict[str, float]:
    """Eq. 5 per layer, averaged over `rows`, of maps that never localise: the best single anomaly probability for
    every pixel of every image (a map blind to the image), and the best one per image (an image-level oracle: near 0
    on normal images, one value over the whole of a defective one). A trained loss between the two can come from
    telling images apart as much as from localising defects; only a loss below the second proves localisation."""
    masks = torch.from_numpy(np.stack([ground_truth(row, size) for row in rows])).float()
    grid = torch.cat([torch.logspace(-8, -1, 57), torch.linspace(0.11, 0.95, 85)])
    losses = torch.empty(len(masks), len(grid))
    for column, probability in enumerate(grid):
        anomalous = torch.full_like(masks[:1], float(probability))
        maps = torch.stack([1 - anomalous, anomalous], dim=1)[:, None]
        for index, mask in enumerate(masks):
            losses[index, column] = genclip_loss(maps, mask[None])[0]
    return {"one constant": float(losses.mean(0).min()), "one constant per image": float(losses.min(1).values.mean())}


def reset_accelerate() -> None:
    """A clean Accelerate singleton state, as a new process would have, before each `train` call."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def training_arguments(
    clip_dir: Path, output_dir: Path, cache_dir: Path, seed: int, epochs: int, learning_rate: float
) -> TrainingArguments:
    """One run of this benchmark: `SMALL_CLIP` at `IMAGE_SIZE`, `FEATURE_LAYERS`, batch 8, Adam at `learning_rate`."""
    return TrainingArguments(
        output_dir=str(output_dir),
        clip_model=str(clip_dir),
        epochs=epochs,
        batch_size=8,
        learning_rate=learning_rate,
        image_size=IMAGE_SIZE,
        feature_layers=FEATURE_LAYERS,
        seed=seed,
        feature_cache_dir=str(cache_dir),
    )


def darkness(image: Image.Image, size: int) -> np.ndarray:
    """`1 - grey level` in [0, 1] of `image` resized (bicubic, no crop, as the processor) to `size x size`."""
    grey = to_rgb_image(image, "image").convert("L").resize((size, size), Image.Resampling.BICUBIC)
    return 1.0 - np.asarray(grey, dtype=np.float32) / 255.0


def evaluation_rows(spec: dict) -> datasets.Dataset:
    """The common-schema rows of one evaluation set of `evaluation_sets`."""
    return open_dataset(spec["root"], spec["source"], variant=spec["variant"])


def ground_truth(row: dict, size: int) -> np.ndarray:
    """The row's mask resized (nearest) to `size x size`, as the evaluation does."""
    if row["mask"] is None:
        return np.zeros((size, size), dtype=bool)
    mask = row["mask"].convert("L").resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(mask) > 0


def brightness_baseline(rows: datasets.Dataset, config: GenCLIPConfig, dark: bool) -> dict[str, float]:
    """Metrics of a detector whose map is the image's darkness (`dark`) or brightness, smoothed with the model's
    sigma and scored with its Eqs. 9-10 (N1, N2), per class and averaged over classes as `evaluate_benchmark` does."""
    accumulator = AnomalyMetricAccumulator(aupro_mode="exact")
    for row in rows:
        value = darkness(row["image"], config.image_size)
        value = value if dark else 1.0 - value
        smoothed = gaussian_smooth(torch.from_numpy(value)[None], config.sigma)
        score = image_scores(smoothed, config.top_n1, config.top_n2)
        accumulator.update(
            smoothed.numpy(),
            ground_truth(row, config.image_size)[None],
            score.numpy(),
            np.array([bool(row["label"])]),
            row["class_name"],
        )
    return class_means(accumulator)


def class_means(accumulator: AnomalyMetricAccumulator) -> dict[str, float]:
    """Each metric of `METRICS` averaged over the classes where it is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        per_class = accumulator.compute()["per_class"]
    return {name: float(np.nanmean([values[name] for values in per_class.values()])) for name in METRICS}


def map_checks(detector: Any, rows: datasets.Dataset, size: int) -> dict[str, float]:
    """Two shortcut checks on a model's maps at the model size.

    - `darkness_correlation`: mean over images of the Pearson correlation between the map and the image's darkness;
      near 1 when the map follows dark regions whatever the defects.
    - `mean_map_pixel_auroc`: pixel AUROC, per class and averaged over classes, of the class's mean map put on every
      image: a content-blind positional prior. Near the model's own pixel AUROC, the model only knows where defects
      tend to lie.
    """
    correlations = []
    maps: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(rows), 8):
        batch = rows.select(range(start, min(start + 8, len(rows))))
        images = [to_rgb_image(image, "image") for image in batch["image"]]
        names = list(batch["class_name"])
        outputs = detector(images, class_name=names, map_at_model_size=True)
        for image, mask, name, output in zip(images, batch["mask"], names, outputs, strict=True):
            anomaly_map = output["anomaly_map"]
            dark = darkness(image, size)
            if anomaly_map.std() > 0 and dark.std() > 0:
                correlations.append(float(np.corrcoef(anomaly_map.ravel(), dark.ravel())[0, 1]))
            maps.setdefault(name, []).append(anomaly_map)
            masks.setdefault(name, []).append(ground_truth({"mask": mask}, size))
    positional = []
    for name, class_maps in maps.items():
        mean_map = np.broadcast_to(np.mean(class_maps, axis=0), (len(class_maps), size, size))
        positional.append(pixel_auroc(np.ascontiguousarray(mean_map), np.stack(masks[name])))
    return {
        "darkness_correlation": float(np.mean(correlations)) if correlations else math.nan,
        "mean_map_pixel_auroc": float(np.mean(positional)),
    }


def evaluate_state(folder: Path, out_dir: Path, rows: dict[str, datasets.Dataset]) -> dict:
    """Metrics (dataset means), shortcut checks and heatmap folder of one saved model on every set."""
    detector = load_detector(str(folder), device="cpu")
    results = {}
    for name, dataset in rows.items():
        target = out_dir / name.split(" ")[0].lower()
        evaluation = evaluate_benchmark(
            detector,
            dataset,
            target,
            resume=False,
            heatmaps_per_class=3,
            dataset_name=name,
        )
        mean = evaluation.results["mean"]
        results[name] = {metric: float(mean[metric]) for metric in METRICS}
        results[name].update(map_checks(detector, dataset, IMAGE_SIZE))
        results[name]["heatmaps"] = str(target / "heatmaps" / evaluation.results["run"]["run_key"])
    return results


def run_seed(
    seed: int,
    work: Path,
    train_rows: datasets.Dataset,
    rows: dict[str, datasets.Dataset],
    epochs: int,
    learning_rate: float,
) -> dict:
    """Untrained and trained GenCLIP on the seed's random CLIP: the untrained one is exactly the model `train` starts
    from (same seed, same build), so the two differ only by the training."""
    seed_dir = work / f"seed-{seed}"
    shutil.rmtree(seed_dir, ignore_errors=True)
    clip_dir = save_random_clip(seed_dir / "clip", architecture=SMALL_CLIP, seed=seed)
    args = training_arguments(clip_dir, seed_dir / "trained", work / "feature-cache", seed, epochs, learning_rate)
    set_seed(seed)
    model, processor = build_model(args)
    model.save_pretrained(seed_dir / "untrained")
    processor.save_pretrained(seed_dir / "untrained")
    reset_accelerate()
    started = time.perf_counter()
    output = train(args, dataset=train_rows)
    seconds = time.perf_counter() - started
    record = {
        "seed": seed,
        "training_seconds": round(seconds, 1),
        "losses": [entry["loss"] for entry in output.history],
    }
    for state in STATES:
        record[state] = evaluate_state(seed_dir / state, seed_dir / f"evaluation-{state}", rows)
    return record


def sweep(
    learning_rates: Sequence[float], work: Path, train_rows: datasets.Dataset, epochs: int, seed: int
) -> dict[float, list[float]]:
    """Per-epoch training loss for each learning rate (seed `seed`, same random CLIP); no evaluation data is used."""
    clip_dir = save_random_clip(work / f"sweep-clip-{seed}", architecture=SMALL_CLIP, seed=seed)
    curves = {}
    for learning_rate in learning_rates:
        reset_accelerate()
        output_dir = work / f"sweep-{seed}-{learning_rate:g}"
        shutil.rmtree(output_dir, ignore_errors=True)
        args = training_arguments(clip_dir, output_dir, work / "feature-cache", seed, epochs, learning_rate)
        curves[learning_rate] = [entry["loss"] for entry in train(args, dataset=train_rows).history]
    rows = [("lr", *(f"epoch {index + 1}" for index in range(epochs)))]
    rows += [(f"{rate:g}", *(f"{loss:.3f}" for loss in losses)) for rate, losses in curves.items()]
    print_table(rows)
    return curves


def mean_std(values: Sequence[float]) -> str:
    """`mean ± std` over the seeds, in % (nan left out)."""
    values = [value for value in values if not math.isnan(value)]
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * spread:.1f}"


def print_report(records: list[dict], baselines: dict[str, dict], sets: dict[str, dict]) -> None:
    """Per dataset: per seed and mean ± std over seeds, untrained vs trained, the paired difference, the brightness
    detectors and the shortcut checks of `map_checks` (figures in %, correlations x 100)."""
    for name in sets:
        print(f"\n## {name}" + (" — the training images: fit, not generalisation" if sets[name]["seen"] else ""))
        header = ("seed", *(f"{label} {state}" for label in METRICS.values() for state in ("U", "T")))
        header += ("corr(map, dark) U", "corr(map, dark) T", "mean-map pixel AUROC U", "mean-map pixel AUROC T")
        table = [header]
        columns = [(metric, state) for metric in (*METRICS, *CHECKS) for state in STATES]
        for record in records:
            table.append(
                (str(record["seed"]), *(f"{100 * record[state][name][metric]:.1f}" for metric, state in columns))
            )
        table.append(
            (
                "mean ± std",
                *(mean_std([record[state][name][metric] for record in records]) for metric, state in columns),
            )
        )
        differences = []
        for metric, _ in columns[::2]:
            gains = [record["trained"][name][metric] - record["untrained"][name][metric] for record in records]
            differences.append(f"{mean_std(gains)} ({sum(gain > 0 for gain in gains)}/{len(gains)} up)")
        table.append(("T − U", *(cell for difference in differences for cell in (difference, ""))))
        print_table(table)
        for label, values in baselines[name].items():
            print(f"{label}: " + ", ".join(f"{METRICS[metric]} {100 * values[metric]:.1f}" for metric in METRICS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real-mini folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results.json, evaluations and heatmaps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's rate (see LEARNING.md)")
    parser.add_argument("--sweep", type=float, nargs="+", metavar="LR", help="print loss curves for these rates only")
    parser.add_argument("--quick", action="store_true", help="seeds 0 1 and 3 epochs: a smoke run of the whole path")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if not (args.data / "mpdd").is_dir() or not (args.data / "sdd").is_dir():
        raise SystemExit(f"{args.data} lacks mpdd/ or sdd/: this benchmark needs ../shared/data/real-mini.")
    if args.quick:
        args.seeds, args.epochs = [0, 1], 3
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    args.out.mkdir(parents=True, exist_ok=True)
    train_rows = training_rows(args.data)
    if args.sweep:
        curves = sweep(args.sweep, args.out, train_rows, args.epochs, args.seeds[0])
        (args.out / "sweep.json").write_text(json.dumps({f"{rate:g}": losses for rate, losses in curves.items()}))
        return 0

    synthetic_root = write_synthetic_benchmark(
        args.out / "synthetic-data", n_test_good=4, n_test_bad=6, image_size=SYNTHETIC_IMAGE_SIZE, seed=15
    )
    sets = evaluation_sets(args.data, synthetic_root)
    rows = {name: evaluation_rows(spec) for name, spec in sets.items()}
    started = time.perf_counter()
    records = []
    for seed in args.seeds:
        records.append(run_seed(seed, args.out, train_rows, rows, args.epochs, args.learning_rate))
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s; losses {records[-1]['losses']}")
    config = GenCLIPConfig.from_pretrained(args.out / f"seed-{args.seeds[0]}" / "untrained")
    baselines = {
        name: {
            "darkness detector": brightness_baseline(rows[name], config, dark=True),
            "brightness detector": brightness_baseline(rows[name], config, dark=False),
        }
        for name in sets
    }
    floors = constant_map_losses(train_rows, IMAGE_SIZE)
    summary = {
        "settings": {
            "architecture": SMALL_CLIP,
            "image_size": IMAGE_SIZE,
            "feature_layers": FEATURE_LAYERS,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "seeds": args.seeds,
            "training_images": len(train_rows),
        },
        "records": records,
        "baselines": baselines,
        "constant_map_losses": floors,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print_report(records, baselines, sets)
    final = ", ".join(f"{record['losses'][-1] / len(FEATURE_LAYERS):.3f}" for record in records)
    floor_text = ", ".join(f"{name} map {value:.3f}" for name, value in floors.items())
    print(f"\nTraining loss per layer, last epoch, per seed: {final}; maps that never localise: {floor_text}")
    print(f"\n{len(args.seeds)} seeds in {summary['seconds']:.0f} s; results and heatmaps under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
