"""Configuration of the CoOp baseline of paper Table 1 ("CoOp" column)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_clip_baseline import NEUTRAL_SCORE_THRESHOLD, check_logit_scale, check_patch_grid
from .configuration_genclip import CLIP_VIT_L_14_336, PAPER_IMAGE_SIZE
from .settings import validate_fields

# Fields with a definition in `genclip_hf.settings`; the others are checked in `_check_fields`.
CHECKED_FIELDS = (
    "image_size",
    "position_interpolation",
    "normal_state_word",
    "abnormal_state_word",
    "sigma",
    "focal_gamma",
    "dice_smooth",
    "prompt_init_std",
    "score_threshold",
)
# SOT, EOT, a state word, a class name and "." take at least this many of CLIP's text positions besides the context.
FIXED_PROMPT_TOKENS = 5


@strict
class CoOpConfig(PreTrainedConfig):
    r"""
    Configuration of a [`CoOpModel`]: CoOp's learned context (Zhou et al., "Learning to Prompt for Vision-Language
    Models", IJCV 2022) adapted to zero-shot anomaly detection as the AnomalyCLIP paper's appendix does, on a frozen
    CLIP, with the patch-level maps of the CLIP baseline and GenCLIP's loss (Eq. 5).

    Prompts, one context shared by both states (CoOp's unified context):

        [SOT] [V_1] ... [V_M] {normal_state_word} {class} . [EOT]
        [SOT] [V_1] ... [V_M] {abnormal_state_word} {class} . [EOT]

    Args:
        clip_config (`dict` or [`CLIPConfig`], *optional*):
            The backbone's configuration. Defaults to the architecture of `openai/clip-vit-large-patch14-336`.
        image_size (`int`, defaults to 518):
            Side of the square model input, a multiple of the patch size; CLIP's position grid is resized to it.
        position_interpolation (`str`, defaults to `"bicubic"`):
            How the position grid is resized: `"bicubic"` (HF, open_clip) or `"bilinear"` (AnomalyCLIP).
        n_ctx (`int`, defaults to 16):
            Learnable context vectors M (CoOp's default), written at token positions `1 .. M`.
        normal_state_word (`str`, defaults to `"normal"`) and abnormal_state_word (`str`, defaults to `"anomalous"`):
            The hand-written words after the context that tell the two prompts apart.
        logit_scale (`float`, *optional*):
            Multiplier of the cosine similarities before the softmax; `None` uses the checkpoint's learned
            `exp(logit_scale)` (100 for OpenAI's CLIPs), CLIP's own temperature as in CoOp.
        sigma (`float`, defaults to 0.0):
            Standard deviation in pixels of a Gaussian smoothing of the anomaly map at inference; 0 disables it.
        focal_gamma (`float`, defaults to 2.0) and dice_smooth (`float`, defaults to 1.0):
            The loss of Eq. 5 (see [`GenCLIPConfig`]).
        prompt_init_std (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of the context vectors (CoOp's random init).
        score_threshold (`float`, *optional*):
            Image score from which an image is labelled anomalous; `None` means 0.5, where neither prompt is preferred.

    Example:

    ```python
    >>> from genclip_hf import CoOpConfig
    >>> config = CoOpConfig(n_ctx=16, image_size=518)
    ```
    """

    model_type = "coop"
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=CLIPConfig, init_kwargs=CLIP_VIT_L_14_336)}

    clip_config: dict | CLIPConfig | None = None
    image_size: int = PAPER_IMAGE_SIZE
    position_interpolation: str = "bicubic"
    n_ctx: int = 16
    normal_state_word: str = "normal"
    abnormal_state_word: str = "anomalous"
    logit_scale: float | None = None
    sigma: float = 0.0
    focal_gamma: float = 2.0
    dice_smooth: float = 1.0
    prompt_init_std: float = 0.02
    score_threshold: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value the backbone or the method cannot use."""
        validate_fields(self, CHECKED_FIELDS)
        check_patch_grid(self.image_size, self.clip_config)
        self.logit_scale = check_logit_scale(self.logit_scale)
        most = self.clip_config.text_config.max_position_embeddings - FIXED_PROMPT_TOKENS
        if isinstance(self.n_ctx, bool) or not isinstance(self.n_ctx, int) or not 1 <= self.n_ctx <= most:
            raise ValueError(f"n_ctx must be an integer in [1, {most}] for this backbone, got {self.n_ctx!r}.")

    @property
    def grid_size(self) -> int:
        """Side H = W of the patch grid at `image_size`."""
        return self.image_size // self.clip_config.vision_config.patch_size

    def label_threshold(self) -> float:
        """`score_threshold`, or 0.5 when it is `None`."""
        return NEUTRAL_SCORE_THRESHOLD if self.score_threshold is None else self.score_threshold


__all__ = ["CoOpConfig"]
