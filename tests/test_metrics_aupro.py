import numpy as np
import pytest
import torch
from metrics_references import (
    FOUR_CONNECTED,
    brute_force_aupro,
    loop_aupro_anomalyclip,
    random_maps_and_masks,
)

from genclip_hf.metrics import aupro


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_levels", [None, 4, 25])
def test_exact_mode_equals_brute_force(seed, n_levels):
    rng = np.random.default_rng(seed)
    maps, masks = random_maps_and_masks(rng, n_images=4, size=12, n_levels=n_levels)
    for fpr_limit in (0.3, 0.05, 1.0):
        expected = brute_force_aupro(maps, masks, fpr_limit)
        assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_exact_mode_with_float32_maps():
    rng = np.random.default_rng(11)
    maps, masks = random_maps_and_masks(rng, n_images=5, size=14)
    maps = maps.astype(np.float32)
    assert aupro(maps, masks) == pytest.approx(brute_force_aupro(maps, masks, 0.3), abs=1e-9)
    assert aupro(torch.from_numpy(maps), torch.from_numpy(masks)) == aupro(maps, masks)


def test_regions_are_eight_connected():
    maps = np.zeros((1, 6, 6))
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # one region diagonally, two with 4-connectivity
    masks[0, 4, 4] = True
    maps[0, 0, 0] = 1.0
    maps[0, 3, 0] = 0.5
    expected = brute_force_aupro(maps, masks, 0.3)
    assert aupro(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert abs(expected - brute_force_aupro(maps, masks, 0.3, structure=FOUR_CONNECTED)) > 0.01


def test_perfect_and_inverted_maps():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:5, 2:5] = True
    separated = masks + 0.5 * np.random.default_rng(0).random(masks.shape)
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert aupro(separated, masks, mode="anomalyclip") == pytest.approx(1.0)
    assert aupro(-masks.astype(float), masks) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_levels", [None, 6])
def test_anomalyclip_mode_equals_direct_loop(seed, n_levels):
    rng = np.random.default_rng(100 + seed)
    maps, masks = random_maps_and_masks(rng, n_images=4, size=16, n_levels=n_levels)
    for dtype in (np.float64, np.float32):
        typed = maps.astype(dtype)
        for fpr_limit in (0.3, 0.6):
            expected = loop_aupro_anomalyclip(typed, masks, fpr_limit)
            assert aupro(typed, masks, mode="anomalyclip", fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-12)


def test_modes_differ_when_an_outlier_coarsens_the_200_thresholds():
    # Normal pixels ~ U(0, 1), anomalous ~ U(0.6, 1): PRO grows with FPR up to 0.4. An outlier at 30 spaces
    # the 200 thresholds 0.15 apart, so the largest kept FPR is about 0.25 and the rescaling shrinks the area.
    rng = np.random.default_rng(5)
    maps = rng.random((6, 32, 32))
    masks = np.zeros(maps.shape, dtype=bool)
    masks[:4, 8:20, 8:20] = True
    maps[masks] = rng.uniform(0.6, 1.0, masks.sum())
    maps[5, 0, 0] = 30.0
    exact = aupro(maps, masks)
    assert exact == pytest.approx(brute_force_aupro(maps, masks, 0.3), abs=1e-9)
    assert exact - aupro(maps, masks, mode="anomalyclip") > 0.03
