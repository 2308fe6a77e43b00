"""The detector of an exported folder: `detect` runs the graph with onnxruntime, with the same preprocessing (the
folder's processor) and the same outputs as the method it was exported from.

It loads like any detector (`pipeline("anomaly-detection", model=DIR)`, `genclip predict --model DIR`,
`AutoModelForAnomalyDetection`) once `genclip_hf.export` is imported. The detection settings were fixed at export:
per-call settings are accepted only when they equal them. Class names must be among those precomputed at export.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from ..detection import AnomalyDetectionOutput, AnomalyDetectorMixin, expand_class_names
from ..settings import validate_settings
from .configuration_onnx import GRAPH_FILES, TEXT_TENSORS_FILE, ONNXDetectorConfig
from .recipes import class_key
from .runtime import import_onnxruntime, quantize_onnx_graph

logger = logging.getLogger(__name__)

ONNX_PRECISIONS = tuple(GRAPH_FILES)


class ONNXDetectorModel(AnomalyDetectorMixin, PreTrainedModel):
    """An exported detector: an ONNX graph of the method's `detect` plus its precomputed text tensors.

    It holds no torch parameters; `device`, `dtype` and `to()` exist for the pipeline. Where onnxruntime has the CUDA
    provider, `to("cuda")` runs the graph there; otherwise the graph runs on the CPU whatever the device.

    Args:
        config: the folder's [`ONNXDetectorConfig`].
        folder: the exported folder (graphs and `text_tensors.safetensors`).
        precision: `"fp32"` or `"int8"` (the int8 graph, quantized on loading when the folder has none).

    Attributes:
        owned_folder: a temporary folder holding this model's files (an export made on the fly, or an int8 graph
            quantized on loading), deleted with the model; `None` otherwise.
    """

    config: ONNXDetectorConfig
    config_class = ONNXDetectorConfig
    base_model_prefix = "onnx"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: ONNXDetectorConfig, folder: str | Path | None = None, precision: str = "fp32"):
        super().__init__(config)
        if precision not in ONNX_PRECISIONS:
            raise ValueError(
                f"precision of an exported model must be one of {list(ONNX_PRECISIONS)}, got {precision!r}."
            )
        self.folder = Path(folder) if folder is not None else None
        self.precision = precision
        self._device = torch.device("cpu")
        self._session = None
        self._tensors: dict[str, np.ndarray] | None = None
        self.owned_folder: tempfile.TemporaryDirectory | None = None
        self.post_init()

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *args: Any, precision: str = "fp32", **kwargs: Any
    ) -> ONNXDetectorModel:
        """Load an exported folder (see [`export_detector`]); loading options of torch models are ignored."""
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            raise OSError(f"An exported model is a local folder; {folder} is not one.")
        config = ONNXDetectorConfig.from_pretrained(folder)
        model = cls(config, folder, precision)
        model.session()
        return model

    @property
    def device(self) -> torch.device:
        """Where the graph runs (`cpu`, or `cuda` with onnxruntime's CUDA provider)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the graph's inputs and outputs: float32 (also for the int8 graph)."""
        return torch.float32

    def to(self, *args: Any, **kwargs: Any) -> ONNXDetectorModel:
        """Move the graph to a device: the CPU, or CUDA where onnxruntime has its provider (else it stays on the
        CPU, with a warning). Dtype changes are refused: precision is chosen when loading."""
        device = kwargs.get("device")
        for value in (*args, kwargs.get("dtype")):
            if isinstance(value, torch.dtype) and value != torch.float32:
                raise ValueError(f"An exported model runs in float32 or int8 (precision=...), not {value}.")
            if isinstance(value, (str, int, torch.device)):
                device = value
        if device is None:
            return self
        device = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
        if device.type == "cuda" and "CUDAExecutionProvider" not in import_onnxruntime().get_available_providers():
            logger.warning("onnxruntime has no CUDA provider here: the exported model runs on the CPU.")
            device = torch.device("cpu")
        elif device.type not in ("cpu", "cuda"):
            raise ValueError(f"An exported model runs on 'cpu' or 'cuda' (onnxruntime), not {device}.")
        if device != self._device:
            self._device = device
            self._session = None
        return self

    def session(self):
        """The onnxruntime session of the chosen precision and device (created on first use), with as many threads
        as torch uses (`torch.set_num_threads` sets both)."""
        if self._session is None:
            if self.folder is None:
                raise ValueError("This ONNXDetectorModel has no folder: load it with from_pretrained(DIR).")
            ort = import_onnxruntime()
            providers = ["CPUExecutionProvider"]
            if self._device.type == "cuda":
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": self._device.index or 0}))
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self._session = ort.InferenceSession(str(self._graph_path()), options, providers=providers)
        return self._session

    def _graph_path(self) -> Path:
        """The graph file of `precision`; an int8 graph missing from the folder is quantized into a temporary one."""
        path = self.folder / self.config.graph_files.get(self.precision, GRAPH_FILES[self.precision])
        if path.is_file():
            return path
        if self.precision != "int8":
            raise OSError(f"{self.folder} has no {path.name}: it is not a complete exported model.")
        if self.owned_folder is None:
            self.owned_folder = tempfile.TemporaryDirectory(prefix="genclip-int8-")
        quantized = Path(self.owned_folder.name) / GRAPH_FILES["int8"]
        if not quantized.is_file():
            logger.warning("%s has no int8 graph: quantizing %s for this run.", self.folder, GRAPH_FILES["fp32"])
            quantize_onnx_graph(self.folder / self.config.graph_files["fp32"], quantized)
        return quantized

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        """The precomputed text tensors (`class.<input>` tables and `shared.<input>` tensors)."""
        if self._tensors is None:
            from safetensors.numpy import load_file

            self._tensors = load_file(str(self.folder / TEXT_TENSORS_FILE))
        return self._tensors

    @property
    def detection_settings(self) -> tuple[str, ...]:
        """The settings fixed in the graph (accepted per call only at their exported values)."""
        return tuple(self.config.settings or {})

    def resolve_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The exported settings, after checking that every per-call setting equals its exported value.

        Raises:
            ValueError: naming a setting the graph does not have or whose value differs from the exported one.
        """
        given = validate_settings(settings, self.detection_settings, owner=type(self).__name__)
        exported = dict(self.config.settings or {})
        for name, value in given.items():
            if value != exported[name]:
                raise ValueError(
                    f"{name}={value!r} differs from {exported[name]!r}, the value fixed when this model was exported; "
                    f"export it again with that setting (genclip export ... --{name.replace('_', '-')} ...)."
                )
        return exported

    def anomaly_map_range(self, **settings: Any) -> tuple[float, float]:
        """The range of the anomaly maps under the exported settings."""
        self.resolve_settings(settings)
        low, high = self.config.anomaly_map_range
        return float(low), float(high)

    def class_rows(self, class_names: str | list[str] | None, batch: int) -> tuple[list[int], list[str]]:
        """Table row and key of each image's class name.

        Raises:
            ValueError: naming a class name whose text was not precomputed, and the known ones.
        """
        config = self.config
        names = expand_class_names(class_names, batch, config.default_class_name)
        keys = [class_key(name, config.key_rule, config.generic_term) for name in names]
        rows = {key: row for row, key in enumerate(config.class_keys)}
        for name, key in zip(names, keys, strict=True):
            if key not in rows:
                known = [key for key in config.class_keys if key != config.default_class_name]
                shown = f"{name!r}" if key == name else f"{name!r} (key {key!r})"
                raise ValueError(
                    f"class name {shown} was not precomputed when this model was exported; known class names: "
                    f"{known} (or none, for {config.default_class_name!r}). Export the model again with {name!r} "
                    "among --class-names, or run the torch model."
                )
        return [rows[key] for key in keys], keys

    def feeds(self, pixel_values: torch.Tensor, rows: list[int]) -> dict[str, np.ndarray]:
        """The graph's inputs: the images, each image's rows of the per-class tables and the shared tensors."""
        feeds = {"pixel_values": pixel_values.detach().to("cpu", torch.float32).numpy()}
        index = np.asarray(rows, dtype=np.int64)
        for name in self.config.per_class_inputs or []:
            feeds[name] = self.tensors[f"class.{name}"][index]
        for name in self.config.shared_inputs or []:
            feeds[name] = self.tensors[f"shared.{name}"]
        return feeds

    @torch.no_grad()
    def detect(
        self,
        pixel_values: torch.Tensor,
        class_names: str | list[str] | None = None,
        return_component_maps: bool = False,
        **settings: Any,
    ) -> AnomalyDetectionOutput:
        """The exported method's `detect`, run by onnxruntime.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)`): images prepared by the folder's processor.
            class_names: one name for all images or one per image, among those precomputed at export (ignored by
                methods without class names); `None` is the method's default.
            return_component_maps: not available in an exported model (`ValueError` when `True`).
            settings: the exported detection settings (only their exported values are accepted).
        Returns:
            [`AnomalyDetectionOutput`] with `anomaly_maps` `(B, S, S)`, `pred_scores` `(B,)`, the label threshold and
            the class names the method used (after CNF for GenCLIP).
        """
        self.resolve_settings(settings)
        if return_component_maps:
            raise ValueError("An exported model returns no component maps; run the torch model for them.")
        self.check_pixel_values(pixel_values)
        batch = pixel_values.shape[0]
        config = self.config
        rows, keys = ([0] * batch, None) if config.key_rule == "ignore" else self.class_rows(class_names, batch)
        session = self.session()
        wanted = {graph_input.name for graph_input in session.get_inputs()}
        feeds = {name: value for name, value in self.feeds(pixel_values, rows).items() if name in wanted}
        outputs = dict(zip(config.output_names, session.run(None, feeds), strict=True))
        return AnomalyDetectionOutput(
            anomaly_maps=torch.from_numpy(outputs["anomaly_maps"]),
            pred_scores=torch.from_numpy(outputs["pred_scores"]),
            score_threshold=float(config.score_threshold),
            class_names=self._reported_names(rows, keys, outputs.get("keeps_class_name")),
        )

    def _reported_names(self, rows: list[int], keys: list[str] | None, keeps: np.ndarray | None) -> list[str] | None:
        """The class name `detect` reports per image: the key's name, or the generic term where CNF dropped it."""
        if keys is None:
            return None
        names = [self.config.reported_names[row] for row in rows]
        if keeps is None:
            return names
        return [
            name if bool(kept) else self.config.fallback_class_name for name, kept in zip(names, keeps, strict=True)
        ]


__all__ = ["ONNX_PRECISIONS", "ONNXDetectorModel"]
