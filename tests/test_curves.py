import numpy as np
import pytest
import torch
from metrics_references import brute_force_aupro, random_maps_and_masks
from sklearn.metrics import roc_curve

from genclip_hf.metrics import (
    UndefinedMetricError,
    aupro,
    image_auroc,
    image_roc_curve,
    pixel_auroc,
    pixel_roc_curve,
    pro_curve,
)


def _trapezoid(x, y):
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2).sum())


@pytest.mark.parametrize("n_levels", [None, 3, 17])
def test_image_roc_curve_equals_sklearn(n_levels):
    rng = np.random.default_rng(n_levels or 0)
    for _ in range(40):
        size = int(rng.integers(2, 200))
        scores = rng.normal(size=size)
        if n_levels is not None:
            scores = np.round(scores * n_levels / 4)
        labels = rng.random(size) < rng.uniform(0.05, 0.95)
        labels[:2] = [True, False]
        curve = image_roc_curve(scores, labels)
        fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
        np.testing.assert_array_equal(curve.fpr, fpr)
        np.testing.assert_array_equal(curve.tpr, tpr)
        np.testing.assert_array_equal(curve.thresholds, thresholds)
        assert curve.auroc == image_auroc(scores, labels)
        assert _trapezoid(curve.fpr, curve.tpr) == pytest.approx(curve.auroc, abs=1e-12)


def test_pixel_roc_curve_equals_sklearn_and_downsamples_to_exact_points():
    rng = np.random.default_rng(3)
    maps, masks = random_maps_and_masks(rng, n_images=6, size=24)
    maps = maps.astype(np.float32)
    fpr, tpr, thresholds = roc_curve(masks.ravel(), maps.ravel(), drop_intermediate=False)
    full = pixel_roc_curve(torch.from_numpy(maps), torch.from_numpy(masks), max_points=None)
    np.testing.assert_array_equal(full.fpr, fpr)
    np.testing.assert_array_equal(full.tpr, tpr)
    np.testing.assert_array_equal(full.thresholds, thresholds)
    assert full.auroc == pixel_auroc(maps, masks)
    assert thresholds.size > 3000

    small = pixel_roc_curve(maps, masks, max_points=200)
    assert small.fpr.size <= 200 and small.auroc == full.auroc
    assert (small.fpr[[0, -1]] == [0, 1]).all() and (small.tpr[[0, -1]] == [0, 1]).all()
    positions = np.searchsorted(-thresholds, -small.thresholds)
    np.testing.assert_array_equal(thresholds[positions], small.thresholds)
    np.testing.assert_array_equal(fpr[positions], small.fpr)
    np.testing.assert_array_equal(tpr[positions], small.tpr)
    assert np.diff(small.fpr).max() < 0.02 and np.diff(small.tpr).max() < 0.03


def test_pixel_roc_curve_of_constant_maps_is_the_diagonal():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1, 1] = True
    curve = pixel_roc_curve(np.full(masks.shape, 0.5), masks)
    np.testing.assert_array_equal(curve.fpr, [0, 1])
    np.testing.assert_array_equal(curve.tpr, [0, 1])
    assert curve.auroc == 0.5


def _hand_case():
    """One row: region A (pixels 0-1, scores 0.9 and 0.5), a normal pixel at 0.8, region B (pixel 3, 0.7), and
    nine normal pixels at 0.1."""
    maps = np.array([[[0.9, 0.5, 0.8, 0.7] + [0.1] * 9]])
    masks = np.zeros(maps.shape, dtype=bool)
    masks[0, 0, [0, 1, 3]] = True
    return maps, masks


def test_pro_curve_by_hand():
    maps, masks = _hand_case()
    curve = pro_curve(maps, masks)
    # 0.9: A half covered; 0.8: one false positive of ten; 0.7: B covered; 0.5: A covered; the next threshold,
    # 0.1, has FPR 1, so the curve ends on the interpolation at 0.3.
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.1, 0.1, 0.1, 0.3])
    np.testing.assert_allclose(curve.pro, [0, 0.25, 0.25, 0.75, 1, 1])
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, np.nan])
    assert curve.aupro == pytest.approx((0.1 * 0.25 + 0.2 * 1.0) / 0.3) == aupro(maps, masks)
    assert curve.mode == "exact" and curve.fpr_limit == 0.3

    # anomalyclip: 200 thresholds from 0.1, `map > t`: FPR is 0.1 below 0.8 and 0 above; rescaled to 0 and 1,
    # the only segment of positive width runs from (0, 0.25) to (1, 0.25).
    clip = pro_curve(maps, masks, mode="anomalyclip")
    assert set(np.round(clip.fpr, 12)) == {0.0, 0.1}
    assert (np.diff(clip.fpr) >= 0).all() and (np.diff(clip.thresholds) < 0).all()
    assert clip.aupro == pytest.approx(0.25) and clip.aupro == aupro(maps, masks, mode="anomalyclip")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_levels", [None, 5])
def test_pro_curve_is_the_curve_aupro_integrates(seed, n_levels):
    maps, masks = random_maps_and_masks(np.random.default_rng(seed), n_images=4, size=12, n_levels=n_levels)
    for fpr_limit in (0.3, 0.05, 1.0):
        curve = pro_curve(maps, masks, fpr_limit=fpr_limit, max_points=None)
        assert curve.aupro == aupro(maps, masks, fpr_limit=fpr_limit)
        assert curve.aupro == pytest.approx(brute_force_aupro(maps, masks, fpr_limit), abs=1e-9)
        assert _trapezoid(curve.fpr, curve.pro) / fpr_limit == pytest.approx(curve.aupro, abs=1e-12)
        assert curve.fpr[0] == 0 and curve.fpr[-1] == fpr_limit and (np.diff(curve.fpr) >= 0).all()
    clip = pro_curve(maps, masks, mode="anomalyclip")
    assert clip.aupro == aupro(maps, masks, mode="anomalyclip")
    assert clip.fpr.max() < 0.3


def test_downsampled_pro_curve_keeps_endpoints_and_exact_points():
    maps, masks = random_maps_and_masks(np.random.default_rng(9), n_images=8, size=32)
    full = pro_curve(maps, masks, max_points=None)
    small = pro_curve(maps, masks, max_points=50)
    assert full.fpr.size > 500 and small.fpr.size <= 50 and small.aupro == full.aupro
    assert small.fpr[-1] == full.fpr[-1] == 0.3 and small.pro[-1] == pytest.approx(full.pro[-1], abs=1e-12)
    assert small.thresholds[0] == np.inf and np.isnan(small.thresholds[-1]) == np.isnan(full.thresholds[-1])
    exact = np.isfinite(small.thresholds)
    positions = np.searchsorted(-full.thresholds[1:], -small.thresholds[exact]) + 1
    np.testing.assert_array_equal(full.thresholds[positions], small.thresholds[exact])
    np.testing.assert_array_equal(full.fpr[positions], small.fpr[exact])
    np.testing.assert_allclose(full.pro[positions], small.pro[exact], atol=1e-12)


def test_undefined_and_invalid_curves():
    maps, masks = _hand_case()
    with pytest.raises(UndefinedMetricError, match="no normal"):
        image_roc_curve([0.1, 0.2], [1, 1])
    with pytest.raises(UndefinedMetricError, match="no anomalous"):
        pixel_roc_curve(maps, np.zeros_like(masks))
    with pytest.raises(UndefinedMetricError, match="no anomalous region"):
        pro_curve(maps, np.zeros_like(masks))
    with pytest.raises(UndefinedMetricError, match="constant"):
        pro_curve(np.ones_like(maps), masks, mode="anomalyclip")
    with pytest.raises(ValueError, match="mode must be one of"):
        pro_curve(maps, masks, mode="fast")
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_curve(maps, masks, fpr_limit=0)
    with pytest.raises(ValueError, match="max_points"):
        pixel_roc_curve(maps, masks, max_points=3)
    with pytest.raises(ValueError, match=r"anomaly_maps\[0\] contains NaN"):
        pixel_roc_curve(np.full(maps.shape, np.nan), masks)
