"""WinCLIP model configuration."""

from __future__ import annotations

import math
import numbers

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .settings import validate_fields

# The architecture of openai/clip-vit-base-patch16: the default backbone (weights come from the checkpoint). anomalib's
# WinCLIP uses open_clip's ViT-B-16-plus-240, which has no `CLIPModel` checkpoint; ViT-B/16 has the same patch size, so
# the default 240 px input gives the same 15x15 patch grid.
CLIP_VIT_B_16 = {
    "projection_dim": 512,
    "text_config": {
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_attention_heads": 8,
        "num_hidden_layers": 12,
        "projection_dim": 512,
    },
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "image_size": 224,
        "patch_size": 16,
        "projection_dim": 512,
    },
}

# Fields checked by their shared definition in `genclip_hf.settings`.
CHECKED_FIELDS = ("image_size", "window_scales", "few_shot_weight", "score_threshold")

NEUTRAL_SCORE_THRESHOLD = 0.5


@strict
class WinCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`WinCLIPModel`]: training-free zero-/few-shot anomaly detection with a frozen CLIP (Jeong et
    al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation", CVPR 2023), as implemented by anomalib.

    Args:
        clip_config (`dict` or [`CLIPConfig`], *optional*):
            The backbone's configuration. Defaults to the architecture of `openai/clip-vit-base-patch16`.
        image_size (`int`, defaults to 240):
            Side of the square model input, a multiple of the patch size; CLIP's position embeddings are resized to
            its patch grid (bicubic) when it differs from the backbone's own size.
        window_scales (`list[int]`, defaults to `[2, 3]`):
            Sides, in patches, of the square sliding windows (stride 1); each at most the side of the patch grid.
        temperature (`float`, defaults to 0.07):
            Temperature of the softmax over the cosine similarities with the normal and anomalous text embeddings.
        few_shot_weight (`float`, defaults to 0.5):
            Weight of the few-shot (WinCLIP+) map when reference images are given: `(1 - w) * zero-shot + w * few-shot`;
            0.5 is the paper's and anomalib's plain average.
        score_threshold (`float`, *optional*):
            Image score at or above which an image is labelled anomalous. `None` means 0.5: scores are probabilities
            (zero-shot) or averages of probabilities and half cosine distances (few-shot), both in [0, 1].

    Example:

    ```python
    >>> from genclip_hf import WinCLIPConfig
    >>> config = WinCLIPConfig(window_scales=[2, 3], image_size=240)
    ```
    """

    model_type = "winclip"
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=CLIPConfig, init_kwargs=CLIP_VIT_B_16)}

    clip_config: dict | CLIPConfig | None = None
    image_size: int = 240
    window_scales: list[int] | tuple[int, ...] = (2, 3)
    temperature: float = 0.07
    few_shot_weight: float = 0.5
    score_threshold: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value the backbone or the method cannot use."""
        validate_fields(self, CHECKED_FIELDS)
        patch_size = self.clip_config.vision_config.patch_size
        if self.image_size % patch_size:
            raise ValueError(f"image_size must be a multiple of the patch size {patch_size}, got {self.image_size}.")
        grid_size = self.grid_size
        if max(self.window_scales) > grid_size:
            raise ValueError(
                f"window_scales must be at most the patch grid side {grid_size} (image_size {self.image_size} / patch "
                f"size {patch_size}), got {self.window_scales}."
            )
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}.")
        self.temperature = float(temperature)

    @property
    def grid_size(self) -> int:
        """Side of the patch grid at `image_size`."""
        return self.image_size // self.clip_config.vision_config.patch_size

    def label_threshold(self) -> float:
        """`score_threshold`, or (when `None`) 0.5, the score of an image as close to both text embeddings."""
        if self.score_threshold is None:
            return NEUTRAL_SCORE_THRESHOLD
        return self.score_threshold


__all__ = ["WinCLIPConfig"]
