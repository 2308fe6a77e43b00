"""Fast inference paths against the exact float32 path: int8 with onnxruntime and with torch, precision selection in
`load_detector`, and the fallbacks of fp16/bf16 and `torch.compile` on a machine that cannot run them."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from genclip_hf.export.torch_fast import (
    DEFAULT_INT8_BACKEND,
    compile_vision_blocks,
    quantize_linear_int8,
    resolve_precision,
    to_half_precision,
)

# Loose bounds on the random tiny GenCLIP, whose fused maps range over [0, 3]. Measured on 3 batches with the vision
# encoder's linear layers in int8: maps move by <= 0.011 (mean 0.0022) and scores by <= 0.009 (torch, per-tensor
# weights), <= 0.006 (mean 0.0013) and 0.005 (onnxruntime, per-channel weights). The real-scale agreement is measured
# by benchmarks/bench_fast.py --accuracy.
INT8_MAX_MAP_DIFFERENCE = 0.05
INT8_MEAN_MAP_DIFFERENCE = 0.01
INT8_MAX_SCORE_DIFFERENCE = 0.03


def _images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _assert_int8_agrees(fast, exact) -> None:
    difference = (fast.anomaly_maps - exact.anomaly_maps).abs()
    assert difference.max() <= INT8_MAX_MAP_DIFFERENCE
    assert difference.mean() <= INT8_MEAN_MAP_DIFFERENCE
    assert (fast.pred_scores - exact.pred_scores).abs().max() <= INT8_MAX_SCORE_DIFFERENCE


@pytest.fixture(scope="module")
def genclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from genclip_hf.testing import save_random_genclip

    return save_random_genclip(tmp_path_factory.mktemp("genclip"))


@pytest.fixture
def exact_model(genclip_dir: Path):
    from genclip_hf import GenCLIPModel

    return GenCLIPModel.from_pretrained(genclip_dir).eval()


def test_int8_means_the_faster_measured_backend() -> None:
    assert resolve_precision("int8") == DEFAULT_INT8_BACKEND == "int8-onnx"
    assert resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32'"):
        resolve_precision("int4")


def test_int8_torch_runs_and_agrees_with_fp32(genclip_dir: Path, exact_model) -> None:
    from genclip_hf import GenCLIPModel

    fast = quantize_linear_int8(GenCLIPModel.from_pretrained(genclip_dir).eval())
    assert isinstance(fast.clip.vision_model.encoder.layers[0].mlp.fc1, DynamicQuantizedLinear)
    assert not isinstance(fast.clip.text_model.encoder.layers[0].mlp.fc1, DynamicQuantizedLinear)
    assert not isinstance(fast.patch_projections[0], DynamicQuantizedLinear)
    pixel_values = _images(3)
    names = ["bottle", "metal plate", "object"]
    _assert_int8_agrees(fast.detect(pixel_values, names), exact_model.detect(pixel_values, names))


def test_int8_onnx_runs_and_agrees_with_fp32(genclip_dir: Path, exact_model, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="int8-onnx needs the export extra: pip install 'genclip-hf[export]'")
    pytest.importorskip("onnxscript", reason="int8-onnx needs the export extra: pip install 'genclip-hf[export]'")
    import onnx

    from genclip_hf.export import ONNXDetectorModel, export_detector
    from genclip_hf.export.runtime import vision_linear_nodes

    export_detector(exact_model, tmp_path / "onnx", class_names=["bottle"], int8=True)
    fast = ONNXDetectorModel.from_pretrained(tmp_path / "onnx", precision="int8")
    vision_linears = vision_linear_nodes(tmp_path / "onnx" / "model.onnx")
    assert len(vision_linears) == 6 * exact_model.config.clip_config.vision_config.num_hidden_layers
    int8_graph = onnx.load(str(tmp_path / "onnx" / "model_int8.onnx"), load_external_data=False)
    assert sum(node.op_type == "MatMulInteger" for node in int8_graph.graph.node) == len(vision_linears)
    pixel_values = _images(3)
    names = ["bottle", "bottle", "object"]
    _assert_int8_agrees(fast.detect(pixel_values, names), exact_model.detect(pixel_values, names))


def test_load_detector_selects_the_precision_per_run(genclip_dir: Path) -> None:
    from genclip_hf.predict import load_detector

    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    exact = load_detector(str(genclip_dir), device="cpu")(image, class_name="bottle")
    int8 = load_detector(str(genclip_dir), device="cpu", precision="int8-torch")
    assert isinstance(int8.model.clip.vision_model.encoder.layers[-1].self_attn.q_proj, DynamicQuantizedLinear)
    fast = int8(image, class_name="bottle")
    assert np.abs(fast["anomaly_map"] - exact["anomaly_map"]).max() <= INT8_MAX_MAP_DIFFERENCE


def test_int8_on_a_torch_checkpoint_exports_it_for_onnxruntime(tiny_clip_dir: Path) -> None:
    pytest.importorskip("onnxruntime", reason="int8-onnx needs the export extra: pip install 'genclip-hf[export]'")
    pytest.importorskip("onnxscript", reason="int8-onnx needs the export extra: pip install 'genclip-hf[export]'")
    from genclip_hf.predict import load_detector

    detector = load_detector(str(tiny_clip_dir), device="cpu", precision="int8", class_names=["screw"])
    assert type(detector.model).__name__ == "ONNXDetectorModel"
    assert detector.model.precision == "int8"
    image = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    result = detector(image, class_name="screw")
    assert result["class_name"] == "screw"
    assert 0.0 <= result["score"] <= 1.0


def test_exported_folder_refuses_torch_only_paths(genclip_dir: Path, exact_model, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'genclip-hf[export]'")
    pytest.importorskip("onnxscript", reason="needs the export extra: pip install 'genclip-hf[export]'")
    from genclip_hf.export import export_detector
    from genclip_hf.predict import ModelUnavailableError, load_detector

    export_detector(exact_model, tmp_path / "onnx")
    for options, message in (
        ({"precision": "bf16"}, "runs precision 'fp32' or 'int8'"),
        ({"compile": True}, "compile"),
    ):
        with pytest.raises((ValueError, ModelUnavailableError), match=message):
            load_detector(str(tmp_path / "onnx"), device="cpu", **options)


def test_half_precision_falls_back_to_fp32_on_cpu(exact_model, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        model = to_half_precision(exact_model, "bf16")
    assert model.dtype == torch.float32
    assert "bf16 runs on a CUDA device only" in caplog.text


def test_compile_falls_back_to_eager_where_it_fails(
    exact_model, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", lambda module: Broken())
    pixel_values = _images(1)
    expected = exact_model.detect(pixel_values).anomaly_maps
    with caplog.at_level(logging.WARNING):
        compiled = compile_vision_blocks(exact_model, lambda: exact_model.detect(pixel_values))
    assert not compiled
    assert "torch.compile failed on this machine (no C++ compiler here)" in caplog.text
    torch.testing.assert_close(exact_model.detect(pixel_values).anomaly_maps, expected)


def test_precision_flags_feed_load_detector() -> None:
    from genclip_hf.cli.options import add_precision_arguments, precision_options

    parser = argparse.ArgumentParser()
    add_precision_arguments(parser)
    assert precision_options(parser.parse_args([])) == {"precision": "fp32", "compile": False}
    assert precision_options(parser.parse_args(["--precision", "int8", "--compile"])) == {
        "precision": "int8",
        "compile": True,
    }
