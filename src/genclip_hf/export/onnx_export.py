"""Export a detector to a folder that runs with onnxruntime: the graph of its whole `detect` (pixels to anomaly maps
and image scores, dynamic batch axis), its precomputed text tensors, its config and its processor.

Folder layout:

    model.onnx (+ model.onnx.data)   the float32 graph (torch.onnx dynamo exporter)
    model_int8.onnx                  with int8=True: linear weights quantized by onnxruntime
    text_tensors.safetensors         per-class tables `class.<input>` and shared tensors `shared.<input>`
    config.json                      [`ONNXDetectorConfig`] (model_type "onnx-anomaly-detector")
    preprocessor_config.json, tokenizer files, processor_config.json   the [`AnomalyDetectionProcessor`]
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoProcessor, AutoTokenizer

from ..calibration import CALIBRATION_FILE
from ..detection import AutoModelForAnomalyDetection
from ..processing_anomaly_detection import AnomalyDetectionProcessor, image_processor_for_model
from ..storage import staged_folder
from ..testing import CLIP_TOKENIZER_DIR
from .configuration_onnx import GRAPH_FILES, ONNX_MODEL_TYPE, TEXT_TENSORS_FILE, ONNXDetectorConfig
from .recipes import ExportRecipe, build_recipe
from .runtime import import_onnxruntime, quantize_onnx_graph, require_export_packages

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx",)
DEFAULT_OPSET = 18
TRACE_BATCH = 2
"""Batch of the traced example: not 1, which the exporter would fix as a constant instead of a dynamic axis."""


@dataclass
class ExportReport:
    """What an export wrote and how closely the graph reproduces the torch `detect` on a check batch.

    Args:
        folder: the exported folder.
        seconds: wall time of the export (graph, tensors, check and, with int8, quantization).
        size_bytes: bytes of every file in the folder.
        max_map_difference, max_score_difference: largest absolute difference between the float32 graph and the
            torch `detect` on one random image (a different batch size from the traced one).
        int8_max_map_difference: the same for the int8 graph (`None` without int8).
    """

    folder: Path
    seconds: float
    size_bytes: int
    max_map_difference: float
    max_score_difference: float
    int8_max_map_difference: float | None = None


def export_detector(
    model: Any,
    out_dir: str | Path,
    class_names: Sequence[str] = (),
    format: str = "onnx",
    settings: dict[str, Any] | None = None,
    processor: AnomalyDetectionProcessor | None = None,
    int8: bool = False,
    opset_version: int = DEFAULT_OPSET,
) -> ExportReport:
    """Export a detector's whole `detect` to `out_dir` (see the module docstring for the layout).

    Args:
        model: a detector (GenCLIP, WinCLIP zero-shot, AnomalyCLIP) or a folder / Hub id that loads as one.
        out_dir: the folder to write (created; an earlier export there is replaced).
        class_names: the class names whose text is precomputed; the method's default name is always included.
            Run time accepts only these (GenCLIP with CNF: any spelling that cleans to one of them).
        format: `"onnx"`.
        settings: detection settings to fix in the graph (default: the model's config).
        processor: the image preprocessing to save (default: the checkpoint's, or one built from the config). A
            checkpoint folder's `calibration.json` is copied too.
        int8: also write `model_int8.onnx` (dynamic int8 quantization of the linear layers).
        opset_version: ONNX opset of the graph, from 18 to the torch exporter's maximum.
    Returns:
        [`ExportReport`].
    Raises:
        ValueError: naming a bad format, opset, setting, class name or a method that has no export.
        OptionalDependencyError: when onnx, onnxscript or onnxruntime is missing.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {list(EXPORT_FORMATS)}, got {format!r}.")
    require_export_packages()
    _check_opset(opset_version)
    started = time.perf_counter()
    out_dir = _prepare_folder(Path(out_dir))
    source = model
    model, processor = _load_source(model, processor)
    resolved = model.resolve_settings(dict(settings or {}))
    recipe = build_recipe(model, resolved, list(class_names))
    with staged_folder(out_dir) as folder:
        pixel_values = torch.randn(
            TRACE_BATCH, 3, model.config.image_size, model.config.image_size, generator=_seeded()
        )
        _write_graph(recipe, pixel_values, folder / GRAPH_FILES["fp32"], opset_version)
        save_file(_text_tensors(recipe), str(folder / TEXT_TENSORS_FILE))
        reference = model.detect(pixel_values[:1], **resolved)
        map_difference, score_difference = _graph_difference(
            folder / GRAPH_FILES["fp32"], recipe, pixel_values, reference
        )
        graph_files = {"fp32": GRAPH_FILES["fp32"]}
        int8_difference = None
        if int8:
            quantize_onnx_graph(folder / GRAPH_FILES["fp32"], folder / GRAPH_FILES["int8"])
            graph_files["int8"] = GRAPH_FILES["int8"]
            int8_difference = _graph_difference(folder / GRAPH_FILES["int8"], recipe, pixel_values, reference)[0]
        config = _exported_config(model, recipe, resolved, reference.score_threshold, graph_files, opset_version)
        config.save_pretrained(folder)
        processor.save_pretrained(folder)
        if isinstance(source, (str, Path)) and (Path(source) / CALIBRATION_FILE).is_file():
            shutil.copy2(Path(source) / CALIBRATION_FILE, folder / CALIBRATION_FILE)
    return ExportReport(
        folder=out_dir,
        seconds=time.perf_counter() - started,
        size_bytes=sum(path.stat().st_size for path in out_dir.rglob("*") if path.is_file()),
        max_map_difference=map_difference,
        max_score_difference=score_difference,
        int8_max_map_difference=int8_difference,
    )


def _check_opset(opset_version: int) -> None:
    """Raise `ValueError` unless `opset_version` is one the torch exporter writes as asked: it writes opset 18 for
    anything lower, and logs a failed conversion (leaving a graph onnxruntime refuses) above its declared maximum."""
    import onnx
    from torch.onnx import _constants

    latest = min(onnx.defs.onnx_opset_version(), _constants.ONNX_MAX_OPSET)
    if (
        isinstance(opset_version, bool)
        or not isinstance(opset_version, int)
        or not (DEFAULT_OPSET <= opset_version <= latest)
    ):
        raise ValueError(
            f"opset_version must be an integer in [{DEFAULT_OPSET}, {latest}] (the opsets the torch ONNX exporter "
            f"writes), got {opset_version!r}."
        )


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _prepare_folder(out_dir: Path) -> Path:
    """Create `out_dir`; refuse a non-empty folder unless it holds an earlier export (which a finished export replaces
    as a whole, and a failed one leaves intact)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"The output folder {out_dir} is a file.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        config = out_dir / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
        if model_type != ONNX_MODEL_TYPE:
            raise ValueError(f"The output folder {out_dir} is not empty and holds no export; choose an empty one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _load_source(model: Any, processor: AnomalyDetectionProcessor | None) -> tuple[Any, AnomalyDetectionProcessor]:
    """The detector in float32 eval mode and the processor to save beside the graph."""
    source = None
    if isinstance(model, (str, Path)):
        source = str(model)
        model = AutoModelForAnomalyDetection.from_pretrained(source)
    if not hasattr(model, "detect"):
        raise ValueError(f"model must be a detector or a folder that loads as one, got {type(model).__name__}.")
    model = model.to(torch.float32).eval()
    if processor is None:
        loaded = None
        if source is not None:
            try:
                loaded = AutoProcessor.from_pretrained(source)
            except (OSError, ValueError, TypeError) as error:
                logger.info("No processor in %s (%s): building one from the config.", source, error)
        processor = AnomalyDetectionProcessor(
            image_processor=image_processor_for_model(model, loaded), tokenizer=_tokenizer(model, loaded)
        )
    return model, processor


def _tokenizer(model: Any, processor: Any):
    """The model's tokenizer (its processor's, else the one it loads), else the bundled CLIP tokenizer (the exported
    graph does not tokenize; the processor format needs one)."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer
    try:
        return model.tokenizer
    except ValueError:
        return AutoTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)


def _write_graph(recipe: ExportRecipe, pixel_values: torch.Tensor, path: Path, opset_version: int) -> None:
    """Trace the recipe's graph on a `TRACE_BATCH` example and write it with a dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dynamic_shapes = tuple(
        {0: batch} if name == "pixel_values" or name in recipe.per_class else None for name in recipe.input_names
    )
    with torch.no_grad():
        torch.onnx.export(
            recipe.graph,
            recipe.example_inputs(pixel_values),
            str(path),
            input_names=list(recipe.input_names),
            output_names=list(recipe.output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
        )


def _text_tensors(recipe: ExportRecipe) -> dict[str, torch.Tensor]:
    tensors = {f"class.{name}": table.contiguous() for name, table in recipe.per_class.items()}
    tensors.update({f"shared.{name}": tensor.contiguous() for name, tensor in recipe.shared.items()})
    return tensors


def _graph_difference(
    path: Path, recipe: ExportRecipe, pixel_values: torch.Tensor, reference: Any
) -> tuple[float, float]:
    """Largest absolute map and score differences between the graph at `path`, run on the first image with the
    default class, and the torch `reference` output."""
    session = import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = dict(zip(recipe.input_names, recipe.example_inputs(pixel_values[:1]), strict=True))
    wanted = {graph_input.name for graph_input in session.get_inputs()}
    outputs = session.run(None, {name: value.numpy() for name, value in inputs.items() if name in wanted})
    maps, scores = torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1])
    return (
        float((maps - reference.anomaly_maps).abs().max()),
        float((scores - reference.pred_scores).abs().max()),
    )


def _exported_config(
    model: Any,
    recipe: ExportRecipe,
    settings: dict[str, Any],
    score_threshold: float,
    graph_files: dict[str, str],
    opset_version: int,
) -> ONNXDetectorConfig:
    low, high = model.anomaly_map_range(**settings)
    return ONNXDetectorConfig(
        source_model_type=model.config.model_type,
        image_size=model.config.image_size,
        settings=settings,
        score_threshold=float(score_threshold),
        anomaly_map_range=[float(low), float(high)],
        class_keys=recipe.class_keys,
        reported_names=recipe.reported_names,
        key_rule=recipe.key_rule,
        generic_term=settings.get("generic_term", "object"),
        default_class_name=recipe.default_class_name,
        fallback_class_name=recipe.fallback_class_name,
        input_names=list(recipe.input_names),
        per_class_inputs=list(recipe.per_class),
        shared_inputs=list(recipe.shared),
        output_names=list(recipe.output_names),
        graph_files=graph_files,
        opset_version=opset_version,
    )


__all__ = ["DEFAULT_OPSET", "EXPORT_FORMATS", "ExportReport", "export_detector"]
