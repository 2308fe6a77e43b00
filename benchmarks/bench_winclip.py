"""Per-image cost of zero-shot WinCLIP at 240 px on the ViT-B/16 architecture (random weights, fp32, batch 1).

Measured side by side in one run: the bare CLIP vision forward at 240 px (one sequence of 1 + 15 * 15 tokens) and
`WinCLIPModel.detect` (the full image plus every 2x2 and 3x3 window encoded on its own: 196 sequences of 5 tokens and
169 of 10, i.e. about 12x the tokens of the bare forward; the text embeddings are cached after the first call, whose
cost is shown separately), then the ratio detect / bare forward.

    python benchmarks/bench_winclip.py [--tokenizer ../shared/tokenizer/clip] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_TOKENIZER, peak_rss_gib, print_table, time_interleaved
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from genclip_hf.configuration_winclip import WinCLIPConfig
from genclip_hf.modeling_winclip import WinCLIPModel
from genclip_hf.processing_anomaly_detection import AnomalyDetectionProcessor
from genclip_hf.testing import CLIP_VIT_B_16

IMAGE_SIZE = 240
CLASS_NAME = "metal plate"


def build_winclip(tokenizer_path: Path, seed: int = 0) -> WinCLIPModel:
    """WinCLIP at 240 px on a randomly initialised ViT-B/16 CLIP (no download), in eval mode, fp32."""
    if not Path(tokenizer_path).exists():
        sys.exit(f"CLIP tokenizer not found at {tokenizer_path}; pass --tokenizer PATH (vocab.json, merges.txt).")
    torch.manual_seed(seed)
    clip = CLIPModel(CLIPConfig(**CLIP_VIT_B_16))
    model = WinCLIPModel(WinCLIPConfig(clip_config=clip.config, image_size=IMAGE_SIZE), clip_model=clip).eval()
    model.set_tokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_winclip(args.tokenizer)
    processor = AnomalyDetectionProcessor.for_model(model, tokenizer=model.tokenizer)
    image = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    pixel_values = processor.pixel_values(image)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(pixel_values.shape)}")

    def bare_vision() -> None:
        model.clip.vision_model(pixel_values, interpolate_pos_encoding=True)

    def text_embeddings() -> None:
        model.prompt_embeddings(CLASS_NAME)

    def detect() -> None:
        model.detect(pixel_values, class_names=CLASS_NAME)

    with torch.inference_mode():
        timings = time_interleaved(
            {
                f"bare CLIP vision forward ({IMAGE_SIZE} px)": bare_vision,
                "WinCLIP detect, zero-shot, scales 2 and 3 (text cached)": detect,
                "text embeddings of 231 prompts (once per class name)": text_embeddings,
            },
            args.repeats,
        )
    bare = timings[f"bare CLIP vision forward ({IMAGE_SIZE} px)"]
    rows = [("part", "seconds / image", "x bare vision")]
    rows += [(name, f"{seconds:.3f}", f"{seconds / bare:.2f}") for name, seconds in timings.items()]
    print_table(rows)
    detect_seconds = timings["WinCLIP detect, zero-shot, scales 2 and 3 (text cached)"]
    print(f"\ndetect / bare vision forward = {detect_seconds / bare:.2f}")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
