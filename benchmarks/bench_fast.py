"""Fast CPU inference paths of GenCLIP against the exact float32 path (random weights, real architecture).

Speed (default): seconds per image and peak RSS of the exact fp32 `detect`, the ONNX fp32 graph, int8 torch (dynamic
int8 linear layers) and int8 onnxruntime, at batch 1 and 4, as ratios to the bare fp32 CLIP vision forward at batch
1; plus export and quantization time and the exported sizes. The paths are timed round-robin in one process (a load
change on a shared machine hits them alike); each one's peak RSS is measured alone in its own process.
Target (issue 14): int8 <= 0.5 x the fp32 vision forward.

Accuracy (`--accuracy`): every fast path against the exact fp32 path on the real images of ../shared/data/real-mini
(MPDD metal_plate and KolektorSDD, with masks) and on synthetic defects: max and mean absolute map difference,
Spearman correlation of the image scores, and the pixel AUROC / AUPRO / image AUROC of each path minus the exact
one's, on the same masks at the model resolution. Random weights make the metrics themselves meaningless; agreement
is what counts. Targets: Spearman >= 0.99, pixel AUROC within 0.5 point.

    python benchmarks/bench_fast.py [--architecture vit-l-14-336|vit-b-16] [--repeats 2] [--threads N]
    python benchmarks/bench_fast.py --accuracy [--architecture vit-b-16] [--data ../shared/data/real-mini]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO_ROOT, print_table

from genclip_hf.export import ONNXDetectorModel, export_detector, quantize_onnx_graph
from genclip_hf.export.configuration_onnx import GRAPH_FILES
from genclip_hf.export.torch_fast import quantize_linear_int8
from genclip_hf.testing import save_random_genclip

ARCHITECTURES = {
    "vit-l-14-336": {},
    "vit-b-16": {"feature_layers": [3, 6, 9, 12], "image_size": 224},
}
PATHS = ("bare-vision", "exact-fp32", "onnx-fp32", "int8-torch", "int8-onnx")
FAST_PATHS = ("onnx-fp32", "int8-torch", "int8-onnx")
CLASS_NAME = "metal plate"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "real-mini"
SYNTHETIC_CLASSES = ("disc", "stripes")


def peak_rss_gib() -> float:
    """Peak resident set size of this process in GiB (`VmHWM`: unlike `ru_maxrss`, it does not inherit the parent's
    peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    raise OSError("/proc/self/status has no VmHWM (Linux only).")


def load_path(path: str, checkpoint: Path, exported: Path):
    """The detector of one path (a torch GenCLIP or an ONNX detector), ready for `detect`."""
    from genclip_hf import GenCLIPModel

    if path in ("onnx-fp32", "int8-onnx"):
        return ONNXDetectorModel.from_pretrained(exported, precision="int8" if path == "int8-onnx" else "fp32")
    model = GenCLIPModel.from_pretrained(checkpoint).eval()
    return quantize_linear_int8(model) if path == "int8-torch" else model


def batch_runner(path: str, model, images: torch.Tensor):
    """A callable running `path` on the first `n` of `images`: the bare vision forward or the whole `detect`."""

    def run(count: int) -> None:
        with torch.inference_mode():
            if path == "bare-vision":
                model.clip.vision_model(images[:count], interpolate_pos_encoding=True)
            else:
                model.detect(images[:count], CLASS_NAME)

    return run


def random_images(size: int) -> torch.Tensor:
    return torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))


def run_worker(args: argparse.Namespace) -> None:
    """Peak RSS of one path, loaded alone in this process and run once at batch 4: print `RESULT {json}`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_path(args.worker, args.checkpoint, args.onnx)
    batch_runner(args.worker, model, random_images(model.config.image_size))(4)
    print("RESULT " + json.dumps({"peak_rss_gib": peak_rss_gib()}), flush=True)


def peak_rss_of(path: str, args: argparse.Namespace, checkpoint: Path, exported: Path) -> float:
    command = [sys.executable, __file__, "--worker", path, "--checkpoint", str(checkpoint), "--onnx", str(exported)]
    command += ["--threads", str(args.threads)] if args.threads else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])["peak_rss_gib"]


def interleaved_timings(args: argparse.Namespace, checkpoint: Path, exported: Path) -> dict[str, dict[int, float]]:
    """Median seconds per image of every path at batch 1 and 4, all paths loaded here and timed round-robin (one
    warm-up call each), so that a load change on a shared machine hits every path alike."""
    models = {path: load_path(path, checkpoint, exported) for path in PATHS if path != "bare-vision"}
    models["bare-vision"] = models["exact-fp32"]
    images = random_images(models["exact-fp32"].config.image_size)
    runners = {path: batch_runner(path, models[path], images) for path in PATHS}
    for run in runners.values():
        run(1)
    samples: dict[str, dict[int, list[float]]] = {path: {1: [], 4: []} for path in PATHS}
    for _ in range(args.repeats):
        for path, run in runners.items():
            for count in (1, 4):
                started = time.perf_counter()
                run(count)
                samples[path][count].append((time.perf_counter() - started) / count)
    return {
        path: {count: statistics.median(values) for count, values in by_count.items()}
        for path, by_count in samples.items()
    }


def folder_bytes(folder: Path, names: tuple[str, ...]) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.name.startswith(names))


def prepare(args: argparse.Namespace, work: Path, class_names: list[str]) -> tuple[Path, Path, dict]:
    """A random checkpoint of the architecture, its ONNX export and the int8 graph, with their costs."""
    overrides = ARCHITECTURES[args.architecture]
    checkpoint = save_random_genclip(work / "genclip", architecture=args.architecture, **overrides)
    exported = work / "onnx"
    started = time.perf_counter()
    report = export_detector(checkpoint, exported, class_names=class_names)
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    quantize_onnx_graph(exported / GRAPH_FILES["fp32"], exported / GRAPH_FILES["int8"])
    costs = {
        "export_seconds": export_seconds,
        "quantize_seconds": time.perf_counter() - started,
        "fp32_bytes": folder_bytes(exported, (GRAPH_FILES["fp32"],)),
        "int8_bytes": folder_bytes(exported, (GRAPH_FILES["int8"],)),
        "check_difference": report.max_map_difference,
    }
    return checkpoint, exported, costs


def speed(args: argparse.Namespace, work: Path) -> None:
    checkpoint, exported, costs = prepare(args, work, [CLASS_NAME])
    memory = {path: peak_rss_of(path, args, checkpoint, exported) for path in PATHS}
    timings = interleaved_timings(args, checkpoint, exported)
    bare = timings["bare-vision"][1]
    rows = [("path", "s / image, batch 1", "x vision", "s / image, batch 4", "x vision", "peak RSS GiB (batch 4)")]
    for path, seconds in timings.items():
        rows.append(
            (
                path,
                f"{seconds[1]:.3f}",
                f"{seconds[1] / bare:.2f}",
                f"{seconds[4]:.3f}",
                f"{seconds[4] / bare:.2f}",
                f"{memory[path]:.2f}",
            )
        )
    print_table(rows)
    print(
        f"\nexport (fp32 graph + text tensors + check) {costs['export_seconds']:.0f} s, int8 quantization "
        f"{costs['quantize_seconds']:.0f} s; graph size fp32 {costs['fp32_bytes'] / 2**20:.0f} MiB, int8 "
        f"{costs['int8_bytes'] / 2**20:.0f} MiB; export check max map difference {costs['check_difference']:.1e}"
    )
    for count in (1, 4):
        best = min(timings["int8-onnx"][count], timings["int8-torch"][count])
        print(f"fastest int8 / bare vision (batch 1) at batch {count} = {best / bare:.2f} (target <= 0.5)")


def accuracy_sets(data: Path, work: Path) -> dict[str, list[dict]]:
    """Rows (image, mask, class name) of each evaluation set: the real images where present, synthetic defects."""
    from genclip_hf.data import decode_row, load_benchmark, write_synthetic_benchmark

    sources = {}
    if (data / "mpdd").is_dir():
        sources["MPDD metal_plate (real)"] = ("mpdd", data / "mpdd")
    if (data / "sdd" / "KolektorSDD").is_dir():
        sources["KolektorSDD (real)"] = ("sdd", data / "sdd" / "KolektorSDD")
    synthetic = write_synthetic_benchmark(work / "synthetic", SYNTHETIC_CLASSES, n_test_good=4, n_test_bad=4)
    sources["synthetic defects"] = ("mvtec", synthetic)
    sets = {}
    for title, (benchmark, root) in sources.items():
        dataset = load_benchmark(benchmark, root, cache_dir=str(work / "cache"))
        sets[title] = []
        for row in dataset:
            image, mask = decode_row(row)
            sets[title].append({"image": image, "mask": mask, "class_name": row["class_name"]})
    return sets


def run_set(model, processor, rows: list[dict], batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Maps `(N, S, S)` and scores `(N,)` of every row at the model resolution."""
    maps, scores = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        pixel_values = processor.pixel_values([row["image"] for row in batch])
        with torch.inference_mode():
            output = model.detect(pixel_values, [row["class_name"] for row in batch])
        maps.append(output.anomaly_maps.float().numpy())
        scores.append(output.pred_scores.float().numpy())
    return np.concatenate(maps), np.concatenate(scores)


def metrics_of(maps: np.ndarray, scores: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from genclip_hf.metrics import aupro, image_auroc, pixel_auroc

    return {
        "pixel AUROC": 100 * pixel_auroc(maps, masks),
        "AUPRO": 100 * aupro(maps, masks),
        "image AUROC": 100 * image_auroc(scores, labels),
    }


def accuracy(args: argparse.Namespace, work: Path) -> None:
    from scipy.stats import spearmanr

    from genclip_hf import AnomalyDetectionProcessor

    sets = accuracy_sets(args.data, work)
    class_names = sorted({row["class_name"] for rows in sets.values() for row in rows})
    checkpoint, exported, _ = prepare(args, work, class_names)
    processor = AnomalyDetectionProcessor.from_pretrained(exported)
    outputs = {}
    for path in ("exact-fp32", *FAST_PATHS):
        model = load_path(path, checkpoint, exported)
        outputs[path] = {title: run_set(model, processor, rows) for title, rows in sets.items()}
        del model
    header = ("set", "path", "max |map diff|", "mean |map diff|", "score Spearman")
    header += ("d pixel AUROC", "d AUPRO", "d image AUROC")
    table = [header]
    for title, rows in sets.items():
        masks = processor.resize_masks([row["mask"] for row in rows], [row["image"].size for row in rows]).numpy()
        labels = masks.reshape(len(rows), -1).max(axis=1)
        exact_maps, exact_scores = outputs["exact-fp32"][title]
        exact = metrics_of(exact_maps, exact_scores, masks, labels)
        print(f"{title}: {len(rows)} images; exact fp32 " + ", ".join(f"{k} {v:.2f}" for k, v in exact.items()))
        for path in FAST_PATHS:
            maps, scores = outputs[path][title]
            difference = np.abs(maps - exact_maps)
            fast = metrics_of(maps, scores, masks, labels)
            table.append(
                (
                    title,
                    path,
                    f"{difference.max():.1e}",
                    f"{difference.mean():.1e}",
                    f"{spearmanr(scores, exact_scores).statistic:.4f}",
                    *(f"{fast[name] - exact[name]:+.2f}" for name in exact),
                )
            )
    print()
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="vit-l-14-336")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds over every path (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--accuracy", action="store_true", help="measure agreement with the exact path instead")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real-mini folder (skipped if absent)")
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, architecture {args.architecture}")
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as work:
        (accuracy if args.accuracy else speed)(args, Path(work))


if __name__ == "__main__":
    main()
