import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from genclip_hf.metrics import image_ap, image_auroc, pixel_auroc
from genclip_hf.metrics.ranking import partial_roc_area


@pytest.mark.parametrize("n_levels", [None, 3, 17])
def test_image_metrics_equal_sklearn(n_levels):
    rng = np.random.default_rng(n_levels or 0)
    for _ in range(50):
        size = int(rng.integers(2, 400))
        scores = rng.normal(size=size)
        if n_levels is not None:
            scores = np.round(scores * n_levels / 4)
        labels = rng.random(size) < rng.uniform(0.05, 0.95)
        labels[:2] = [True, False]
        assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
        assert image_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-9)


@pytest.mark.parametrize("n_levels", [None, 5, 100])
def test_pixel_auroc_equals_sklearn(n_levels):
    rng = np.random.default_rng(7)
    maps = rng.random((6, 40, 30)).astype(np.float32)
    if n_levels is not None:
        maps = np.floor(maps * n_levels) / n_levels
    masks = rng.random(maps.shape) < 0.1
    maps = maps + 0.2 * masks
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-9)


def test_all_scores_tied_with_both_classes():
    scores, labels = np.ones(6), np.array([0, 1, 0, 1, 1, 0])
    assert image_auroc(scores, labels) == 0.5
    assert image_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_torch_inputs_and_dtypes():
    rng = np.random.default_rng(3)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    masks = rng.random(maps.shape) < 0.2
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(torch.from_numpy(maps), torch.from_numpy(masks)) == pytest.approx(expected, abs=1e-9)
    assert pixel_auroc(maps, masks.astype(np.uint8)) == pytest.approx(expected, abs=1e-9)
    scores, labels = torch.tensor([0.1, 0.7, 0.3, 0.9]), torch.tensor([0, 1, 0, 1])
    assert image_auroc(scores, labels) == 1.0
    assert image_auroc(scores.to(torch.bfloat16), labels.bool()) == 1.0


def test_partial_area_interpolates_at_the_limit():
    # One positive above every negative: TPR is 1 from FPR 0, so the area up to any limit is the limit.
    negatives = np.linspace(0, 1, 11)
    assert partial_roc_area(negatives.copy(), np.array([2.0]), np.array([1.0]), 0.37) == pytest.approx(0.37)
    # A positive tied with the top negative: TPR rises along the first step (FPR 0 → 1/11).
    area = partial_roc_area(negatives.copy(), np.array([1.0]), np.array([1.0]), 0.05)
    assert area == pytest.approx(0.5 * 0.05 * (0.05 * 11))
