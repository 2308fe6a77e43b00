"""`evaluate_benchmark` and `genclip evaluate`: tables, equality with the metrics module, resume, edge cases."""

from __future__ import annotations

import csv
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from genclip_hf.cli import main
from genclip_hf.data import load_benchmark, write_synthetic_benchmark
from genclip_hf.evaluation import HEATMAP_KINDS, evaluate_benchmark
from genclip_hf.metrics import aupro, image_ap, image_auroc, pixel_auroc
from genclip_hf.predict import load_detector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evaluate.py"

CLASSES = ["checker", "stripes"]
TABLE_STEMS = ("per_class", "dataset_row", "comparison_with_paper")


class CountingDetector:
    """Wraps a pipeline, counts its calls and can put a NaN in the map of image `nan_at = (call, index)`."""

    def __init__(self, detector, nan_at: tuple[int, int] | None = None):
        self.detector = detector
        self.calls = 0
        self.nan_at = nan_at

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def __call__(self, images, **kwargs):
        self.calls += 1
        outputs = self.detector(images, **kwargs)
        if self.nan_at is not None and self.nan_at[0] == self.calls:
            outputs[self.nan_at[1]]["anomaly_map"][0, 0] = np.nan
        return outputs


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_benchmark(tmp_path_factory.mktemp("synthetic"), classes=CLASSES, n_test_good=3, n_test_bad=4)


@pytest.fixture(scope="module")
def detector(tiny_checkpoint_dir: Path):
    return load_detector(str(tiny_checkpoint_dir))


def _direct_metrics(detector, dataset, batch_size: int) -> dict[str, dict[str, float]]:
    """Every class's metrics from the pipeline outputs and the metric functions, without `evaluation`.

    The same batch size matters: batched matmuls differ in the last float bits, which can move a pixel across one of
    the anomalyclip mode's 200 thresholds.
    """
    expected = {}
    for class_name in dict.fromkeys(dataset["class_name"]):
        rows = dataset.filter(lambda row, name=class_name: row["class_name"] == name)
        outputs = detector(list(rows["image"]), class_name=class_name, batch_size=batch_size, map_at_model_size=True)
        maps = np.stack([output["anomaly_map"] for output in outputs])
        scores = np.array([output["score"] for output in outputs])
        masks = detector.processor.resize_masks(list(rows["mask"]), [image.size for image in rows["image"]]).numpy()
        labels = np.array(rows["label"])
        expected[class_name] = {
            "pixel_auroc": pixel_auroc(maps, masks),
            "aupro_exact": aupro(maps, masks, "exact"),
            "aupro_anomalyclip": aupro(maps, masks, "anomalyclip"),
            "image_auroc": image_auroc(scores, labels),
            "image_ap": image_ap(scores, labels),
        }
    return expected


def test_outputs_and_numbers_match_the_metrics_module(detector, synthetic_root, tmp_path):
    out = tmp_path / "out"
    result = evaluate_benchmark(detector, ("mvtec", synthetic_root), out, batch_size=3, heatmaps_per_class=2)
    assert result.computed_classes == CLASSES and result.reused_classes == []

    expected = _direct_metrics(detector, load_benchmark("mvtec", synthetic_root), batch_size=3)
    saved = json.loads((out / "results.json").read_text())
    for class_name, metrics in expected.items():
        for name, value in metrics.items():
            assert saved["per_class"][class_name][name] == pytest.approx(value, abs=1e-9), (class_name, name)
        assert saved["per_class"][class_name]["aupro"] == pytest.approx(metrics["aupro_exact"], abs=1e-9)
    mean_pixel_auroc = np.mean([metrics["pixel_auroc"] for metrics in expected.values()])
    assert saved["mean"]["pixel_auroc"] == pytest.approx(mean_pixel_auroc, abs=1e-9)

    for stem in TABLE_STEMS:
        for suffix in (".md", ".csv", ".json"):
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert [row["class"] for row in rows] == [*CLASSES, "Mean"]
    assert float(rows[0]["pixel_auroc"]) == pytest.approx(100 * expected["checker"]["pixel_auroc"], abs=0.006)
    assert "| Dataset | Pixel (AUROC, PRO) | Image (AUROC, AP) |" in (out / "dataset_row.md").read_text()
    comparison = json.loads((out / "comparison_with_paper.json").read_text())
    assert comparison["aupro_mode"] == "anomalyclip" and comparison["paper_table"] == 4
    report = (out / "report.md").read_text()
    assert "| checker |" in report and "Not in the paper (left out): checker, stripes" in report

    from PIL import Image

    curves = saved_classes(out)["checker"]["curves"]
    assert [item["kind"] for item in curves] == ["roc", "pro", "scores"]
    for item in curves:
        assert f"]({item['file']})" in report
        with Image.open(out / item["file"]) as picture:
            assert picture.format == "PNG" and picture.size[0] >= 300 and picture.size[1] >= 200

    heatmaps = saved["heatmaps"]["checker"]
    assert {item["kind"] for item in heatmaps} == set(HEATMAP_KINDS)
    detected = [item["score"] for item in heatmaps if item["kind"] == "detected"]
    missed = [item["score"] for item in heatmaps if item["kind"] == "missed"]
    assert detected == sorted(detected, reverse=True) and min(detected) >= max(missed)
    assert all((out / item["file"]).is_file() for item in heatmaps)


def saved_classes(out: Path) -> dict[str, dict]:
    """The saved class records of an output folder, by class name."""
    records = [json.loads(path.read_text()) for path in (out / "classes").glob("*.json")]
    return {record["class_name"]: record for record in records}


def test_anomalyclip_mode_fills_the_tables_and_reuses_saved_classes(detector, synthetic_root, tmp_path):
    counting = CountingDetector(detector)
    out = tmp_path / "out"
    first = evaluate_benchmark(counting, ("mvtec", synthetic_root), out, batch_size=4)
    calls = counting.calls
    assert calls == 4

    second = evaluate_benchmark(counting, ("mvtec", synthetic_root), out, batch_size=4, aupro_mode="anomalyclip")
    assert counting.calls == calls and second.reused_classes == CLASSES
    for class_name, values in second.results["per_class"].items():
        assert values["aupro"] == first.results["per_class"][class_name]["aupro_anomalyclip"]
    assert json.loads((out / "per_class.json").read_text())["aupro_mode"] == "anomalyclip"


def test_resume_skips_finished_classes_and_recomputes_a_changed_run(detector, synthetic_root, tmp_path):
    counting = CountingDetector(detector)
    out = tmp_path / "out"
    evaluate_benchmark(counting, ("mvtec", synthetic_root), out, classes=["checker"], batch_size=7)
    assert counting.calls == 1
    saved = next((out / "classes").glob("checker.*.json"))
    saved_text = saved.read_text()

    result = evaluate_benchmark(counting, ("mvtec", synthetic_root), out, batch_size=7)
    assert counting.calls == 2, "only the unfinished class runs"
    assert result.reused_classes == ["checker"] and result.computed_classes == ["stripes"]
    assert saved.read_text() == saved_text

    changed = evaluate_benchmark(counting, ("mvtec", synthetic_root), out, batch_size=7, alpha=0.5)
    assert counting.calls == 4 and changed.computed_classes == CLASSES
    assert len(list((out / "classes").glob("checker.*.json"))) == 2, "the other run's results are kept"
    assert changed.results["run"]["settings"]["alpha"] == 0.5

    evaluate_benchmark(counting, ("mvtec", synthetic_root), out, batch_size=7, alpha=0.5, resume=False)
    assert counting.calls == 6


def test_changed_images_are_recomputed(detector, tmp_path):
    root = write_synthetic_benchmark(tmp_path / "data", classes=["checker"], n_test_good=2, n_test_bad=2)
    counting = CountingDetector(detector)
    evaluate_benchmark(counting, ("mvtec", root), tmp_path / "out", heatmaps_per_class=0)
    write_synthetic_benchmark(tmp_path / "data", classes=["checker"], n_test_good=3, n_test_bad=2)
    result = evaluate_benchmark(counting, ("mvtec", root), tmp_path / "out", heatmaps_per_class=0)
    assert counting.calls == 2 and result.computed_classes == ["checker"]
    assert result.results["per_class"]["checker"]["n_images"] == 5


def test_changed_masks_are_recomputed_with_the_same_paths_and_labels(detector, tmp_path):
    import os

    from PIL import Image

    root = write_synthetic_benchmark(tmp_path / "data", classes=["checker"], n_test_good=2, n_test_bad=2)
    counting = CountingDetector(detector)
    first = evaluate_benchmark(counting, ("mvtec", root), tmp_path / "out", heatmaps_per_class=0)
    mask_path = sorted((root / "checker" / "ground_truth").rglob("*.png"))[0]
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[: mask.shape[0] // 2] = 255
    Image.fromarray(mask).save(mask_path)
    os.utime(mask_path, ns=(mask_path.stat().st_atime_ns, mask_path.stat().st_mtime_ns + 10**9))
    second = evaluate_benchmark(counting, ("mvtec", root), tmp_path / "out", heatmaps_per_class=0)
    assert counting.calls == 2 and second.computed_classes == ["checker"]
    assert second.results["per_class"]["checker"]["pixel_auroc"] != first.results["per_class"]["checker"]["pixel_auroc"]


def test_unreadable_image_is_skipped_and_named(detector, tmp_path):
    root = write_synthetic_benchmark(tmp_path / "data", classes=["checker"], n_test_good=3, n_test_bad=2)
    broken = sorted((root / "checker" / "test" / "good").glob("*.png"))[0]
    broken.write_bytes(broken.read_bytes()[:200])
    result = evaluate_benchmark(detector, ("mvtec", root), tmp_path / "out", heatmaps_per_class=0)
    assert result.results["per_class"]["checker"]["n_images"] == 4
    [skipped] = result.skipped
    assert skipped["class_name"] == "checker" and broken.name in skipped["error"]
    assert broken.name in (tmp_path / "out" / "report.md").read_text()


def test_class_without_anomalous_images_gets_a_message(detector, synthetic_root, tmp_path):
    dataset = load_benchmark("mvtec", synthetic_root)
    dataset = dataset.filter(lambda row: not (row["class_name"] == "stripes" and row["label"] == 1))
    result = evaluate_benchmark(detector, dataset, tmp_path / "out", dataset_name="mvtec")

    stripes = result.results["per_class"]["stripes"]
    assert math.isnan(stripes["image_auroc"]) and math.isnan(stripes["image_ap"])
    assert result.results["mean"]["image_auroc"] == result.results["per_class"]["checker"]["image_auroc"]
    assert any(message.startswith("stripes: image AUROC is undefined") for message in result.messages)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "stripes: image AUROC is undefined" in report and "| stripes | n/a |" in report
    table = json.loads((tmp_path / "out" / "per_class.json").read_text())
    assert table["rows"][1]["image_auroc"] is None and "image_auroc" in table["undefined"]["stripes"]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["per_class"]["stripes"]["image_ap"] is None


def test_nan_map_names_the_image_and_keeps_finished_classes(detector, synthetic_root, tmp_path):
    dataset = load_benchmark("mvtec", synthetic_root)
    bad_image = dataset.filter(lambda row: row["class_name"] == "stripes")[1]["image_path"]
    with pytest.raises(ValueError, match=f"{bad_image!r} contains NaN or inf"):
        evaluate_benchmark(CountingDetector(detector, nan_at=(2, 1)), dataset, tmp_path, batch_size=8)
    assert [path.name.split(".")[0] for path in (tmp_path / "classes").glob("*.json")] == ["checker"]


def test_bad_arguments_are_named(detector, synthetic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="bottle"):
        evaluate_benchmark(detector, ("mvtec", synthetic_root), tmp_path, classes=["bottle"])
    with pytest.raises(ValueError, match=r"\['bottle'\] are not in the dataset"):
        evaluate_benchmark(detector, load_benchmark("mvtec", synthetic_root), tmp_path, classes=["bottle"])
    with pytest.raises(ValueError, match="gamma"):
        evaluate_benchmark(detector, ("mvtec", synthetic_root), tmp_path, gamma=1.0)


def test_cli_evaluates_a_parquet_export(tiny_checkpoint_dir, synthetic_root, tmp_path, capsys):
    assert main(["data", "convert", "--benchmark", "mvtec", "--root", str(synthetic_root), "--out", str(tmp_path)]) == 0
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(tiny_checkpoint_dir), "--benchmark", "parquet", "--root", str(tmp_path)]
    argv += ["--out", str(out), "--dataset-name", "mvtec", "--classes", "stripes", "--no-query-branch"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| MVTec |" in printed and "1 classes evaluated, 0 reused" in printed
    results = json.loads((out / "results.json").read_text())
    assert list(results["per_class"]) == ["stripes"] and results["run"]["settings"]["use_query_branch"] is False


def test_cli_reports_a_missing_root(tiny_checkpoint_dir, tmp_path, capsys):
    argv = ["evaluate", "--model", str(tiny_checkpoint_dir), "--benchmark", "mpdd", "--root", str(tmp_path / "none")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "genclip evaluate:" in capsys.readouterr().err


def test_real_mpdd_metal_plate_end_to_end(tiny_checkpoint_dir, real_mini_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(tiny_checkpoint_dir), "--benchmark", "mpdd"]
    argv += ["--root", str(real_mini_dir / "mpdd"), "--classes", "metal_plate", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    metal_plate = results["per_class"]["metal_plate"]
    assert (metal_plate["n_images"], metal_plate["n_anomalous"]) == (38, 25)
    assert all(0.0 <= metal_plate[name] <= 1.0 for name in ("pixel_auroc", "aupro", "image_auroc", "image_ap"))
    assert results["messages"] == []
    assert "metal_plate" in (out / "comparison_with_paper.md").read_text()
    assert len(results["heatmaps"]["metal_plate"]) == 9


def test_example_script(tiny_checkpoint_dir, synthetic_root, tmp_path, monkeypatch, capsys):
    argv = [str(EXAMPLE), "--model", str(tiny_checkpoint_dir), "--benchmark", "mvtec", "--root", str(synthetic_root)]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--classes", "checker", "--alpha", "0.6"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert "| checker |" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["run"]["settings"]["alpha"] == 0.6
