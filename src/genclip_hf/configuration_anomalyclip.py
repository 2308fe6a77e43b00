"""AnomalyCLIP model configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_genclip import CLIP_VIT_L_14_336
from .settings import validate_fields

# Fields with a definition in `genclip_hf.settings`; the others are checked in `_check_fields`.
CHECKED_FIELDS = (
    "feature_layers",
    "image_size",
    "text_prompt_depth",
    "text_prompt_length",
    "position_interpolation",
    "sigma",
    "focal_gamma",
    "dice_smooth",
    "prompt_init_std",
    "score_threshold",
)
# The image probability at which neither prompt is preferred: the label threshold when `score_threshold` is None.
NEUTRAL_SCORE_THRESHOLD = 0.5


def official_dpam_start_layer(dpam_layer: int, num_layers: int) -> int:
    """The first 1-based block of the V-V stream that the official `DAPM_replace(dpam_layer)` gives.

    `DAPM_replace(d)` replaces the attention of the last `d - 1` blocks, so the V-V stream runs in blocks
    `num_layers - d + 2 .. num_layers` (layers 6..24 for the official `d = 20` on ViT-L's 24 blocks).
    """
    return num_layers - dpam_layer + 2


def default_dpam_start_layer(num_layers: int) -> int:
    """The official split for any depth: the first quarter of the tower is plain (5 of 24 blocks), the V-V stream
    starts at block `num_layers // 4` (6 for 24 blocks, 3 for 12), at least block 1."""
    return max(1, num_layers // 4)


@strict
class AnomalyCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of an [`AnomalyCLIPModel`]: a frozen CLIP backbone plus AnomalyCLIP's object-agnostic learnable
    prompts (Zhou et al., "AnomalyCLIP: Object-agnostic Prompt Learning for Zero-shot Anomaly Detection", ICLR 2024).
    The defaults are the official test and training settings (`test.py`, `train.py` of zqhang/AnomalyCLIP).

    Args:
        clip_config (`dict` or [`CLIPConfig`], *optional*):
            The backbone's configuration. Defaults to the architecture of `openai/clip-vit-large-patch14-336`.
        image_size (`int`, defaults to 518):
            Side of the square model input; CLIP's position grid is resized to it.
        feature_layers (`list[int]`, defaults to `[6, 12, 18, 24]`):
            1-based vision blocks whose tokens give the similarity maps. Blocks from `dpam_start_layer` on use the
            V-V stream, earlier ones the original stream (as the official code does).
        dpam_start_layer (`int`, *optional*):
            First 1-based block of the V-V (DPAM) stream. The official `DAPM_replace(20)` on 24 blocks is 6 (see
            [`official_dpam_start_layer`]); `None` resolves to `num_layers // 4` (6 for 24 blocks, 3 for 12).
        n_ctx (`int`, defaults to 12):
            Learnable context vectors per prompt (`Prompt_length`), written at positions `1 .. n_ctx`.
        text_prompt_depth (`int`, defaults to 9):
            `learnabel_text_embedding_depth`: text layers 2..depth receive a deep prompt, i.e. `depth - 1` tensors;
            1 disables the deep prompts.
        text_prompt_length (`int`, defaults to 4):
            `learnabel_text_embedding_length`: token positions `1 .. length` that each deep prompt replaces (they
            overwrite the first context vectors; at most `n_ctx`).
        sigma (`float`, defaults to 4.0):
            Standard deviation in pixels of the Gaussian smoothing of the summed map; 0 disables it.
        temperature (`float`, defaults to 0.07):
            Temperature of every softmax over cosine similarities (CLIP's `logit_scale` is not used).
        position_interpolation (`str`, defaults to `"bilinear"`):
            How the pre-trained position grid is resized to `image_size` (official: bilinear).
        round_deep_prompts_to_fp16 (`bool`, defaults to `True`):
            Round the deep text prompts to float16 before they enter the text encoder, as the official code does
            (`.half()`); the gradient passes through the rounding.
        score_threshold (`float`, *optional*):
            Image score (abnormal probability) from which an image is labelled anomalous; `None` means 0.5, where
            neither prompt is preferred.
        focal_gamma (`float`, defaults to 2.0):
            Focusing parameter of the focal loss.
        dice_smooth (`float`, defaults to 1.0):
            Smoothing term s of the dice loss `1 - (2 sum(S G) + s) / (sum(S) + sum(G) + s)`.
        segmentation_loss_weight (`float`, defaults to 4.0):
            Weight of the summed focal + dice losses against the image-level cross-entropy (`lam` of `train.py`).
        prompt_init_std (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of the context vectors and deep prompts.

    Example:

    ```python
    >>> from genclip_hf import AnomalyCLIPConfig
    >>> config = AnomalyCLIPConfig(feature_layers=[24])
    >>> config.dpam_start_layer
    6
    ```
    """

    model_type = "anomalyclip"
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=CLIPConfig, init_kwargs=CLIP_VIT_L_14_336)}

    clip_config: dict | CLIPConfig | None = None
    image_size: int = 518
    feature_layers: list[int] | tuple[int, ...] = (6, 12, 18, 24)
    dpam_start_layer: int | None = None
    n_ctx: int = 12
    text_prompt_depth: int = 9
    text_prompt_length: int = 4
    sigma: float = 4.0
    temperature: float = 0.07
    position_interpolation: str = "bilinear"
    round_deep_prompts_to_fp16: bool = True
    score_threshold: float | None = None
    focal_gamma: float = 2.0
    dice_smooth: float = 1.0
    segmentation_loss_weight: float = 4.0
    prompt_init_std: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.dpam_start_layer is None:
            self.dpam_start_layer = default_dpam_start_layer(self.clip_config.vision_config.num_hidden_layers)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value the backbone or the method cannot use."""
        validate_fields(self, CHECKED_FIELDS)
        vision_layers = self.clip_config.vision_config.num_hidden_layers
        text_layers = self.clip_config.text_config.num_hidden_layers
        if max(self.feature_layers) > vision_layers:
            raise ValueError(
                f"feature_layers must be 1-based vision block indices in [1, {vision_layers}] for this backbone, "
                f"got {self.feature_layers}."
            )
        _check_integer("dpam_start_layer", self.dpam_start_layer, 1, vision_layers)
        patch_size = self.clip_config.vision_config.patch_size
        if self.image_size < patch_size or self.image_size % patch_size:
            raise ValueError(
                f"image_size must be a positive multiple of the patch size {patch_size}, got {self.image_size}."
            )
        context_length = self.clip_config.text_config.max_position_embeddings
        # SOT, the context vectors and at least "object." plus EOT must fit CLIP's text context.
        _check_integer("n_ctx", self.n_ctx, 1, context_length - 4)
        _check_integer("text_prompt_depth", self.text_prompt_depth, 1, text_layers)
        if self.text_prompt_length > self.n_ctx:
            raise ValueError(
                f"text_prompt_length must be at most n_ctx={self.n_ctx} (the deep prompts replace context slots), "
                f"got {self.text_prompt_length}."
            )
        _check_positive("temperature", self.temperature)
        _check_positive("segmentation_loss_weight", self.segmentation_loss_weight, allow_zero=True)
        if not isinstance(self.round_deep_prompts_to_fp16, bool):
            raise ValueError(
                f"round_deep_prompts_to_fp16 must be true or false, got {self.round_deep_prompts_to_fp16!r}."
            )

    @property
    def num_deep_prompts(self) -> int:
        """Number of deep text prompt tensors (`text_prompt_depth - 1`, for text layers 2..depth)."""
        return self.text_prompt_depth - 1

    def label_threshold(self, num_layers: int | None = None) -> float:
        """`score_threshold`, or 0.5 when it is `None` (the image score does not depend on the layers used)."""
        return NEUTRAL_SCORE_THRESHOLD if self.score_threshold is None else self.score_threshold


def _check_integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}] for this backbone, got {value!r}.")


def _check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not valid or value == float("inf") or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")


__all__ = ["AnomalyCLIPConfig", "default_dpam_start_layer", "official_dpam_start_layer"]
