"""Bad input, one case per reliability item (issue 13) and more: no lost results, no silently wrong answer, and one
clear line naming the input for every error on the command line. Data-reading items are in
`test_bad_inputs_data.py`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from genclip_hf.cli import main
from genclip_hf.data.synthetic import write_sample_images
from genclip_hf.storage import RunLock


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    write_sample_images(folder)
    return folder


@pytest.fixture
def model_dir(tiny_checkpoint_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint (tests below change its files)."""
    return Path(shutil.copytree(tiny_checkpoint_dir, tmp_path / "model"))


def run_cli(arguments: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run `genclip ARGS`; return the exit status and stderr, which must be one line without a traceback."""
    import re

    status = main(arguments)
    error = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]+", error) if line.strip() and "|" not in line and "it/s]" not in line]
    assert "Traceback" not in error
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("genclip"), error
    return status, lines[-1] if lines else ""


def scores_of(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "scores.csv").open()))


# Data loss.


def test_1_a_rejected_or_interrupted_rerun_keeps_the_previous_results(model_dir, images, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)[0] == 0
    previous = {name: (out / name).read_bytes() for name in ("scores.csv", "scores.json", "index.html")}
    status, message = run_cli(
        ["predict", str(images), "--model", str(model_dir), "--out", str(out), "--alpha", "2"], capsys
    )
    assert status == 2 and "--alpha must be a finite number in [0, 1]" in message
    assert {name: (out / name).read_bytes() for name in previous} == previous

    from genclip_hf.pipeline_anomaly_detection import AnomalyDetectionPipeline

    calls = []
    original = AnomalyDetectionPipeline.__call__

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnomalyDetectionPipeline, "__call__", interrupted)
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)
    assert status == 130 and "interrupted" in message
    assert {name: (out / name).read_bytes() for name in previous} == previous
    assert len(list(csv.DictReader((out / "scores.partial.csv").open()))) == 1, "the finished image is kept"


def test_2_a_second_run_on_the_same_output_folder_is_refused(model_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    with RunLock(out, "genclip-predict"):
        status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)
    assert status == 2 and "is in use by another `genclip-predict` run" in message
    assert not (out / "scores.csv").exists()
    assert run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)[0] == 0


def test_2_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    (out / ".genclip-predict.lock").write_text(f"{socket.gethostname()} 999999999")
    with RunLock(out, "genclip-predict"):
        assert (out / ".genclip-predict.lock").read_text().endswith(str(__import__("os").getpid()))


# Silently wrong.


def test_4_an_unknown_config_key_in_train_is_refused(capsys):
    command = ["train", "--data", "d", "--output-dir", "o", "--config", "use_vision_promts=false"]
    status, message = run_cli(command, capsys)
    assert status == 2 and "has no field 'use_vision_promts'. Did you mean 'use_vision_prompts'" in message


def test_5_a_layer_subset_has_its_own_threshold_and_duplicates_are_refused(model_dir, images, capsys):
    detector = pipeline("anomaly-detection", model=str(model_dir))
    image = str(next(images.glob("*.png")))
    assert detector(image)["score_threshold"] == 1.5
    assert detector(image, feature_layers=[2])["score_threshold"] == 0.5
    with pytest.raises(ValueError, match="feature_layers must be a non-empty list of distinct"):
        detector(image, feature_layers=[1, 1])
    status, message = run_cli(
        ["predict", image, "--model", str(model_dir), "--out", "x", "--feature-layers", "1", "1"], capsys
    )
    assert status == 2 and "--feature-layers must be a non-empty list of distinct" in message


def test_6_outputs_are_never_inputs(model_dir, images, capsys):
    out = images / "runs"
    for _ in range(2):
        assert run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)[0] == 0
    assert len(scores_of(out)) == len(list(images.glob("*.png")))


def test_7_a_non_positive_batch_size_is_refused(model_dir, images, capsys):
    for value in ("-1", "0", "two"):
        status, message = run_cli(
            ["predict", str(images), "--model", str(model_dir), "--out", "x", "--batch-size", value], capsys
        )
        assert status == 2 and "--batch-size must be a positive integer" in message
    from genclip_hf.predict import load_detector, predict_files

    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict_files(load_detector(str(model_dir)), list(images.glob("*.png")), images / "out", batch_size=-1)


def test_8_nan_and_inf_never_pass(model_dir, images, capsys):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "logit_scale": float("nan")}))
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", "x"], capsys)
    assert status == 2 and "logit_scale must be a finite number > 0" in message
    (model_dir / "config.json").write_text(json.dumps(config))
    detector = pipeline("anomaly-detection", model=str(model_dir))
    image = str(next(images.glob("*.png")))
    for name, value in (("threshold", float("nan")), ("score_threshold", float("inf")), ("sigma", -3.0)):
        with pytest.raises(ValueError, match=f"{name} must be"):
            detector(image, **{name: value})
    for flag in ("--sigma", "--threshold", "--alpha"):
        status, message = run_cli(["predict", image, "--model", str(model_dir), "--out", "x", flag, "nan"], capsys)
        assert status == 2 and f"{flag} must be a finite number" in message


def test_10_a_processor_that_disagrees_with_the_model_is_refused(model_dir, images):
    processor = json.loads((model_dir / "processor_config.json").read_text())
    processor["n_query_tokens"] = 3
    (model_dir / "processor_config.json").write_text(json.dumps(processor))
    with pytest.raises(ValueError, match=r"processor does not match the model \(n_query_tokens: processor 3, model 2"):
        pipeline("anomaly-detection", model=str(model_dir))


@pytest.mark.parametrize(
    ("field", "value"),
    [("use_cnf", "false"), ("feature_layers", [1, 2.7]), ("alpha", "0.5"), ("sigma", float("inf")), ("top_n1", 2.0)],
)
def test_10_config_values_of_the_wrong_type_are_refused(model_dir, field, value):
    from genclip_hf import GenCLIPModel

    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, field: value}).replace("Infinity", "1e999"))
    with pytest.raises(ValueError, match=field):
        GenCLIPModel.from_pretrained(model_dir)


def test_11_link_loops_and_dangling_links_are_reported(model_dir, images, tmp_path, capsys):
    (images / "loop").symlink_to(images, target_is_directory=True)
    (images / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    status, _ = run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)
    assert status == 1
    failures = json.loads((out / "scores.json").read_text())["failures"]
    reasons = {Path(item["image"]).name: item["error"] for item in failures}
    assert "dangling link" in reasons["gone.png"] and "link loop" in reasons["loop"]
    assert len(scores_of(out)) == len(list(images.glob("*.png"))) - 1


# Crashes and unclear errors.


def test_12_one_bad_file_never_aborts_a_run(model_dir, images, tmp_path, capsys, monkeypatch):
    from genclip_hf import images as image_module

    deep = images / ("深い名前" * 12) / ("長いフォルダ" * 10)
    deep.mkdir(parents=True)
    Image.new("RGB", (40, 30), (120, 80, 30)).save(deep / (("画像" * 30) + ".png"))
    Image.new("RGB", (300, 300)).save(images / "huge.png")
    monkeypatch.setattr(image_module, "MAX_IMAGE_PIXELS", 250 * 250)
    out = tmp_path / "out"
    status, _ = run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)
    assert status == 1
    [failure] = json.loads((out / "scores.json").read_text())["failures"]
    assert failure["image"].endswith("huge.png") and "90,000 pixels" in failure["error"]
    rows = scores_of(out)
    assert len(rows) == len(list(images.rglob("*.png"))) - 1
    assert all(len(Path(row["heatmap"]).name.encode()) <= 255 and Path(row["heatmap"]).is_file() for row in rows)
    assert (out / "index.html").is_file()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--class-name", ""], "--class-name must be a non-empty name"),
        (["--device", "foo"], "device must name a torch device"),
        (["--feature-layers", "99"], "feature_layers must be a non-empty subset of the model's trained layers"),
        (["--generic-term", ""], "--generic-term must be a non-empty string"),
        (["--few-shot-weight", "-1"], "--few-shot-weight must be a finite number in [0, 1]"),
        (["--window-scales", "2"], "Unknown setting(s) ['window_scales'] of GenCLIPModel"),
        (["--reference", "/nowhere"], "No such file or folder: /nowhere"),
    ],
)
def test_14_predict_errors_are_one_line(model_dir, images, tmp_path, capsys, arguments, expected):
    status, message = run_cli(
        ["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o"), *arguments], capsys
    )
    assert status == 2 and expected in message


def test_14_unusable_models_and_outputs_are_one_line(model_dir, images, tmp_path, capsys):
    (model_dir / "model.safetensors").unlink()
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and str(model_dir) in message
    status, message = run_cli(["predict", str(images), "--model", str(tmp_path / "absent"), "--out", "o"], capsys)
    assert status == 2 and "is not a model folder" in message
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, message = run_cli(["predict", str(images), "--model", "unused", "--out", str(blocker / "out")], capsys)
    assert status == 2


def test_14_other_commands_are_one_line(tiny_checkpoint_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commands = [
        (["evaluate", "--benchmark", "folder", "--root", str(tmp_path), "--out", "o"], "No images found"),
        (["evaluate", "--benchmark", "nonsense", "--root", str(tmp_path), "--out", "o"], "Unknown data source"),
        (["data", "convert", "--benchmark", "mvtec", "--root", str(tmp_path / "x"), "--out", "o"], "does not exist"),
        (["train", "--data", str(tmp_path / "x"), "--output-dir", "o", "--epochs", "0"], "epochs must be an integer"),
        (["train", "--data", "d", "--output-dir", "o", "--learning-rate", "nan"], "learning_rate"),
        (["push", "--model", str(tiny_checkpoint_dir), "--repo", "someone/x", "--folder", str(tmp_path / "up")], ""),
        (["calibrate", "--model", str(tiny_checkpoint_dir), "--normal", str(tmp_path), "--out", "c"], "No images"),
        (["convert", "anomalyclip", "--checkpoint", str(tmp_path / "x.pth"), "--clip", "c", "--out", "o"], "x.pth"),
    ]
    for arguments, expected in commands:
        status, message = run_cli(arguments, capsys)
        assert status == 2 and expected in message, (arguments, message)


def test_14_api_errors_name_the_argument(tiny_checkpoint_dir, tiny_model):
    detector = pipeline("anomaly-detection", model=str(tiny_checkpoint_dir))
    image = Image.new("RGB", (20, 20))
    with pytest.raises(ValueError, match=r"class_name must be a string or a list of strings, got 5"):
        detector(image, class_name=5)
    with pytest.raises(ValueError, match="image"):
        detector(np.zeros((0, 10, 3), dtype=np.uint8))
    pixel_values = torch.zeros(1, 3, 64, 64)
    prompts = tiny_model.prompt_inputs(["pcb"])
    for bad in (5.0, float("nan")):
        with pytest.raises(ValueError, match="masks must hold only 0 and 1"):
            tiny_model(pixel_values=pixel_values, masks=torch.full((1, 64, 64), bad), **prompts)


def test_debug_shows_the_traceback(model_dir, images):
    with pytest.raises(ValueError, match="alpha"):
        main(["--debug", "predict", str(images), "--model", str(model_dir), "--out", "x", "--alpha", "2"])
