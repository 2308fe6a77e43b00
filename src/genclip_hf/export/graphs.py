"""Each method's `detect` as one traceable module: pixels and precomputed text tensors in, anomaly maps and image
scores out, with the settings fixed when the module is built.

The modules call the detectors' own functions; they differ from `detect` only where `detect` does work that cannot be
traced, and that work is done beforehand ([`genclip_hf.export.recipes`]): tokenising class names and encoding text that
does not depend on the image. Data-dependent shapes are avoided (GenCLIP's text runs on the full padded prompt, which
the causal mask makes equal to the truncated run; WinCLIP's windows run in one batch instead of in chunks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from ..clip_backbone import embed_images
from ..modeling_winclip import anomaly_probabilities, harmonic_mean, window_patch_indices
from ..scoring import gaussian_smooth, segmentation_and_scores


class GenCLIPGraph(nn.Module):
    """GenCLIP's `detect` (vision pass, CNF, both branches, Eqs. 8-10) under fixed settings.

    Each image brings two candidate prompts: candidate 0 holds its class name (cleaned by CNF when CNF is on),
    candidate 1 the generic term. With CNF the image keeps candidate 0 only when CLIP finds it strictly closer to the
    class sentence than to the generic sentence, as [`ClassNameFilter`] decides; without CNF candidate 0 is used.
    The vision-enhanced prompts then go through the text encoder inside the graph, since their vision prompts `V_P`
    depend on the image.

    Args:
        model: a [`GenCLIPModel`] in eval mode.
        settings: its resolved detection settings (`model.resolve_settings`).
    """

    def __init__(self, model: Any, settings: dict[str, Any]):
        super().__init__()
        self.model = model
        self.use_cnf = settings["use_cnf"]
        self.use_query_branch = settings["use_query_branch"]
        self.use_vision_prompts = settings["use_vision_prompts"]
        self.layer_indices = model._layer_indices(settings["feature_layers"])
        self.alpha = settings["alpha"]
        self.sigma = settings["sigma"]

    def forward(
        self,
        pixel_values: torch.Tensor,
        prompt_ids: torch.Tensor,
        query_positions: torch.Tensor,
        eot_positions: torch.Tensor,
        sentence_embeds: torch.Tensor,
        query_text_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            pixel_values: `(B, 3, S, S)` processed images.
            prompt_ids: `(B, 2, 2, T)` ids of (candidate, state) prompts, padded to a common `T`.
            query_positions, eot_positions: `(B, 2, 2)` slot positions of those prompts.
            sentence_embeds: `(B, 2, projection_dim)` normalised CNF sentence embeddings (class, generic).
            query_text_embeds: `(2, projection_dim)` text embeddings `F_Q` of the query-only branch.
        Returns:
            `anomaly_maps` `(B, S, S)`, `pred_scores` `(B,)` and `keeps_class_name` `(B,)` bool (CNF's decision).
        """
        model = self.model
        config = model.config
        vision = model.encode_image(pixel_values, return_image_embeds=self.use_cnf)
        if self.use_cnf:
            images = functional.normalize(vision.image_embeds.float(), dim=-1)
            similarity = torch.einsum("bd,bcd->bc", images, sentence_embeds)
            keeps_class_name = similarity[:, 0] > similarity[:, 1]
        else:
            keeps_class_name = torch.ones_like(pixel_values[:, 0, 0, 0], dtype=torch.bool)
        choose = keeps_class_name[:, None]
        text_embeds = self.text_embeddings(
            vision.layer_features,
            torch.where(choose[..., None], prompt_ids[:, 0], prompt_ids[:, 1]),
            torch.where(choose, query_positions[:, 0], query_positions[:, 1]),
            torch.where(choose, eot_positions[:, 0], eot_positions[:, 1]),
        )
        vision_maps = model.score_maps(vision.layer_features, text_embeds)[:, self.layer_indices, 1]
        query_maps = None
        if self.use_query_branch:
            query_maps = model.score_maps(vision.layer_features, query_text_embeds)[:, self.layer_indices, 1]
        anomaly_maps, scores = segmentation_and_scores(
            vision_maps, query_maps, self.alpha, self.sigma, config.top_n1, config.top_n2
        )
        return anomaly_maps.float(), scores.float(), keeps_class_name

    def text_embeddings(
        self,
        layer_features: torch.Tensor,
        input_ids: torch.Tensor,
        query_positions: torch.Tensor,
        eot_positions: torch.Tensor,
    ) -> torch.Tensor:
        """[`GenCLIPModel.text_embeddings`] on the full padded prompts (no data-dependent truncation).

        Args:
            layer_features: `(B, L, 1 + H*W, vision_width)`.
            input_ids: `(B, 2, T)`; query_positions, eot_positions: `(B, 2)`.
        Returns:
            `(B, L, 2, projection_dim)` normalised text embeddings.
        """
        learner = self.model.prompt_learner
        batch, num_layers = layer_features.shape[:2]
        vision_prompts = learner.vision_prompts(layer_features) if self.use_vision_prompts else None
        query_embeds = learner.query_prompts(vision_prompts, (batch, num_layers))
        text_embeds = learner.encode(
            self.model.clip,
            input_ids.repeat_interleave(num_layers, dim=0),
            query_positions.repeat_interleave(num_layers, dim=0),
            eot_positions.repeat_interleave(num_layers, dim=0),
            query_embeds.flatten(0, 1),
            truncate=False,
        )
        return text_embeds.reshape(batch, num_layers, 2, -1)


class WinCLIPGraph(nn.Module):
    """WinCLIP's zero-shot `detect` under fixed window scales: full-image and window scores against each image's
    precomputed text embeddings, harmonic aggregation and upsampling.

    Args:
        model: a [`WinCLIPModel`] in eval mode.
        settings: its resolved detection settings.
    """

    def __init__(self, model: Any, settings: dict[str, Any]):
        super().__init__()
        self.model = model
        size = model.config.image_size
        patch = model.config.clip_config.vision_config.patch_size
        self.grid_size = (size // patch, size // patch)
        self.scales = model._window_scales(settings["window_scales"], self.grid_size)
        for scale in self.scales:
            self.register_buffer(f"windows_{scale}", window_patch_indices(*self.grid_size, scale), persistent=False)
            self.register_buffer(f"coverage_{scale}", self._coverage(scale), persistent=False)

    def _coverage(self, scale: int) -> torch.Tensor:
        """`(gh * gw,)` float32: how many windows of side `scale` cover each patch."""
        indices = window_patch_indices(*self.grid_size, scale).flatten()
        return torch.bincount(indices, minlength=self.grid_size[0] * self.grid_size[1]).float()

    def forward(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            pixel_values: `(B, 3, S, S)` processed images.
            text_embeds: `(B, 2, projection_dim)` each image's normal and anomalous text embedding.
        Returns:
            `anomaly_maps` `(B, S, S)` and `pred_scores` `(B,)`.
        """
        model = self.model
        batch = pixel_values.shape[0]
        tokens = embed_images(model.clip.vision_model, pixel_values)
        image_embeds = model._project_cls(model._run_tower(tokens))
        temperature = model.config.temperature
        image_scores = anomaly_probabilities(image_embeds[:, None], text_embeds, temperature)[:, 0]
        scale_maps = []
        for scale in self.scales:
            window_scores = anomaly_probabilities(self._window_embeddings(tokens, scale), text_embeds, temperature)
            scale_maps.append(self._harmonic_aggregation(window_scores, scale))
        image_map = image_scores[:, None, None, None].expand(batch, 1, *self.grid_size)
        grid_map = harmonic_mean(torch.cat([image_map, torch.stack(scale_maps, dim=1)], dim=1), dim=1)
        size = tuple(pixel_values.shape[-2:])
        anomaly_maps = functional.interpolate(grid_map[:, None], size=size, mode="bilinear", align_corners=False)
        return anomaly_maps[:, 0], image_scores

    def _window_embeddings(self, tokens: torch.Tensor, scale: int) -> torch.Tensor:
        """WinCLIP's window embeddings `(B, n_windows, projection_dim)`, all windows of all images in one batch."""
        batch, _, width = tokens.shape
        indices = getattr(self, f"windows_{scale}")
        patches = tokens[:, 1:][:, indices]
        cls = tokens[:, :1, None].expand(batch, indices.shape[0], 1, width)
        sequences = torch.cat([cls, patches], dim=2).flatten(0, 1)
        embeds = self.model._project_cls(self.model._run_tower(sequences))
        return embeds.reshape(batch, indices.shape[0], -1)

    def _harmonic_aggregation(self, window_scores: torch.Tensor, scale: int) -> torch.Tensor:
        """[`harmonic_aggregation`] with the window coverage precomputed: `(B, n_windows)` -> `(B, gh, gw)`."""
        indices = getattr(self, f"windows_{scale}")
        reciprocals = window_scores.reciprocal().repeat_interleave(indices.shape[1], dim=1)
        sums = reciprocals.new_zeros(reciprocals.shape[0], self.grid_size[0] * self.grid_size[1])
        sums = sums.index_add(1, indices.flatten(), reciprocals)
        return (getattr(self, f"coverage_{scale}") / sums).reshape(-1, *self.grid_size)


class AnomalyCLIPGraph(nn.Module):
    """AnomalyCLIP's `detect` under fixed feature layers and sigma; its object-agnostic text features are an input.

    Args:
        model: an [`AnomalyCLIPModel`] in eval mode.
        settings: its resolved detection settings.
    """

    def __init__(self, model: Any, settings: dict[str, Any]):
        super().__init__()
        self.model = model
        self.layers = list(settings["feature_layers"])
        self.sigma = settings["sigma"]

    def forward(self, pixel_values: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            pixel_values: `(B, 3, S, S)` processed images.
            text_features: `(2, projection_dim)` normalised text features (normal, abnormal).
        Returns:
            `anomaly_maps` `(B, S, S)` and `pred_scores` `(B,)`.
        """
        model = self.model
        vision = model.encode_image(pixel_values, self.layers)
        maps = model.similarity_maps(model.patch_similarity(vision.layer_tokens, text_features))
        layer_maps = (maps[:, :, 1] + 1 - maps[:, :, 0]) / 2
        anomaly_maps = gaussian_smooth(layer_maps.sum(dim=1), self.sigma)
        scores = model.image_logits(vision.image_embeds, text_features).softmax(dim=-1)[:, 1]
        return anomaly_maps, scores


__all__ = ["AnomalyCLIPGraph", "GenCLIPGraph", "WinCLIPGraph"]
