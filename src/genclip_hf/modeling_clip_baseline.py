"""PyTorch plain-CLIP baseline of paper Table 1 ("CLIP" column): training-free zero-shot anomaly detection with two
hand-written sentences per class, as the ZSAD literature defines it (AnomalyCLIP paper, appendix; docs/baselines.md).

The scoring pieces here (projected last-layer tokens, the two-state softmax, the probability maps) are shared with the
CoOp baseline, which only replaces the hand-written sentences by learned context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional
from transformers import CLIPModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from .class_names import normalize_class_name
from .clip_backbone import PositionInterpolation, run_vision_layers
from .clip_detector import FrozenCLIPDetector
from .configuration_clip_baseline import CLIPBaselineConfig
from .detection import AnomalyDetectionOutput, expand_class_names
from .scoring import gaussian_smooth

DEFAULT_CLASS_NAME = "object"
"""The class name of images given without one."""


def prompt_class_name(class_name: str) -> str:
    """The class name as the prompts use it: digits stripped, `_`/`-` as spaces, an empty result "object" (the
    cleaning of GenCLIP's CNF, without its similarity test): "metal_nut" -> "metal nut", "pcb1" -> "pcb"."""
    return normalize_class_name(class_name, DEFAULT_CLASS_NAME)


def projected_tokens(
    clip: CLIPModel, pixel_values: torch.Tensor, position_interpolation: PositionInterpolation = "bicubic"
) -> torch.Tensor:
    """Every last-layer token in CLIP's joint space: `visual_projection(post_layernorm(tokens))`.

    Token 0 is CLIP's own image embedding (the pooled CLS); the others are the patch tokens, row-major.

    Args:
        clip: the frozen CLIP.
        pixel_values: `(B, 3, S, S)` normalised images, S a multiple of the patch size.
        position_interpolation: how the position grid is resized to `S / patch`.
    Returns:
        `(B, 1 + H*W, projection_dim)`, not normalised.
    """
    vision = clip.vision_model
    run = run_vision_layers(vision, pixel_values, [len(vision.encoder.layers)], position_interpolation)
    return clip.visual_projection(vision.post_layernorm(run.last_hidden_state))


def state_probabilities(tokens: torch.Tensor, text_embeds: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """`softmax(logit_scale * [cos(token, t_normal), cos(token, t_anomalous)])` of every token, in float32.

    Args:
        tokens: `(B, N, D)` visual embeddings (not normalised).
        text_embeds: `(B, 2, D)` each image's normal and anomalous text embedding (not necessarily normalised).
        logit_scale: multiplier of the cosine similarities.
    Returns:
        `(B, N, 2)`; channel 0 normal, channel 1 anomalous.
    """
    visual = functional.normalize(tokens.float(), dim=-1)
    text = functional.normalize(text_embeds.to(visual.device, torch.float32), dim=-1)
    return (logit_scale * visual @ text.transpose(1, 2)).softmax(dim=-1)


def probability_maps(patch_probabilities: torch.Tensor, image_size: int) -> torch.Tensor:
    """Patch probabilities on their square grid, upsampled bilinearly (no corner alignment) to the input size.

    Args:
        patch_probabilities: `(B, H*W, 2)` from [`state_probabilities`] without the CLS token.
        image_size: side S of the model input.
    Returns:
        `(B, 2, S, S)`; the two channels still sum to 1.
    """
    batch, patches, channels = patch_probabilities.shape
    grid = math.isqrt(patches)
    if grid * grid != patches:
        raise ValueError(f"patch_probabilities must hold a square grid of patches, got {patches}.")
    grids = patch_probabilities.transpose(1, 2).reshape(batch, channels, grid, grid)
    return functional.interpolate(grids, size=(image_size, image_size), mode="bilinear", align_corners=False)


@dataclass
class CLIPBaselineOutput(ModelOutput):
    """Two-state probabilities of a batch of images.

    Args:
        state_maps (`torch.FloatTensor` of shape `(B, 2, S, S)`):
            Per-pixel softmax over (normal, anomalous) of the patch tokens, upsampled to the input size `S`.
        image_probabilities (`torch.FloatTensor` of shape `(B, 2)`):
            Softmax over (normal, anomalous) of CLIP's global image embedding.
        text_embeds (`torch.FloatTensor` of shape `(B, 2, projection_dim)`):
            Normalised text embeddings (normal, anomalous) of each image's class name.
        class_names (`list[str]`):
            The class name each image's prompts held (after [`prompt_class_name`]).
    """

    state_maps: torch.FloatTensor | None = None
    image_probabilities: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    class_names: list[str] | None = None


def two_state_output(
    tokens: torch.Tensor, text_embeds: torch.Tensor, logit_scale: float, image_size: int, class_names: list[str]
) -> CLIPBaselineOutput:
    """The image probabilities (from token 0) and the upsampled state maps (from the patch tokens) of `tokens`
    `(B, 1 + H*W, D)` against `text_embeds` `(B, 2, D)`."""
    probabilities = state_probabilities(tokens, text_embeds, logit_scale)
    return CLIPBaselineOutput(
        state_maps=probability_maps(probabilities[:, 1:], image_size),
        image_probabilities=probabilities[:, 0],
        text_embeds=functional.normalize(text_embeds.float(), dim=-1),
        class_names=class_names,
    )


def detection_output(output: CLIPBaselineOutput, sigma: float, score_threshold: float) -> AnomalyDetectionOutput:
    """The detector contract's output: the anomalous channel of the map (smoothed with `sigma`, 0: as is) and the
    anomalous probability of the image."""
    return AnomalyDetectionOutput(
        anomaly_maps=gaussian_smooth(output.state_maps[:, 1], sigma),
        pred_scores=output.image_probabilities[:, 1],
        score_threshold=score_threshold,
        class_names=output.class_names,
    )


class CLIPBaselinePreTrainedModel(PreTrainedModel):
    config: CLIPBaselineConfig
    config_class = CLIPBaselineConfig
    base_model_prefix = "clip_baseline"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True


class CLIPBaselineModel(FrozenCLIPDetector, CLIPBaselinePreTrainedModel):
    r"""
    The "CLIP" baseline on a frozen [`CLIPModel`]; it has no trainable parameters.

    For an image of class `c` the normal and anomalous sentences (`config.normal_prompt`, `config.anomalous_prompt`,
    e.g. "a photo of a normal c." and "a photo of an anomalous c.") are encoded by CLIP's text tower. Every last-layer
    token `x` of the image (after `post_layernorm`, through `visual_projection`) gets
    `p(x) = softmax(s * [cos(x, t_normal), cos(x, t_anomalous)])` with `s` CLIP's logit scale. The image score is
    `p(anomalous)` of the pooled CLS token (CLIP's image embedding); the anomaly map is `p(anomalous)` of the patch
    tokens on their grid, upsampled bilinearly to the input size (Gaussian-smoothed when `sigma` > 0).

    Example:

    ```python
    >>> from genclip_hf import AnomalyDetectionProcessor, CLIPBaselineModel
    >>> model = CLIPBaselineModel.from_clip("openai/clip-vit-large-patch14-336", image_size=518)
    >>> processor = AnomalyDetectionProcessor.from_clip("openai/clip-vit-large-patch14-336", image_size=518)
    >>> output = model.detect(processor(images=image)["pixel_values"], class_names=["bottle"])
    ```
    """

    detection_settings = ("sigma",)

    def __init__(self, config: CLIPBaselineConfig, clip_model: CLIPModel | None = None):
        super().__init__(config)
        self.attach_clip(clip_model)
        self._text_cache: dict[tuple, torch.Tensor] = {}
        self.post_init()
        self.requires_grad_(False)

    def set_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Bind the tokenizer that turns class names into prompts; cached text embeddings are dropped."""
        super().set_tokenizer(tokenizer)
        self._text_cache.clear()

    @property
    def logit_scale(self) -> float:
        """`config.logit_scale`, or CLIP's learned `exp(logit_scale)` when it is `None`."""
        if self.config.logit_scale is not None:
            return self.config.logit_scale
        return float(self.clip.logit_scale.exp())

    def prompts(self, class_name: str) -> list[str]:
        """The normal and anomalous sentences of a (cleaned) class name."""
        return [self.config.normal_prompt.format(class_name), self.config.anomalous_prompt.format(class_name)]

    @torch.no_grad()
    def text_embeddings(self, class_name: str) -> torch.Tensor:
        """CLIP's text embeddings `(2, projection_dim)` (normalised) of the two sentences of a cleaned class name;
        computed once per name, dtype and device, then cached.

        Raises:
            ValueError: naming the class name when a sentence does not fit CLIP's text context.
        """
        weight = self.clip.text_projection.weight
        key = (class_name, weight.dtype, weight.device)
        if key not in self._text_cache:
            sentences = self.prompts(class_name)
            tokens = self.tokenizer(sentences, padding=True, return_tensors="pt")
            context = self.config.clip_config.text_config.max_position_embeddings
            if tokens["input_ids"].shape[-1] > context:
                raise ValueError(
                    f"class_name {class_name!r} makes a prompt of {tokens['input_ids'].shape[-1]} tokens; CLIP's text "
                    f"context holds {context}."
                )
            tokens = tokens.to(weight.device)
            features = self.clip.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
            self._text_cache[key] = functional.normalize(features, dim=-1)
        return self._text_cache[key]

    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The projected last-layer tokens `(B, 1 + H*W, projection_dim)` of `pixel_values` `(B, 3, S, S)` (see
        [`projected_tokens`])."""
        self.check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        return projected_tokens(self.clip, pixel_values, self.config.position_interpolation)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor, class_names: str | list[str] | None = None) -> CLIPBaselineOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)`):
                Images at `config.image_size` = S, from [`AnomalyDetectionProcessor`].
            class_names (`str` or `list[str]`, *optional*):
                One name for all images or one per image; `None` uses "object". Names are cleaned with
                [`prompt_class_name`].
        Returns:
            [`CLIPBaselineOutput`].
        """
        self.check_pixel_values(pixel_values)
        names = expand_class_names(class_names, pixel_values.shape[0], DEFAULT_CLASS_NAME)
        names = [prompt_class_name(name) for name in names]
        text_embeds = torch.stack([self.text_embeddings(name) for name in names])
        tokens = self.encode_image(pixel_values)
        return two_state_output(tokens, text_embeds, self.logit_scale, self.config.image_size, names)

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
        return detection_output(self(pixel_values, class_names), resolved["sigma"], self.config.label_threshold())


__all__ = [
    "DEFAULT_CLASS_NAME",
    "CLIPBaselineModel",
    "CLIPBaselineOutput",
    "CLIPBaselinePreTrainedModel",
    "detection_output",
    "probability_maps",
    "projected_tokens",
    "prompt_class_name",
    "state_probabilities",
    "two_state_output",
]
