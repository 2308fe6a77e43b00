"""Random-weight CLIP checkpoints for tests, CI and benchmarks (no download; never stands in for real results)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from .configuration_genclip import CLIP_VIT_L_14_336

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

CLIP_ARCHITECTURES = {"tiny": TINY_CLIP, "vit-l-14-336": CLIP_VIT_L_14_336}


def save_random_clip(
    output_dir: str | Path, tokenizer_path: str | Path, architecture: str | dict = "tiny", seed: int = 0
) -> Path:
    """Write a randomly initialised `CLIPModel` checkpoint (safetensors) with a tokenizer to `output_dir`.

    Args:
        output_dir: folder to create.
        tokenizer_path: a CLIP tokenizer folder or Hub id, copied beside the weights.
        architecture: `"tiny"`, `"vit-l-14-336"` or a `CLIPConfig` keyword dict.
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


__all__ = ["CLIP_ARCHITECTURES", "TINY_CLIP", "save_random_clip"]
