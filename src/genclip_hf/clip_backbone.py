"""Frozen CLIP vision tower pieces every method shares: patch and position embeddings at any input size (bicubic as
HF/open_clip or bilinear as AnomalyCLIP), and a layer loop that stops after the last layer it needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings, CLIPVisionModel

PositionInterpolation = Literal["bicubic", "bilinear"]


def position_embeddings(
    embeddings: CLIPVisionEmbeddings, grid_height: int, grid_width: int, mode: PositionInterpolation = "bicubic"
) -> torch.Tensor:
    """CLIP's position embeddings for a `grid_height` x `grid_width` patch grid: `(1, 1 + gh * gw, D)`.

    The square pre-trained grid is resized with `mode` (`align_corners=False`, no antialias); the CLS position is
    kept. At the pre-trained grid the table is returned unchanged. `"bicubic"` equals HF's `interpolate_pos_encoding`.
    """
    table = embeddings.position_embedding.weight.unsqueeze(0)
    trained = int(round((table.shape[1] - 1) ** 0.5))
    if (grid_height, grid_width) == (trained, trained):
        return table
    patch_table = table[:, 1:].reshape(1, trained, trained, -1).permute(0, 3, 1, 2)
    resized = functional.interpolate(patch_table, size=(grid_height, grid_width), mode=mode, align_corners=False)
    return torch.cat([table[:, :1], resized.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, -1)], dim=1)


def embed_images(
    vision_model: CLIPVisionModel, pixel_values: torch.Tensor, mode: PositionInterpolation = "bicubic"
) -> torch.Tensor:
    """CLS + patch embeddings with position embeddings added (before `pre_layrnorm`).

    Args:
        vision_model: `CLIPModel.vision_model`.
        pixel_values: `(B, 3, H, W)` with H and W multiples of the patch size.
        mode: how the position grid is resized to `(H / patch, W / patch)`.
    Returns:
        `(B, 1 + (H / patch) * (W / patch), D)`.
    """
    embeddings = vision_model.embeddings
    patch = embeddings.patch_size
    height, width = pixel_values.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"pixel_values must be a multiple of the patch size {patch}, got {height}x{width}.")
    weight = embeddings.patch_embedding.weight
    patches = embeddings.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
    tokens = torch.cat([embeddings.class_embedding.expand(patches.shape[0], 1, -1), patches], dim=1)
    return tokens + position_embeddings(embeddings, height // patch, width // patch, mode).to(tokens.dtype)


@dataclass
class VisionLayers:
    """Outputs of a run of the vision tower.

    Args:
        layer_outputs: `(B, 1 + N, D)` output of each requested 1-based layer, in the requested order.
        last_hidden_state: `(B, 1 + N, D)` output of the last layer that ran.
    """

    layer_outputs: list[torch.Tensor]
    last_hidden_state: torch.Tensor


def run_vision_layers(
    vision_model: CLIPVisionModel,
    pixel_values: torch.Tensor,
    layers: Sequence[int],
    mode: PositionInterpolation = "bicubic",
    run_to_end: bool = False,
) -> VisionLayers:
    """Run the tower up to the last of `layers` (or every layer with `run_to_end`), keeping only those outputs.

    Args:
        vision_model: `CLIPModel.vision_model`.
        pixel_values: `(B, 3, H, W)`.
        layers: 1-based block indices; layer `k` is HF's `hidden_states[k]`.
        mode: position-grid resize (see [`position_embeddings`]).
        run_to_end: also run the blocks after the last requested layer (for the pooled image embedding).
    """
    hidden = vision_model.pre_layrnorm(embed_images(vision_model, pixel_values, mode))
    wanted = {layer: index for index, layer in enumerate(layers)}
    last = len(vision_model.encoder.layers) if run_to_end else max(wanted, default=0)
    outputs: list[torch.Tensor | None] = [None] * len(wanted)
    for depth, block in enumerate(vision_model.encoder.layers[:last], start=1):
        hidden = block(hidden, attention_mask=None)
        if depth in wanted:
            outputs[wanted[depth]] = hidden
    return VisionLayers(layer_outputs=outputs, last_hidden_state=hidden)


__all__ = ["PositionInterpolation", "VisionLayers", "embed_images", "position_embeddings", "run_vision_layers"]
