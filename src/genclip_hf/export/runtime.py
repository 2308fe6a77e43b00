"""onnxruntime access: a clear error where it is missing, and dynamic int8 quantization of a graph's linear layers."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

EXPORT_EXTRA_HINT = "pip install 'genclip-hf[export]' (onnx, onnxruntime, onnxscript)"


class OptionalDependencyError(ImportError):
    """A package of the `export` extra is missing; the message says what to install."""


def import_onnxruntime():
    """`onnxruntime`, or [`OptionalDependencyError`] saying how to install it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise OptionalDependencyError(f"onnxruntime is not installed ({error}); {EXPORT_EXTRA_HINT}.") from None
    return onnxruntime


def require_export_packages() -> None:
    """Raise [`OptionalDependencyError`] unless `onnx`, `onnxscript` and `onnxruntime` (the exporter's) import."""
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError as error:
            raise OptionalDependencyError(f"{name} is not installed ({error}); {EXPORT_EXTRA_HINT}.") from None
    import_onnxruntime()


def quantize_onnx_graph(source: str | Path, target: str | Path) -> Path:
    """Dynamic int8 quantization of the vision tower's linear layers of an ONNX graph with onnxruntime.

    Only the linear layers inside the CLIP vision encoder blocks are quantized (weights int8 per output channel,
    activations quantized per batch at run time, so no calibration data is needed): they hold nearly all the FLOPs.
    The text encoder, the projection heads, the patch embedding and the attention products stay float32: quantizing
    them too was about 10x less exact (benchmarks/RESULTS.md) for little speed.

    Args:
        source: the float32 graph (`model.onnx`, external data beside it is read), exported by [`export_detector`].
        target: where to write the int8 graph (its weights are stored inside when under 2 GB, else beside it).
    Returns:
        `target` as a `Path`.
    """
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_quantize=vision_linear_nodes(source),
        per_channel=True,
        weight_type=QuantType.QInt8,
        use_external_data_format=source.stat().st_size + _external_size(source) > 2**31 - 2**26,
    )
    return target


def vision_linear_nodes(graph: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes of a graph that come from `nn.Linear` layers of the CLIP vision encoder
    (from the module path the torch exporter records on each node).

    Raises:
        ValueError: when the graph records no such node (not exported by [`export_detector`]).
    """
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    names = []
    for node in model.graph.node:
        metadata = {prop.key: prop.value for prop in node.metadata_props}
        in_vision_encoder = "vision_model.encoder." in metadata.get("namespace", "")
        if (
            node.op_type in ("MatMul", "Gemm")
            and in_vision_encoder
            and "aten.linear" in metadata.get("pkg.torch.onnx.fx_node", "")
        ):
            names.append(node.name)
    if not names:
        raise ValueError(f"{graph} records no vision-encoder linear layer; export it with genclip export.")
    return names


def _external_size(graph: Path) -> int:
    """Bytes of the external data files stored beside `graph` (`<name>.data`)."""
    data = graph.with_name(graph.name + ".data")
    return data.stat().st_size if data.is_file() else 0


__all__ = [
    "EXPORT_EXTRA_HINT",
    "OptionalDependencyError",
    "import_onnxruntime",
    "quantize_onnx_graph",
    "require_export_packages",
    "vision_linear_nodes",
]
