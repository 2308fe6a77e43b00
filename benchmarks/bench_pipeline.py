"""End-to-end `pipeline("anomaly-detection")` cost at real scale (ViT-L/14-336 architecture, random weights, 518 px).

Measured side by side in one run, round-robin so that every part runs under the same load: the bare CLIP vision
forward at batch 1 and the whole pipeline (image conversion, preprocessing, one vision pass, CNF, both branches,
fusion, smoothing, scoring, resizing the map to the original size) at batch 1 and 4. Target (issue 3): pipeline time
per image <= 1.10 x the bare vision forward at batch 1.

    python benchmarks/bench_pipeline.py [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_TOKENIZER, build_real_architecture, peak_rss_gib, print_table, time_interleaved
from transformers import pipeline

import genclip_hf  # noqa: F401  (registers the task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model, processor = build_real_architecture(args.tokenizer)
    detector = pipeline("anomaly-detection", model=model, processor=processor)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (700 + 40 * index, 900, 3), dtype=np.uint8) for index in range(4)]
    pixel_values = processor.pixel_values(images[0])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, images 700..820 x 900 RGB")

    def bare_vision() -> None:
        with torch.inference_mode():
            model.clip.vision_model(pixel_values, interpolate_pos_encoding=True)

    timings = time_interleaved(
        {
            "bare": bare_vision,
            "batch_one": lambda: detector(images[0], class_name="metal plate"),
            "batch_four": lambda: detector(images, class_name="metal plate", batch_size=4),
        },
        args.repeats,
    )
    bare, batch_one, batch_four = timings["bare"], timings["batch_one"], timings["batch_four"] / len(images)
    rows = [("run", "seconds / image", "images / s", "x bare vision")]
    rows.append(("bare CLIP vision forward, batch 1", f"{bare:.3f}", f"{1 / bare:.3f}", "1.000"))
    rows.append(("pipeline, batch 1", f"{batch_one:.3f}", f"{1 / batch_one:.3f}", f"{batch_one / bare:.3f}"))
    rows.append(("pipeline, batch 4", f"{batch_four:.3f}", f"{1 / batch_four:.3f}", f"{batch_four / bare:.3f}"))
    print_table(rows)
    print(f"\npipeline / bare vision at batch 1 = {batch_one / bare:.3f} (target <= 1.10)")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
