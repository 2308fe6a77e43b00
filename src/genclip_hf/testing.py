"""Random-weight CLIP checkpoints for tests, CI and benchmarks (no download; never stands in for real results)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from .configuration_genclip import CLIP_VIT_L_14_336
from .configuration_winclip import CLIP_VIT_B_16

CLIP_TOKENIZER_DIR = Path(__file__).resolve().parent / "resources" / "clip_tokenizer"
"""The real CLIP BPE tokenizer (OpenAI's vocabulary and merges, MIT licence) bundled with the package."""

# Vision and text widths differ on purpose, and both differ from the projection, so mixed-up widths fail loudly.
TINY_CLIP = {
    "projection_dim": 32,
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "projection_dim": 32,
    },
    "vision_config": {
        "hidden_size": 48,
        "intermediate_size": 96,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "image_size": 64,
        "patch_size": 8,
        "projection_dim": 32,
    },
}

CLIP_ARCHITECTURES = {"tiny": TINY_CLIP, "vit-b-16": CLIP_VIT_B_16, "vit-l-14-336": CLIP_VIT_L_14_336}

# GenCLIP settings scaled to the tiny CLIP: 3 of its 4 layers, 64 px input (8x8 grid), N1/N2 and sigma to match.
TINY_GENCLIP_OVERRIDES = {"feature_layers": [1, 2, 4], "image_size": 64, "top_n1": 20, "top_n2": 100, "sigma": 1.0}


def save_random_clip(
    output_dir: str | Path,
    tokenizer_path: str | Path = CLIP_TOKENIZER_DIR,
    architecture: str | dict = "tiny",
    seed: int = 0,
) -> Path:
    """Write a randomly initialised `CLIPModel` checkpoint (safetensors) with a tokenizer to `output_dir`.

    Args:
        output_dir: folder to create.
        tokenizer_path: a CLIP tokenizer folder or Hub id, copied beside the weights (default: the bundled one).
        architecture: `"tiny"`, `"vit-b-16"`, `"vit-l-14-336"` or a `CLIPConfig` keyword dict.
        seed: torch seed of the random weights.
    Returns:
        `output_dir` as a `Path`; `CLIPModel.from_pretrained` and `GenCLIPModel.from_clip` load it.
    """
    if isinstance(architecture, str):
        if architecture not in CLIP_ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {sorted(CLIP_ARCHITECTURES)} or a dict, got {architecture!r}."
            )
        architecture = CLIP_ARCHITECTURES[architecture]
    output_dir = Path(output_dir)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(**architecture)).save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(output_dir)
    return output_dir


def save_random_genclip(
    output_dir: str | Path,
    tokenizer_path: str | Path = CLIP_TOKENIZER_DIR,
    architecture: str | dict = "tiny",
    seed: int = 0,
    **config_overrides,
) -> Path:
    """Write an untrained GenCLIP checkpoint (model, processor and Hub code) on a random CLIP to `output_dir`.

    Its scores and maps mean nothing: it exists so that tests, CI and demos exercise the real code paths offline.
    The tiny architecture defaults to `TINY_GENCLIP_OVERRIDES`.
    """
    from .modeling_genclip import GenCLIPModel
    from .processing_genclip import GenCLIPProcessor

    output_dir = Path(output_dir)
    if architecture == "tiny":
        config_overrides = {**TINY_GENCLIP_OVERRIDES, **config_overrides}
    with tempfile.TemporaryDirectory() as clip_dir:
        save_random_clip(clip_dir, tokenizer_path, architecture, seed)
        torch.manual_seed(seed)
        model = GenCLIPModel.from_clip(clip_dir, **config_overrides)
        processor = GenCLIPProcessor.from_clip(clip_dir, config=model.config)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    """`python -m genclip_hf.testing --out DIR [--kind clip]`: write a tiny untrained GenCLIP checkpoint (or a plain
    random CLIP, which the pipeline runs as WinCLIP) for CI and demos."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument(
        "--tokenizer", default=str(CLIP_TOKENIZER_DIR), help="CLIP tokenizer (default: the bundled one)"
    )
    parser.add_argument("--architecture", default="tiny", choices=sorted(CLIP_ARCHITECTURES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=("genclip", "clip"), default="genclip", help="what to write")
    args = parser.parse_args(argv)
    save = save_random_genclip if args.kind == "genclip" else save_random_clip
    print(save(args.out, args.tokenizer, args.architecture, args.seed))
    return 0


__all__ = [
    "CLIP_ARCHITECTURES",
    "CLIP_TOKENIZER_DIR",
    "TINY_CLIP",
    "TINY_GENCLIP_OVERRIDES",
    "save_random_clip",
    "save_random_genclip",
]


if __name__ == "__main__":
    raise SystemExit(main())
