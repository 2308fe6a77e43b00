import json
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from metrics_references import anomalib_f1_threshold, random_maps_and_masks

from genclip_hf.calibration import Calibration, Thresholds
from genclip_hf.metrics import UndefinedMetricWarning, thresholds
from genclip_hf.metrics.thresholds import (
    calibrate,
    f1_optimal_threshold,
    pixel_f1_optimal_threshold,
    pixel_threshold_from_normal,
    threshold_from_normal,
)


def _above(value, dtype=np.float64):
    return float(np.nextafter(dtype(value), dtype(np.inf)))


@pytest.mark.parametrize(
    ("target_fpr", "quantile"),
    [(0.05, 95), (0.01, 99), (0.3, 70), (0.57, 43), (0.999, 1), (1e-9, 100)],
)
def test_known_quantiles(target_fpr, quantile):
    values = np.arange(1.0, 101.0)
    threshold = threshold_from_normal(np.random.default_rng(0).permutation(values), target_fpr)
    assert threshold == _above(quantile)
    # at most target_fpr of the values are flagged (0.57 is read as 57/100, not 0.569999...)
    assert (values >= threshold).sum() == math.floor(Fraction(str(target_fpr)) * 100)


def test_ties_and_tiny_samples():
    values = [1, 2, 3, 3, 3, 4]
    assert threshold_from_normal(values, 0.5) == _above(3)  # 4 values >= 3 exceed 3 allowed: only 4 is flagged
    assert threshold_from_normal(values, 0.2) == _above(3)
    assert threshold_from_normal(values, 0.1) == _above(4)
    assert threshold_from_normal(values, 0.8) == _above(2)
    assert threshold_from_normal(values, 0.9) == _above(1)
    assert threshold_from_normal([7.5], 0.5) == _above(7.5)
    assert threshold_from_normal([2.0, 1.0], 0.5) == _above(1.0)
    assert threshold_from_normal([2.0, 1.0], 0.49) == _above(2.0)
    assert threshold_from_normal([-0.0, 0.0, -1.0], 0.5) == _above(0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_matches_numpy_inverted_cdf_quantile(dtype):
    rng = np.random.default_rng(1)
    for trial in range(60):
        values = rng.normal(size=int(rng.integers(1, 300))).astype(dtype)
        if trial % 2:
            values = np.round(values, 1)
        target_fpr = float(rng.choice([0.01, 0.1, 0.25, 0.5, 0.9]))
        quantile = np.quantile(values.astype(np.float64), 1 - target_fpr, method="inverted_cdf")
        precision = np.float64 if dtype == np.float64 else np.float32
        threshold = threshold_from_normal(values, target_fpr)
        assert threshold == _above(quantile, precision)
        assert (values >= precision(threshold)).sum() <= target_fpr * values.size
        assert (values >= quantile).sum() > math.floor(target_fpr * values.size + 1e-9)
    as_tensor = torch.from_numpy(np.asarray([0.1, 0.9, 0.5], dtype=np.float32))
    assert threshold_from_normal(as_tensor, 0.4) == _above(np.float32(0.5), np.float32)
    assert threshold_from_normal(as_tensor, 0.3) == _above(np.float32(0.9), np.float32)


def test_radix_selection_is_exact(monkeypatch):
    monkeypatch.setattr(thresholds, "_GATHER_LIMIT", 3)
    rng = np.random.default_rng(2)
    for trial in range(40):
        values = rng.normal(size=int(rng.integers(1, 400))) * 10.0 ** rng.integers(-3, 4)
        if trial % 2:
            values = np.round(values, 1)
        if trial % 3 == 0:
            values = values.astype(np.float32)
        quantile = np.quantile(values.astype(np.float64), 0.9, method="inverted_cdf")
        precision = np.float32 if values.dtype == np.float32 else np.float64
        assert threshold_from_normal(values, 0.1) == _above(quantile, precision)
    ties = np.array([2.0] * 50 + [1.0] * 50 + [-3.0] * 10)  # a tie group larger than the gather limit
    assert threshold_from_normal(ties, 0.3) == _above(2.0)
    assert threshold_from_normal(ties, 0.95) == _above(-3.0)


def test_invalid_normal_inputs_name_the_argument():
    for target_fpr in (0, 1, 0.0, 1.0, -0.1, 1.5, math.nan, True, "0.1", None):
        with pytest.raises(ValueError, match="target_fpr must be a number in \\(0, 1\\)"):
            threshold_from_normal([1.0, 2.0], target_fpr)
    with pytest.raises(ValueError, match=r"values\[1\] contains NaN or inf"):
        threshold_from_normal([1.0, math.nan], 0.1)
    with pytest.raises(ValueError, match=r"values\[0\] contains NaN or inf"):
        threshold_from_normal([math.inf], 0.1)
    with pytest.raises(ValueError, match="values is empty"):
        threshold_from_normal([], 0.1)
    with pytest.raises(ValueError, match=r"values must have shape \(N,\)"):
        threshold_from_normal([[1.0, 2.0]], 0.1)


def test_pixel_threshold_streams_lists_blocks_and_masks(monkeypatch):
    rng = np.random.default_rng(3)
    maps, masks = random_maps_and_masks(rng, n_images=7, size=16)
    maps = maps.astype(np.float32)
    expected_all = threshold_from_normal(maps.ravel(), 0.02)
    expected_normal = threshold_from_normal(maps[~masks], 0.02)
    assert pixel_threshold_from_normal(maps, 0.02) == expected_all
    assert pixel_threshold_from_normal(maps, 0.02, masks=masks) == expected_normal
    monkeypatch.setattr(thresholds, "_GATHER_LIMIT", 5)
    monkeypatch.setattr(thresholds, "_BLOCK_PIXELS", 100)
    assert pixel_threshold_from_normal(torch.from_numpy(maps), 0.02, torch.from_numpy(masks)) == expected_normal
    batches, mask_batches = [maps[:3], maps[3]], [masks[:3], masks[3]]
    assert pixel_threshold_from_normal(batches + list(maps[4:]), 0.02, mask_batches + list(masks[4:])) == (
        threshold_from_normal(maps[~masks], 0.02)
    )
    sizes = [maps[0], maps[1, :8, :5]]  # maps of different sizes
    assert pixel_threshold_from_normal(sizes, 0.1) == threshold_from_normal(
        np.concatenate([maps[0].ravel(), maps[1, :8, :5].ravel()]), 0.1
    )


def test_pixel_threshold_errors():
    maps = np.random.default_rng(4).random((4, 5, 5))
    masks = np.zeros(maps.shape)
    bad = list(maps)
    bad[3] = np.full((5, 5), np.inf)
    with pytest.raises(ValueError, match=r"anomaly_maps\[3\] contains NaN or inf"):
        pixel_threshold_from_normal(bad, 0.1)
    with pytest.raises(ValueError, match=r"anomaly_maps\[4\] contains NaN or inf"):
        pixel_threshold_from_normal([maps[:2], np.stack([maps[0], maps[1], bad[3]])], 0.1)
    masks[1, 0, 0] = 5.0
    with pytest.raises(ValueError, match=r"masks\[1\] holds values \[0.0, 5.0\]"):
        pixel_threshold_from_normal(maps, 0.1, masks)
    with pytest.raises(ValueError, match="no normal pixel"):
        pixel_threshold_from_normal(maps, 0.1, np.ones(maps.shape, dtype=bool))
    with pytest.raises(ValueError, match="no normal pixel"):
        pixel_threshold_from_normal([], 0.1)
    with pytest.raises(TypeError, match="read several times"):
        pixel_threshold_from_normal(iter(maps), 0.1)
    with pytest.raises(ValueError, match="masks item 0 has shape"):
        pixel_threshold_from_normal(maps, 0.1, masks[:, :4])
    with pytest.raises(ValueError, match="target_fpr"):
        pixel_threshold_from_normal(maps, 1.0)


def test_f1_threshold_equals_anomalib():
    # anomalib's docstring example
    assert f1_optimal_threshold([2.3, 1.6, 2.6, 7.9, 3.3], [0, 0, 0, 1, 1]) == 3.3
    rng = np.random.default_rng(5)
    for trial in range(150):
        size = int(rng.integers(2, 80))
        scores = rng.normal(size=size)
        if trial % 2:
            scores = np.round(scores * 3)
        labels = rng.random(size) < rng.uniform(0.1, 0.9)
        labels[:2] = [True, False]
        ours, reference = f1_optimal_threshold(scores, labels), anomalib_f1_threshold(scores, labels)

        def f1(threshold, scores=scores, labels=labels):
            flagged = scores >= threshold
            return Fraction(2 * int(np.sum(flagged & labels)), int(flagged.sum() + labels.sum()))

        # anomalib breaks exact ties by float rounding; ours takes the lowest threshold among exact ties
        assert ours == reference or (f1(ours) == f1(reference) and ours < reference)
        assert f1(ours) == max(f1(threshold) for threshold in np.unique(scores))


def test_f1_threshold_ties_one_class_and_pixels():
    # F1 is 2/3 at 4 (TP 1, FP 0) and at 1 (TP 2, FP 2): the lowest threshold wins, as anomalib's argmax
    assert f1_optimal_threshold([1.0, 2.0, 3.0, 4.0], [1, 0, 0, 1]) == 1.0
    for labels in ([0, 0, 0], [1, 1, 1]):
        with pytest.warns(UndefinedMetricWarning, match="lowest value"):
            assert (
                f1_optimal_threshold([0.4, 0.2, 0.9], labels)
                == 0.2
                == anomalib_f1_threshold(np.array([0.4, 0.2, 0.9]), np.array(labels))
            )
    maps, masks = random_maps_and_masks(np.random.default_rng(6), n_images=5, size=12, n_levels=9)
    expected = f1_optimal_threshold(maps.ravel(), masks.ravel())
    assert expected == anomalib_f1_threshold(maps.ravel(), masks.ravel())
    assert pixel_f1_optimal_threshold(maps, masks) == expected
    assert pixel_f1_optimal_threshold(list(maps), [mask.astype(np.uint8) for mask in masks]) == expected
    with pytest.raises(ValueError, match=r"masks\[2\]"):
        pixel_f1_optimal_threshold(maps, np.where(np.arange(5)[:, None, None] == 2, 0.5, masks))


def _calibration():
    return Calibration(
        method="normal_quantile",
        target_fpr=0.05,
        default=Thresholds(0.71, 0.42, n_normal_images=20, n_normal_pixels=5000),
        per_class={"bottle": Thresholds(0.8, None, n_normal_images=10), "metal nut": Thresholds(0.6, 0.3, 10, 0)},
    )


def test_calibration_json_round_trip_and_lookup():
    record = _calibration()
    text = record.to_json()
    assert Calibration.from_json(text) == record
    assert json.loads(text)["format"] == "genclip-calibration"
    assert record.image_threshold == 0.71 and record.pixel_threshold == 0.42
    assert record.for_class("bottle").image_threshold == 0.8
    assert record.for_class("bottle").pixel_threshold is None
    assert record.for_class("screw") == record.for_class(None) == record.default
    f1 = Calibration(method="f1_adaptive", default=Thresholds(image_threshold=1.5))
    assert Calibration.from_json(f1.to_json(indent=None)) == f1


def _edited(change):
    data = json.loads(_calibration().to_json())
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), r"calibration has unknown keys \['extra'\]"),
        (lambda d: d.pop("per_class"), r"calibration is missing the keys \['per_class'\]"),
        (lambda d: d["default"].update(image_threshold="0.7"), r"calibration.default.image_threshold must be"),
        (lambda d: d["default"].update(n_normal_images=2.5), r"calibration.default.n_normal_images must be"),
        (lambda d: d["default"].update(n_normal_images=True), r"calibration.default.n_normal_images must be"),
        (lambda d: d["default"].update(n_normal_pixels=-1), r"calibration.default.n_normal_pixels must be"),
        (lambda d: d["per_class"]["bottle"].update(pixel=1), r"calibration.per_class\['bottle'\] has unknown keys"),
        (lambda d: d["per_class"].update(screw=[]), r"calibration.per_class\['screw'\] must be a JSON object"),
        (lambda d: d.update(method="otsu"), r"calibration.method must be one of"),
        (lambda d: d.update(target_fpr=1.5), r"calibration.target_fpr must be a number in \(0, 1\)"),
        (lambda d: d.update(target_fpr=None), r"target_fpr must be a number in \(0, 1\)"),
        (lambda d: d.update(version=2), r"calibration.version must be 1"),
        (lambda d: d.update(format="other"), r"calibration.format must be"),
    ],
)
def test_calibration_json_is_strict(change, message):
    with pytest.raises(ValueError, match=message):
        Calibration.from_json(_edited(change))


def test_calibration_json_refuses_nan_duplicates_and_bad_records():
    text = _calibration().to_json().replace('"image_threshold": 0.8', '"image_threshold": NaN')
    with pytest.raises(ValueError, match=r"calibration.per_class\['bottle'\].image_threshold must be a finite"):
        Calibration.from_json(text)
    text = _calibration().to_json().replace('"pixel_threshold": 0.42', '"pixel_threshold": -Infinity')
    with pytest.raises(ValueError, match=r"calibration.default.pixel_threshold must be a finite"):
        Calibration.from_json(text)
    with pytest.raises(ValueError, match=r"repeats the keys \['method'\]"):
        Calibration.from_json('{"method": "f1_adaptive", "method": "f1_adaptive"}')
    with pytest.raises(ValueError, match="calibration must be a JSON object"):
        Calibration.from_json("[]")
    with pytest.raises(ValueError, match="Thresholds.image_threshold must be a finite number"):
        Thresholds(image_threshold=math.inf)
    with pytest.raises(ValueError, match="target_fpr must be null for method 'f1_adaptive'"):
        Calibration(method="f1_adaptive", target_fpr=0.1, default=Thresholds())
    with pytest.raises(ValueError, match="target_fpr must be a number"):
        Calibration(method="normal_quantile", default=Thresholds())


def test_calibrate_per_class():
    rng = np.random.default_rng(7)
    maps, masks = random_maps_and_masks(rng, n_images=12, size=10)
    labels = masks.any(axis=(1, 2))
    scores = maps.max(axis=(1, 2))
    names = ["a"] * 6 + ["b"] * 6
    record = calibrate(scores=scores, anomaly_maps=maps, labels=labels, masks=masks, class_names=names, target_fpr=0.1)
    assert record.method == "normal_quantile" and record.target_fpr == 0.1 and list(record.per_class) == ["a", "b"]
    assert record.image_threshold == threshold_from_normal(scores[~labels], 0.1)
    assert record.pixel_threshold == pixel_threshold_from_normal(maps, 0.1, masks)
    in_a = np.arange(12) < 6
    entry = record.for_class("a")
    assert entry.image_threshold == threshold_from_normal(scores[in_a & ~labels], 0.1)
    assert entry.pixel_threshold == pixel_threshold_from_normal(maps[in_a], 0.1, masks[in_a])
    assert entry.n_normal_images == int((in_a & ~labels).sum()) and entry.n_anomalous_images == 0
    assert entry.n_normal_pixels == int((~masks[in_a]).sum())
    assert Calibration.from_json(record.to_json()) == record

    without_masks = calibrate(scores=scores, anomaly_maps=list(maps), labels=labels, target_fpr=0.1)
    assert without_masks.pixel_threshold == pixel_threshold_from_normal(maps[~labels], 0.1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f1 = calibrate("f1_adaptive", scores=scores, anomaly_maps=maps, labels=labels, masks=masks)
    assert f1.target_fpr is None and f1.per_class == {}
    assert f1.image_threshold == f1_optimal_threshold(scores, labels)
    assert f1.pixel_threshold == pixel_f1_optimal_threshold(maps, masks)
    assert f1.default.n_anomalous_pixels == int(masks.sum())


def test_calibrate_errors():
    scores = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="target_fpr must be a number"):
        calibrate(scores=scores)
    with pytest.raises(ValueError, match="target_fpr applies to method 'normal_quantile' only"):
        calibrate("f1_adaptive", scores=scores, labels=[0, 1, 0], target_fpr=0.1)
    with pytest.raises(ValueError, match="needs labels"):
        calibrate("f1_adaptive", scores=scores)
    with pytest.raises(ValueError, match="one entry per image"):
        calibrate(scores=scores, class_names=["a", "b"], target_fpr=0.1)
    with pytest.raises(ValueError, match="class 'b': no normal image"):
        calibrate(scores=scores, labels=[0, 1, 0], class_names=["a", "b", "a"], target_fpr=0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate("otsu", scores=scores)
    with pytest.raises(ValueError, match="give scores, anomaly_maps or both"):
        calibrate(target_fpr=0.1)
