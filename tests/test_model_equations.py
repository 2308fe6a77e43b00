"""Eqs. 1-5 against small hand-computable cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from genclip_hf import GenCLIPConfig
from genclip_hf.losses import dice_loss, focal_loss, genclip_loss
from genclip_hf.prompts import GenCLIPPromptLearner
from genclip_hf.testing import TINY_CLIP


def tiny_config(**overrides) -> GenCLIPConfig:
    return GenCLIPConfig(clip_config=TINY_CLIP, feature_layers=[1, 2], image_size=64, top_n1=2, top_n2=4, **overrides)


def test_eq1_vision_prompt_is_projection_of_mean_over_all_tokens_including_cls():
    learner = GenCLIPPromptLearner(tiny_config())
    vision_width, text_width = 48, 64
    with torch.no_grad():
        for index, projection in enumerate(learner.vision_prompt_projections):
            projection.weight.zero_()
            projection.weight[0, 0] = 1.0 + index
            projection.bias.fill_(0.5)
    features = torch.zeros(1, 2, 3, vision_width)
    # CLS 3, patches 6 and 9: mean 6 (5.0 would mean the CLS token was dropped).
    features[0, 0, :, 0] = torch.tensor([3.0, 6.0, 9.0])
    features[0, 1, :, 0] = torch.tensor([1.0, 1.0, 4.0])  # mean 2
    prompts = learner.vision_prompts(features)
    assert prompts.shape == (1, 2, text_width)
    assert prompts[0, 0, 0].item() == pytest.approx(1.0 * 6.0 + 0.5)
    assert prompts[0, 1, 0].item() == pytest.approx(2.0 * 2.0 + 0.5)
    assert torch.allclose(prompts[0, :, 1:], torch.full((2, text_width - 1), 0.5))


def test_eq2_query_prompt_adds_the_vision_prompt_to_every_query_token():
    learner = GenCLIPPromptLearner(tiny_config())
    with torch.no_grad():
        learner.query_tokens.copy_(torch.stack([torch.full((64,), 1.0), torch.full((64,), -2.0)]))
    vision_prompts = torch.arange(2 * 3 * 64, dtype=torch.float32).reshape(2, 3, 64)
    query = learner.query_prompts(vision_prompts, (2, 3))
    assert query.shape == (2, 3, 2, 64)
    assert torch.equal(query[:, :, 0], vision_prompts + 1.0)
    assert torch.equal(query[:, :, 1], vision_prompts - 2.0)
    assert torch.equal(learner.query_prompts(None, (2, 3)), learner.query_tokens.expand(2, 3, 2, 64))


def test_eq3_eq4_scaled_cosine_then_upsample_then_softmax(tiny_model):
    model = tiny_model
    grid, size = model.grid_size, model.config.image_size
    assert (grid, size) == (8, 64)
    vision_width, projection_dim = 48, 32
    with torch.no_grad():
        for projection in model.patch_projections:
            projection.weight.zero_()
            projection.weight[:2, :2] = torch.eye(2)
            projection.bias.zero_()
    features = torch.zeros(1, 3, 1 + grid * grid, vision_width)
    angles = torch.linspace(0, math.pi / 2, grid * grid)
    features[0, :, 1:, 0] = torch.cos(angles)
    features[0, :, 1:, 1] = torch.sin(angles)
    normal, abnormal = torch.zeros(projection_dim), torch.zeros(projection_dim)
    normal[0], abnormal[1] = 1.0, 1.0
    text = torch.stack([normal, abnormal])
    maps = model.score_maps(features, text)
    assert maps.shape == (1, 3, 2, size, size)
    # By hand: cos to the normal text is cos(angle), to the abnormal sin(angle); scale; upsample; softmax.
    logits = model.config.logit_scale * torch.stack([torch.cos(angles), torch.sin(angles)]).reshape(1, 2, grid, grid)
    upsampled = functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    expected = upsampled.softmax(dim=1)[0]
    for layer in range(3):
        assert torch.allclose(maps[0, layer], expected, atol=1e-5)
    softmax_first = functional.interpolate(logits.softmax(dim=1), size=(size, size), mode="bilinear")
    assert not torch.allclose(maps[0, 0], softmax_first[0], atol=1e-3)
    assert torch.allclose(maps.sum(dim=2), torch.ones(1, 3, size, size), atol=1e-6)


def test_eq5_focal_and_dice_on_a_known_map():
    anomaly = torch.tensor([[[0.9, 0.2], [0.5, 0.1]]])
    probabilities = torch.stack([1 - anomaly, anomaly], dim=1)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    p_target = [0.9, 0.8, 0.5, 0.9]
    expected_focal = sum(-((1 - p) ** 2) * math.log(p) for p in p_target) / 4
    assert focal_loss(probabilities, target, gamma=2.0).item() == pytest.approx(expected_focal, rel=1e-5)
    # The default dice adds s = 1 to numerator and denominator (the references' loss code).
    expected_dice_anomaly = 1 - (2 * 0.9 + 1) / (1.7 + 1 + 1)
    assert dice_loss(anomaly, target).item() == pytest.approx(expected_dice_anomaly, rel=1e-5)
    expected_dice_normal = 1 - (2 * (0.8 + 0.5 + 0.9) + 1) / (2.3 + 3 + 1)
    assert dice_loss(1 - anomaly, 1 - target).item() == pytest.approx(expected_dice_normal, rel=1e-5)
    layer_maps = torch.stack([probabilities, probabilities], dim=1)
    total, per_layer = genclip_loss(layer_maps, target, gamma=2.0)
    one_layer = expected_focal + expected_dice_anomaly + expected_dice_normal
    assert per_layer.tolist() == pytest.approx([one_layer, one_layer], rel=1e-5)
    assert total.item() == pytest.approx(2 * one_layer, rel=1e-5)


def test_eq15_dice_literally_with_smooth_zero():
    anomaly = torch.tensor([[[0.9, 0.2], [0.5, 0.1]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert dice_loss(anomaly, target, smooth=0.0).item() == pytest.approx(1 - 2 * 0.9 / (1.7 + 1 + 1e-5), rel=1e-5)


def test_dice_with_smoothing_has_a_gradient_on_normal_images_and_eq15_has_none():
    """On an image without defects the anomaly-channel dice of Eq. 15 is the constant 1 (no gradient); with s = 1
    it is 1 - 1 / (sum(S) + 1), which pushes the anomaly probabilities down."""
    anomaly = torch.tensor([[[0.3, 0.2], [0.5, 0.1]]], requires_grad=True)
    normal_target = torch.zeros(1, 2, 2)
    literal = dice_loss(anomaly, normal_target, smooth=0.0)
    assert literal.item() == pytest.approx(1.0)
    (literal_gradient,) = torch.autograd.grad(literal, anomaly)
    assert literal_gradient.abs().max().item() == 0.0
    smoothed = dice_loss(anomaly, normal_target, smooth=1.0)
    assert smoothed.item() == pytest.approx(1 - 1 / (1.1 + 1), rel=1e-6)
    (gradient,) = torch.autograd.grad(smoothed, anomaly)
    assert torch.allclose(gradient, torch.full_like(gradient, 1 / (1.1 + 1) ** 2))


def test_focal_gamma_zero_is_cross_entropy():
    probabilities = torch.tensor([[[[0.7]], [[0.3]]]])
    target = torch.tensor([[[1.0]]])
    assert focal_loss(probabilities, target, gamma=0.0).item() == pytest.approx(-math.log(0.3), rel=1e-6)
