"""The detector contract that every method implements, and the registry that loads any detector folder.

A detector is a `PreTrainedModel` that also inherits [`AnomalyDetectorMixin`] and implements

    detect(pixel_values, class_names=None, **settings) -> AnomalyDetectionOutput

with `pixel_values` `(B, 3, S, S)` at `config.image_size` = S. The pipeline, `genclip predict`, `genclip evaluate`,
the benchmarks and the export use nothing else, so a new method plugs in by implementing `detect` and calling
[`register_detector`].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer, CLIPConfig, PreTrainedConfig
from transformers.utils import ModelOutput

from .settings import SETTINGS, SettingError, validate_settings

logger = logging.getLogger(__name__)


@dataclass
class AnomalyDetectionOutput(ModelOutput):
    """What every detector's `detect` returns.

    Args:
        anomaly_maps (`torch.FloatTensor` of shape `(B, S, S)`):
            Pixel anomaly maps at the model input size `S = config.image_size` (higher is more anomalous).
        pred_scores (`torch.FloatTensor` of shape `(B,)`):
            Image anomaly scores.
        score_threshold (`float`):
            The method's neutral label threshold on `pred_scores` for the settings used (before any calibration).
        class_names (`list[str]`, *optional*):
            The class name each image was scored with (after class-name filtering where the method has it).
        component_maps (`dict[str, torch.FloatTensor]`, *optional*):
            Named intermediate maps (e.g. per layer, per branch or per window scale), each `(B, K, S, S)`, when asked
            for with `return_component_maps=True`.
    """

    anomaly_maps: torch.FloatTensor | None = None
    pred_scores: torch.FloatTensor | None = None
    score_threshold: float | None = None
    class_names: list[str] | None = None
    component_maps: dict[str, torch.FloatTensor] | None = None


def expand_class_names(
    class_names: str | Sequence[str] | None, batch: int, default: str, argument: str = "class_names"
) -> list[str]:
    """One stripped class name per image: `None` gives `default`, one name is repeated.

    Raises:
        ValueError: naming `argument` for an empty list, a count that is neither 1 nor `batch`, or a blank or
            non-string name.
    """
    if class_names is None:
        return [default] * batch
    if not isinstance(class_names, (str, list, tuple)):
        raise ValueError(f"{argument} must be a string or a list of strings, got {class_names!r}.")
    names = [class_names] if isinstance(class_names, str) else list(class_names)
    if not names:
        raise ValueError(f"{argument} must be a string or a list of {batch} strings, got an empty list.")
    if len(names) == 1:
        names = names * batch
    if len(names) != batch:
        raise ValueError(f"{argument} must hold 1 or {batch} names (one per image), got {len(names)}.")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{argument}[{index}] must be a non-empty string, got {name!r}.")
    return [name.strip() for name in names]


class AnomalyDetectorMixin:
    """The detector contract, mixed into a `PreTrainedModel` (put it first among the bases).

    Subclasses set `detection_settings` (names from `genclip_hf.settings.SETTINGS` that `detect` accepts per call,
    with defaults read from the config) and implement `detect`. A tokenizer, needed by methods whose prompts hold
    class names, is read lazily from the checkpoint folder or bound with [`set_tokenizer`].
    """

    detection_settings: ClassVar[tuple[str, ...]] = ()
    training_defaults: ClassVar[dict[str, Any]] = {}
    """Training contract: the method's own defaults of `TrainingArguments` fields (e.g. its paper's learning rate)."""
    _tokenizer: Any = None

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        """`PreTrainedModel.from_pretrained`; a requested `dtype` applies to the wrapped CLIP too (transformers keeps a
        sub-model in the dtype its own sub-config records).

        Raises:
            ValueError: naming the checkpoint when its weights miss parameters of the model or hold others (a
                randomly initialised detector would give meaningless scores).
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
        if missing or unexpected:
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            raise ValueError(
                f"The weights of {str(source)!r} do not fit {cls.__name__}: {len(missing)} parameter(s) missing"
                + (f" (e.g. {missing[0]})" if missing else "")
                + f", {len(unexpected)} unexpected"
                + (f" (e.g. {unexpected[0]})" if unexpected else "")
                + f"; it is not a saved {cls.__name__} checkpoint, or its weights file is damaged."
            )
        if isinstance(kwargs.get("dtype"), torch.dtype):
            model.to(kwargs["dtype"])
        return (model, info) if output_loading_info else model

    def detect(
        self, pixel_values: torch.Tensor, class_names: list[str] | None = None, **settings: Any
    ) -> AnomalyDetectionOutput:
        """Anomaly maps and image scores of `pixel_values` `(B, 3, S, S)`; `class_names` holds one name per image (or
        `None`: the method's generic prompt)."""
        raise NotImplementedError(f"{type(self).__name__} must implement detect().")

    def build_reference_memory(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Few-shot contract (methods that have it): the memory of `k` normal reference images of one class,
        `pixel_values` `(k, 3, S, S)`, which `detect(..., reference_memory=memory)` compares patches with."""
        raise NotImplementedError(f"{type(self).__name__} has no few-shot mode.")

    @property
    def supports_few_shot(self) -> bool:
        """Whether the method implements [`build_reference_memory`]."""
        return type(self).build_reference_memory is not AnomalyDetectorMixin.build_reference_memory

    def learnable_parameters(self) -> list[torch.nn.Parameter]:
        """Training contract: the parameters the loss reaches (every trainable, non-empty parameter unless a method
        says otherwise; distributed training needs each of them to get a gradient)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad and parameter.numel() > 0]

    def frozen_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Training contract (methods that train): what the frozen backbone gives the trainable part for each image,
        `(B, ...)`. The training loop caches it on disk, so it must depend only on the image and the frozen weights."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to train.")

    def frozen_features_key(self) -> dict[str, Any]:
        """Training contract: everything besides the backbone weights and the preprocessing that decides
        [`frozen_features`] (method, layers, input size, ...); part of the feature cache's key."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to train.")

    def frozen_features_shape(self) -> tuple[int, ...]:
        """Training contract: the shape of one image's [`frozen_features`] (for the cache's size estimate)."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to train.")

    def training_loss(
        self,
        frozen_features: torch.Tensor,
        class_names: list[str],
        masks: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training contract: the method's loss on a batch.

        Args:
            frozen_features: `(B, ...)` from [`frozen_features`] (float32).
            class_names: the `B` class names of the images.
            masks: `(B, S, S)` binary ground truth at the model input size.
            labels: `(B,)` 0 normal / 1 anomalous.
        Returns:
            The scalar loss and, where the method has them, the `(L,)` loss of each layer (else `None`).
        """
        raise NotImplementedError(f"{type(self).__name__} has nothing to train.")

    def anomaly_map_range(self, **settings: Any) -> tuple[float, float]:
        """The values an anomaly map can take under `settings` (for colour maps that compare images): `(0, 1)`
        unless a method says otherwise."""
        return 0.0, 1.0

    def resolve_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Per-call `settings` validated, with every other detection setting taken from the config; `sigma` may not
        exceed the model input size (a wider Gaussian flattens the map, and its kernel would grow without bound)."""
        given = validate_settings(settings, self.detection_settings, owner=type(self).__name__)
        resolved = {}
        for name in self.detection_settings:
            resolved[name] = given[name] if name in given else SETTINGS[name].validate(getattr(self.config, name))
        if resolved.get("sigma", 0.0) > self.config.image_size:
            raise SettingError(
                f"sigma must be at most the model input size ({self.config.image_size} px), got {resolved['sigma']}."
            )
        return resolved

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        """Raise `ValueError` unless `pixel_values` is a float tensor `(B, 3, S, S)` at `config.image_size` with
        `B >= 1` and finite values (the processor's normalised images, not raw 0-255 pixels)."""
        size = self.config.image_size
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must have shape (batch, 3, {size}, {size}), got {shape}.")
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(
                f"pixel_values must be {size}x{size} (config.image_size), got {tuple(pixel_values.shape[-2:])}; "
                "prepare images with the model's processor."
            )
        if pixel_values.shape[0] < 1:
            raise ValueError("pixel_values must hold at least one image, got a batch of 0.")
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values must be a float tensor of normalised images, got {pixel_values.dtype}; prepare images "
                "with the model's processor."
            )
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(pixel_values).all()):
            raise ValueError("pixel_values holds NaN or infinite values; prepare images with the model's processor.")

    @property
    def tokenizer(self):
        """The tokenizer of the checkpoint (loaded on first use), or the one bound with [`set_tokenizer`]."""
        if self._tokenizer is None:
            source = getattr(self, "name_or_path", "") or getattr(self.config, "_name_or_path", "")
            if source:
                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                except (OSError, ValueError) as error:
                    logger.debug("No tokenizer in %s: %s", source, error)
        if self._tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} needs a tokenizer to turn class names into prompts: load it from a folder "
                "that holds the tokenizer files, or call model.set_tokenizer(tokenizer)."
            )
        return self._tokenizer

    def set_tokenizer(self, tokenizer) -> None:
        """Bind the tokenizer `detect` uses for class names (e.g. the processor's)."""
        self._tokenizer = tokenizer


_DETECTORS: dict[str, type] = {}
_PROCESSORS: dict[str, type] = {}
CLIP_FALLBACK_METHOD = "winclip"
"""The registered method a plain CLIP checkpoint runs (training-free)."""
DEFAULT_DETECTOR = "openai/clip-vit-base-patch16"
"""What runs when no model is named: a stock CLIP from the Hub, hence training-free WinCLIP zero-shot."""


def check_model_source(model: str | Path) -> None:
    """Raise `FileNotFoundError` when `model` is neither a folder nor a possible Hub id: a path that exists (a file),
    starts with `.`, `/` or `~`, or has more than one `/` can only be meant as a local folder."""
    text = str(model)
    if Path(text).is_dir():
        return
    if Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"Model {text!r} is not a model folder (nor a Hub id like 'owner/name').")


def register_detector(config_class: type[PreTrainedConfig], model_class: type, processor_class: type | None = None):
    """Make a detector loadable everywhere: Auto classes, [`AutoModelForAnomalyDetection`], the pipeline and the CLI.

    Args:
        config_class: its config class (with a unique `model_type`).
        model_class: the model class (an [`AnomalyDetectorMixin`] `PreTrainedModel`).
        processor_class: the processor saved beside it (default: none registered; the pipeline then builds an
            `AnomalyDetectionProcessor` from the config).
    """
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    if processor_class is not None:
        AutoProcessor.register(config_class, processor_class, exist_ok=True)
    _DETECTORS[config_class.model_type] = model_class
    if processor_class is not None:
        _PROCESSORS[config_class.model_type] = processor_class


def registered_detectors() -> dict[str, type]:
    """`model_type` -> model class of every registered detector."""
    return dict(_DETECTORS)


def registered_processor_class(model_type: str) -> type:
    """The processor class registered for a detector's `model_type` (default: `AnomalyDetectionProcessor`)."""
    from .processing_anomaly_detection import AnomalyDetectionProcessor

    return _PROCESSORS.get(model_type, AnomalyDetectionProcessor)


class AutoModelForAnomalyDetection:
    """Loads any registered detector from a folder or Hub id; a plain CLIP checkpoint becomes a training-free WinCLIP.

    Example:

    ```python
    >>> from genclip_hf import AutoModelForAnomalyDetection
    >>> model = AutoModelForAnomalyDetection.from_pretrained("openai/clip-vit-base-patch16")  # WinCLIP zero-shot
    ```
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any):
        kwargs.pop("_from_pipeline", None)
        check_model_source(pretrained_model_name_or_path)
        try:
            return cls._load(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise SafetensorError(
                f"Cannot read the weights of {str(pretrained_model_name_or_path)!r} (a truncated or damaged "
                f"safetensors file?): {error}"
            ) from None

    @classmethod
    def _load(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any):
        hub_options = {
            key: kwargs[key] for key in ("revision", "token", "cache_dir", "local_files_only") if key in kwargs
        }
        config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_options)
        if isinstance(config, CLIPConfig) and CLIP_FALLBACK_METHOD in _DETECTORS:
            logger.warning(
                "%s is a plain CLIP checkpoint: running training-free %s zero-shot on it.",
                pretrained_model_name_or_path,
                _DETECTORS[CLIP_FALLBACK_METHOD].__name__,
            )
            return _DETECTORS[CLIP_FALLBACK_METHOD].from_clip(pretrained_model_name_or_path, **kwargs)
        model_class = _DETECTORS.get(getattr(config, "model_type", None))
        if model_class is None:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {config.model_type!r} model, which is not an anomaly "
                f"detector; expected a CLIP checkpoint or one of {sorted(_DETECTORS)}."
            )
        return model_class.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


__all__ = [
    "AnomalyDetectionOutput",
    "AnomalyDetectorMixin",
    "AutoModelForAnomalyDetection",
    "DEFAULT_DETECTOR",
    "check_model_source",
    "expand_class_names",
    "register_detector",
    "registered_detectors",
    "registered_processor_class",
]
