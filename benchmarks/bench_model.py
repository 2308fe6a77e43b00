"""Per-image cost of GenCLIP's parts at real scale (ViT-L/14-336 architecture, random weights, 518 px, fp32, batch 1).

Measured side by side in one run: the bare CLIP vision forward (all 24 layers), GenCLIP's vision pass (the four
feature layers plus the CLIP image embedding), the text prompts of both branches (truncated to the longest EOT vs
the full 77 tokens), the score maps and fusion; then the ratio (everything) / (bare vision forward).
Target (issue 2): everything beyond the vision forward <= 10 % of it; peak RSS <= 2.6 GB.

    python benchmarks/bench_model.py [--tokenizer ../shared/tokenizer/clip] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_TOKENIZER, build_real_architecture, peak_rss_gib, print_table, time_call

from genclip_hf.scoring import segmentation_and_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, processor = build_real_architecture(args.tokenizer)
    config = model.config
    image = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    inputs = processor(images=[image], class_names="metal plate")
    pixel_values = inputs["pixel_values"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(pixel_values.shape)}")

    with torch.inference_mode():
        vision = model.encode_image(pixel_values)
        layer_features = vision.layer_features

        def bare_vision() -> None:
            model.clip.vision_model(pixel_values, interpolate_pos_encoding=True)

        def genclip_vision() -> None:
            model.encode_image(pixel_values)

        def vision_branch_text(truncate: bool) -> None:
            learner = model.prompt_learner
            layers = layer_features.shape[1]
            query = learner.query_prompts(learner.vision_prompts(layer_features), (1, layers)).flatten(0, 1)
            ids = inputs["input_ids"]
            if not truncate:
                ids = torch.nn.functional.pad(ids, (0, 77 - ids.shape[-1]), value=processor.tokenizer.pad_token_id)
            learner.encode(
                model.clip,
                ids.repeat_interleave(layers, 0),
                inputs["query_positions"].repeat_interleave(layers, 0),
                inputs["eot_positions"].repeat_interleave(layers, 0),
                query,
                truncate=truncate,
            )

        def query_branch_text(truncate: bool) -> None:
            ids = inputs["generic_input_ids"]
            if not truncate:
                ids = torch.nn.functional.pad(ids, (0, 77 - ids.shape[-1]), value=processor.tokenizer.pad_token_id)
            learner = model.prompt_learner
            learner.encode(
                model.clip,
                ids,
                inputs["generic_query_positions"],
                inputs["generic_eot_positions"],
                learner.query_prompts(None, (1,)),
                truncate=truncate,
            )

        text_embeds = model.text_embeddings(
            layer_features, inputs["input_ids"], inputs["query_positions"], inputs["eot_positions"]
        )
        query_text = model.query_text_embeddings(
            inputs["generic_input_ids"], inputs["generic_query_positions"], inputs["generic_eot_positions"]
        )

        def maps_and_scores() -> None:
            vision_maps = model.score_maps(layer_features, text_embeds)[:, :, 1]
            query_maps = model.score_maps(layer_features, query_text)[:, :, 1]
            segmentation_and_scores(vision_maps, query_maps, config.alpha, config.sigma, config.top_n1, config.top_n2)

        timings = {
            "bare CLIP vision forward (24 layers)": time_call(bare_vision, args.repeats),
            "GenCLIP vision pass (4 layers + image embedding)": time_call(genclip_vision, args.repeats),
            "vision-branch text, 8 prompts, truncated": time_call(lambda: vision_branch_text(True), args.repeats),
            "vision-branch text, 8 prompts, 77 tokens": time_call(lambda: vision_branch_text(False), args.repeats),
            "query-branch text, 2 prompts, truncated (once per model)": time_call(
                lambda: query_branch_text(True), args.repeats
            ),
            "query-branch text, 2 prompts, 77 tokens": time_call(lambda: query_branch_text(False), args.repeats),
            "score maps of both branches + Eqs. 8-10": time_call(maps_and_scores, args.repeats),
        }
    bare = timings["bare CLIP vision forward (24 layers)"]
    rows = [("part", "seconds / image", "x bare vision")]
    rows += [(name, f"{seconds:.3f}", f"{seconds / bare:.3f}") for name, seconds in timings.items()]
    print_table(rows)
    beyond = (
        timings["GenCLIP vision pass (4 layers + image embedding)"]
        - bare
        + timings["vision-branch text, 8 prompts, truncated"]
        + timings["score maps of both branches + Eqs. 8-10"]
    )
    print(
        f"\nprompt length: vision branch {inputs['input_ids'].shape[-1]} tokens, query branch "
        f"{inputs['generic_input_ids'].shape[-1]} tokens (vs 77)"
    )
    full, truncated = (timings[f"vision-branch text, 8 prompts, {kind}"] for kind in ("77 tokens", "truncated"))
    print(f"text speed-up from truncation: vision branch {full / truncated:.1f}x")
    print(
        f"everything / bare vision forward = {(bare + beyond) / bare:.3f} "
        f"(beyond the vision forward: {100 * beyond / bare:.1f} %; target <= 10 %)"
    )
    print(f"peak RSS: {peak_rss_gib():.2f} GiB (target <= 2.6 GB = 2.42 GiB)")


if __name__ == "__main__":
    main()
