"""Per-image cost of GenCLIP's inference at real scale (ViT-L/14-336 architecture, random weights, 518 px, fp32,
batch 1), measured through the model's own methods.

Side by side in one run, round-robin (the same load for every part): the bare CLIP vision forward (all 24 layers),
GenCLIP's vision pass (the four feature layers plus the CLIP image embedding), the vision-enhanced text prompts
truncated to the longest EOT vs the full 77 tokens, the query-only text (computed once per model, then cached), and
`model.detect` as a whole (one vision pass, CNF, both branches, Eqs. 8-10); then the ratio `detect / bare vision
forward`.
Target: everything beyond the vision forward <= 10 % of it; peak RSS <= 2.6 GB.

    python benchmarks/bench_model.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_TOKENIZER, build_real_architecture, peak_rss_gib, print_table, time_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, processor = build_real_architecture(args.tokenizer)
    image = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    pixel_values = processor.pixel_values(image)
    prompts = model.prompt_inputs(["metal plate"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(pixel_values.shape)}")

    with torch.inference_mode():
        layer_features = model.encode_image(pixel_values).layer_features
        learner = model.prompt_learner
        layers = layer_features.shape[1]
        query = learner.query_prompts(learner.vision_prompts(layer_features), (1, layers)).flatten(0, 1)

        def vision_branch_text(truncate: bool) -> None:
            ids = prompts["input_ids"]
            if not truncate:
                ids = torch.nn.functional.pad(ids, (0, 77 - ids.shape[-1]), value=processor.tokenizer.pad_token_id)
            learner.encode(
                model.clip,
                ids.repeat_interleave(layers, 0),
                prompts["query_positions"].repeat_interleave(layers, 0),
                prompts["eot_positions"].repeat_interleave(layers, 0),
                query,
                truncate=truncate,
            )

        def query_text_uncached() -> None:
            model._query_text_cache.clear()
            model.query_text_embeddings()

        timings = time_interleaved(
            {
                "bare CLIP vision forward (24 layers)": lambda: model.clip.vision_model(
                    pixel_values, interpolate_pos_encoding=True
                ),
                "GenCLIP vision pass (4 layers + image embedding)": lambda: model.encode_image(pixel_values),
                "vision-branch text, 8 prompts, truncated": lambda: vision_branch_text(True),
                "vision-branch text, 8 prompts, 77 tokens": lambda: vision_branch_text(False),
                "query-only text, 2 prompts (once per model)": query_text_uncached,
                "model.detect: everything (CNF, both branches, Eqs. 8-10)": lambda: model.detect(
                    pixel_values, "metal plate"
                ),
            },
            args.repeats,
        )
    bare = timings["bare CLIP vision forward (24 layers)"]
    rows = [("part", "seconds / image", "x bare vision")]
    rows += [(name, f"{seconds:.3f}", f"{seconds / bare:.3f}") for name, seconds in timings.items()]
    print_table(rows)
    print(f"\nprompt length: vision branch {prompts['input_ids'].shape[-1]} tokens (vs 77)")
    full, truncated = (timings[f"vision-branch text, 8 prompts, {kind}"] for kind in ("77 tokens", "truncated"))
    print(f"text speed-up from truncation: vision branch {full / truncated:.1f}x")
    detect = timings["model.detect: everything (CNF, both branches, Eqs. 8-10)"]
    print(
        f"detect / bare vision forward = {detect / bare:.3f} "
        f"(beyond the vision forward: {100 * (detect - bare) / bare:.1f} %; target <= 10 %)"
    )
    print(f"peak RSS: {peak_rss_gib():.2f} GiB (target <= 2.6 GB = 2.42 GiB)")


if __name__ == "__main__":
    main()
