import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from metrics_references import random_maps_and_masks

from genclip_hf.metrics import EVALUATE_MODULE_PATH, AnomalyMetricAccumulator


def _batches(seed=0, n_images=9, size=16):
    rng = np.random.default_rng(seed)
    maps, masks = random_maps_and_masks(rng, n_images=n_images, size=size)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.max(axis=(1, 2))
    names = ["carpet"] * 5 + ["grid"] * (n_images - 5)
    return maps.astype(np.float32), masks, scores, labels, names


def test_evaluate_load_offline_matches_accumulator(tmp_path):
    maps, masks, scores, labels, names = _batches()
    expected = AnomalyMetricAccumulator(aupro_mode="anomalyclip")
    expected.update(maps, masks, scores, labels, names)
    expected = expected.compute()
    np.savez(tmp_path / "inputs.npz", maps=maps, masks=masks, scores=scores, labels=labels, names=np.array(names))
    script = textwrap.dedent(
        f"""
        import json, numpy as np, evaluate
        assert evaluate.config.HF_EVALUATE_OFFLINE
        data = np.load({str(tmp_path / "inputs.npz")!r})
        metric = evaluate.load({EVALUATE_MODULE_PATH!r}, map_size=(16, 16), cache_dir={str(tmp_path / "cache")!r})
        for start in range(0, 9, 4):
            batch = slice(start, start + 4)
            metric.add_batch(
                anomaly_maps=data["maps"][batch], masks=data["masks"][batch], scores=data["scores"][batch],
                labels=data["labels"][batch], class_names=data["names"][batch].tolist(),
            )
        print(json.dumps(metric.compute(aupro_mode="anomalyclip")))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["per_class"].keys() == expected["per_class"].keys()
    for name, values in expected["per_class"].items():
        assert results["per_class"][name] == pytest.approx(values, abs=1e-12)
    for metric, value in expected["mean"].items():
        assert results[metric] == pytest.approx(value, abs=1e-12)
    assert results["undefined"] == {}


def test_evaluate_module_in_process_with_torch_and_undefined(tmp_path):
    import evaluate
    import torch

    maps, masks, scores, labels, names = _batches(seed=1)
    metric = evaluate.load(EVALUATE_MODULE_PATH, map_size=(16, 16), cache_dir=str(tmp_path))
    metric.add_batch(
        anomaly_maps=torch.from_numpy(maps),
        masks=torch.from_numpy(masks),
        scores=torch.from_numpy(scores),
        labels=torch.from_numpy(labels),
        class_names=names,
    )
    metric.add_batch(
        anomaly_maps=maps[:2], masks=np.zeros_like(masks[:2]), scores=scores[:2], labels=[0, 0], class_names=["x", "x"]
    )
    with pytest.warns(UserWarning):
        results = metric.compute()
    assert set(results["undefined"]["x"]) == {"pixel_auroc", "aupro", "image_auroc", "image_ap"}
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    assert results["aupro"] == pytest.approx(expected.compute()["mean"]["aupro"], abs=1e-12)


def test_evaluate_module_validates_inputs_and_names_them(tmp_path):
    import evaluate

    maps, masks, scores, labels, names = _batches(seed=2, n_images=4)
    names = names[:4]
    metric = evaluate.load(EVALUATE_MODULE_PATH, map_size=(16, 16), cache_dir=str(tmp_path))
    good = {"anomaly_maps": maps, "masks": masks, "scores": scores, "labels": labels, "class_names": names}
    five, nan_mask, nan_map, inf_map = masks.astype(np.float32), masks.astype(np.float32), maps.copy(), maps.copy()
    five[1, 0, 0], nan_mask[2, 3, 3], nan_map[3, 1, 1], inf_map[0, 2, 2] = 5.0, np.nan, np.nan, np.inf
    cases = [
        ({"class_names": None}, r"missing inputs \['class_names'\]"),
        ({"class_names": names[:3]}, "class_names has 3 entries but anomaly_maps has 4 maps"),
        ({"scores": scores[:3], "labels": labels[:3]}, "scores has 3 entries but anomaly_maps has 4 maps"),
        ({"labels": labels[:3]}, r"labels shape \(3,\) does not match scores shape \(4,\)"),
        ({"masks": five}, r"masks must be binary .*masks\[1\] holds values \[0.0, (1.0, )?5.0\]"),
        ({"masks": nan_mask}, r"masks must be binary .*masks\[2\] holds values \[0.0, (1.0, )?nan\]"),
        ({"anomaly_maps": nan_map}, r"anomaly_maps\[3\] contains NaN or inf"),
        ({"anomaly_maps": inf_map}, r"anomaly_maps\[0\] contains NaN or inf"),
        ({"anomaly_maps": maps[:, :8], "masks": masks[:, :8]}, r"map_size \(16, 16\)"),
        ({"predictions": scores}, r"unknown inputs \['predictions'\]"),
    ]
    for change, message in cases:
        batch = {name: value for name, value in {**good, **change}.items() if value is not None}
        with pytest.raises(ValueError, match=message):
            metric.add_batch(**batch)
    with pytest.raises(ValueError, match=r"masks\[0\] holds values \[0.0, (1.0, )?5.0\]"):
        metric.add(anomaly_maps=maps[1], masks=five[1], scores=scores[1], labels=labels[1], class_names=names[1])
    with pytest.raises(ValueError, match=r"missing inputs \['class_names'\]"):
        metric.compute(anomaly_maps=maps, masks=masks, scores=scores, labels=labels)

    # nothing was stored by the refused batches
    for index in range(len(maps)):
        metric.add(
            anomaly_maps=maps[index],
            masks=masks[index],
            scores=scores[index],
            labels=labels[index],
            class_names=names[index],
        )
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    assert metric.compute()["per_class"]["carpet"] == pytest.approx(expected.compute()["per_class"]["carpet"])
