"""Data loading speed and memory on generated synthetic benchmarks of 500 and 2,000 images.

For each size a fresh process loads the benchmark with `load_benchmark("mvtec", ...)` (cold cache),
takes a first batch of 8, then runs every row through a typical training transform (decode, resize
the image to 518x518 bicubic and the mask nearest, convert to arrays). Peak RSS is the process's
high-water mark (VmHWM); the 4x ratio line shows whether memory grows with the dataset.

    python benchmarks/bench_data.py [--image-size 128] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SIZE = 518
# (rows, classes): the small set uses 4 of the 8 categories, the large one all 8, both 50 % defective.
SIZES = ((500, ("stripes", "checker", "disc", "ring")), (2000, None))


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _transform(row: dict) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    image = row["image"].resize((TARGET_SIZE, TARGET_SIZE), Image.Resampling.BICUBIC)
    mask = row["mask"].resize((TARGET_SIZE, TARGET_SIZE), Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.float32) / 255.0, np.asarray(mask) > 0


def run_child(root: str, cache_dir: str, batch_size: int) -> dict:
    """Measure one benchmark in this (fresh) process; returns the figures as a dict."""
    from genclip_hf.data import load_benchmark

    baseline = _memory_kib("VmRSS")
    start = time.perf_counter()
    dataset = load_benchmark("mvtec", root, cache_dir=cache_dir)
    cold_load_s = time.perf_counter() - start
    first_batch = [_transform(dataset[i]) for i in range(batch_size)]
    first_batch_s = time.perf_counter() - start
    del first_batch
    start = time.perf_counter()
    for row in dataset:
        _transform(row)
    transform_s = time.perf_counter() - start
    start = time.perf_counter()
    for row in dataset:
        row["image"].load()
        row["mask"].load()
    decode_s = time.perf_counter() - start
    warm_start = time.perf_counter()
    load_benchmark("mvtec", root, cache_dir=cache_dir)
    return {
        "rows": len(dataset),
        "cold_load_s": cold_load_s,
        "first_batch_s": first_batch_s,
        "warm_load_s": time.perf_counter() - warm_start,
        "transform_images_per_s": len(dataset) / transform_s,
        "decode_images_per_s": len(dataset) / decode_s,
        "arrow_bytes_per_row": sum(Path(f["filename"]).stat().st_size for f in dataset.cache_files) / len(dataset),
        "baseline_rss_mib": baseline / 1024,
        "peak_rss_mib": _memory_kib("VmHWM") / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=128, help="side of the generated images (px)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], args.child[1], args.batch_size)))
        return

    from genclip_hf.data.synthetic import CATEGORIES, write_synthetic_benchmark

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows, classes in SIZES:
            per_class = rows // len(classes or CATEGORIES)
            start = time.perf_counter()
            root = write_synthetic_benchmark(
                Path(tmp) / str(rows),
                classes=classes,
                n_train_good=0,
                n_test_good=per_class // 2,
                n_test_bad=per_class - per_class // 2,
                image_size=(args.image_size, args.image_size),
            )
            generation_s = time.perf_counter() - start
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--batch-size",
                    str(args.batch_size),
                    "--child",
                    str(root),
                    f"{tmp}/c{rows}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            figures["generation_s"] = generation_s
            results.append(figures)

    print(
        f"images {args.image_size}x{args.image_size} px, transform: decode + resize to {TARGET_SIZE} (bicubic/nearest)"
    )
    header = (
        "rows",
        "gen s",
        "cold load s",
        "1st batch s",
        "warm load s",
        "img/s xform",
        "img/s decode",
        "arrow B/row",
        "base MiB",
        "peak MiB",
    )
    print(" | ".join(f"{h:>12}" for h in header))
    for r in results:
        values = (
            r["rows"],
            f"{r['generation_s']:.2f}",
            f"{r['cold_load_s']:.2f}",
            f"{r['first_batch_s']:.2f}",
            f"{r['warm_load_s']:.2f}",
            f"{r['transform_images_per_s']:.0f}",
            f"{r['decode_images_per_s']:.0f}",
            f"{r['arrow_bytes_per_row']:.0f}",
            f"{r['baseline_rss_mib']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
        )
        print(" | ".join(f"{v:>12}" for v in values))
    small, large = results
    growth = (large["peak_rss_mib"] - large["baseline_rss_mib"]) / max(
        small["peak_rss_mib"] - small["baseline_rss_mib"], 1e-9
    )
    print(
        f"dataset x{large['rows'] / small['rows']:.1f}: peak RSS x{large['peak_rss_mib'] / small['peak_rss_mib']:.3f}, "
        f"peak above baseline x{growth:.3f}"
    )


if __name__ == "__main__":
    main()
