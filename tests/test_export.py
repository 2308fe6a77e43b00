"""ONNX export: an exported folder reproduces the torch `detect` of GenCLIP, WinCLIP and AnomalyCLIP at any batch
size, loads through the pipeline and `genclip predict`, and refuses what it cannot do with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export tests need the export extra: pip install 'genclip-hf[export]'")
pytest.importorskip("onnxscript", reason="the export tests need the export extra: pip install 'genclip-hf[export]'")

from genclip_hf.cli import main  # noqa: E402
from genclip_hf.export import ONNXDetectorModel, export_detector  # noqa: E402

# Float32 graph vs eager torch: the same operations in another order (fused attention, reassociated sums).
MAP_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4


def _images(batch: int, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_same_detection(exported, reference) -> None:
    assert (exported.anomaly_maps - reference.anomaly_maps).abs().max() <= MAP_TOLERANCE
    assert (exported.pred_scores - reference.pred_scores).abs().max() <= SCORE_TOLERANCE
    assert exported.score_threshold == pytest.approx(reference.score_threshold)
    assert exported.class_names == reference.class_names


@pytest.fixture(scope="module")
def genclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from genclip_hf.testing import save_random_genclip

    return save_random_genclip(tmp_path_factory.mktemp("genclip"))


@pytest.fixture(scope="module")
def genclip_onnx_dir(genclip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported with the command line, with two class names."""
    out = tmp_path_factory.mktemp("genclip-onnx")
    status = main(["export", "--model", str(genclip_dir), "--out", str(out), "--class-names", "metal_plate", "bottle"])
    assert status == 0
    return out


@pytest.fixture(scope="module")
def genclip_model(genclip_dir: Path):
    from genclip_hf import GenCLIPModel

    return GenCLIPModel.from_pretrained(genclip_dir).eval()


@pytest.fixture(scope="module")
def winclip_model(tmp_path_factory: pytest.TempPathFactory):
    from genclip_hf import WinCLIPModel
    from genclip_hf.testing import save_random_clip

    clip_dir = save_random_clip(tmp_path_factory.mktemp("clip"))
    return WinCLIPModel.from_clip(str(clip_dir), image_size=64).eval()


@pytest.fixture(scope="module")
def winclip_onnx_dir(winclip_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("winclip-onnx")
    export_detector(winclip_model, out, class_names=["screw", "bottle"])
    return out


def test_exported_genclip_matches_torch_at_other_batch_sizes(genclip_onnx_dir: Path, genclip_model) -> None:
    exported = ONNXDetectorModel.from_pretrained(genclip_onnx_dir)
    names = ["metal_plate", "bottle", "object"]
    for batch in (3, 1):
        pixel_values = _images(batch)
        _assert_same_detection(
            exported.detect(pixel_values, names[:batch]), genclip_model.detect(pixel_values, names[:batch])
        )
    pixel_values = _images(2, seed=2)
    _assert_same_detection(exported.detect(pixel_values), genclip_model.detect(pixel_values))


def test_cnf_spelling_variants_share_the_precomputed_row(genclip_onnx_dir: Path, genclip_model) -> None:
    exported = ONNXDetectorModel.from_pretrained(genclip_onnx_dir)
    pixel_values = _images(2)
    names = ["metal-plate", "metal_plate2"]
    _assert_same_detection(exported.detect(pixel_values, names), genclip_model.detect(pixel_values, names))


def test_exported_winclip_matches_torch_at_other_batch_sizes(winclip_onnx_dir: Path, winclip_model) -> None:
    exported = ONNXDetectorModel.from_pretrained(winclip_onnx_dir)
    names = ["screw", "bottle", "object"]
    for batch in (3, 1):
        pixel_values = _images(batch)
        _assert_same_detection(
            exported.detect(pixel_values, names[:batch]), winclip_model.detect(pixel_values, names[:batch])
        )


def test_exported_anomalyclip_matches_torch(tmp_path: Path) -> None:
    from genclip_hf import AnomalyCLIPModel
    from genclip_hf.testing import save_random_clip

    clip_dir = save_random_clip(tmp_path / "clip")
    torch.manual_seed(0)
    settings = {"feature_layers": [1, 2, 4], "dpam_start_layer": 2, "image_size": 80, "sigma": 1.0, "n_ctx": 4}
    model = AnomalyCLIPModel.from_clip(str(clip_dir), text_prompt_depth=3, text_prompt_length=2, **settings).eval()
    export_detector(model, tmp_path / "onnx")
    exported = ONNXDetectorModel.from_pretrained(tmp_path / "onnx")
    pixel_values = _images(3, size=80)
    _assert_same_detection(exported.detect(pixel_values, ["anything"]), model.detect(pixel_values))


def test_folder_holds_graph_tensors_config_and_processor_and_no_pickle(genclip_onnx_dir: Path) -> None:
    names = {path.name for path in genclip_onnx_dir.iterdir()}
    assert {"model.onnx", "text_tensors.safetensors", "config.json", "processor_config.json"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((genclip_onnx_dir / "config.json").read_text())
    assert config["model_type"] == "onnx-anomaly-detector"
    assert config["source_model_type"] == "genclip"
    assert config["class_keys"] == ["object", "metal plate", "bottle"]


def test_export_report_checks_the_graph_against_torch(winclip_model, tmp_path: Path) -> None:
    report = export_detector(winclip_model, tmp_path / "onnx", int8=True)
    assert report.max_map_difference <= MAP_TOLERANCE
    assert report.max_score_difference <= SCORE_TOLERANCE
    assert report.int8_max_map_difference is not None
    assert (tmp_path / "onnx" / "model_int8.onnx").is_file()
    assert report.size_bytes > 0


def test_pipeline_runs_an_exported_folder_like_the_torch_model(genclip_onnx_dir: Path, genclip_dir: Path) -> None:
    from transformers import pipeline

    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    exported = pipeline("anomaly-detection", model=str(genclip_onnx_dir))(image, class_name="bottle")
    reference = pipeline("anomaly-detection", model=str(genclip_dir))(image, class_name="bottle")
    assert exported["anomaly_map"].shape == (70, 90)
    assert np.abs(exported["anomaly_map"] - reference["anomaly_map"]).max() <= MAP_TOLERANCE
    assert exported["score"] == pytest.approx(reference["score"], abs=SCORE_TOLERANCE)
    assert exported["class_name"] == reference["class_name"]


def test_genclip_predict_runs_an_exported_folder(genclip_onnx_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    for index in range(2):
        pixels = (np.random.default_rng(index).random((50, 60, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"part{index}.png")
    out = tmp_path / "out"
    status = main(
        ["predict", str(tmp_path / "part0.png"), str(tmp_path / "part1.png"), "--out", str(out)]
        + ["--model", str(genclip_onnx_dir), "--class-name", "bottle", "--batch-size", "2"]
    )
    assert status == 0
    assert len((out / "scores.csv").read_text().splitlines()) == 3


def test_unknown_class_name_names_it_and_the_known_ones(genclip_onnx_dir: Path, tmp_path: Path, capsys) -> None:
    exported = ONNXDetectorModel.from_pretrained(genclip_onnx_dir)
    with pytest.raises(ValueError, match=r"'screw' was not precomputed.*\['metal plate', 'bottle'\]"):
        exported.detect(_images(1), "screw")
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "part.png")
    status = main(
        ["predict", str(tmp_path / "part.png"), "--out", str(tmp_path / "out")]
        + ["--model", str(genclip_onnx_dir), "--class-name", "screw"]
    )
    assert status == 2
    assert "'screw' was not precomputed" in capsys.readouterr().err


def test_per_call_settings_must_equal_the_exported_ones(genclip_onnx_dir: Path) -> None:
    exported = ONNXDetectorModel.from_pretrained(genclip_onnx_dir)
    alpha = exported.config.settings["alpha"]
    exported.detect(_images(1), alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha=0\.1 differs from .* fixed when this model was exported"):
        exported.detect(_images(1), alpha=0.1)
    with pytest.raises(ValueError, match="component maps"):
        exported.detect(_images(1), return_component_maps=True)
    assert exported.anomaly_map_range() == (0.0, 3.0)


def test_export_settings_are_fixed_in_the_graph(genclip_model, tmp_path: Path) -> None:
    export_detector(genclip_model, tmp_path / "onnx", settings={"use_cnf": False, "feature_layers": [1, 4]})
    exported = ONNXDetectorModel.from_pretrained(tmp_path / "onnx")
    pixel_values = _images(2)
    reference = genclip_model.detect(pixel_values, use_cnf=False, feature_layers=[1, 4])
    _assert_same_detection(exported.detect(pixel_values), reference)


def test_export_refuses_bad_inputs(genclip_model, genclip_onnx_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        export_detector(genclip_model, tmp_path / "a", format="tflite")
    with pytest.raises(ValueError, match="must be a detector"):
        export_detector(torch.nn.Linear(2, 2), tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        export_detector(genclip_model, tmp_path / "c")
    with pytest.raises(ValueError, match="precision of an exported model"):
        ONNXDetectorModel.from_pretrained(genclip_onnx_dir, precision="bf16")
