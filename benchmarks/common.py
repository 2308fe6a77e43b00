"""Shared helpers of the benchmark scripts: timing, peak memory and the real-architecture model with random weights."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from genclip_hf.testing import CLIP_TOKENIZER_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = CLIP_TOKENIZER_DIR


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def time_interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each function, timed round-robin (one call of each per round).

    Interleaving puts every function under the same machine load, so their ratios stay meaningful on a busy machine.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def build_real_architecture(tokenizer_path: Path, seed: int = 0):
    """GenCLIP on the ViT-L/14-336 architecture at 518 px with random weights (the paper's setting; no download).

    Returns:
        `(model, processor)` in eval mode, fp32.
    """
    from genclip_hf import GenCLIPConfig, GenCLIPModel, GenCLIPProcessor

    if not Path(tokenizer_path).exists():
        sys.exit(f"CLIP tokenizer not found at {tokenizer_path}; pass --tokenizer PATH (vocab.json, merges.txt).")
    torch.manual_seed(seed)
    config = GenCLIPConfig()
    model = GenCLIPModel(config).eval()
    processor = GenCLIPProcessor.from_clip(tokenizer_path, config=config)
    model.set_tokenizer(processor.tokenizer)
    return model, processor


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print rows as a Markdown table (the first row is the header)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
