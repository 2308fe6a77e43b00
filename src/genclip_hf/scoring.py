"""Inference scoring of GenCLIP: branch fusion with Gaussian smoothing (Eq. 8) and the image score (Eqs. 9-10)."""

from __future__ import annotations

import torch
from torch.nn import functional

GAUSSIAN_TRUNCATE = 4.0


def fuse_branches(vision_maps: torch.Tensor, query_maps: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """The unsmoothed part of Eq. 8: `alpha * sum_i S_V^i + (1 - alpha) * sum_i S_Q^i`.

    Args:
        vision_maps: `(B, L, H, W)` anomaly probabilities of the vision-enhanced branch.
        query_maps: `(B, L, H, W)` anomaly probabilities of the query-only branch, or `None` when that branch is off
            (then the result is `sum_i S_V^i`, i.e. alpha is taken as 1).
        alpha: weight of the vision-enhanced branch in [0, 1].
    Returns:
        `(B, H, W)`.
    """
    if query_maps is None:
        return vision_maps.sum(dim=1)
    return alpha * vision_maps.sum(dim=1) + (1 - alpha) * query_maps.sum(dim=1)


def _symmetric_indices(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a line of `length` extended by `radius` on each side with half-sample symmetric reflection
    (`d c b a | a b c d | d c b a`), valid for any radius."""
    positions = torch.arange(-radius, length + radius, device=device) % (2 * length)
    return torch.where(positions < length, positions, 2 * length - 1 - positions)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation `sigma` and radius `int(4 * sigma + 0.5)`: `(2 * radius + 1,)`."""
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing `G_sigma` of Eq. 8 with reflect (half-sample symmetric) borders.

    Equals `scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=4.0)` on each map.

    Args:
        maps: `(B, H, W)`.
        sigma: standard deviation in pixels; 0 returns the maps unchanged.
    Returns:
        `(B, H, W)` in the input dtype.
    """
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel(sigma).to(device=maps.device, dtype=torch.float32)
    radius = (kernel.numel() - 1) // 2
    batch, height, width = maps.shape
    smoothed = maps.float()
    rows = smoothed[:, _symmetric_indices(height, radius, maps.device)]
    smoothed = functional.conv1d(rows.permute(0, 2, 1).reshape(batch * width, 1, -1), kernel.view(1, 1, -1)).reshape(
        batch, width, height
    )
    columns = smoothed[:, _symmetric_indices(width, radius, maps.device)]
    smoothed = functional.conv1d(
        columns.permute(0, 2, 1).reshape(batch * height, 1, -1), kernel.view(1, 1, -1)
    ).reshape(batch, height, width)
    return smoothed.to(maps.dtype)


def image_scores(segmentation_maps: torch.Tensor, top_n1: int, top_n2: int) -> torch.Tensor:
    """Eqs. 9-10: `S_det = w * mean(top_N1)`, `w = mean(exp(top_N1)) / mean(exp(top_N2))`.

    `top_N` are the N largest values of a map. When a map has fewer pixels than N, N is clamped to the pixel count
    (so a map smaller than N2 pixels uses all of its pixels for the denominator).

    Args:
        segmentation_maps: `(B, H, W)` fused maps `S_seg`.
        top_n1, top_n2: N1 < N2.
    Returns:
        `(B,)` image anomaly scores.
    """
    flat = segmentation_maps.flatten(1).float()
    n1, n2 = min(top_n1, flat.shape[1]), min(top_n2, flat.shape[1])
    top = flat.topk(max(n1, n2), dim=1).values
    top_n1_values, top_n2_values = top[:, :n1], top[:, :n2]
    shift = top[:, :1]
    weight = torch.exp(top_n1_values - shift).mean(dim=1) / torch.exp(top_n2_values - shift).mean(dim=1)
    return weight * top_n1_values.mean(dim=1)


def segmentation_and_scores(
    vision_maps: torch.Tensor,
    query_maps: torch.Tensor | None,
    alpha: float,
    sigma: float,
    top_n1: int,
    top_n2: int,
    few_shot_map: torch.Tensor | None = None,
    few_shot_weight: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 8-10 together: the smoothed fused map `S_seg` `(B, H, W)` and the image scores `S_det` `(B,)`.

    With a few-shot map `(B, H, W)` (normal reference images), the fused map is blended with it before smoothing:
    `(1 - few_shot_weight) * fused + few_shot_weight * few_shot_map`.
    """
    fused = fuse_branches(vision_maps, query_maps, alpha)
    if few_shot_map is not None:
        fused = (1 - few_shot_weight) * fused + few_shot_weight * few_shot_map
    segmentation = gaussian_smooth(fused, sigma)
    return segmentation, image_scores(segmentation, top_n1, top_n2)


def resize_map(anomaly_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of one `(H, W)` map to `size = (height, width)`."""
    if tuple(anomaly_map.shape) == tuple(size):
        return anomaly_map
    return functional.interpolate(anomaly_map[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


__all__ = [
    "fuse_branches",
    "gaussian_kernel",
    "gaussian_smooth",
    "image_scores",
    "resize_map",
    "segmentation_and_scores",
]
