"""GenCLIP throughput on a GPU: images/s of the whole `detect` (pixels on the device to anomaly maps and scores) at
batch 1, 8 and 32 in fp32 and bf16 (SDPA attention), and bf16 with `torch.compile`d vision blocks, with the share of
the GPU's peak FLOP/s that the vision forward's FLOPs reach (ViT-L/14-336 at 518 px: about 1.0 TFLOP per image).

Random weights, real architecture; runs unattended and prints one table. On a fresh GPU machine:

    GENCLIP_TORCH_SPEC=torch==2.13.0 bash scripts/install.sh && .venv/bin/python benchmarks/bench_gpu.py

Its code paths run on a CPU too (tiny architecture, float32 fallback for bf16): `--device cpu --quick`.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table
from transformers import AutoTokenizer, CLIPConfig

from genclip_hf import GenCLIPConfig, GenCLIPModel
from genclip_hf.export.torch_fast import compile_vision_blocks, to_half_precision
from genclip_hf.testing import CLIP_ARCHITECTURES, CLIP_TOKENIZER_DIR, TINY_GENCLIP_OVERRIDES

# Dense (no sparsity) peak TFLOP/s by device-name fragment: bf16 tensor cores, and fp32 without TF32 (torch's default
# for matrix products).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "A10G": {"bf16": 70.0, "fp32": 35.0},
    "L4": {"bf16": 121.0, "fp32": 30.3},
}


def vision_tflops(config: GenCLIPConfig) -> float:
    """FLOPs (multiply-add = 2) of one image's CLIP vision forward at `config.image_size`, in TFLOP: patch
    embedding, then per block the q/k/v/out projections, the MLP and the two attention products."""
    vision = config.clip_config.vision_config
    width, hidden, patch = vision.hidden_size, vision.intermediate_size, vision.patch_size
    tokens = 1 + (config.image_size // patch) ** 2
    per_block = 2 * tokens * (4 * width * width + 2 * width * hidden) + 4 * tokens * tokens * width
    return (2 * (tokens - 1) * 3 * patch * patch * width + vision.num_hidden_layers * per_block) / 1e12


def build_model(quick: bool, device: torch.device) -> GenCLIPModel:
    """GenCLIP with random weights on `device`: ViT-L/14-336 at 518 px, or the tiny test architecture (`quick`)."""
    torch.manual_seed(0)
    if quick:
        config = GenCLIPConfig(clip_config=CLIPConfig(**CLIP_ARCHITECTURES["tiny"]), **TINY_GENCLIP_OVERRIDES)
    else:
        config = GenCLIPConfig()
    with torch.device(device):
        model = GenCLIPModel(config).eval()
    model.set_tokenizer(AutoTokenizer.from_pretrained(CLIP_TOKENIZER_DIR))
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(model: GenCLIPModel, batch: int, repeats: int, device: torch.device) -> float:
    """Images/s of `detect` on a random batch, after one warm-up call."""
    size = model.config.image_size
    pixel_values = torch.randn(batch, 3, size, size, device=device, dtype=model.dtype)
    with torch.inference_mode():
        model.detect(pixel_values, "metal plate")
        synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            model.detect(pixel_values, "metal plate")
        synchronize(device)
    return batch * repeats / (time.perf_counter() - started)


def peak_for(device: torch.device, args: argparse.Namespace) -> dict[str, float | None]:
    """Peak TFLOP/s of the device for bf16 and fp32 (table by name, overridden by the flags)."""
    peaks: dict[str, float | None] = {"bf16": None, "fp32": None}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peaks.update(next((value for key, value in PEAK_TFLOPS.items() if key in name), {}))
    if args.peak_tflops is not None:
        peaks["bf16"] = args.peak_tflops
    if args.peak_tflops_fp32 is not None:
        peaks["fp32"] = args.peak_tflops_fp32
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 8 32 (quick: 1 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 5, quick: 1)")
    parser.add_argument("--no-compile", action="store_true", help="skip the bf16 + torch.compile rows")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak TFLOP/s (default: by GPU name)")
    parser.add_argument("--peak-tflops-fp32", type=float, default=None, help="fp32 peak TFLOP/s (default: by name)")
    parser.add_argument("--quick", action="store_true", help="tiny architecture, batches 1 and 2 (tests the code)")
    args = parser.parse_args()
    device = torch.device(args.device)
    batch_sizes = args.batch_sizes or ([1, 2] if args.quick else [1, 8, 32])
    repeats = args.repeats or (1 if args.quick else 5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peaks = peak_for(device, args)
    model = build_model(args.quick, device)
    tflops = vision_tflops(model.config)
    print(f"torch {torch.__version__}, {name}, vision forward {tflops:.4g} TFLOP / image, peak TFLOP/s {peaks}")

    runs = [("fp32", False), ("bf16", False)] + ([] if args.no_compile else [("bf16", True)])
    rows = [("precision", "runs as", "compile", "batch", "images / s", "vision TFLOP/s", "% of peak", "peak GiB")]
    for precision, compiled in runs:
        if precision != "fp32":
            to_half_precision(model, precision)
        dtype = "bf16" if model.dtype == torch.bfloat16 else "fp16" if model.dtype == torch.float16 else "fp32"
        if compiled:
            size = model.config.image_size
            warmup_batch = torch.zeros(1, 3, size, size, device=device, dtype=model.dtype)
            compiled = compile_vision_blocks(model, lambda pixels=warmup_batch: model.detect(pixels))
        for batch in batch_sizes:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rate = images_per_second(model, batch, repeats, device)
            peak = peaks["bf16" if dtype in ("bf16", "fp16") else "fp32"]
            memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            rows.append(
                (
                    precision,
                    dtype,
                    "yes" if compiled else "no",
                    str(batch),
                    f"{rate:.2f}",
                    f"{rate * tflops:.3g}",
                    "-" if peak is None else f"{100 * rate * tflops / peak:.1f}",
                    "-" if memory is None else f"{memory:.1f}",
                )
            )
    print_table(rows)


if __name__ == "__main__":
    main()
