import math
import warnings

import numpy as np
import pytest

from genclip_hf.metrics import (
    AnomalyMetricAccumulator,
    UndefinedMetricError,
    UndefinedMetricWarning,
    aupro,
    image_ap,
    image_auroc,
    pixel_auroc,
)


def _data(n_images=4, size=8):
    rng = np.random.default_rng(0)
    maps = rng.random((n_images, size, size))
    masks = np.zeros(maps.shape, dtype=bool)
    masks[0, 2:5, 2:5] = True
    return maps, masks


def test_image_auroc_without_anomalous_or_normal_images_is_undefined():
    with pytest.raises(UndefinedMetricError, match="no anomalous") as error:
        image_auroc([0.1, 0.2], [0, 0])
    assert error.value.metric == "image AUROC"
    assert isinstance(error.value, ValueError)
    with pytest.raises(UndefinedMetricError, match="no normal"):
        image_auroc([0.1, 0.2], [1, 1])
    with pytest.raises(UndefinedMetricError, match="no anomalous"):
        image_ap([0.1, 0.2], [0, 0])
    assert image_ap([0.1, 0.2], [1, 1]) == 1.0


def test_pixel_metrics_without_anomalous_or_normal_pixels_are_undefined():
    maps, masks = _data()
    for function in (pixel_auroc, aupro):
        with pytest.raises(UndefinedMetricError, match="no anomalous"):
            function(maps, np.zeros_like(masks))
        with pytest.raises(UndefinedMetricError, match="no normal"):
            function(maps, np.ones_like(masks))
    with pytest.raises(UndefinedMetricError):
        aupro(maps, np.zeros_like(masks), mode="anomalyclip")


def test_constant_maps():
    _, masks = _data()
    constant = np.full(masks.shape, 0.25)
    assert pixel_auroc(constant, masks) == 0.5
    assert aupro(constant, masks) == pytest.approx(0.15)
    assert aupro(constant, masks, fpr_limit=0.5) == pytest.approx(0.25)
    with pytest.raises(UndefinedMetricError, match="constant"):
        aupro(constant, masks, mode="anomalyclip")
    assert image_auroc([0.3, 0.3, 0.3], [0, 1, 1]) == 0.5


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_maps_name_the_image(bad_value):
    maps, masks = _data()
    maps[2, 3, 1] = bad_value
    for function in (pixel_auroc, aupro):
        with pytest.raises(ValueError, match=r"anomaly_maps\[2\] contains NaN or inf"):
            function(maps, masks)
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        image_auroc([0.1, bad_value, 0.3], [0, 1, 1])


def test_non_binary_masks_and_labels():
    maps, masks = _data()
    bad = masks.astype(np.uint8) * 255
    with pytest.raises(ValueError, match=r"masks must be binary.*masks\[0\] holds values \[0, 255\]"):
        pixel_auroc(maps, bad)
    soft = masks.astype(float)
    soft[1, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"masks\[1\]"):
        aupro(maps, soft)
    with pytest.raises(ValueError, match="labels must be binary"):
        image_auroc([0.1, 0.2, 0.3], [0, 2, 1])


def test_shape_errors_name_arguments_and_shapes():
    maps, masks = _data()
    with pytest.raises(ValueError, match=r"masks shape \(4, 8, 7\) does not match anomaly_maps shape \(4, 8, 8\)"):
        pixel_auroc(maps, masks[:, :, :7])
    with pytest.raises(ValueError, match=r"anomaly_maps must have shape \(N, H, W\), got shape \(8, 8\)"):
        aupro(maps[0], masks[0])
    with pytest.raises(ValueError, match=r"labels shape \(2,\) does not match scores shape \(3,\)"):
        image_ap([0.1, 0.2, 0.3], [0, 1])


def test_invalid_arguments():
    maps, masks = _data()
    with pytest.raises(ValueError, match="mode must be one of"):
        aupro(maps, masks, mode="fast")
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, masks, fpr_limit=0.0)
    with pytest.raises(ValueError, match="aupro_mode"):
        AnomalyMetricAccumulator(aupro_mode="loop")


def test_accumulator_stores_nan_with_reason_and_warns():
    maps, masks = _data()
    accumulator = AnomalyMetricAccumulator()
    accumulator.update(maps, masks, [0.9, 0.1, 0.2, 0.3], [1, 0, 0, 0], "good")
    accumulator.update(maps[:2], np.zeros_like(masks[:2]), [0.5, 0.4], [0, 0], "only_normal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = accumulator.compute()
    assert all(issubclass(warning.category, UndefinedMetricWarning) for warning in caught)
    assert len(caught) == 4
    assert "class 'only_normal': image AUROC is undefined: there are no anomalous" in str(caught[2].message)
    assert math.isnan(results["per_class"]["only_normal"]["image_auroc"])
    assert set(results["undefined"]["only_normal"]) == {"pixel_auroc", "aupro", "image_auroc", "image_ap"}
    assert "good" not in results["undefined"]
    assert results["mean"]["image_auroc"] == results["per_class"]["good"]["image_auroc"] == 1.0


def test_accumulator_rejects_inconsistent_batches():
    maps, masks = _data()
    accumulator = AnomalyMetricAccumulator()
    accumulator.update(maps, masks, [0.1] * 4, [1, 0, 0, 0], "a")
    with pytest.raises(ValueError, match="resize them"):
        accumulator.update(maps[:, :4, :4], masks[:, :4, :4], [0.1] * 4, [1, 0, 0, 0], "a")
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        accumulator.update(maps, masks, [0.1] * 4, [1, 0, 0, 0], ["a", "b"])
    with pytest.raises(ValueError, match="scores has 3 entries"):
        accumulator.update(maps, masks, [0.1] * 3, [1, 0, 0], "a")
    with pytest.raises(ValueError, match="sample_ids to every update or to none"):
        accumulator.update(maps, masks, [0.1] * 4, [1, 0, 0, 0], "a", sample_ids=[1, 2, 3, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accumulator.compute()
