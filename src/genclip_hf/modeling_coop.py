"""PyTorch CoOp baseline of paper Table 1 ("CoOp" column): learned context vectors in front of a state word and the
class name, on a frozen CLIP, scored like the plain-CLIP baseline and trained with GenCLIP's loss (Eq. 5).

Token layout of the two prompts of a class (the context `[V]` is shared by both states):

    [SOT] [V_1] ... [V_M] normal {class} . [EOT]
    [SOT] [V_1] ... [V_M] anomalous {class} . [EOT]

The context vectors overwrite the token embeddings of positions `1 .. M` (which hold "x" placeholders); CLIP's position
embeddings, causal text encoder, final layer norm, EOT pooling and text projection then run unchanged.
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

from .clip_detector import FrozenCLIPDetector
from .configuration_coop import CoOpConfig
from .detection import AnomalyDetectionOutput, expand_class_names
from .losses import genclip_loss
from .modeling_clip_baseline import (
    DEFAULT_CLASS_NAME,
    CLIPBaselineOutput,
    detection_output,
    projected_tokens,
    prompt_class_name,
    two_state_output,
)

# The word whose token holds each context slot before its embedding is replaced (as CoOp's "X X X X {class}.").
CONTEXT_PLACEHOLDER = "X"


@dataclass(frozen=True)
class CoOpPromptLayout:
    """Token ids of one prompt: `[SOT]`, `n_ctx` placeholder ids (positions `1 .. n_ctx`), the words, "." and `[EOT]`
    at `eot_position` (the last id)."""

    input_ids: tuple[int, ...]
    eot_position: int


def build_coop_prompt(
    tokenizer: PreTrainedTokenizerBase, n_ctx: int, state_word: str, class_name: str, max_length: int
) -> CoOpPromptLayout:
    """Tokenise `[SOT] [V x n_ctx] {state_word} {class_name} . [EOT]`.

    Raises:
        ValueError: naming the class name when the prompt does not fit CLIP's text context of `max_length` tokens.
    """
    placeholder = tokenizer(CONTEXT_PLACEHOLDER, add_special_tokens=False)["input_ids"]
    words = tokenizer(f"{state_word} {class_name}.", add_special_tokens=False)["input_ids"]
    ids = [tokenizer.bos_token_id, *placeholder * n_ctx, *words, tokenizer.eos_token_id]
    if len(ids) > max_length:
        raise ValueError(
            f"class_name {class_name!r} makes a prompt of {len(ids)} tokens; CLIP's text context holds {max_length}."
        )
    return CoOpPromptLayout(input_ids=tuple(ids), eot_position=len(ids) - 1)


class CoOpPromptTokenizer:
    """Class names to the ids of their (normal, abnormal) CoOp prompts, with the layouts cached per name.

    Args:
        tokenizer: the CLIP tokenizer.
        config: gives `n_ctx`, the state words and CLIP's text context.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: CoOpConfig):
        self.tokenizer = tokenizer
        self.n_ctx = config.n_ctx
        self.state_words = (config.normal_state_word, config.abnormal_state_word)
        self.max_length = config.clip_config.text_config.max_position_embeddings
        self._layouts: dict[str, tuple[CoOpPromptLayout, CoOpPromptLayout]] = {}

    def layouts(self, class_name: str) -> tuple[CoOpPromptLayout, CoOpPromptLayout]:
        """The (normal, abnormal) prompt layouts of one class name."""
        if class_name not in self._layouts:
            self._layouts[class_name] = tuple(
                build_coop_prompt(self.tokenizer, self.n_ctx, word, class_name, self.max_length)
                for word in self.state_words
            )
        return self._layouts[class_name]

    def __call__(self, class_names: Sequence[str]) -> dict[str, torch.Tensor]:
        """`input_ids` `(N, 2, T)` padded to the longest prompt, and `eot_positions` `(N, 2)`."""
        layouts = [self.layouts(name) for name in class_names]
        length = max(len(layout.input_ids) for pair in layouts for layout in pair)
        input_ids = torch.full((len(layouts), 2, length), self.tokenizer.eos_token_id, dtype=torch.long)
        for row, pair in enumerate(layouts):
            for state, layout in enumerate(pair):
                input_ids[row, state, : len(layout.input_ids)] = torch.tensor(layout.input_ids)
        eot_positions = torch.tensor([[layout.eot_position for layout in pair] for pair in layouts])
        return {"input_ids": input_ids, "eot_positions": eot_positions}


@dataclass
class CoOpOutput(CLIPBaselineOutput):
    """Output of [`CoOpModel`]: the fields of [`CLIPBaselineOutput`] and, when masks are given, the loss.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `masks` is given):
            Eq. 5 on the state maps: `focal(S, G) + dice(S[:, 1], G) + dice(S[:, 0], 1 - G)`.
    """

    loss: torch.FloatTensor | None = None


class CoOpPreTrainedModel(PreTrainedModel):
    config: CoOpConfig
    config_class = CoOpConfig
    base_model_prefix = "coop"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Context vectors ~ N(0, prompt_init_std^2); the CLIP backbone initialises itself."""
        if isinstance(module, CoOpModel):
            init.normal_(module.context, std=self.config.prompt_init_std)


class CoOpModel(FrozenCLIPDetector, CoOpPreTrainedModel):
    r"""
    CoOp for zero-shot anomaly detection: a frozen [`CLIPModel`] plus one learnable context `(n_ctx, text_width)`
    shared by the normal and the abnormal prompt (see the module docstring for the layout).

    Scoring is the CLIP baseline's with the learned text embeddings: every last-layer token in the joint space gets
    `softmax(s * [cos(x, t_normal), cos(x, t_anomalous)])`; the map is the anomalous channel of the patch tokens,
    upsampled bilinearly, the image score that of CLIP's image embedding. Training (`genclip train --method coop`)
    minimises Eq. 5 on the upsampled two-channel map; only the context learns.

    Example:

    ```python
    >>> from genclip_hf import AnomalyDetectionProcessor, CoOpModel
    >>> model = CoOpModel.from_pretrained("path/to/trained-coop")
    >>> processor = AnomalyDetectionProcessor.from_pretrained("path/to/trained-coop")
    >>> output = model.detect(processor(images=image)["pixel_values"], class_names=["bottle"])
    ```
    """

    detection_settings = ("sigma",)

    def __init__(self, config: CoOpConfig, clip_model: CLIPModel | None = None):
        super().__init__(config)
        self.attach_clip(clip_model)
        self.context = nn.Parameter(torch.zeros(config.n_ctx, config.clip_config.text_config.hidden_size))
        self._prompt_tokenizer: CoOpPromptTokenizer | None = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._text_cache_key: tuple | None = None
        self.post_init()

    def set_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Bind the CLIP tokenizer that turns class names into prompts; cached prompts and embeddings are dropped."""
        super().set_tokenizer(tokenizer)
        self._prompt_tokenizer = None
        self._text_cache = {}

    @property
    def prompt_tokenizer(self) -> CoOpPromptTokenizer:
        """Class names to prompt ids under this model's config."""
        if self._prompt_tokenizer is None:
            self._prompt_tokenizer = CoOpPromptTokenizer(self.tokenizer, self.config)
        return self._prompt_tokenizer

    @property
    def logit_scale(self) -> float:
        """`config.logit_scale`, or CLIP's learned `exp(logit_scale)` when it is `None`."""
        if self.config.logit_scale is not None:
            return self.config.logit_scale
        return float(self.clip.logit_scale.exp())

    def encode_prompts(self, input_ids: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
        """Text embeddings of prompt pairs with the context written at positions `1 .. n_ctx`.

        The encoder runs only up to the longest EOT: under the causal mask that equals the full 77-token run.

        Args:
            input_ids: `(N, 2, T)` from [`CoOpPromptTokenizer`]; index 0 normal, 1 abnormal.
            eot_positions: `(N, 2)` EOT position of each prompt.
        Returns:
            `(N, 2, projection_dim)` L2-normalised; differentiable in the context.
        """
        device = self.context.device
        num_pairs = input_ids.shape[0]
        length = int(eot_positions.max()) + 1
        text_model = self.clip.text_model
        flat_ids = input_ids[..., :length].reshape(num_pairs * 2, length).to(device)
        token_embeds = text_model.embeddings.token_embedding(flat_ids)
        context = self.context.to(token_embeds.dtype).expand(flat_ids.shape[0], -1, -1)
        embeds = torch.cat([token_embeds[:, :1], context, token_embeds[:, 1 + self.config.n_ctx :]], dim=1)
        hidden = text_model.embeddings(inputs_embeds=embeds)
        causal_mask = torch.full((length, length), torch.finfo(hidden.dtype).min, device=device).triu(1)[None, None]
        for layer in text_model.encoder.layers:
            hidden = layer(hidden, attention_mask=causal_mask, is_causal=True)
        hidden = text_model.final_layer_norm(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=device), eot_positions.reshape(-1).to(device)]
        return functional.normalize(self.clip.text_projection(pooled), dim=-1).reshape(num_pairs, 2, -1)

    def text_embeddings(self, class_names: list[str]) -> torch.Tensor:
        """The (normal, abnormal) text embeddings of one cleaned class name per image: `(B, 2, projection_dim)`.

        Each distinct name is encoded once per call. Outside autograd the embeddings are cached per name until the
        context, the dtype or the device changes.
        """
        distinct = sorted(set(class_names))
        use_cache = not torch.is_grad_enabled()
        if use_cache:
            key = (self.context._version, self.context.data_ptr(), self.dtype, self.device)
            if key != self._text_cache_key:
                self._text_cache, self._text_cache_key = {}, key
            missing = [name for name in distinct if name not in self._text_cache]
            if missing:
                encoded = self.encode_prompts(**self.prompt_tokenizer(missing))
                self._text_cache.update(zip(missing, encoded, strict=True))
            return torch.stack([self._text_cache[name] for name in class_names])
        encoded = self.encode_prompts(**self.prompt_tokenizer(distinct))
        return encoded[torch.tensor([distinct.index(name) for name in class_names], device=encoded.device)]

    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The projected last-layer tokens `(B, 1 + H*W, projection_dim)` of `pixel_values` `(B, 3, S, S)`, CLIP's
        image embedding first (see `genclip_hf.modeling_clip_baseline.projected_tokens`)."""
        self.check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        return projected_tokens(self.clip, pixel_values, self.config.position_interpolation)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        class_names: str | list[str] | None = None,
        masks: torch.Tensor | None = None,
        frozen_features: torch.Tensor | None = None,
    ) -> CoOpOutput:
        r"""
        The training path: the two-state maps and image probabilities and, with `masks`, the loss of Eq. 5.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)`):
                Images at `config.image_size` = S. Not needed when `frozen_features` is given.
            class_names (`str` or `list[str]`, *optional*):
                One name for all images or one per image; `None` uses "object". Names are cleaned with
                `prompt_class_name` ("metal_nut" -> "metal nut").
            masks (`torch.FloatTensor` of shape `(B, S, S)`, *optional*):
                Binary ground truth; when given, the loss is returned.
            frozen_features (`torch.FloatTensor` of shape `(B, 1 + H*W, projection_dim)`, *optional*):
                Precomputed [`encode_image`] tokens (a feature cache) instead of `pixel_values`.
        """
        if frozen_features is None:
            if pixel_values is None:
                raise ValueError("forward needs pixel_values of shape (B, 3, S, S) or precomputed frozen_features.")
            frozen_features = self.encode_image(pixel_values)
        self._check_frozen_features(frozen_features)
        names = expand_class_names(class_names, frozen_features.shape[0], DEFAULT_CLASS_NAME)
        names = [prompt_class_name(name) for name in names]
        output = two_state_output(
            frozen_features, self.text_embeddings(names), self.logit_scale, self.config.image_size, names
        )
        loss = None
        if masks is not None:
            self._check_masks(masks, frozen_features.shape[0])
            loss, _ = genclip_loss(output.state_maps[:, None], masks, self.config.focal_gamma, self.config.dice_smooth)
        return CoOpOutput(loss=loss, **output)

    @torch.no_grad()
    def detect(
        self, pixel_values: torch.Tensor, class_names: str | list[str] | None = None, **settings: Any
    ) -> AnomalyDetectionOutput:
        """Anomaly maps and image scores.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)`): images at `config.image_size` = S.
            class_names: one name for all images or one per image; `None` uses "object".
            settings: `sigma` (default from the config).
        Returns:
            [`AnomalyDetectionOutput`]: `anomaly_maps` `(B, S, S)` in [0, 1], `pred_scores` `(B,)` (the anomalous
            probability of the image embedding) and the cleaned class names.
        """
        resolved = self.resolve_settings(settings)
        self.check_pixel_values(pixel_values)
        output = self(pixel_values=pixel_values, class_names=class_names)
        return detection_output(output, resolved["sigma"], self.config.label_threshold())

    # Training contract.

    def frozen_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The projected last-layer tokens `(B, 1 + H*W, projection_dim)`: all the context needs of an image."""
        return self.encode_image(pixel_values)

    def frozen_features_key(self) -> dict[str, Any]:
        """What decides [`frozen_features`] besides the backbone weights and the preprocessing."""
        return {
            "method": self.config.model_type,
            "image_size": self.config.image_size,
            "position_interpolation": self.config.position_interpolation,
        }

    def frozen_features_shape(self) -> tuple[int, ...]:
        """`(1 + H*W, projection_dim)`."""
        return (1 + self.config.grid_size**2, self.config.clip_config.projection_dim)

    def training_loss(
        self, frozen_features: torch.Tensor, class_names: list[str], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        """Eq. 5 on a batch (training contract); one map, so no per-layer losses. `labels` are not used: the loss
        is the maps', as GenCLIP's."""
        return self(class_names=list(class_names), masks=masks, frozen_features=frozen_features).loss, None

    # Checks.

    def _check_frozen_features(self, frozen_features: torch.Tensor) -> None:
        expected = self.frozen_features_shape()
        if frozen_features.ndim != 3 or tuple(frozen_features.shape[1:]) != expected:
            raise ValueError(
                f"frozen_features must have shape (batch, {expected[0]}, {expected[1]}) for image_size "
                f"{self.config.image_size}, got {tuple(frozen_features.shape)}."
            )

    def _check_masks(self, masks: torch.Tensor, batch: int) -> None:
        size = self.config.image_size
        if masks.shape != (batch, size, size):
            raise ValueError(f"masks must have shape (batch={batch}, {size}, {size}), got {tuple(masks.shape)}.")
        if not (torch.isfinite(masks).all() and bool(((masks == 0) | (masks == 1)).all())):
            raise ValueError("masks must hold only 0 and 1 (binary ground truth), got other values or NaN.")


__all__ = [
    "CoOpModel",
    "CoOpOutput",
    "CoOpPreTrainedModel",
    "CoOpPromptLayout",
    "CoOpPromptTokenizer",
    "build_coop_prompt",
]
