"""The "anomaly-detection" pipeline: any detector of this package (GenCLIP with CNF and dual-branch fusion, WinCLIP,
AnomalyCLIP, ...) through transformers' standard `Pipeline` machinery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.utils import PROCESSOR_NAME

from .calibration import CALIBRATION_FILE, Calibration, load_calibration
from .detection import expand_class_names
from .images import image_content_hash, to_rgb_image
from .processing_anomaly_detection import image_processor_for_model
from .scoring import resize_map
from .settings import SETTINGS, validate_settings
from .storage import json_digest


class AnomalyDetectionPipeline(Pipeline):
    """Zero-shot anomaly detection and localisation with any detector model (`model.detect`).

    For a [`GenCLIPModel`] one frozen vision pass per image feeds class-name filtering (CNF), the vision-enhanced
    branch (Eq. 6) and the query-only branch (Eq. 7); the maps are fused and smoothed (Eq. 8) and scored (Eqs. 9-10)
    at the model resolution, then the map is resized to the original image size. A plain CLIP checkpoint runs
    training-free WinCLIP.

    Example:

    ```python
    >>> import genclip_hf
    >>> from transformers import pipeline
    >>> detector = pipeline("anomaly-detection", model="path/or/hub-id")
    >>> result = detector("part.png", class_name="metal plate", threshold=2.0)
    >>> result["score"], result["label"], result["anomaly_map"].shape, result["mask"].shape
    ```

    Inputs: a PIL image, a path or a numpy array (grayscale, RGBA and 16-bit are converted), a `{"image": ...,
    "class_name": ...}` dict, a list of them, a generator, or a dataset column (`KeyDataset(dataset, "image")`);
    `batch_size`, `num_workers`, `device` and `dtype` work as in every transformers pipeline.

    Arguments (when the pipeline is built or per call):
        class_name: one name for every image, or (with a list of images) one per image; default: the method's
            generic prompt.
        threshold: pixel threshold on the anomaly map; adds a boolean `"mask"` to each result.
        score_threshold: image score from which the label is "anomalous".
        reference_images: a few normal images of the same class (few-shot): patch features of these images form a
            nearest-neighbour memory (built once per set of images and cached) whose distance map is fused with the
            zero-shot map (see the method's `few_shot_weight`).
        map_at_model_size: return the anomaly map at the model input size instead of the original size (the
            evaluation protocol scores maps at the model resolution).
        any setting of the model's `detection_settings` (GenCLIP: use_cnf, use_query_branch, use_vision_prompts,
            feature_layers, generic_term, alpha, sigma, few_shot_weight); default: the model's config.

    Thresholds, by priority: the call's (or the pipeline's) `threshold` / `score_threshold`; else the model folder's
    `calibration.json` (written by `genclip calibrate`; per class where it has the class, and only for calls with the
    settings it was calibrated with); else the method's neutral score threshold and no mask. Pass
    `calibration=False` when building the pipeline to ignore the file, or a path / `Calibration` to use another.

    Returns one dict per image: `score` (float), `label` ("anomalous" | "normal"), `score_threshold` and
    `threshold_source` (the image threshold the label used and where it came from), `anomaly_map` (float32 array
    `(H, W)` at the original size), `class_name` (the name the model used, after CNF where the method has it), and,
    when a pixel threshold applies, `mask` with `pixel_threshold` and `pixel_threshold_source`.
    """

    _load_processor = None
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, calibration: str | Path | Calibration | bool | None = None, **kwargs):
        self._reference_memories: dict[str, dict[str, torch.Tensor]] = {}
        super().__init__(*args, **kwargs)
        if self.processor is None:
            self._check_saved_processor()
        self.image_processor = image_processor_for_model(self.model, self.processor)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is not None:
            self.model.set_tokenizer(self.tokenizer)
        self.calibration = self._load_calibration(calibration)

    def _check_saved_processor(self) -> None:
        """Raise `ValueError` naming the model folder's processor file when it is not a JSON object (transformers then
        passes no processor, and the preprocessing would silently fall back to the config's)."""
        path = Path(str(getattr(self.model, "name_or_path", "") or "")) / PROCESSOR_NAME
        if not path.is_file():
            return
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"The model's processor file {path} cannot be read: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"The model's processor file {path} must hold a JSON object, got {type(values).__name__}.")

    def _load_calibration(self, calibration: str | Path | Calibration | bool | None) -> Calibration | None:
        if calibration is False:
            return None
        if isinstance(calibration, Calibration):
            return calibration
        if calibration is None or calibration is True:
            folder = Path(str(getattr(self.model, "name_or_path", "") or ""))
            calibration = folder / CALIBRATION_FILE
            if not calibration.is_file():
                return None
        return load_calibration(calibration)

    def __call__(self, inputs: Any, class_name: str | list[str] | None = None, **kwargs: Any):
        """Detect anomalies; one image gives one dict, a list gives a list, a generator or dataset an iterator.

        A list of class names goes with a list of images, one name per image.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list):
            if not inputs:
                raise ValueError("images must hold at least one image, got an empty list.")
            inputs = [
                {"name": f"images[{index}]", **(item if isinstance(item, dict) else {"image": item})}
                for index, item in enumerate(inputs)
            ]
        if isinstance(class_name, (list, tuple)):
            if not isinstance(inputs, list):
                raise ValueError("class_name may be a list only when images is a list (one name per image).")
            names = expand_class_names(class_name, len(inputs), default="", argument="class_name")
            inputs = [{**item, "class_name": name} for item, name in zip(inputs, names, strict=True)]
            class_name = None
        if class_name is not None:
            kwargs["class_name"] = class_name
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        class_name: str | None = None,
        threshold: float | None = None,
        score_threshold: float | None = None,
        map_at_model_size: bool | None = None,
        reference_images: list | None = None,
        **settings: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params = {}
        if class_name is not None:
            preprocess_params["class_name"] = expand_class_names(class_name, 1, default="", argument="class_name")[0]
        forward_params = validate_settings(settings, self.model.detection_settings, owner=type(self.model).__name__)
        if reference_images is not None:
            if not self.model.supports_few_shot:
                raise ValueError(f"reference_images: {type(self.model).__name__} has no few-shot mode.")
            if isinstance(reference_images, (str, Path)) or not isinstance(reference_images, (list, tuple)):
                raise ValueError("reference_images must be a list of normal images (PIL images, paths or arrays).")
            if not reference_images:
                raise ValueError("reference_images must hold at least one normal image, got an empty list.")
            forward_params["reference_images"] = list(reference_images)
        postprocess_params = {}
        for name, value in (("threshold", threshold), ("score_threshold", score_threshold)):
            if value is not None:
                postprocess_params[name] = SETTINGS[name].validate(value)
        if map_at_model_size is not None:
            if not isinstance(map_at_model_size, (bool, np.bool_)):
                raise ValueError(f"map_at_model_size must be True or False, got {map_at_model_size!r}.")
            postprocess_params["map_at_model_size"] = bool(map_at_model_size)
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs: Any, class_name: str | None = None) -> dict[str, Any]:
        name = "image"
        if isinstance(inputs, dict):
            if "image" not in inputs:
                raise ValueError(f"A dict input needs an 'image' key, got keys {sorted(inputs)}.")
            class_name = inputs.get("class_name", class_name)
            name = inputs.get("name", name)
            inputs = inputs["image"]
        image = to_rgb_image(inputs, str(inputs) if isinstance(inputs, (str, Path)) else name)
        pixel_values = self.image_processor([image], return_tensors="pt")["pixel_values"]
        width, height = image.info.get("original_size", image.size)
        return {
            "pixel_values": pixel_values.to(self.dtype),
            "class_name": class_name,
            "original_size": torch.tensor([[height, width]]),
        }

    def _forward(self, model_inputs: dict[str, Any], **settings: Any) -> dict[str, Any]:
        names = model_inputs["class_name"]
        names = [names] if names is None or isinstance(names, str) else list(names)
        if all(name is None for name in names):
            names = None
        elif any(name is None for name in names):
            raise ValueError("Give a class_name for every image of a batch or for none of them.")
        reference_images = settings.pop("reference_images", None)
        if reference_images is not None:
            settings["reference_memory"] = self.reference_memory(reference_images)
        output = self.model.detect(model_inputs["pixel_values"], class_names=names, **settings)
        batch = output.pred_scores.shape[0]
        settings.pop("reference_memory", None)
        calibrated = self.calibration is not None and (
            reference_images is None and self.model.resolve_settings(settings) == self.calibration.settings
        )
        return {
            "anomaly_maps": output.anomaly_maps,
            "pred_scores": output.pred_scores,
            "score_threshold": torch.full((batch,), float(output.score_threshold)),
            "calibrated": torch.full((batch,), calibrated),
            "class_names": output.class_names or [None] * batch,
            "requested_class_names": names or [None] * batch,
            "original_size": model_inputs["original_size"],
        }

    def reference_memory(self, reference_images: list) -> dict[str, torch.Tensor]:
        """The model's few-shot memory of `reference_images`, built once per set of images (keyed by their pixels)."""
        images = [to_rgb_image(image, f"reference_images[{index}]") for index, image in enumerate(reference_images)]
        key = json_digest([image_content_hash(image) for image in images])
        if key not in self._reference_memories:
            pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
            memory = self.model.build_reference_memory(pixel_values.to(self.device, self.dtype))
            self._reference_memories[key] = memory
        return self._reference_memories[key]

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        threshold: float | None = None,
        score_threshold: float | None = None,
        map_at_model_size: bool = False,
    ) -> dict[str, Any]:
        anomaly_map = model_outputs["anomaly_maps"][0].float()
        if not map_at_model_size:
            anomaly_map = resize_map(anomaly_map, tuple(model_outputs["original_size"][0].tolist()))
        score = float(model_outputs["pred_scores"][0])
        requested = _first(model_outputs["requested_class_names"])
        calibrated = None
        if bool(model_outputs["calibrated"][0]):
            calibrated = self.calibration.for_class(requested)
        score_source = pixel_source = "argument"
        if score_threshold is None:
            if calibrated is not None and calibrated.image_threshold is not None:
                score_threshold, score_source = calibrated.image_threshold, self.calibration.describe(requested)
            else:
                score_threshold, score_source = float(model_outputs["score_threshold"][0]), "method default"
        if threshold is None and calibrated is not None and calibrated.pixel_threshold is not None:
            threshold, pixel_source = calibrated.pixel_threshold, self.calibration.describe(requested)
        anomaly_map = anomaly_map.numpy().astype(np.float32)
        result = {
            "score": score,
            "label": "anomalous" if score >= score_threshold else "normal",
            "score_threshold": score_threshold,
            "threshold_source": score_source,
            "anomaly_map": anomaly_map,
            "class_name": _first(model_outputs["class_names"]),
        }
        if threshold is not None:
            result.update(mask=anomaly_map >= threshold, pixel_threshold=threshold, pixel_threshold_source=pixel_source)
        return result


def _first(names: str | list | None) -> str | None:
    """A class name of an unbatched output (a string after unbatching, a one-element list at batch size 1)."""
    return names if isinstance(names, str) or names is None else names[0]


__all__ = ["AnomalyDetectionPipeline"]
