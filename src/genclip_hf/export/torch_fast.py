"""Fast torch paths of a loaded detector: dynamic int8 linear layers on the CPU, fp16/bf16 with SDPA attention on a
GPU, and `torch.compile` of the vision blocks; each falls back to the exact float32 path with a warning where the
machine cannot run it."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-torch", "int8-onnx")
"""`--precision` choices: `int8` is the faster measured int8 backend ([`DEFAULT_INT8_BACKEND`])."""
DEFAULT_INT8_BACKEND = "int8-onnx"
"""onnxruntime's int8 graph: at ViT-L/14-336, 518 px on the benchmark CPU, 0.40x the fp32 vision forward per image at
batch 1 against 0.64x for torch's dynamic int8 linear layers, and more exact (`benchmarks/RESULTS.md`)."""
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str) -> str:
    """`precision` checked, with `int8` replaced by the default int8 backend.

    Raises:
        ValueError: naming the allowed precisions.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    return DEFAULT_INT8_BACKEND if precision == "int8" else precision


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of the linear layers of the CLIP vision encoder blocks of a detector, in place
    (weights int8 per tensor, activations quantized per batch at run time). They hold nearly all the FLOPs; the text
    encoder and the projection heads stay float32, which was about 10x more exact than quantizing every linear layer
    (benchmarks/RESULTS.md). CPU only; the eager-mode API is deprecated in torch in favour of torchao, whose warnings
    are silenced here.

    Args:
        model: a detector with a `clip` CLIPModel (GenCLIP, WinCLIP, AnomalyCLIP), in float32 on the CPU.
    Raises:
        ValueError: when the model is not on the CPU or has no CLIP vision encoder.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8-torch runs on the CPU; the model is on {device}. Use --device cpu.")
    if not hasattr(model, "clip"):
        raise ValueError(f"int8-torch applies to CLIP-based torch detectors, not {type(model).__name__}.")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(model.clip.vision_model.encoder.float(), {nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def to_half_precision(model: nn.Module, precision: str) -> nn.Module:
    """`model` in fp16 or bf16 with SDPA attention, on a CUDA device only.

    Falls back with a warning: to float32 on a CPU (half precision there is slower and less exact), and from bf16
    to fp16 on a GPU without bf16 support.
    """
    device = next(model.parameters()).device
    if device.type != "cuda":
        logger.warning("%s runs on a CUDA device only; the model is on %s: running float32.", precision, device)
        return model
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        logger.warning("%s has no bf16 support: running fp16 instead.", torch.cuda.get_device_name(device))
        precision = "fp16"
    _use_sdpa(model)
    return model.to(HALF_DTYPES[precision])


def _use_sdpa(model: nn.Module) -> None:
    """Switch the attention to PyTorch's scaled-dot-product kernels where the model runs another implementation."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        return
    try:
        model.set_attn_implementation("sdpa")
    except (ValueError, ImportError) as error:
        logger.warning("SDPA attention is not available for %s (%s): keeping the current one.", type(model), error)


def compile_vision_blocks(model: nn.Module, warmup: Any) -> bool:
    """`torch.compile` each block of the CLIP vision tower (where nearly all the time goes), then run `warmup()` once
    to compile. Where compilation fails (no compiler, an unsupported device), the blocks are restored to eager mode
    with a warning.

    Args:
        model: a detector with a `clip` CLIPModel.
        warmup: a callable that runs the model once at the shapes to come.
    Returns:
        Whether the compiled blocks are in use.
    """
    layers = model.clip.vision_model.encoder.layers
    eager = list(layers)
    for index, block in enumerate(eager):
        layers[index] = torch.compile(block)
    try:
        warmup()
    except Exception as error:  # torch.compile raises many backend-specific error types
        for index, block in enumerate(eager):
            layers[index] = block
        logger.warning("torch.compile failed on this machine (%s): running eager.", str(error).splitlines()[0])
        return False
    return True


__all__ = [
    "DEFAULT_INT8_BACKEND",
    "PRECISIONS",
    "compile_vision_blocks",
    "quantize_linear_int8",
    "resolve_precision",
    "to_half_precision",
]
