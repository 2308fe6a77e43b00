"""PyTorch AnomalyCLIP: object-agnostic learnable prompts on a frozen HF CLIP, with DPAM (V-V attention) in the vision
tower (Zhou et al., ICLR 2024). It reproduces the official test path of zqhang/AnomalyCLIP (`test.py`) to fp32 rounding
and its training loss (`train.py`, `loss.py`).

Text: two prompts `[SOT] [ctx x n_ctx] object. [EOT]` (normal) and `[SOT] [ctx x n_ctx] damaged object. [EOT]`
(abnormal) whose context vectors are learnable; in text layers 2..`text_prompt_depth` positions `1 .. length` are
replaced by the deep text prompts. No class name is used.

Vision: blocks before `dpam_start_layer` are plain CLIP. From it on, two streams run: the original stream (plain CLIP,
it gives the global image feature) and the V-V stream `x_k = x_(k-1) + out_proj(softmax(v v^T / sqrt(d)) v)`, no MLP,
with `v = v_proj(layer_norm1(original stream))`. Both attentions reuse one q, k, v computation per block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from transformers import CLIPModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers import initialization as init
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.utils import ModelOutput

from .clip_backbone import embed_images
from .clip_detector import FrozenCLIPDetector
from .configuration_anomalyclip import AnomalyCLIPConfig
from .detection import AnomalyDetectionOutput
from .losses import dice_loss, label_smoothed_focal_loss
from .scoring import gaussian_smooth

# The words after the context vectors of the normal and the abnormal prompt (official `state_*_list` with "object").
PROMPT_WORDS = ("object.", "damaged object.")
# The word the official tokenizer puts in the context slots before their embeddings are replaced.
CONTEXT_PLACEHOLDER = "X"


@dataclass
class AnomalyCLIPVisionOutput(ModelOutput):
    """Frozen vision features of a batch of images.

    Args:
        layer_tokens (`torch.FloatTensor` of shape `(B, L, 1 + H*W, projection_dim)`):
            `visual_projection(post_layernorm(tokens))` of each feature layer, CLS first, before normalisation. Layers
            from `dpam_start_layer` on come from the V-V stream, earlier ones from the original stream.
        image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`):
            The global image feature: the last layer's original-stream CLS through `visual_projection`, **without**
            `post_layernorm` (as the official code), before normalisation.
    """

    layer_tokens: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


@dataclass
class AnomalyCLIPOutput(ModelOutput):
    """Output of [`AnomalyCLIPModel`]'s training forward.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `masks` or `labels` is given):
            `segmentation_loss + image_loss` (the official `loss + image_loss`).
        segmentation_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `masks` is given):
            `segmentation_loss_weight * sum_l [focal(S_l, G) + dice(S_l[:, 1], G) + dice(S_l[:, 0], 1 - G)]`.
        image_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `masks` or `labels` is given):
            Cross-entropy of `image_logits` against the image labels.
        layer_maps (`torch.FloatTensor` of shape `(B, L, 2, image_size, image_size)`):
            Per-layer softmax similarity maps upsampled bilinearly; channel 0 normal, channel 1 abnormal.
        image_logits (`torch.FloatTensor` of shape `(B, 2)`):
            `cos(image feature, [normal, abnormal]) / temperature`.
        text_features (`torch.FloatTensor` of shape `(2, projection_dim)`):
            Normalised text features of the normal and the abnormal prompt.
    """

    loss: torch.FloatTensor | None = None
    segmentation_loss: torch.FloatTensor | None = None
    image_loss: torch.FloatTensor | None = None
    layer_maps: torch.FloatTensor | None = None
    image_logits: torch.FloatTensor | None = None
    text_features: torch.FloatTensor | None = None


def build_prompt_token_ids(tokenizer: PreTrainedTokenizerBase, n_ctx: int, context_length: int) -> torch.Tensor:
    """The official token ids of the two prompts, `"X" * n_ctx` standing in for the context vectors.

    Returns:
        `(2, context_length)` int64, row 0 normal (`[SOT] X*n_ctx object. [EOT] 0...`), row 1 abnormal; padded
        with 0 as the official tokenizer does.

    Raises:
        ValueError: if a prompt does not fit `context_length`.
    """
    placeholders = " ".join([CONTEXT_PLACEHOLDER] * n_ctx)
    ids = torch.zeros(len(PROMPT_WORDS), context_length, dtype=torch.long)
    for row, words in enumerate(PROMPT_WORDS):
        tokens = tokenizer(f"{placeholders} {words}", add_special_tokens=False)["input_ids"]
        tokens = [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id]
        if len(tokens) > context_length:
            raise ValueError(
                f"n_ctx={n_ctx} makes the prompt {words!r} {len(tokens)} tokens long; CLIP's text context holds "
                f"{context_length}."
            )
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


def value_value_attention(values: torch.Tensor, scale: float) -> torch.Tensor:
    """V-V self-attention of DPAM: `softmax(v v^T * scale) v` per head.

    Args:
        values: `(B, heads, N, head_dim)`.
        scale: the block's attention scale, `head_dim ** -0.5`.
    Returns:
        `(B, heads, N, head_dim)`.
    """
    return functional.scaled_dot_product_attention(values, values, values, scale=scale)


def dual_stream_block(
    layer: CLIPEncoderLayer, hidden_states: torch.Tensor, value_states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DPAM block: the original stream through the plain CLIP block, and the V-V stream (attention only, no MLP)
    whose values come from the original stream. q, k and v are computed once and feed both attentions.

    Args:
        layer: a `CLIPEncoderLayer` of the vision tower.
        hidden_states: `(B, N, D)` original stream before the block.
        value_states: `(B, N, D)` V-V stream before the block.
    Returns:
        `(hidden_states, value_states)` after the block, each `(B, N, D)`.
    """
    attention = layer.self_attn
    batch, tokens, width = hidden_states.shape
    normed = layer.layer_norm1(hidden_states)

    def split_heads(projected: torch.Tensor) -> torch.Tensor:
        return projected.view(batch, tokens, attention.num_heads, attention.head_dim).transpose(1, 2)

    def merge_heads(per_head: torch.Tensor) -> torch.Tensor:
        return per_head.transpose(1, 2).reshape(batch, tokens, width)

    queries = split_heads(attention.q_proj(normed))
    keys = split_heads(attention.k_proj(normed))
    values = split_heads(attention.v_proj(normed))
    original = functional.scaled_dot_product_attention(queries, keys, values, scale=attention.scale)
    hidden_states = hidden_states + attention.out_proj(merge_heads(original))
    hidden_states = hidden_states + layer.mlp(layer.layer_norm2(hidden_states))
    value_states = value_states + attention.out_proj(merge_heads(value_value_attention(values, attention.scale)))
    return hidden_states, value_states


class AnomalyCLIPPreTrainedModel(PreTrainedModel):
    config: AnomalyCLIPConfig
    config_class = AnomalyCLIPConfig
    base_model_prefix = "anomalyclip"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Context vectors and deep prompts ~ N(0, prompt_init_std^2); prompt ids unset (zeros) until a tokenizer
        or a converted checkpoint provides them. The CLIP backbone initialises itself."""
        if isinstance(module, AnomalyCLIPModel):
            for parameter in (module.normal_context, module.abnormal_context, module.deep_text_prompts):
                init.normal_(parameter, std=self.config.prompt_init_std)
            init.zeros_(module.prompt_token_ids)


class AnomalyCLIPModel(FrozenCLIPDetector, AnomalyCLIPPreTrainedModel):
    """AnomalyCLIP: a frozen [`CLIPModel`] plus the learnable object-agnostic prompts.

    Learnable: `normal_context` and `abnormal_context` `(n_ctx, text_width)` (official `ctx_pos`, `ctx_neg`) and
    `deep_text_prompts` `(text_prompt_depth - 1, text_prompt_length, text_width)` (official `compound_prompts_text`).
    The buffer `prompt_token_ids` `(2, context_length)` holds the two prompts' token ids.

    Example:

    ```python
    >>> from genclip_hf import AnomalyCLIPModel, AnomalyDetectionProcessor
    >>> model = AnomalyCLIPModel.from_pretrained("path/to/converted-anomalyclip")
    >>> processor = AnomalyDetectionProcessor.from_pretrained("path/to/converted-anomalyclip")
    >>> output = model.detect(processor(images=[image])["pixel_values"])
    >>> output.pred_scores, output.anomaly_maps.shape
    ```
    """

    detection_settings = ("feature_layers", "sigma")
    training_defaults = {"learning_rate": 1e-3}

    def __init__(self, config: AnomalyCLIPConfig, clip_model: CLIPModel | None = None):
        super().__init__(config)
        self.attach_clip(clip_model)
        text_config = config.clip_config.text_config
        width = text_config.hidden_size
        self.normal_context = nn.Parameter(torch.zeros(config.n_ctx, width))
        self.abnormal_context = nn.Parameter(torch.zeros(config.n_ctx, width))
        self.deep_text_prompts = nn.Parameter(torch.zeros(config.num_deep_prompts, config.text_prompt_length, width))
        self.register_buffer(
            "prompt_token_ids", torch.zeros(2, text_config.max_position_embeddings, dtype=torch.long), persistent=True
        )
        self._text_cache: dict[tuple, torch.Tensor] = {}
        self.post_init()

    @classmethod
    def from_clip(cls, clip_name_or_path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        """An untrained AnomalyCLIP around a HF CLIP checkpoint (see `FrozenCLIPDetector.from_clip`), with its prompt
        ids built from the tokenizer."""
        model = super().from_clip(clip_name_or_path, tokenizer, **kwargs)
        model.prompt_ids()
        return model

    @property
    def grid_size(self) -> int:
        """Side H = W of the patch grid at `config.image_size`."""
        return self.config.image_size // self.config.clip_config.vision_config.patch_size

    def prompt_ids(self) -> torch.Tensor:
        """The `(2, context_length)` token ids of the normal and abnormal prompts; when unset (a fresh model), they
        are built once from the tokenizer (see [`AnomalyDetectorMixin.tokenizer`])."""
        if not bool(self.prompt_token_ids.any()):
            ids = build_prompt_token_ids(self.tokenizer, self.config.n_ctx, self.prompt_token_ids.shape[-1])
            with torch.no_grad():
                self.prompt_token_ids.copy_(ids)
        return self.prompt_token_ids

    def encode_prompts(self) -> torch.Tensor:
        """The official `encode_text_learn`: text features of the normal and abnormal prompt, before normalisation.

        The encoder runs only up to the later EOT: under the causal mask that equals the full 77-token run.

        Returns:
            `(2, projection_dim)`; row 0 normal, row 1 abnormal.
        """
        ids = self.prompt_ids()
        eot_positions = ids.argmax(dim=-1)
        length = int(eot_positions.max()) + 1
        text_model = self.clip.text_model
        token_embeds = text_model.embeddings.token_embedding(ids[:, :length])
        context = torch.stack([self.normal_context, self.abnormal_context]).to(token_embeds.dtype)
        n_ctx = self.config.n_ctx
        embeds = torch.cat([token_embeds[:, :1], context, token_embeds[:, 1 + n_ctx :]], dim=1)
        hidden = text_model.embeddings(inputs_embeds=embeds)
        causal_mask = torch.full((length, length), torch.finfo(hidden.dtype).min, device=hidden.device).triu(1)
        causal_mask = causal_mask[None, None]
        for index, layer in enumerate(text_model.encoder.layers):
            if 1 <= index <= self.config.num_deep_prompts:
                hidden = self._write_deep_prompt(hidden, self.deep_text_prompts[index - 1])
            hidden = layer(hidden, attention_mask=causal_mask, is_causal=True)
        hidden = text_model.final_layer_norm(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot_positions]
        return self.clip.text_projection(pooled)

    def _write_deep_prompt(self, hidden: torch.Tensor, deep_prompt: torch.Tensor) -> torch.Tensor:
        """Replace positions `1 .. text_prompt_length` of `hidden` `(2, T, W)` by `deep_prompt` `(length, W)`,
        rounded to float16 first when `config.round_deep_prompts_to_fp16` (the official `.half()`)."""
        if self.config.round_deep_prompts_to_fp16:
            deep_prompt = deep_prompt.to(torch.float16)
        deep_prompt = deep_prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        return torch.cat([hidden[:, :1], deep_prompt, hidden[:, 1 + deep_prompt.shape[1] :]], dim=1)

    def text_features(self) -> torch.Tensor:
        """Normalised text features `(2, projection_dim)` (normal, abnormal).

        They do not depend on the image: outside autograd they are computed once and cached until a learnable
        parameter, the prompt ids, the dtype, the device or the fp16-rounding switch changes.
        """
        use_cache = not torch.is_grad_enabled()
        key = (
            tuple(tensor._version for tensor in (*self.parameters(recurse=False), self.prompt_token_ids)),
            tuple(tensor.data_ptr() for tensor in self.parameters(recurse=False)),
            self.dtype,
            self.device,
            self.config.round_deep_prompts_to_fp16,
        )
        if use_cache and key in self._text_cache:
            return self._text_cache[key]
        features = functional.normalize(self.encode_prompts(), dim=-1)
        if use_cache:
            self._text_cache = {key: features}
        return features

    @torch.no_grad()
    def encode_image(
        self, pixel_values: torch.Tensor, feature_layers: Sequence[int] | None = None
    ) -> AnomalyCLIPVisionOutput:
        """The frozen vision pass with DPAM: original stream to the last block, V-V stream from `dpam_start_layer`
        to the last feature layer.

        Args:
            pixel_values: `(B, 3, image_size, image_size)` normalised images.
            feature_layers: 1-based blocks to return; default `config.feature_layers`.
        Returns:
            [`AnomalyCLIPVisionOutput`] with `layer_tokens` `(B, L, 1 + H*W, projection_dim)` and `image_embeds`
            `(B, projection_dim)`.
        """
        self.check_pixel_values(pixel_values)
        layers = list(self.config.feature_layers if feature_layers is None else feature_layers)
        vision = self.clip.vision_model
        hidden = vision.pre_layrnorm(embed_images(vision, pixel_values, self.config.position_interpolation))
        dpam_start, last_feature = self.config.dpam_start_layer, max(layers)
        value_states = None
        collected: dict[int, torch.Tensor] = {}
        for depth, block in enumerate(vision.encoder.layers, start=1):
            if dpam_start <= depth <= last_feature:
                value_states = hidden if value_states is None else value_states
                hidden, value_states = dual_stream_block(block, hidden, value_states)
            else:
                hidden = block(hidden, attention_mask=None)
            if depth in layers:
                collected[depth] = value_states if depth >= dpam_start else hidden
        layer_tokens = torch.stack(
            [self.clip.visual_projection(vision.post_layernorm(collected[layer])) for layer in layers], dim=1
        )
        return AnomalyCLIPVisionOutput(
            layer_tokens=layer_tokens, image_embeds=self.clip.visual_projection(hidden[:, 0])
        )

    def patch_similarity(self, layer_tokens: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The official `compute_similarity` without the CLS: per-patch `softmax(<p, t> / temperature)`.

        Args:
            layer_tokens: `(B, L, 1 + H*W, projection_dim)` from [`encode_image`].
            text_features: `(2, projection_dim)` normalised.
        Returns:
            `(B, L, H*W, 2)`; channel 0 normal, channel 1 abnormal.
        """
        patches = layer_tokens[:, :, 1:]
        patches = patches / patches.norm(dim=-1, keepdim=True)
        return (patches @ text_features.t().to(patches.dtype) / self.config.temperature).softmax(dim=-1)

    def similarity_maps(self, similarity: torch.Tensor) -> torch.Tensor:
        """The official `get_similarity_map`: both channels upsampled bilinearly to `image_size`.

        Args:
            similarity: `(B, L, H*W, 2)` from [`patch_similarity`].
        Returns:
            `(B, L, 2, image_size, image_size)`.
        """
        batch, num_layers, patches, channels = similarity.shape
        grid = self.grid_size
        if patches != grid * grid:
            raise ValueError(f"similarity must hold {grid}x{grid} patches per layer, got {patches}.")
        grids = similarity.reshape(batch * num_layers, grid, grid, channels).permute(0, 3, 1, 2)
        size = self.config.image_size
        upsampled = functional.interpolate(grids, size=(size, size), mode="bilinear", align_corners=False)
        return upsampled.reshape(batch, num_layers, channels, size, size)

    def image_logits(self, image_embeds: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """`cos(image feature, [normal, abnormal]) / temperature`: `(B, 2)` from `image_embeds` `(B, P)`."""
        image_features = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        return image_features @ text_features.t().to(image_features.dtype) / self.config.temperature

    @torch.no_grad()
    def detect(
        self,
        pixel_values: torch.Tensor,
        class_names: list[str] | None = None,
        return_component_maps: bool = False,
        **settings: Any,
    ) -> AnomalyDetectionOutput:
        """The official test path, per image at any batch size.

        Args:
            pixel_values: `(B, 3, image_size, image_size)` from [`AnomalyDetectionProcessor`].
            class_names: ignored (the prompts are object-agnostic); the output's `class_names` is `None`.
            return_component_maps: also return the unsmoothed per-layer maps as `component_maps["layers"]`
                `(B, L, image_size, image_size)`.
            settings: `feature_layers` (any 1-based blocks of the tower) and `sigma`; defaults from the config.
        Returns:
            [`AnomalyDetectionOutput`]: `anomaly_maps` `(B, S, S)` = Gaussian-smoothed sum over the layers of
            `(s_abnormal + 1 - s_normal) / 2` (range [0, L]); `pred_scores` `(B,)` = abnormal probability of the global
            image feature.
        """
        resolved = self.resolve_settings(settings)
        layers = resolved["feature_layers"]
        vision_layers = self.config.clip_config.vision_config.num_hidden_layers
        if max(layers) > vision_layers:
            raise ValueError(f"feature_layers must be 1-based blocks in [1, {vision_layers}], got {layers}.")
        vision = self.encode_image(pixel_values, layers)
        text_features = self.text_features()
        maps = self.similarity_maps(self.patch_similarity(vision.layer_tokens, text_features))
        layer_maps = (maps[:, :, 1] + 1 - maps[:, :, 0]) / 2
        anomaly_maps = gaussian_smooth(layer_maps.sum(dim=1), resolved["sigma"])
        scores = self.image_logits(vision.image_embeds, text_features).softmax(dim=-1)[:, 1]
        return AnomalyDetectionOutput(
            anomaly_maps=anomaly_maps,
            pred_scores=scores,
            score_threshold=self.config.label_threshold(),
            class_names=None,
            component_maps={"layers": layer_maps} if return_component_maps else None,
        )

    def forward(
        self,
        pixel_values: torch.Tensor,
        masks: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> AnomalyCLIPOutput:
        r"""
        The training path of `train.py`: only the prompts get gradients.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, image_size, image_size)`):
                Images prepared by [`AnomalyDetectionProcessor`].
            masks (`torch.FloatTensor` of shape `(B, image_size, image_size)`, *optional*):
                Ground truth (binarised at 0.5); gives the segmentation loss on every feature layer.
            labels (`torch.LongTensor` of shape `(B,)`, *optional*):
                Image labels (1 anomalous) for the image-level cross-entropy; default: whether the mask has an
                anomalous pixel.
        """
        return self._training_output(self.encode_image(pixel_values), masks, labels)

    def _training_output(
        self, vision: AnomalyCLIPVisionOutput, masks: torch.Tensor | None, labels: torch.Tensor | None
    ) -> AnomalyCLIPOutput:
        batch = vision.image_embeds.shape[0]
        text_features = functional.normalize(self.encode_prompts(), dim=-1)
        layer_maps = self.similarity_maps(self.patch_similarity(vision.layer_tokens, text_features))
        image_logits = self.image_logits(vision.image_embeds, text_features)
        segmentation_loss = image_loss = loss = None
        if masks is not None:
            masks = self._binary_masks(masks, batch)
            segmentation_loss = self.config.segmentation_loss_weight * self.segmentation_loss(layer_maps, masks)
            if labels is None:
                labels = masks.flatten(1).amax(dim=1)
        if labels is not None:
            if labels.shape != (batch,):
                raise ValueError(f"labels must have shape (batch={batch},), got {tuple(labels.shape)}.")
            image_loss = functional.cross_entropy(image_logits, labels.long().to(image_logits.device))
            loss = image_loss if segmentation_loss is None else segmentation_loss + image_loss
        return AnomalyCLIPOutput(
            loss=loss,
            segmentation_loss=segmentation_loss,
            image_loss=image_loss,
            layer_maps=layer_maps,
            image_logits=image_logits,
            text_features=text_features,
        )

    def frozen_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen vision pass packed in one tensor (training contract), `(B, L + 1, 1 + H*W, projection_dim)`:
        rows `0 .. L-1` are the feature layers' `layer_tokens`, row `L` holds the global image feature at token 0
        (zeros elsewhere)."""
        vision = self.encode_image(pixel_values)
        image_row = torch.zeros_like(vision.layer_tokens[:, :1])
        image_row[:, 0, 0] = vision.image_embeds
        return torch.cat([vision.layer_tokens, image_row], dim=1)

    def frozen_features_key(self) -> dict:
        """What decides [`frozen_features`] besides the backbone weights and the preprocessing."""
        config = self.config
        return {
            "method": config.model_type,
            "image_size": config.image_size,
            "feature_layers": list(config.feature_layers),
            "dpam_start_layer": config.dpam_start_layer,
            "position_interpolation": config.position_interpolation,
        }

    def frozen_features_shape(self) -> tuple[int, ...]:
        """`(L + 1, 1 + H*W, projection_dim)`."""
        config = self.config
        return (len(config.feature_layers) + 1, 1 + self.grid_size**2, config.clip_config.projection_dim)

    def training_loss(
        self, frozen_features: torch.Tensor, class_names: list[str], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        """AnomalyCLIP's training loss on cached features (training contract; the prompts are object-agnostic, so
        class names are not used)."""
        vision = AnomalyCLIPVisionOutput(layer_tokens=frozen_features[:, :-1], image_embeds=frozen_features[:, -1, 0])
        return self._training_output(vision, masks, labels).loss, None

    def segmentation_loss(self, layer_maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """`sum_l focal(S_l, G) + dice(S_l[:, 1], G) + dice(S_l[:, 0], 1 - G)` (before the weight).

        Args:
            layer_maps: `(B, L, 2, S, S)` from [`similarity_maps`].
            masks: `(B, S, S)` binary ground truth.
        """
        gamma, smooth = self.config.focal_gamma, self.config.dice_smooth
        return sum(
            label_smoothed_focal_loss(layer_map, masks, gamma)
            + dice_loss(layer_map[:, 1], masks, smooth)
            + dice_loss(layer_map[:, 0], 1 - masks, smooth)
            for layer_map in layer_maps.unbind(dim=1)
        )

    def _binary_masks(self, masks: torch.Tensor, batch: int) -> torch.Tensor:
        size = self.config.image_size
        if masks.shape != (batch, size, size):
            raise ValueError(f"masks must have shape (batch={batch}, {size}, {size}), got {tuple(masks.shape)}.")
        return (masks > 0.5).float()


__all__ = [
    "AnomalyCLIPModel",
    "AnomalyCLIPOutput",
    "AnomalyCLIPPreTrainedModel",
    "AnomalyCLIPVisionOutput",
    "build_prompt_token_ids",
    "dual_stream_block",
    "value_value_attention",
]
