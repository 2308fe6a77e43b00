"""Training losses: GenCLIP's Eq. 5 (focal and dice loss on the layer score maps) and AnomalyCLIP's label-smoothed
focal loss."""

from __future__ import annotations

import torch

PROBABILITY_EPS = 1e-8
DICE_EPS = 1e-5
FOCAL_LABEL_SMOOTHING = 1e-5
"""Label smoothing of AnomalyCLIP's focal loss."""


def focal_loss(probabilities: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss on two-channel probabilities: mean over pixels of `-(1 - p_t)^gamma * log(p_t)`.

    Args:
        probabilities: `(B, 2, H, W)` softmax maps; channel 0 normal, channel 1 anomalous.
        target: `(B, H, W)` binary ground truth (1 anomalous).
        gamma: focusing parameter.
    Returns:
        A scalar.
    """
    target_index = target.round().long().unsqueeze(1)
    p_target = probabilities.gather(1, target_index).squeeze(1).clamp(min=PROBABILITY_EPS)
    return (-((1 - p_target) ** gamma) * torch.log(p_target)).mean()


def dice_loss(prediction: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Dice loss `1 - (2 * sum(p * g) + s) / (sum(p) + sum(g) + s)` per image, averaged over the batch.

    `s = smooth` is added to numerator and denominator as in the AnomalyCLIP and AdaCLIP loss code; `smooth=0` is the
    paper's Eq. 15 literally, `1 - 2 * sum(p * g) / (sum(p) + sum(g) + eps)`, whose value is the constant 1 on an
    image with an empty target (no gradient).

    Args:
        prediction: `(B, H, W)` probabilities.
        target: `(B, H, W)` binary ground truth.
        smooth: the smoothing term s >= 0.
    Returns:
        A scalar.
    """
    prediction = prediction.flatten(1)
    target = target.flatten(1).to(prediction.dtype)
    overlap = (prediction * target).sum(dim=1)
    denominator = prediction.sum(dim=1) + target.sum(dim=1) + (smooth if smooth > 0 else DICE_EPS)
    return (1 - (2 * overlap + smooth) / denominator).mean()


def label_smoothed_focal_loss(
    probabilities: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = FOCAL_LABEL_SMOOTHING
) -> torch.Tensor:
    """AnomalyCLIP's focal loss (its `FocalLoss(smooth=1e-5)`): one-hot targets clamped to `[smooth, 1 - smooth]`,
    `p_t = <onehot, p> + smooth`, mean over pixels of `-(1 - p_t)^gamma * log(p_t)`.

    Args:
        probabilities: `(B, 2, H, W)` softmax maps; channel 0 normal, channel 1 abnormal.
        target: `(B, H, W)` binary ground truth (1 abnormal).
        gamma: focusing parameter.
        smooth: label smoothing.
    Returns:
        A scalar.
    """
    target = target.to(probabilities.dtype)
    one_hot = torch.stack([1 - target, target], dim=1).clamp(smooth, 1 - smooth)
    p_target = (one_hot * probabilities).sum(dim=1) + smooth
    return (-((1 - p_target) ** gamma) * torch.log(p_target)).mean()


def genclip_loss(
    layer_maps: torch.Tensor, masks: torch.Tensor, gamma: float = 2.0, dice_smooth: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 summed over layers: `focal(S^i, GT) + dice(S^i[:, 1], GT) + dice(S^i[:, 0], 1 - GT)`.

    Args:
        layer_maps: `(B, L, 2, H, W)` softmax score maps.
        masks: `(B, H, W)` binary ground truth at the map size (all zero for normal images).
        gamma: focal-loss focusing parameter.
        dice_smooth: the dice smoothing term (see [`dice_loss`]).
    Returns:
        The total loss (scalar) and the `(L,)` loss of each layer.
    """
    masks = masks.to(layer_maps.dtype)
    per_layer = torch.stack(
        [
            focal_loss(layer_map, masks, gamma)
            + dice_loss(layer_map[:, 1], masks, dice_smooth)
            + dice_loss(layer_map[:, 0], 1 - masks, dice_smooth)
            for layer_map in layer_maps.unbind(dim=1)
        ]
    )
    return per_layer.sum(), per_layer


__all__ = ["dice_loss", "focal_loss", "genclip_loss", "label_smoothed_focal_loss"]
