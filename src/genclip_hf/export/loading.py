"""The anomaly-detection pipeline of a model at a chosen precision: exact float32, an exported ONNX folder, int8
(onnxruntime or torch) or fp16/bf16 with optional `torch.compile` (the implementation of `load_detector`'s
`precision` and `compile`)."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..calibration import CALIBRATION_FILE
from ..detection import AutoModelForAnomalyDetection
from .configuration_onnx import ONNX_MODEL_TYPE
from .onnx_export import export_detector
from .torch_fast import compile_vision_blocks, quantize_linear_int8, resolve_precision, to_half_precision

logger = logging.getLogger(__name__)

ONNX_PRECISION_OF = {"fp32": "fp32", "int8-onnx": "int8"}
"""`--precision` -> the graph an exported folder runs."""


def is_exported_folder(model: str | Path) -> bool:
    """Whether `model` is a local folder written by [`export_detector`]."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and values.get("model_type") == ONNX_MODEL_TYPE


def load_pipeline(
    model: str,
    device: str | int | None,
    precision: str,
    compile: bool,
    class_names: Sequence[str],
    pipeline_kwargs: dict[str, Any],
):
    """`pipeline("anomaly-detection", model=model)` at `precision` (see [`genclip_hf.predict.load_detector`]).

    Raises:
        ValueError: naming a precision or `compile` the model cannot run.
    """
    from transformers import pipeline

    precision = resolve_precision(precision)
    if is_exported_folder(model):
        return pipeline(
            "anomaly-detection", model=model, device=device, **_onnx_kwargs(model, precision, compile, pipeline_kwargs)
        )
    if precision == "int8-onnx":
        return _exported_int8_pipeline(model, device, compile, class_names, pipeline_kwargs)
    detector = pipeline(
        "anomaly-detection",
        model=AutoModelForAnomalyDetection.from_pretrained(model),
        processor=_processor_of(model),
        device=device,
        **pipeline_kwargs,
    )
    if precision == "int8-torch":
        quantize_linear_int8(detector.model)
    elif precision in ("fp16", "bf16"):
        to_half_precision(detector.model, precision)
    if compile:
        _compile(detector)
    return detector


def _processor_of(model: str):
    """The processor saved with `model` (or a plain CLIP's `CLIPProcessor`), `None` when there is none; the pipeline
    then builds the image preprocessing from the model's config."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _onnx_kwargs(model: str, precision: str, compile: bool, pipeline_kwargs: dict[str, Any]) -> dict[str, Any]:
    if compile:
        raise ValueError(f"compile applies to torch models; {model} is an exported ONNX model (onnxruntime).")
    if precision not in ONNX_PRECISION_OF:
        raise ValueError(
            f"{model} is an exported ONNX model: it runs precision 'fp32' or 'int8' (onnxruntime), not {precision!r}."
        )
    model_kwargs = {**pipeline_kwargs.get("model_kwargs", {}), "precision": ONNX_PRECISION_OF[precision]}
    return {**pipeline_kwargs, "model_kwargs": model_kwargs}


def _exported_int8_pipeline(
    model: str, device: str | int | None, compile: bool, class_names: Sequence[str], pipeline_kwargs: dict[str, Any]
):
    """Export a torch checkpoint to a temporary folder (deleted with the model) and run its int8 graph."""
    from transformers import pipeline

    folder = tempfile.TemporaryDirectory(prefix="genclip-int8-")
    logger.warning(
        "Exporting %s to ONNX for int8 (once per run; `genclip export --int8` once and --model on its folder skips "
        "this).",
        model,
    )
    export_detector(model, folder.name, class_names=list(class_names), int8=True)
    calibration = Path(model) / CALIBRATION_FILE
    if "calibration" not in pipeline_kwargs and calibration.is_file():
        pipeline_kwargs = {**pipeline_kwargs, "calibration": calibration}
    detector = pipeline(
        "anomaly-detection",
        model=folder.name,
        device=device,
        **_onnx_kwargs(model, "int8-onnx", compile, pipeline_kwargs),
    )
    detector.model.owned_folder = folder
    return detector


def _compile(detector: Any) -> None:
    """`torch.compile` the vision blocks, warmed up on one image at the model's input size."""
    model = detector.model
    if not hasattr(model, "clip"):
        raise ValueError(f"compile applies to CLIP-based torch detectors, not {type(model).__name__}.")
    size = model.config.image_size
    pixel_values = torch.zeros(1, 3, size, size, device=model.device, dtype=model.dtype)
    compile_vision_blocks(model, lambda: model.detect(pixel_values))


__all__ = ["ONNX_PRECISION_OF", "is_exported_folder", "load_pipeline"]
