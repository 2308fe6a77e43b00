"""Few-shot building blocks shared by the methods: nearest-neighbour distances to a memory of normal features."""

from __future__ import annotations

import torch
from torch.nn import functional

DEFAULT_CHUNK_SIZE = 4096


def nearest_neighbour_distances(
    features: torch.Tensor, memory: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Distance of every feature to its nearest neighbour in `memory`: `min_m 0.5 * (1 - cos(f, m))`.

    This is WinCLIP+'s visual association score (WinCLIP paper, Eq. 4; anomalib's `visual_association_score`): half the
    cosine distance, in [0, 1], and 0 where a feature has an identical direction in `memory`. Features and memory are
    compared in float32, in blocks of at most `chunk_size` features times `chunk_size` memory rows, so the similarity
    matrix never grows beyond `chunk_size ** 2` values.

    Args:
        features (`torch.Tensor` of shape `(B, N, D)`): the features to score, e.g. the patch tokens of test images.
        memory (`torch.Tensor` of shape `(M, D)`): the features of normal reference images, any number of rows.
        chunk_size (`int`): block size over the flattened `B * N` features and over `M`.
    Returns:
        `torch.FloatTensor` of shape `(B, N)`: float32 distances.
    """
    if features.ndim != 3:
        raise ValueError(f"features must have shape (B, N, D), got {tuple(features.shape)}.")
    if memory.ndim != 2 or memory.shape[0] == 0 or memory.shape[1] != features.shape[-1]:
        raise ValueError(f"memory must have shape (M, D={features.shape[-1]}) with M >= 1, got {tuple(memory.shape)}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    batch, count, dim = features.shape
    queries = functional.normalize(features.reshape(batch * count, dim).float(), dim=-1)
    keys = functional.normalize(memory.to(queries.device, torch.float32), dim=-1)
    best = torch.cat([_max_similarity(query_chunk, keys, chunk_size) for query_chunk in queries.split(chunk_size)])
    return (0.5 * (1.0 - best)).clamp_min(0.0).reshape(batch, count)


def _max_similarity(queries: torch.Tensor, keys: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """`(n,)` highest cosine similarity of each unit-norm query row with the unit-norm `keys`, block by block."""
    best = torch.full((queries.shape[0],), -torch.inf, device=queries.device)
    for key_chunk in keys.split(chunk_size):
        best = torch.maximum(best, (queries @ key_chunk.T).amax(dim=1))
    return best


__all__ = ["nearest_neighbour_distances"]
