"""PyTorch GenCLIP model: a frozen HF CLIP backbone with GenCLIP's multi-layer prompt learner (paper Eqs. 1-7)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from transformers import CLIPModel, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from .class_names import ClassNameFilter, clip_text_encoder, normalize_class_name
from .clip_backbone import run_vision_layers
from .clip_detector import FrozenCLIPDetector
from .configuration_genclip import GenCLIPConfig
from .detection import AnomalyDetectionOutput, expand_class_names
from .few_shot import nearest_neighbour_distances
from .losses import genclip_loss
from .prompts import TEMPLATE_NOUN, GenCLIPPromptLearner, PromptTokenizer
from .scoring import segmentation_and_scores


@dataclass
class GenCLIPVisionOutput(ModelOutput):
    """Frozen CLIP vision features of a batch of images.

    Args:
        layer_features (`torch.FloatTensor` of shape `(B, L, 1 + H*W, vision_width)`):
            Outputs of the feature layers (`config.feature_layers`), CLS token first.
        image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`, *optional*):
            CLIP's image embedding (post-layernorm CLS of the last layer, projected), used by class-name filtering.
    """

    layer_features: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


@dataclass
class GenCLIPOutput(ModelOutput):
    """Output of [`GenCLIPModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `masks` is given):
            Eq. 5 summed over the feature layers.
        layer_loss (`torch.FloatTensor` of shape `(L,)`, *optional*, returned when `masks` is given):
            The loss of each feature layer.
        layer_maps (`torch.FloatTensor` of shape `(B, L, 2, image_size, image_size)`):
            Softmax score maps `S_V^i` of the vision-enhanced branch (Eqs. 4/6); channel 1 is the anomaly probability.
        image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`, *optional*):
            Frozen CLIP image embedding used by class-name filtering.
        text_embeds (`torch.FloatTensor` of shape `(B, L, 2, projection_dim)`):
            Normalised text embeddings `F_T^i` (normal, abnormal) of each image and layer.
    """

    loss: torch.FloatTensor | None = None
    layer_loss: torch.FloatTensor | None = None
    layer_maps: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


class GenCLIPPreTrainedModel(PreTrainedModel):
    config: GenCLIPConfig
    config_class = GenCLIPConfig
    base_model_prefix = "genclip"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Prompt tokens ~ N(0, prompt_init_std^2); GenCLIP's linear layers keep PyTorch's default init."""
        if isinstance(module, GenCLIPPromptLearner):
            module.reset_prompt_tokens(self.config.prompt_init_std)
        elif isinstance(module, nn.Linear):
            module.reset_parameters()


class GenCLIPModel(FrozenCLIPDetector, GenCLIPPreTrainedModel):
    """GenCLIP: a frozen [`CLIPModel`] plus the learnable prompt learner and per-layer patch projections.

    Only the prompt tokens, the vision-prompt projections `MLP_T^i`, the patch projections `MLP_I^i` and the deep
    text prompts are trainable; the CLIP weights never change. `forward` is the training path (maps and Eq. 5);
    `detect` is the inference of the paper (Sec. 3.4-3.5).
    """

    detection_settings = (
        "use_cnf",
        "use_query_branch",
        "use_vision_prompts",
        "feature_layers",
        "generic_term",
        "alpha",
        "sigma",
        "few_shot_weight",
    )
    training_defaults = {"learning_rate": 4e-5}

    def __init__(self, config: GenCLIPConfig, clip_model: CLIPModel | None = None):
        super().__init__(config)
        self.attach_clip(clip_model)
        self.prompt_learner = GenCLIPPromptLearner(config)
        vision_width = config.clip_config.vision_config.hidden_size
        self.patch_projections = nn.ModuleList(
            nn.Linear(vision_width, config.clip_config.projection_dim) for _ in config.feature_layers
        )
        self._query_text_cache: dict[tuple, torch.Tensor] = {}
        self._class_name_filters: dict[str, ClassNameFilter] = {}
        self._prompt_tokenizer: PromptTokenizer | None = None
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Save weights (safetensors) and config; for Hub use, also the pipeline code beside the modeling code."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is not None:
            from .pipeline_anomaly_detection import AnomalyDetectionPipeline

            custom_object_save(AnomalyDetectionPipeline, save_directory)

    def set_tokenizer(self, tokenizer) -> None:
        """Bind the CLIP tokenizer that turns class names into prompts."""
        super().set_tokenizer(tokenizer)
        self._prompt_tokenizer = None
        self._class_name_filters = {}

    @property
    def grid_size(self) -> int:
        """Side H = W of the patch grid at `config.image_size`."""
        return self.config.image_size // self.config.clip_config.vision_config.patch_size

    @property
    def prompt_tokenizer(self) -> PromptTokenizer:
        """Class names to prompt ids under this model's config."""
        if self._prompt_tokenizer is None:
            self._prompt_tokenizer = PromptTokenizer.from_config(self.tokenizer, self.config)
        return self._prompt_tokenizer

    def prompt_inputs(self, class_names: list[str]) -> dict[str, torch.Tensor]:
        """`input_ids` `(B, 2, T)`, `query_positions` and `eot_positions` `(B, 2)` of one name per image, on the
        model's device."""
        return {name: tensor.to(self.device) for name, tensor in self.prompt_tokenizer(class_names).items()}

    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor, return_image_embeds: bool = True) -> GenCLIPVisionOutput:
        """One frozen vision pass, stopped after the last layer that is needed.

        Args:
            pixel_values: `(B, 3, image_size, image_size)` normalised images (see [`GenCLIPProcessor`]).
            return_image_embeds: also compute CLIP's image embedding (runs to the last vision layer).
        Returns:
            [`GenCLIPVisionOutput`] with `layer_features` `(B, L, 1 + H*W, vision_width)`.
        """
        self.check_pixel_values(pixel_values)
        vision = self.clip.vision_model
        run = run_vision_layers(
            vision,
            pixel_values.to(self.dtype),
            self.config.feature_layers,
            self.config.position_interpolation,
            run_to_end=return_image_embeds,
        )
        image_embeds = None
        if return_image_embeds:
            image_embeds = self.clip.visual_projection(vision.post_layernorm(run.last_hidden_state[:, 0]))
        return GenCLIPVisionOutput(layer_features=torch.stack(run.layer_outputs, dim=1), image_embeds=image_embeds)

    def text_embeddings(
        self,
        layer_features: torch.Tensor,
        input_ids: torch.Tensor,
        query_positions: torch.Tensor,
        eot_positions: torch.Tensor,
        use_vision_prompts: bool | None = None,
    ) -> torch.Tensor:
        """Text embeddings `F_T^i` of the vision-enhanced prompts (Eqs. 1-2 and the text path).

        Args:
            layer_features: `(B, L, 1 + H*W, vision_width)`.
            input_ids: `(B, 2, T)` prompt ids of each image's class name (normal, abnormal).
            query_positions, eot_positions: `(B, 2)` slot positions from the processor.
            use_vision_prompts: add the vision prompts V_P (MVP); defaults to `config.use_vision_prompts`.
        Returns:
            `(B, L, 2, projection_dim)` normalised text embeddings.
        """
        if use_vision_prompts is None:
            use_vision_prompts = self.config.use_vision_prompts
        batch, num_layers = layer_features.shape[:2]
        vision_prompts = self.prompt_learner.vision_prompts(layer_features) if use_vision_prompts else None
        query_embeds = self.prompt_learner.query_prompts(vision_prompts, (batch, num_layers))

        def per_layer(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.repeat_interleave(num_layers, dim=0)

        text_embeds = self.prompt_learner.encode(
            self.clip,
            per_layer(input_ids),
            per_layer(query_positions),
            per_layer(eot_positions),
            query_embeds.flatten(0, 1),
        )
        return text_embeds.reshape(batch, num_layers, 2, -1)

    def query_text_embeddings(self) -> torch.Tensor:
        """Text embeddings `F_Q` of the query-only prompt (Eq. 7): no vision prompt, no class name.

        They do not depend on the image, so outside autograd they are computed once and cached until a learnable
        parameter changes.

        Returns:
            `(2, projection_dim)` normalised text embeddings.
        """
        prompts = self.prompt_inputs([TEMPLATE_NOUN])
        use_cache = not torch.is_grad_enabled()
        key = (
            tuple(parameter._version for parameter in self.prompt_learner.parameters()),
            self.dtype,
            self.device,
        )
        if use_cache and key in self._query_text_cache:
            return self._query_text_cache[key]
        query_embeds = self.prompt_learner.query_prompts(None, (1,))
        text_embeds = self.prompt_learner.encode(
            self.clip, prompts["input_ids"], prompts["query_positions"], prompts["eot_positions"], query_embeds
        )[0]
        if use_cache:
            self._query_text_cache = {key: text_embeds}
        return text_embeds

    def score_maps(self, layer_features: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Eqs. 3-4: `softmax(up(logit_scale * <F_I^i, F_T^i>))` for every feature layer.

        Args:
            layer_features: `(B, L, 1 + H*W, vision_width)`.
            text_embeds: `(B, L, 2, projection_dim)` or `(2, projection_dim)` (shared by all images and layers).
        Returns:
            `(B, L, 2, image_size, image_size)` softmax maps; channel 1 is the anomaly probability.
        """
        batch, num_layers, tokens = layer_features.shape[:3]
        grid = self.grid_size
        if tokens != 1 + grid * grid:
            raise ValueError(
                f"layer_features must hold 1 + {grid}x{grid} tokens per layer for image_size "
                f"{self.config.image_size}, got {tokens}."
            )
        patch_embeds = torch.stack(
            [projection(layer_features[:, index, 1:]) for index, projection in enumerate(self.patch_projections)],
            dim=1,
        )
        patch_embeds = functional.normalize(patch_embeds, dim=-1)
        text_embeds = text_embeds.expand(batch, num_layers, 2, -1) if text_embeds.ndim == 2 else text_embeds
        logits = self.config.logit_scale * torch.einsum("blpd,blsd->blsp", patch_embeds, text_embeds)
        logits = logits.reshape(batch * num_layers, 2, grid, grid)
        size = self.config.image_size
        logits = functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits.softmax(dim=1).reshape(batch, num_layers, 2, size, size)

    def filter_class_names(self, image_embeds: torch.Tensor, class_names: list[str], generic_term: str) -> list[str]:
        """Class-name filtering (Sec. 3.4) with the frozen CLIP; sentence embeddings cached per generic term.

        Args:
            image_embeds: `(B, projection_dim)` CLIP image embeddings.
            class_names: one raw name per image.
            generic_term: the replacement term.
        """
        if generic_term not in self._class_name_filters:
            encoder = clip_text_encoder(self.clip, self.tokenizer)
            self._class_name_filters[generic_term] = ClassNameFilter(encoder, generic_term)
        return self._class_name_filters[generic_term](image_embeds, class_names)

    def resolve_settings(self, settings: dict) -> dict:
        """Per-call settings validated and completed from the config; `feature_layers` must be trained layers."""
        resolved = super().resolve_settings(settings)
        self._layer_indices(resolved["feature_layers"])
        return resolved

    def anomaly_map_range(self, **settings) -> tuple[float, float]:
        """`(0, L)`: the fused map sums the anomaly probabilities of the `L` feature layers in use."""
        return 0.0, float(len(self.resolve_settings(settings)["feature_layers"]))

    def _layer_indices(self, feature_layers: list[int]) -> list[int]:
        trained = list(self.config.feature_layers)
        missing = [layer for layer in feature_layers if layer not in trained]
        if missing:
            raise ValueError(
                f"feature_layers must be a non-empty subset of the model's trained layers {trained}, "
                f"got {list(feature_layers)}."
            )
        return [trained.index(layer) for layer in feature_layers]

    @torch.no_grad()
    def build_reference_memory(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The few-shot memory of `k` normal images of one class: the patch features of every feature layer.

        Args:
            pixel_values: `(k, 3, image_size, image_size)`.
        Returns:
            `"layer_<i>"` -> `(k * H * W, vision_width)` for each feature layer `i`.
        """
        features = self.encode_image(pixel_values, return_image_embeds=False).layer_features[:, :, 1:]
        return {
            f"layer_{layer}": features[:, index].flatten(0, 1) for index, layer in enumerate(self.config.feature_layers)
        }

    def few_shot_map(
        self, layer_features: torch.Tensor, memory: dict[str, torch.Tensor], layers: list[int]
    ) -> torch.Tensor:
        """Sum over `layers` of each patch's nearest-neighbour distance `0.5 * (1 - cos)` to the memory, upsampled.

        Args:
            layer_features: `(B, L, 1 + H*W, vision_width)`.
            memory: from [`build_reference_memory`].
            layers: the feature layers in use.
        Returns:
            `(B, image_size, image_size)` in `[0, len(layers)]`, the range of the fused zero-shot map.
        """
        missing = [f"layer_{layer}" for layer in layers if f"layer_{layer}" not in memory]
        if missing:
            raise ValueError(f"reference_memory lacks {missing}; build it with this model's build_reference_memory.")
        trained = list(self.config.feature_layers)
        grid, size = self.grid_size, self.config.image_size
        distances = sum(
            nearest_neighbour_distances(layer_features[:, trained.index(layer), 1:], memory[f"layer_{layer}"])
            for layer in layers
        )
        distances = distances.reshape(-1, 1, grid, grid)
        return functional.interpolate(distances, size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    @torch.no_grad()
    def detect(
        self,
        pixel_values: torch.Tensor,
        class_names: str | list[str] | None = None,
        reference_memory: dict[str, torch.Tensor] | None = None,
        return_component_maps: bool = False,
        **settings,
    ) -> AnomalyDetectionOutput:
        r"""GenCLIP's inference, written once: one frozen vision pass, class-name filtering, the vision-enhanced
        (Eq. 6) and query-only (Eq. 7) branches, fusion and smoothing (Eq. 8) and the image score (Eqs. 9-10), all at
        the model resolution.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, image_size, image_size)`):
                Images prepared by the processor.
            class_names (`str` or `list[str]`, *optional*):
                One name for all images or one per image; defaults to the generic term.
            reference_memory (`dict[str, torch.Tensor]`, *optional*):
                Few-shot: from [`build_reference_memory`] on normal images of the same class; the nearest-neighbour
                map is blended into the fused map with `few_shot_weight` before smoothing and scoring.
            return_component_maps (`bool`, defaults to `False`):
                Also return the per-layer anomaly probabilities of each branch as `component_maps["vision_maps"]`
                and `component_maps["query_maps"]`, each `(B, L', image_size, image_size)`.
            settings: any of `detection_settings` (`use_cnf`, `use_query_branch`, `use_vision_prompts`,
                `feature_layers` (a subset of the trained layers), `generic_term`, `alpha`, `sigma`,
                `few_shot_weight`); defaults to the config.
        Returns:
            [`AnomalyDetectionOutput`] with `anomaly_maps` `(B, image_size, image_size)`, `pred_scores` `(B,)`, the
            class names used after CNF and the label threshold for the layers used.
        """
        settings = self.resolve_settings(settings)
        layer_indices = self._layer_indices(settings["feature_layers"])
        self.check_pixel_values(pixel_values)
        names = expand_class_names(class_names, pixel_values.shape[0], settings["generic_term"])
        vision = self.encode_image(pixel_values, return_image_embeds=settings["use_cnf"])
        if settings["use_cnf"]:
            names = self.filter_class_names(vision.image_embeds, names, settings["generic_term"])
        text_embeds = self.text_embeddings(
            vision.layer_features, **self.prompt_inputs(names), use_vision_prompts=settings["use_vision_prompts"]
        )
        vision_maps = self.score_maps(vision.layer_features, text_embeds)[:, layer_indices, 1]
        query_maps = None
        if settings["use_query_branch"]:
            query_maps = self.score_maps(vision.layer_features, self.query_text_embeddings())[:, layer_indices, 1]
        few_shot_map = None
        if reference_memory is not None:
            few_shot_map = self.few_shot_map(vision.layer_features, reference_memory, settings["feature_layers"])
        anomaly_maps, scores = segmentation_and_scores(
            vision_maps,
            query_maps,
            settings["alpha"],
            settings["sigma"],
            self.config.top_n1,
            self.config.top_n2,
            few_shot_map,
            settings["few_shot_weight"],
        )
        components = None
        if return_component_maps:
            components = {"vision_maps": vision_maps.float()}
            if query_maps is not None:
                components["query_maps"] = query_maps.float()
            if few_shot_map is not None:
                components["few_shot"] = few_shot_map[:, None].float()
        return AnomalyDetectionOutput(
            anomaly_maps=anomaly_maps.float(),
            pred_scores=scores.float(),
            score_threshold=self.config.label_threshold(len(layer_indices)),
            class_names=names,
            component_maps=components,
        )

    def learnable_parameters(self) -> list[nn.Parameter]:
        """The parameters Eq. 5 reaches: the vision-prompt projections only when the vision prompts are on."""
        if not self.config.use_vision_prompts:
            self.prompt_learner.vision_prompt_projections.requires_grad_(False)
        return super().learnable_parameters()

    def frozen_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The feature layers' outputs `(B, L, 1 + H*W, vision_width)` of the frozen tower (training contract)."""
        return self.encode_image(pixel_values, return_image_embeds=False).layer_features

    def frozen_features_key(self) -> dict:
        """What decides [`frozen_features`] besides the backbone weights and the preprocessing."""
        config = self.config
        return {
            "method": config.model_type,
            "image_size": config.image_size,
            "feature_layers": list(config.feature_layers),
            "position_interpolation": config.position_interpolation,
        }

    def frozen_features_shape(self) -> tuple[int, ...]:
        """`(L, 1 + H*W, vision_width)`."""
        return (
            self.config.num_feature_layers,
            1 + self.grid_size**2,
            self.config.clip_config.vision_config.hidden_size,
        )

    def training_loss(
        self, frozen_features: torch.Tensor, class_names: list[str], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5 on a batch (training contract). Class names are cleaned as CNF cleans them at inference
        ("metal_nut" -> "metal nut", "pcb1" -> "pcb"); CNF's similarity test is inference-only."""
        names = [normalize_class_name(name, self.config.generic_term) for name in class_names]
        output = self(layer_features=frozen_features, masks=masks, **self.prompt_inputs(names))
        return output.loss, output.layer_loss

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        query_positions: torch.Tensor | None = None,
        eot_positions: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        layer_features: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        return_image_embeds: bool | None = None,
    ) -> GenCLIPOutput:
        r"""
        The training path: the vision-enhanced maps of every feature layer and, with `masks`, the loss of Eq. 5.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, image_size, image_size)`):
                Images prepared by [`GenCLIPProcessor`]. Not needed when `layer_features` is given.
            input_ids (`torch.LongTensor` of shape `(B, 2, T)`):
                Vision-enhanced prompt ids (normal, abnormal) for each image's class name.
            query_positions, eot_positions (`torch.LongTensor` of shape `(B, 2)`):
                First query slot and EOT position of each prompt.
            masks (`torch.FloatTensor` of shape `(B, image_size, image_size)`, *optional*):
                Binary ground truth; when given, the loss of Eq. 5 is returned.
            layer_features (`torch.FloatTensor` of shape `(B, L, 1 + H*W, vision_width)`, *optional*):
                Precomputed frozen features (a feature cache) instead of `pixel_values`.
            image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`, *optional*):
                Precomputed CLIP image embeddings to pass through with `layer_features`.
            return_image_embeds (`bool`, *optional*):
                Compute the CLIP image embedding; defaults to `config.use_cnf`.
        """
        if layer_features is None:
            if pixel_values is None:
                raise ValueError("forward needs pixel_values of shape (B, 3, H, W) or precomputed layer_features.")
            if return_image_embeds is None:
                return_image_embeds = self.config.use_cnf
            vision = self.encode_image(pixel_values, return_image_embeds=return_image_embeds)
            layer_features, image_embeds = vision.layer_features, vision.image_embeds
        if input_ids is None or query_positions is None or eot_positions is None:
            raise ValueError("forward needs input_ids, query_positions and eot_positions from GenCLIPProcessor.")
        self._check_prompt_inputs(layer_features.shape[0], input_ids, query_positions, eot_positions)
        text_embeds = self.text_embeddings(layer_features, input_ids, query_positions, eot_positions)
        layer_maps = self.score_maps(layer_features, text_embeds)

        loss = layer_loss = None
        if masks is not None:
            size = self.config.image_size
            if masks.shape != (layer_maps.shape[0], size, size):
                raise ValueError(
                    f"masks must have shape (batch={layer_maps.shape[0]}, {size}, {size}), got {tuple(masks.shape)}."
                )
            finite_binary = torch.isfinite(masks).all() and bool(((masks == 0) | (masks == 1)).all())
            if not finite_binary:
                raise ValueError("masks must hold only 0 and 1 (binary ground truth), got other values or NaN.")
            loss, layer_loss = genclip_loss(layer_maps, masks, self.config.focal_gamma, self.config.dice_smooth)
        return GenCLIPOutput(
            loss=loss,
            layer_loss=layer_loss,
            layer_maps=layer_maps,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )

    def _check_prompt_inputs(
        self, batch: int, input_ids: torch.Tensor, query_positions: torch.Tensor, eot_positions: torch.Tensor
    ) -> None:
        if input_ids.ndim != 3 or input_ids.shape[:2] != (batch, 2):
            raise ValueError(f"input_ids must have shape (batch={batch}, 2, T), got {tuple(input_ids.shape)}.")
        for name, tensor in (("query_positions", query_positions), ("eot_positions", eot_positions)):
            if tensor.shape != (batch, 2):
                raise ValueError(f"{name} must have shape (batch={batch}, 2), got {tuple(tensor.shape)}.")
        if int(eot_positions.max()) >= input_ids.shape[-1]:
            raise ValueError(
                f"eot_positions point past the end of input_ids (length {input_ids.shape[-1]}): "
                f"max {int(eot_positions.max())}."
            )


__all__ = ["GenCLIPModel", "GenCLIPOutput", "GenCLIPPreTrainedModel", "GenCLIPVisionOutput"]
