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


# A second probe run: more findings, each reproduced here.


def test_numpy_images_outside_their_range_are_refused():
    from genclip_hf.images import to_rgb_image

    pixels = np.random.default_rng(0).uniform(0, 255, (6, 8, 3))
    for array, expected in (
        (pixels.astype(np.float32), r"float image with values in \[.*254.*\]; expected finite values in \[0, 1\]"),
        (np.full((6, 8), np.nan, dtype=np.float32), "with NaN or infinite values"),
        (pixels.astype(np.int64) - 100, r"has negative values \(min -100\)"),
    ):
        with pytest.raises(ValueError, match=expected):
            to_rgb_image(array)


def test_empty_paths_and_link_loops_given_as_paths_are_one_line(model_dir, images, tmp_path, capsys, monkeypatch):
    from genclip_hf.training import TrainingArguments

    monkeypatch.chdir(tmp_path)  # where an empty path would write

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    out = str(tmp_path / "o")
    for arguments, expected in (
        (["predict", str(tmp_path / "a"), "--model", str(model_dir), "--out", out], "is a dangling link or a link"),
        (["predict", "", "--model", str(model_dir), "--out", out], "Image paths must be non-empty"),
        (["predict", str(images), "--model", str(model_dir), "--out", ""], "argument --out: must name a folder"),
        (["evaluate", "--benchmark", "mvtec", "--root", str(images), "--out", ""], "argument --out: must name"),
        (["calibrate", "--normal", str(images), "--out", ""], "argument --out: must name"),
        (["export", "--model", str(model_dir), "--out", ""], "argument --out: must name"),
        (["data", "convert", "--benchmark", "mvtec", "--root", str(images), "--out", ""], "argument --out: must name"),
        (["card", "--model", str(model_dir), "--out", ""], "argument --out: must name"),
        (["push", "--model", str(model_dir), "--repo", "a/b", "--folder", ""], "argument --folder: must name"),
    ):
        status, message = run_cli(arguments, capsys)
        assert status == 2 and expected in message, message
    with pytest.raises(ValueError, match="output_dir must name a folder"):
        TrainingArguments(output_dir="", data=["d"])


def test_flag_values_are_bounded_and_named(images, capsys):
    for arguments, expected in (
        (["--score-threshold", "-inf"], "expected one argument (a value that starts with '-'"),
        (["--score-threshold=-inf"], "--score-threshold must be a finite number"),
        (["--device", "cuda:99"], "device 'cuda:99' is not available"),
    ):
        status, message = run_cli(["predict", str(images), "--out", "x", *arguments], capsys)
        assert status == 2 and expected in message, message
    for arguments, expected in (
        (["--k-shot", "0"], "argument --k-shot: --k-shot must be a positive integer, got 0"),
        (["--k-shot", "1", "--seeds", "-1"], "argument --seeds: must be a non-negative integer, got -1"),
    ):
        status, message = run_cli(["evaluate", "--benchmark", "mvtec", "--root", ".", "--out", "x", *arguments], capsys)
        assert status == 2 and expected in message, message
    from genclip_hf.evaluation import evaluate_k_shot

    with pytest.raises(ValueError, match=r"seeds must be one or more non-negative integers, got \[-1\]"):
        evaluate_k_shot(None, "mvtec", ".", "x", 1, [-1])


def test_a_sigma_wider_than_the_model_input_is_refused(model_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    status, message = run_cli(
        ["predict", str(images), "--model", str(model_dir), "--out", str(out), "--sigma", "1e308"], capsys
    )
    assert status == 2 and "sigma must be at most the model input size (64 px), got 1e+308" in message
    assert not out.exists()
    with pytest.raises(ValueError, match="sigma must be at most the model input size"):
        pipeline("anomaly-detection", model=str(model_dir))(Image.new("RGB", (20, 20)), sigma=65.0)


def test_train_names_a_clip_model_it_cannot_load(tmp_path, capsys, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    (tmp_path / "data" / "good").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "data" / "good" / "a.png")
    absent = tmp_path / "absent-clip"
    arguments = ["train", "--data", str(tmp_path / "data"), "--output-dir", str(tmp_path / "o"), "--no-feature-cache"]
    assert main([*arguments, "--clip-model", str(absent)]) == 2
    error = capsys.readouterr().err  # the data loading's progress bar comes first
    assert "Traceback" not in error
    assert error.splitlines()[-1].startswith(f"genclip train: --clip-model {absent} cannot be loaded")


def test_export_refuses_an_opset_it_would_not_write(model_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from genclip_hf.export import export_detector

    with pytest.raises(ValueError, match=r"opset_version must be an integer in \[18, "):
        export_detector(str(model_dir), tmp_path / "x", opset_version=5)
    status, message = run_cli(["export", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--opset=-1"], capsys)
    assert status == 2 and "opset_version must be an integer in [18, " in message
    assert not (tmp_path / "x").exists()


def test_a_failed_reexport_keeps_the_earlier_export(model_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from genclip_hf.export import export_detector, onnx_export

    out = tmp_path / "exported"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"model_type": "onnx-anomaly-detector"}))
    (out / "model.onnx").write_bytes(b"the earlier graph")
    earlier = {path.name: path.read_bytes() for path in out.iterdir()}

    def failing_write(recipe, pixel_values, path, opset_version):
        path.write_bytes(b"half a graph")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(onnx_export, "_write_graph", failing_write)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_detector(str(model_dir), out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exported", "model"]


def test_export_names_a_model_folder_that_does_not_exist(tmp_path, capsys):
    from genclip_hf import AutoModelForAnomalyDetection

    with pytest.raises(FileNotFoundError, match="is not a model folder"):
        AutoModelForAnomalyDetection.from_pretrained(str(tmp_path / "absent"))
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    status, message = run_cli(["export", "--model", str(tmp_path / "absent"), "--out", str(tmp_path / "x")], capsys)
    assert status == 2 and "is not a model folder (nor a Hub id" in message


def test_push_checks_the_checkpoint_kind_and_the_licence_first(model_dir, tiny_clip_dir, tmp_path, capsys):
    push = ["push", "--repo", "someone/x", "--no-upload", "--folder", str(tmp_path / "up")]
    status, message = run_cli([*push, "--model", str(model_dir), "--license", ""], capsys)
    assert status == 2 and "license must be a Hub licence id such as 'apache-2.0'" in message
    status, message = run_cli([*push, "--model", str(tiny_clip_dir)], capsys)
    assert status == 2 and "holds a 'clip' model; model cards and Hub uploads are written for GenCLIP" in message
    assert not (tmp_path / "up").exists()


def test_map_at_model_size_must_be_a_boolean(model_dir):
    detector = pipeline("anomaly-detection", model=str(model_dir))
    with pytest.raises(ValueError, match="map_at_model_size must be True or False, got 'no'"):
        detector(Image.new("RGB", (40, 30)), map_at_model_size="no")


def test_detect_refuses_raw_empty_or_non_finite_pixels(tiny_model):
    size = tiny_model.config.image_size
    for pixel_values, expected in (
        (torch.zeros(1, 3, size, size, dtype=torch.uint8), "must be a float tensor of normalised images"),
        (torch.zeros(1, 3, size, size, dtype=torch.long), "must be a float tensor of normalised images"),
        (torch.full((1, 3, size, size), float("nan")), "holds NaN or infinite values"),
        (torch.full((1, 3, size, size), float("inf")), "holds NaN or infinite values"),
        (torch.zeros(0, 3, size, size), "must hold at least one image"),
    ):
        with pytest.raises(ValueError, match=expected):
            tiny_model.detect(pixel_values)


def test_a_config_json_that_is_no_object_is_one_line(model_dir, images, capsys):
    (model_dir / "config.json").write_text("[1, 2]")
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", "x"], capsys)
    assert status == 2 and str(model_dir) in message


def test_damaged_weights_are_named(model_dir, images, capsys):
    from safetensors import SafetensorError

    from genclip_hf import AutoModelForAnomalyDetection

    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(SafetensorError, match=f"Cannot read the weights of '{model_dir}'"):
        AutoModelForAnomalyDetection.from_pretrained(str(model_dir))
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", "x"], capsys)
    assert status == 2 and "(a truncated or damaged safetensors file?)" in message


def test_weights_that_do_not_fit_the_model_are_refused(model_dir, tiny_clip_dir, images, capsys):
    from genclip_hf import GenCLIPModel

    shutil.copy(tiny_clip_dir / "model.safetensors", model_dir / "model.safetensors")
    with pytest.raises(ValueError, match=r"do not fit GenCLIPModel: \d+ parameter\(s\) missing .*, \d+ unexpected"):
        GenCLIPModel.from_pretrained(model_dir)
    (model_dir / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, model_dir / "pytorch_model.bin")
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", "x"], capsys)
    assert status == 2 and "1 unexpected (e.g. x); it is not a saved GenCLIPModel checkpoint" in message


def test_an_unreadable_processor_file_is_refused(model_dir, images, capsys):
    (model_dir / "processor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="The model's processor file .*processor_config.json cannot be read"):
        pipeline("anomaly-detection", model=str(model_dir))
    status, message = run_cli(["predict", str(images), "--model", str(model_dir), "--out", "x"], capsys)
    assert status == 2 and f"{model_dir / 'processor_config.json'} cannot be read" in message


def test_an_empty_class_folder_is_reported(tmp_path, monkeypatch):
    import datasets

    from genclip_hf.data import load_benchmark

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    root = tmp_path / "mvtec"
    for folder in ("bottle/test/good", "bottle/test/crack", "bottle/ground_truth/crack", "screw/test"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "bottle/test/good/000.png")
    Image.new("RGB", (20, 10)).save(root / "bottle/test/crack/000.png")
    Image.new("L", (20, 10), 255).save(root / "bottle/ground_truth/crack/000_mask.png")
    with pytest.warns(UserWarning, match="Class 'screw' has no images in .*screw/test'"):
        dataset = load_benchmark("mvtec", root)
    assert set(dataset["class_name"]) == {"bottle"}


def test_an_interrupted_rerun_keeps_the_previous_heatmaps(model_dir, images, tmp_path, capsys, monkeypatch):
    from genclip_hf.pipeline_anomaly_detection import AnomalyDetectionPipeline

    out = tmp_path / "out"
    assert run_cli(["predict", str(images), "--model", str(model_dir), "--out", str(out)], capsys)[0] == 0
    pictures = {path.name: path.read_bytes() for path in (out / "heatmaps").iterdir()}
    calls, original = [], AnomalyDetectionPipeline.__call__

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnomalyDetectionPipeline, "__call__", interrupted)
    rerun = ["predict", str(images), "--model", str(model_dir), "--out", str(out), "--sigma", "0"]
    assert run_cli(rerun, capsys)[0] == 130
    assert {path.name: path.read_bytes() for path in (out / "heatmaps").iterdir()} == pictures
    partial = list(csv.DictReader((out / "scores.partial.csv").open()))
    assert len(partial) == 2 and all(Path(row["heatmap"]).parent.name == "heatmaps.partial" for row in partial)
    monkeypatch.undo()
    assert run_cli(rerun, capsys)[0] == 0
    assert sorted(path.name for path in out.iterdir()) == ["heatmaps", "index.html", "scores.csv", "scores.json"]
    assert all(Path(row["heatmap"]).parent == out / "heatmaps" for row in scores_of(out))
    assert all(Path(row["heatmap"]).is_file() for row in scores_of(out))


def test_calibrate_reports_a_skipped_file_and_exits_1(model_dir, images, capsys):
    """Like every batch job: an unreadable normal image is named and skipped, the others still give the calibration
    file, and the exit status is 1."""
    (images / "broken.png").write_bytes(b"not a png")
    out = model_dir / "calibration.json"
    status = main(["calibrate", "--model", str(model_dir), "--normal", str(images), "--target-fpr", "0.2"])
    printed = capsys.readouterr().out
    assert status == 1 and out.exists()
    assert f"skipped {images / 'broken.png'}" in printed and "1 unreadable file(s) skipped" in printed
