"""The "anomaly-detection" pipeline: GenCLIP's dual-branch inference with class-name filtering (paper Sec. 3.4-3.5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from .class_names import ClassNameFilter, clip_text_encoder
from .processing_genclip import ImageLike, to_rgb_image
from .scoring import resize_map, segmentation_and_scores

SWITCHES = ("use_cnf", "use_query_branch", "use_vision_prompts", "feature_layers", "generic_term", "alpha", "sigma")


class AnomalyDetectionPipeline(Pipeline):
    """Zero-shot anomaly detection and localisation with a [`GenCLIPModel`].

    One frozen vision pass per image feeds class-name filtering (CNF), the vision-enhanced branch (Eq. 6) and the
    query-only branch (Eq. 7, its text embeddings computed once per model); the maps are fused and smoothed (Eq. 8)
    and scored (Eqs. 9-10) at the model resolution, then the map is resized to the original image size.

    Example:

    ```python
    >>> import genclip_hf
    >>> from transformers import pipeline
    >>> detector = pipeline("anomaly-detection", model="path/or/hub-id")
    >>> result = detector("part.png", class_name="metal plate", threshold=2.0)
    >>> result["score"], result["label"], result["anomaly_map"].shape, result["mask"].shape
    ```

    Call arguments:
        images: a PIL image, a path or a numpy array, or a list of them (grayscale, RGBA and 16-bit are converted).
        class_name: one name for all images or one per image; defaults to the generic term.
        threshold: pixel threshold on the anomaly map; adds a boolean `"mask"` to each result.
        score_threshold: image score from which the label is "anomalous"; defaults to `config.score_threshold`
            (half the number of feature layers when unset).
        batch_size: images per forward pass.
        map_at_model_size: return the anomaly map at `image_size` x `image_size` instead of the original size (the
            evaluation protocol scores maps at the model resolution).
        use_cnf, use_query_branch, use_vision_prompts, feature_layers (a subset of the trained layers),
        generic_term, alpha, sigma: the paper's ablation switches; default to the model config.

    Returns one dict per image: `score` (float), `label` ("anomalous" | "normal"), `anomaly_map` (float32 array
    `(H, W)` at the original size), `class_name` (the name the vision-enhanced branch used), and `mask` when a
    threshold is given.
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._class_name_filters: dict[str, ClassNameFilter] = {}

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        score_threshold: float | None = None,
        map_at_model_size: bool = False,
        **switches: Any,
    ) -> tuple[dict, dict, dict]:
        unknown = set(switches) - set(SWITCHES)
        if unknown:
            raise TypeError(f"Unknown anomaly-detection argument(s) {sorted(unknown)}; expected one of {SWITCHES}.")
        postprocess_params = {
            "threshold": threshold,
            "score_threshold": score_threshold,
            "map_at_model_size": map_at_model_size,
        }
        forward_params = {name: value for name, value in switches.items() if value is not None}
        return {}, forward_params, postprocess_params

    def __call__(
        self,
        images: ImageLike | Sequence[ImageLike],
        class_name: str | Sequence[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> dict | list[dict]:
        """Detect anomalies; a single image gives one dict, a list gives a list (see the class docstring)."""
        single = not isinstance(images, (list, tuple))
        image_list = [images] if single else list(images)
        if not image_list:
            raise ValueError("images must hold at least one image, got an empty list.")
        _, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        forward_params = {**self._forward_params, **forward_params}
        if class_name is None:
            class_name = forward_params.get("generic_term", self.model.config.generic_term)
        class_names = self.processor.expand_class_names(class_name, len(image_list), argument="class_name")
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        batch_size = batch_size or self._batch_size or 1
        results: list[dict] = []
        for start in range(0, len(image_list), batch_size):
            model_inputs = self.preprocess(
                image_list[start : start + batch_size], class_names=class_names[start : start + batch_size]
            )
            model_outputs = self.forward(model_inputs, **forward_params)
            results.extend(self.postprocess(model_outputs, **postprocess_params))
        return results[0] if single else results

    def preprocess(self, images: Sequence[ImageLike], class_names: Sequence[str]) -> dict[str, Any]:
        rgb_images = [to_rgb_image(image, f"images[{index}]") for index, image in enumerate(images)]
        inputs = dict(self.processor(images=rgb_images))
        return {
            "pixel_values": inputs["pixel_values"],
            "generic": {key: value for key, value in inputs.items() if key.startswith("generic_")},
            "class_names": list(class_names),
            "original_sizes": [(image.height, image.width) for image in rgb_images],
        }

    def _filter_class_names(self, image_embeds: torch.Tensor, class_names: list[str], generic_term: str) -> list[str]:
        if generic_term not in self._class_name_filters:
            encoder = clip_text_encoder(self.model.clip, self.processor.tokenizer)
            self._class_name_filters[generic_term] = ClassNameFilter(encoder, generic_term)
        return self._class_name_filters[generic_term](image_embeds, class_names)

    def _layer_indices(self, feature_layers: Sequence[int] | None) -> list[int]:
        trained = list(self.model.config.feature_layers)
        if feature_layers is None:
            return list(range(len(trained)))
        missing = [layer for layer in feature_layers if layer not in trained]
        if missing or not feature_layers:
            raise ValueError(
                f"feature_layers must be a non-empty subset of the model's trained layers {trained}, "
                f"got {list(feature_layers)}."
            )
        return [trained.index(layer) for layer in feature_layers]

    def _forward(self, model_inputs: dict[str, Any], **switches: Any) -> dict[str, Any]:
        config = self.model.config
        use_cnf = switches.get("use_cnf", config.use_cnf)
        use_query_branch = switches.get("use_query_branch", config.use_query_branch)
        generic_term = switches.get("generic_term", config.generic_term)
        alpha = switches.get("alpha", config.alpha)
        sigma = switches.get("sigma", config.sigma)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        layer_indices = self._layer_indices(switches.get("feature_layers"))

        vision = self.model.encode_image(model_inputs["pixel_values"], return_image_embeds=use_cnf)
        if use_cnf:
            class_names = self._filter_class_names(vision.image_embeds, model_inputs["class_names"], generic_term)
        else:
            class_names = [name.strip() for name in model_inputs["class_names"]]
        prompts = {key: value.to(self.device) for key, value in self.processor.prompt_inputs(class_names).items()}
        text_embeds = self.model.text_embeddings(
            vision.layer_features, **prompts, use_vision_prompts=switches.get("use_vision_prompts")
        )
        vision_maps = self.model.score_maps(vision.layer_features, text_embeds)[:, layer_indices, 1]
        query_maps = None
        if use_query_branch:
            generic = model_inputs["generic"]
            query_text = self.model.query_text_embeddings(
                generic["generic_input_ids"], generic["generic_query_positions"], generic["generic_eot_positions"]
            )
            query_maps = self.model.score_maps(vision.layer_features, query_text)[:, layer_indices, 1]
        segmentation, scores = segmentation_and_scores(
            vision_maps, query_maps, alpha, sigma, config.top_n1, config.top_n2
        )
        return {
            "segmentation": segmentation,
            "scores": scores,
            "class_names": class_names,
            "original_sizes": model_inputs["original_sizes"],
        }

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        threshold: float | None = None,
        score_threshold: float | None = None,
        map_at_model_size: bool = False,
    ) -> list[dict[str, Any]]:
        if score_threshold is None:
            score_threshold = self.model.config.image_score_threshold
        results = []
        for segmentation, score, class_name, size in zip(
            model_outputs["segmentation"],
            model_outputs["scores"].tolist(),
            model_outputs["class_names"],
            model_outputs["original_sizes"],
            strict=True,
        ):
            if not map_at_model_size:
                segmentation = resize_map(segmentation.float(), tuple(size))
            anomaly_map = segmentation.float().numpy().astype(np.float32)
            result = {
                "score": float(score),
                "label": "anomalous" if score >= score_threshold else "normal",
                "anomaly_map": anomaly_map,
                "class_name": class_name,
            }
            if threshold is not None:
                result["mask"] = anomaly_map >= threshold
            results.append(result)
        return results


__all__ = ["SWITCHES", "AnomalyDetectionPipeline"]
