"""The "anomaly-detection" pipeline: any detector of this package (GenCLIP with CNF and dual-branch fusion, WinCLIP,
AnomalyCLIP, ...) through transformers' standard `Pipeline` machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from .detection import expand_class_names
from .images import to_rgb_image
from .processing_anomaly_detection import image_processor_for_model
from .scoring import resize_map
from .settings import SETTINGS, validate_settings


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
        score_threshold: image score from which the label is "anomalous"; default: the method's neutral threshold
            for the settings used.
        map_at_model_size: return the anomaly map at the model input size instead of the original size (the
            evaluation protocol scores maps at the model resolution).
        any setting of the model's `detection_settings` (GenCLIP: use_cnf, use_query_branch, use_vision_prompts,
            feature_layers, generic_term, alpha, sigma); default: the model's config.

    Returns one dict per image: `score` (float), `label` ("anomalous" | "normal"), `score_threshold` (the threshold
    the label used), `anomaly_map` (float32 array `(H, W)` at the original size), `class_name` (the name the model
    used, after CNF where the method has it), and `mask` when a threshold is given.
    """

    _load_processor = None
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.image_processor = image_processor_for_model(self.model, self.processor)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is not None:
            self.model.set_tokenizer(self.tokenizer)

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
        **settings: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params = {}
        if class_name is not None:
            preprocess_params["class_name"] = expand_class_names(class_name, 1, default="", argument="class_name")[0]
        forward_params = validate_settings(settings, self.model.detection_settings, owner=type(self.model).__name__)
        postprocess_params = {}
        for name, value in (("threshold", threshold), ("score_threshold", score_threshold)):
            if value is not None:
                postprocess_params[name] = SETTINGS[name].validate(value)
        if map_at_model_size is not None:
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
        output = self.model.detect(model_inputs["pixel_values"], class_names=names, **settings)
        batch = output.pred_scores.shape[0]
        return {
            "anomaly_maps": output.anomaly_maps,
            "pred_scores": output.pred_scores,
            "score_threshold": torch.full((batch,), float(output.score_threshold)),
            "class_names": output.class_names or [None] * batch,
            "original_size": model_inputs["original_size"],
        }

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
        if score_threshold is None:
            score_threshold = float(model_outputs["score_threshold"][0])
        names = model_outputs["class_names"]
        anomaly_map = anomaly_map.numpy().astype(np.float32)
        result = {
            "score": score,
            "label": "anomalous" if score >= score_threshold else "normal",
            "score_threshold": score_threshold,
            "anomaly_map": anomaly_map,
            "class_name": names if isinstance(names, str) or names is None else names[0],
        }
        if threshold is not None:
            result["mask"] = anomaly_map >= threshold
        return result


__all__ = ["AnomalyDetectionPipeline"]
