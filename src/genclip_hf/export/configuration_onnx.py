"""Configuration of an exported detector folder: what the graph computes, under which fixed settings, and the class
names whose text was precomputed."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .recipes import CLASS_KEY_RULES

ONNX_MODEL_TYPE = "onnx-anomaly-detector"
GRAPH_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
"""Graph file of each precision inside an exported folder (the int8 graph only when exported with int8)."""
TEXT_TENSORS_FILE = "text_tensors.safetensors"
"""The precomputed text tensors: per-class tables under `class.<input>`, shared tensors under `shared.<input>`."""


@strict
class ONNXDetectorConfig(PreTrainedConfig):
    r"""
    Configuration of an [`ONNXDetectorModel`], written by [`export_detector`].

    Args:
        source_model_type (`str`): the exported method (`"genclip"`, `"winclip"`, `"anomalyclip"`).
        image_size (`int`): side of the square model input.
        settings (`dict`): the detection settings fixed in the graph (per-call settings must equal them).
        score_threshold (`float`): the method's label threshold under those settings.
        anomaly_map_range (`list[float]`): `[low, high]` of the anomaly maps under those settings.
        class_keys (`list[str]`): the precomputed class names (table keys), in table-row order.
        reported_names (`list[str]`): the class name `detect` reports for each key.
        key_rule (`str`): how a class name finds its key, one of `CLASS_KEY_RULES`.
        generic_term (`str`): the generic term of CNF keys.
        default_class_name (`str`, *optional*): what `class_names=None` means (`None`: class names are not used).
        fallback_class_name (`str`, *optional*): the name reported when CNF drops an image's class name.
        input_names, per_class_inputs, shared_inputs, output_names (`list[str]`): the graph's interface.
        graph_files (`dict[str, str]`): precision -> graph file present in the folder.
        opset_version (`int`): the ONNX opset of the graphs.
    """

    model_type = ONNX_MODEL_TYPE

    source_model_type: str = "genclip"
    image_size: int = 224
    settings: dict | None = None
    score_threshold: float = 0.5
    anomaly_map_range: list[float] | tuple[float, float] = (0.0, 1.0)
    class_keys: list[str] | None = None
    reported_names: list[str] | None = None
    key_rule: str = "strip"
    generic_term: str = "object"
    default_class_name: str | None = None
    fallback_class_name: str | None = None
    input_names: list[str] | None = None
    per_class_inputs: list[str] | None = None
    shared_inputs: list[str] | None = None
    output_names: list[str] | None = None
    graph_files: dict | None = None
    opset_version: int = 18

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.key_rule not in CLASS_KEY_RULES:
            raise ValueError(f"key_rule must be one of {list(CLASS_KEY_RULES)}, got {self.key_rule!r}.")
        keys, names = self.class_keys or [], self.reported_names or []
        if len(keys) != len(names):
            raise ValueError(f"class_keys ({len(keys)}) and reported_names ({len(names)}) must have the same length.")


__all__ = ["GRAPH_FILES", "ONNX_MODEL_TYPE", "TEXT_TENSORS_FILE", "ONNXDetectorConfig"]
