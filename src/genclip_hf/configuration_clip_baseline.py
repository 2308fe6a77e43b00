"""Configuration of the plain-CLIP baseline of paper Table 1 ("CLIP" column)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_genclip import CLIP_VIT_L_14_336, PAPER_IMAGE_SIZE
from .settings import SETTINGS, validate_fields

# Fields with a definition in `genclip_hf.settings`; the others are checked in `_check_fields`.
CHECKED_FIELDS = ("image_size", "position_interpolation", "sigma", "score_threshold")
# The image probability at which neither prompt is preferred: the label threshold when `score_threshold` is None.
NEUTRAL_SCORE_THRESHOLD = 0.5
# The slot of the class name in a prompt template.
CLASS_SLOT = "{}"


def check_patch_grid(image_size: int, clip_config: CLIPConfig) -> None:
    """Raise `ValueError` unless `image_size` is a positive multiple of the backbone's patch size."""
    patch_size = clip_config.vision_config.patch_size
    if image_size < patch_size or image_size % patch_size:
        raise ValueError(f"image_size must be a positive multiple of the patch size {patch_size}, got {image_size}.")


def check_logit_scale(logit_scale: float | None) -> float | None:
    """`None` (the checkpoint's own learned scale) or a positive finite float; else `ValueError` naming the field."""
    return None if logit_scale is None else SETTINGS["logit_scale"].validate(logit_scale)


def check_template(name: str, template: object) -> str:
    """A prompt template with exactly one `{}` for the class name; else `ValueError` naming the field."""
    if not isinstance(template, str) or template.count(CLASS_SLOT) != 1 or not template.replace(CLASS_SLOT, "").strip():
        raise ValueError(f"{name} must be a sentence with exactly one '{{}}' for the class name, got {template!r}.")
    return template


@strict
class CLIPBaselineConfig(PreTrainedConfig):
    r"""
    Configuration of a [`CLIPBaselineModel`]: the "CLIP" baseline of the zero-shot anomaly detection literature (as
    defined in the AnomalyCLIP paper's appendix and used in GenCLIP's Table 1), training-free on a frozen CLIP.

    Each image is compared with two hand-written sentences holding its class name. The image score is the softmax
    over CLIP's scaled cosine similarities of the global image embedding with the two sentence embeddings; the map
    is the same softmax on every last-layer patch token projected into the joint space, upsampled to the input.

    Args:
        clip_config (`dict` or [`CLIPConfig`], *optional*):
            The backbone's configuration. Defaults to the architecture of `openai/clip-vit-large-patch14-336`.
        image_size (`int`, defaults to 518):
            Side of the square model input, a multiple of the patch size; CLIP's position grid is resized to it.
        position_interpolation (`str`, defaults to `"bicubic"`):
            How the position grid is resized: `"bicubic"` (HF, open_clip) or `"bilinear"` (AnomalyCLIP).
        normal_prompt (`str`, defaults to `"a photo of a normal {}."`) and anomalous_prompt (`str`, defaults to
        `"a photo of an anomalous {}."`):
            The two sentences; `{}` is replaced by the class name.
        logit_scale (`float`, *optional*):
            Multiplier of the cosine similarities before the softmax; `None` uses the checkpoint's learned
            `exp(logit_scale)` (100 for OpenAI's CLIPs), i.e. CLIP's own temperature.
        sigma (`float`, defaults to 0.0):
            Standard deviation in pixels of a Gaussian smoothing of the anomaly map; 0 (the definition) disables it.
        score_threshold (`float`, *optional*):
            Image score from which an image is labelled anomalous; `None` means 0.5, where neither prompt is preferred.

    Example:

    ```python
    >>> from genclip_hf import CLIPBaselineConfig
    >>> config = CLIPBaselineConfig(image_size=518)
    >>> config.normal_prompt.format("bottle")
    'a photo of a normal bottle.'
    ```
    """

    model_type = "clip_baseline"
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=CLIPConfig, init_kwargs=CLIP_VIT_L_14_336)}

    clip_config: dict | CLIPConfig | None = None
    image_size: int = PAPER_IMAGE_SIZE
    position_interpolation: str = "bicubic"
    normal_prompt: str = "a photo of a normal {}."
    anomalous_prompt: str = "a photo of an anomalous {}."
    logit_scale: float | None = None
    sigma: float = 0.0
    score_threshold: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value the backbone or the method cannot use."""
        validate_fields(self, CHECKED_FIELDS)
        check_patch_grid(self.image_size, self.clip_config)
        self.logit_scale = check_logit_scale(self.logit_scale)
        self.normal_prompt = check_template("normal_prompt", self.normal_prompt)
        self.anomalous_prompt = check_template("anomalous_prompt", self.anomalous_prompt)

    @property
    def grid_size(self) -> int:
        """Side H = W of the patch grid at `image_size`."""
        return self.image_size // self.clip_config.vision_config.patch_size

    def label_threshold(self) -> float:
        """`score_threshold`, or 0.5 when it is `None`."""
        return NEUTRAL_SCORE_THRESHOLD if self.score_threshold is None else self.score_threshold


__all__ = ["CLIPBaselineConfig", "check_logit_scale", "check_patch_grid", "check_template"]
