"""Few-shot with normal reference images (every method that has it) and threshold calibration (`genclip calibrate`),
through the model, the pipeline and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from genclip_hf.calibration import load_calibration
from genclip_hf.cli import main
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.data.synthetic import write_sample_images


def noise_images(count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]


def test_genclip_few_shot_distance_is_zero_on_a_reference_image_and_positive_elsewhere(tiny_model, tiny_processor):
    references = tiny_processor.pixel_values(noise_images(2, seed=1))
    others = tiny_processor.pixel_values(noise_images(1, seed=2))
    memory = tiny_model.build_reference_memory(references)
    assert set(memory) == {"layer_1", "layer_2", "layer_4"} and memory["layer_1"].shape == (2 * 64, 48)
    with torch.no_grad():
        features = tiny_model.encode_image(torch.cat([references[:1], others])).layer_features
    distances = tiny_model.few_shot_map(features, memory, [1, 2, 4])
    assert distances.shape == (2, 64, 64)
    assert distances[0].abs().max() < 1e-5
    assert distances[1].min() > 1e-4


def test_genclip_few_shot_blends_before_smoothing_and_scoring(tiny_model, tiny_processor):
    images = tiny_processor.pixel_values(noise_images(2, seed=3))
    memory = tiny_model.build_reference_memory(tiny_processor.pixel_values(noise_images(2, seed=4)))
    zero_shot = tiny_model.detect(images, "pcb", use_cnf=False, sigma=0.0, return_component_maps=True)
    few_shot = tiny_model.detect(
        images,
        "pcb",
        use_cnf=False,
        sigma=0.0,
        reference_memory=memory,
        few_shot_weight=0.25,
        return_component_maps=True,
    )
    expected = 0.75 * zero_shot.anomaly_maps + 0.25 * few_shot.component_maps["few_shot"][:, 0]
    assert torch.allclose(few_shot.anomaly_maps, expected, atol=1e-5)
    unchanged = tiny_model.detect(images, "pcb", use_cnf=False, sigma=0.0, reference_memory=memory, few_shot_weight=0.0)
    assert torch.allclose(unchanged.anomaly_maps, zero_shot.anomaly_maps, atol=1e-6)


def test_pipeline_reference_images_build_the_memory_once(tiny_checkpoint_dir):
    detector = pipeline("anomaly-detection", model=str(tiny_checkpoint_dir))
    references = noise_images(3, seed=5)
    built = []
    original = detector.model.build_reference_memory

    def counting(pixel_values):
        built.append(pixel_values.shape[0])
        return original(pixel_values)

    detector.model.build_reference_memory = counting
    test_images = noise_images(2, seed=6)
    first = detector(test_images, class_name="pcb", reference_images=references)
    second = detector(test_images[0], class_name="pcb", reference_images=references)
    assert built == [3]
    assert second["score"] == pytest.approx(first[0]["score"], rel=1e-6)
    zero_shot = detector(test_images[0], class_name="pcb")
    assert zero_shot["score"] != pytest.approx(first[0]["score"], rel=1e-6)
    on_a_reference = detector(references[0], class_name="pcb", reference_images=references, few_shot_weight=1.0)
    assert on_a_reference["anomaly_map"].max() < 1e-4
    with pytest.raises(ValueError, match="reference_images must hold at least one"):
        detector(test_images[0], reference_images=[])


def test_calibrate_from_normal_images_sets_the_pipelines_thresholds(tiny_checkpoint_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_checkpoint_dir, model_dir)
    normal = tmp_path / "normal"
    write_sample_images(normal)
    before = pipeline("anomaly-detection", model=str(model_dir))(str(sorted(normal.glob("*.png"))[0]))
    assert before["threshold_source"] == "method default" and "mask" not in before

    assert main(["calibrate", "--model", str(model_dir), "--normal", str(normal), "--target-fpr", "0.2"]) == 0
    calibration = load_calibration(model_dir / "calibration.json")
    scores = [
        result["score"]
        for result in pipeline("anomaly-detection", model=str(model_dir), calibration=False)(
            [str(path) for path in sorted(normal.glob("*.png"))], batch_size=8
        )
    ]
    # (1 - FPR) quantile: of 6 normal scores at FPR 0.2, floor(1.2) = 1 lies at or above the threshold. Scores are
    # computed as `genclip calibrate` computes them (one batch): the threshold is one float above a score.
    assert sum(score >= calibration.image_threshold for score in scores) == 1
    assert calibration.settings["alpha"] == 0.8

    detector = pipeline("anomaly-detection", model=str(model_dir))
    result = detector(str(sorted(normal.glob("*.png"))[0]))
    assert result["score_threshold"] == calibration.image_threshold
    assert result["threshold_source"] == "calibration (normal_quantile, FPR 0.2, all classes)"
    assert np.array_equal(result["mask"], result["anomaly_map"] >= calibration.pixel_threshold)
    assert result["pixel_threshold_source"] == result["threshold_source"]
    other_settings = detector(str(sorted(normal.glob("*.png"))[0]), alpha=0.5)
    assert other_settings["threshold_source"] == "method default"
    explicit = detector(str(sorted(normal.glob("*.png"))[0]), score_threshold=123.0)
    assert (explicit["score_threshold"], explicit["label"], explicit["threshold_source"]) == (
        123.0,
        "normal",
        "argument",
    )
    assert explicit["pixel_threshold_source"].startswith("calibration")


def test_calibrate_from_labelled_data_per_class_and_predict_reports_it(tiny_checkpoint_dir, tmp_path, capsys):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_checkpoint_dir, model_dir)
    data = write_synthetic_benchmark(
        tmp_path / "data", classes=["disc", "stripes"], n_test_good=3, n_test_bad=3, seed=2
    )
    out = tmp_path / "calibration.json"
    command = ["calibrate", "--model", str(model_dir), "--labelled", str(data), "--benchmark", "mvtec"]
    assert main([*command, "--out", str(out)]) == 0
    calibration = load_calibration(out)
    assert calibration.method == "f1_adaptive" and set(calibration.per_class) == {"disc", "stripes"}
    assert calibration.per_class["disc"].n_anomalous_images == 3
    shutil.copy(out, model_dir / "calibration.json")
    images = data / "disc" / "test"
    assert (
        main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "p"), "--class-name", "disc"])
        == 0
    )
    rows = json.loads((tmp_path / "p" / "scores.json").read_text())["results"]
    assert {row["threshold_source"] for row in rows} == {"calibration (f1_adaptive, class 'disc')"}
    assert {row["score_threshold"] for row in rows} == {calibration.per_class["disc"].image_threshold}
    assert main(["calibrate", "--model", "someone/remote", "--normal", str(images)]) == 2
    assert "give --out" in capsys.readouterr().err


def test_predict_with_reference_images(tiny_checkpoint_dir, tmp_path):
    images, references = tmp_path / "images", tmp_path / "references"
    write_sample_images(images)
    for index, image in enumerate(noise_images(2, seed=9)):
        references.mkdir(exist_ok=True)
        image.save(references / f"normal_{index}.png")
    out = tmp_path / "out"
    command = ["predict", str(images), "--model", str(tiny_checkpoint_dir), "--reference", str(references)]
    assert main([*command, "--out", str(out)]) == 0
    few_shot = json.loads((out / "scores.json").read_text())["results"]
    assert main(["predict", str(images), "--model", str(tiny_checkpoint_dir), "--out", str(tmp_path / "zero")]) == 0
    zero_shot = json.loads((tmp_path / "zero" / "scores.json").read_text())["results"]
    assert [row["score"] for row in few_shot] != pytest.approx([row["score"] for row in zero_shot])


def test_k_shot_protocol_draws_references_per_seed_and_summarises(tiny_checkpoint_dir, tmp_path):
    from genclip_hf.data import load_benchmark
    from genclip_hf.evaluation.k_shot import draw_references

    data = write_synthetic_benchmark(tmp_path / "data", classes=["disc"], n_test_good=2, n_test_bad=2, seed=4)
    train = load_benchmark("mvtec", data, split="train")
    first, again = draw_references(train, ["disc"], 2, seed=0), draw_references(train, ["disc"], 2, seed=0)
    assert first == again and len(first["disc"]) == 2 and all("/train/good/" in path for path in first["disc"])
    assert draw_references(train, ["disc"], 2, seed=1) != first
    with pytest.raises(ValueError, match="Class 'disc' has .* normal training image"):
        draw_references(train, ["disc"], 10_000, seed=0)

    out = tmp_path / "out"
    command = ["evaluate", "--model", str(tiny_checkpoint_dir), "--benchmark", "mvtec", "--root", str(data)]
    assert main([*command, "--out", str(out), "--k-shot", "2", "--seeds", "0", "1", "--heatmaps-per-class", "0"]) == 0
    summary = json.loads((out / "k_shot.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["k_shot"] == 2
    per_seed = [json.loads((out / f"seed_{seed}" / "results.json").read_text()) for seed in (0, 1)]
    values = [run["per_class"]["disc"]["pixel_auroc"] for run in per_seed]
    assert summary["per_class"]["disc"]["pixel_auroc"]["mean"] == pytest.approx(np.mean(values))
    assert summary["per_class"]["disc"]["pixel_auroc"]["std"] == pytest.approx(np.std(values))
    assert per_seed[0]["run"]["references"] != per_seed[1]["run"]["references"]
    assert "± " in (out / "k_shot.md").read_text()
