"""Per-image cost of AnomalyCLIP's `detect` at real scale (ViT-L/14-336 architecture, random weights, 518 px, fp32,
batch 1), against the bare CLIP vision forward, measured side by side in one run: the calls alternate within each
repeat, and a ratio is the median of the per-repeat ratios, so a load that drifts on a shared CPU biases neither.
Wall time and process CPU time are both reported; with `--threads 1` the CPU time is the compute itself, unaffected
by other processes on a shared machine (the ratio to trust there).

`detect` runs the vision tower once with DPAM (the V-V stream shares each block's q, k, v with the original stream),
the cached text features, four similarity maps, the Gaussian smoothing and the image score.
Target: detect / bare vision forward <= 1.3 (the official unfused DPAM costs about 2.2x).

    python benchmarks/bench_anomalyclip.py [--tokenizer ../shared/tokenizer/clip] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import DEFAULT_TOKENIZER, peak_rss_gib, print_table
from transformers import AutoTokenizer

from genclip_hf.configuration_anomalyclip import AnomalyCLIPConfig
from genclip_hf.modeling_anomalyclip import AnomalyCLIPModel

TARGET_RATIO = 1.3


def build_model(tokenizer_path: Path, seed: int = 0) -> AnomalyCLIPModel:
    """AnomalyCLIP with the official settings on the ViT-L/14-336 architecture, random weights, eval mode."""
    if not Path(tokenizer_path).exists():
        sys.exit(f"CLIP tokenizer not found at {tokenizer_path}; pass --tokenizer PATH (vocab.json, merges.txt).")
    torch.manual_seed(seed)
    model = AnomalyCLIPModel(AnomalyCLIPConfig()).eval()
    model.set_tokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    return model


def interleaved_timings(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and process CPU seconds of each function over `repeats` rounds, the functions called in turn within a
    round (after one warm-up round): `{name: {"wall": [...], "cpu": [...]}}`."""
    timings = {name: {"wall": [], "cpu": []} for name in functions}
    for round_index in range(repeats + 1):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            if round_index:
                timings[name]["wall"].append(time.perf_counter() - wall)
                timings[name]["cpu"].append(time.process_time() - cpu)
    return timings


def median_ratio(values: list[float], reference: list[float]) -> float:
    """Median over the rounds of `values[i] / reference[i]`."""
    return statistics.median(value / base for value, base in zip(values, reference, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(args.tokenizer)
    size = model.config.image_size
    pixel_values = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(pixel_values.shape)}")

    bare_name, detect_name = "bare CLIP vision forward (24 layers)", "AnomalyCLIP detect (text cached)"
    with torch.inference_mode():
        timings = interleaved_timings(
            {
                bare_name: lambda: model.clip.vision_model(pixel_values, interpolate_pos_encoding=True),
                detect_name: lambda: model.detect(pixel_values),
                "AnomalyCLIP vision pass with DPAM": lambda: model.encode_image(pixel_values),
                "text features, 2 prompts (once per model)": model.encode_prompts,
            },
            args.repeats,
        )
    bare = timings[bare_name]
    rows = [("part", "wall s", "x bare (wall)", "CPU s", "x bare (CPU)", "wall of each run (s)")]
    for name, clocks in timings.items():
        rows.append(
            (
                name,
                f"{statistics.median(clocks['wall']):.3f}",
                f"{median_ratio(clocks['wall'], bare['wall']):.3f}",
                f"{statistics.median(clocks['cpu']):.3f}",
                f"{median_ratio(clocks['cpu'], bare['cpu']):.3f}",
                " ".join(f"{value:.2f}" for value in clocks["wall"]),
            )
        )
    print_table(rows)
    detect = timings[detect_name]
    print(
        f"\ndetect / bare vision forward = {median_ratio(detect['cpu'], bare['cpu']):.3f} in CPU time, "
        f"{median_ratio(detect['wall'], bare['wall']):.3f} in wall time (target <= {TARGET_RATIO})"
    )
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
