"""Eqs. 8-10 and class-name filtering on hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from genclip_hf.class_names import ClassNameFilter, generic_sentence, normalize_class_name
from genclip_hf.scoring import fuse_branches, gaussian_kernel, gaussian_smooth, image_scores, segmentation_and_scores


def test_eq8_fusion_weights_the_layer_sums():
    vision = torch.tensor([[[[0.2]], [[0.4]]]])  # B=1, L=2, 1x1
    query = torch.tensor([[[[0.6]], [[1.0]]]])
    fused = fuse_branches(vision, query, alpha=0.8)
    assert fused.item() == pytest.approx(0.8 * 0.6 + 0.2 * 1.6)
    assert fuse_branches(vision, None, alpha=0.8).item() == pytest.approx(0.6)


def test_gaussian_kernel_radius_is_four_sigma():
    kernel = gaussian_kernel(9.0)
    assert kernel.numel() == 2 * 36 + 1
    assert kernel.sum().item() == pytest.approx(1.0)
    assert kernel[36].item() == pytest.approx(1 / sum(math.exp(-0.5 * (x / 9.0) ** 2) for x in range(-36, 37)))


@pytest.mark.parametrize(("shape", "sigma"), [((2, 37, 50), 9.0), ((1, 5, 7), 3.0), ((1, 64, 64), 1.0)])
def test_gaussian_smoothing_equals_scipy_reflect(shape, sigma):
    maps = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    ours = gaussian_smooth(maps, sigma).numpy()
    reference = np.stack(
        [ndimage.gaussian_filter(m.double().numpy(), sigma, mode="reflect", truncate=4.0) for m in maps]
    )
    assert np.abs(ours - reference).max() < 1e-5
    assert torch.equal(gaussian_smooth(maps, 0.0), maps)


def test_eq9_eq10_image_score_with_the_w_factor():
    values = torch.tensor([[[4.0, 3.0, 2.0, 1.0, 0.0, 0.0]]])
    score = image_scores(values, top_n1=2, top_n2=4).item()
    weight = ((math.exp(4) + math.exp(3)) / 2) / ((math.exp(4) + math.exp(3) + math.exp(2) + math.exp(1)) / 4)
    assert score == pytest.approx(weight * 3.5, rel=1e-6)
    assert weight > 1


def test_image_score_clamps_n_to_the_pixel_count():
    values = torch.tensor([[[1.0, 3.0]]])
    # N1 = 500 and N2 = 2500 both clamp to the 2 pixels: w = 1 and the score is the mean.
    assert image_scores(values, top_n1=500, top_n2=2500).item() == pytest.approx(2.0)


def _numpy_image_score(segmentation: np.ndarray, n1: int, n2: int) -> float:
    """Eqs. 9-10 written independently in float64: w = mean(exp(top N1)) / mean(exp(top N2)), S = w * mean(top N1)."""
    values = np.sort(segmentation.ravel().astype(np.float64))[::-1]
    weight = np.exp(values[:n1]).mean() / np.exp(values[:n2]).mean()
    return float(weight * values[:n1].mean())


def test_segmentation_and_scores_chain_against_scipy_and_numpy():
    generator = torch.Generator().manual_seed(0)
    vision, query = torch.rand(2, 3, 16, 16, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)
    few_shot = torch.rand(2, 16, 16, generator=generator)
    segmentation, scores = segmentation_and_scores(vision, query, 0.8, 1.0, 5, 20)
    with_few_shot, few_shot_scores = segmentation_and_scores(vision, query, 0.8, 1.0, 5, 20, few_shot, 0.25)
    for index in range(2):
        fused = 0.8 * vision[index].numpy().astype(np.float64).sum(0) + 0.2 * query[index].numpy().sum(0)
        expected = ndimage.gaussian_filter(fused, sigma=1.0, mode="reflect", truncate=4.0)
        assert np.allclose(segmentation[index].numpy(), expected, atol=1e-5)
        assert scores[index].item() == pytest.approx(_numpy_image_score(expected, 5, 20), rel=1e-5)
        blended = 0.75 * fused + 0.25 * few_shot[index].numpy()
        expected = ndimage.gaussian_filter(blended, sigma=1.0, mode="reflect", truncate=4.0)
        assert np.allclose(with_few_shot[index].numpy(), expected, atol=1e-5)
        assert few_shot_scores[index].item() == pytest.approx(_numpy_image_score(expected, 5, 20), rel=1e-5)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("pcb2", "pcb"),
        ("macaroni1", "macaroni"),
        ("pipe_fryum", "pipe fryum"),
        ("02", "object"),
        ("metal_plate", "metal plate"),
        ("bracket-black", "bracket black"),
        ("  candle  ", "candle"),
    ],
)
def test_class_name_normalisation_table(raw, clean):
    assert normalize_class_name(raw, "object") == clean


def test_generic_sentence_article():
    assert generic_sentence("object") == "a photo of an object."
    assert generic_sentence("product") == "a photo of a product."


class ControlledEncoder:
    """Text embeddings chosen by the test: one axis per sentence."""

    def __init__(self, axes: dict[str, int]):
        self.axes = axes
        self.calls: list[list[str]] = []

    def __call__(self, sentences):
        self.calls.append(list(sentences))
        embeddings = torch.zeros(len(sentences), 3)
        for row, sentence in enumerate(sentences):
            embeddings[row, self.axes[sentence]] = 1.0
        return embeddings


def test_cnf_keeps_the_class_name_only_when_it_is_closer_than_the_generic_term():
    encoder = ControlledEncoder({"a photo of a pcb.": 0, "a photo of a fryum.": 1, "a photo of an object.": 2})
    cnf = ClassNameFilter(encoder, generic_term="object")
    images = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.3, 1.0], [0.0, 0.5, 0.5]])
    assert cnf(images, ["pcb2", "fryum", "fryum"]) == ["pcb", "object", "object"]  # a tie goes to the generic term
    assert cnf(images[:1], ["02"]) == ["object"]
    sentences = [sentence for call in encoder.calls for sentence in call]
    assert len(sentences) == len(set(sentences))  # every sentence encoded once, then cached


def test_cnf_rejects_a_name_count_mismatch():
    cnf = ClassNameFilter(ControlledEncoder({}), "object")
    with pytest.raises(ValueError, match="class_names must hold one name per image"):
        cnf(torch.zeros(2, 3), ["pcb"])
