"""GenCLIP model configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .settings import validate_fields

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14-336"
"""The paper's backbone (Hub id)."""
PAPER_IMAGE_SIZE = 518
"""The paper's model input side in pixels."""

# The architecture of DEFAULT_CLIP_MODEL: the default of the config (weights come from the Hub).
CLIP_VIT_L_14_336 = {
    "projection_dim": 768,
    "text_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "projection_dim": 768,
    },
    "vision_config": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
    },
}

# Written into every saved config.json so that `pipeline(..., trust_remote_code=True)` finds the pipeline code that
# `GenCLIPModel.save_pretrained` copies beside the weights.
HUB_CUSTOM_PIPELINES = {
    "anomaly-detection": {
        "impl": "pipeline_anomaly_detection.AnomalyDetectionPipeline",
        "pt": ["AutoModel"],
        "tf": [],
        "type": "multimodal",
    }
}
INSTALLED_PACKAGE = __name__.startswith("genclip_hf.")
CHECKED_FIELDS = (
    "feature_layers",
    "image_size",
    "n_state_tokens",
    "n_query_tokens",
    "text_prompt_depth",
    "text_prompt_length",
    "text_prompt_position",
    "position_interpolation",
    "normal_state_word",
    "abnormal_state_word",
    "generic_term",
    "logit_scale",
    "alpha",
    "sigma",
    "few_shot_weight",
    "top_n1",
    "top_n2",
    "use_vision_prompts",
    "use_query_branch",
    "use_cnf",
    "focal_gamma",
    "dice_smooth",
    "prompt_init_std",
    "score_threshold",
)


@strict
class GenCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`GenCLIPModel`]: a frozen CLIP backbone plus GenCLIP's prompt learner and the inference
    settings of the paper (Kim et al., "GenCLIP: Generalizing CLIP Prompts for Zero-shot Anomaly Detection").
    Every ablation of the paper is a field here.

    Args:
        clip_config (`dict` or [`CLIPConfig`], *optional*):
            The backbone's configuration. Defaults to the architecture of `openai/clip-vit-large-patch14-336`.
        feature_layers (`list[int]`, defaults to `[6, 12, 18, 24]`):
            1-based indices of the vision transformer blocks whose outputs feed the prompts and score maps.
        image_size (`int`, defaults to 518):
            Side of the square model input; CLIP's positional embeddings are interpolated to it.
        n_state_tokens (`int`, defaults to 1):
            Learnable state tokens per state (N_P, A_P).
        n_query_tokens (`int`, defaults to 2):
            Learnable general query tokens Q_P shared by both states.
        text_prompt_depth (`int`, *optional*):
            Number of text transformer layers before which the deep text prompt is written; `None` means all.
        text_prompt_length (`int`, defaults to 1):
            Number of reserved deep-prompt slots `[D]` in each prompt.
        text_prompt_position (`str`, defaults to `"after_sot"`):
            Slot of the deep prompt `[D]`: right after `[SOT]` (reaches every later token under the causal mask, as
            AnomalyCLIP/AdaCLIP) or `"before_eot"` (just before "." — the first release's slot, kept as an ablation).
            A checkpoint saved without this field was trained with `"before_eot"` and loads with it.
        position_interpolation (`str`, defaults to `"bicubic"`):
            How CLIP's position grid is resized to `image_size`: `"bicubic"` (HF, open_clip, AdaCLIP) or `"bilinear"`
            (AnomalyCLIP).
        normal_state_word (`str`, defaults to `"good"`) and abnormal_state_word (`str`, defaults to `"damaged"`):
            The state words of the prompt template.
        generic_term (`str`, defaults to `"object"`):
            The class-agnostic term used by CNF and by the query-only branch.
        logit_scale (`float`, defaults to `1 / 0.07`):
            Temperature applied to the cosine similarities before the softmax (Eq. 4).
        alpha (`float`, defaults to 0.8):
            Weight of the vision-enhanced branch in the fusion of Eq. 8.
        few_shot_weight (`float`, defaults to 0.5):
            With normal reference images (few-shot), the fused map before smoothing is
            `(1 - w) * fused zero-shot map + w * sum over layers of the nearest-neighbour distance maps`.
        sigma (`float`, defaults to 9.0):
            Standard deviation (pixels at `image_size`) of the Gaussian smoothing of Eq. 8; 0 disables it.
        top_n1 (`int`, defaults to 500) and top_n2 (`int`, defaults to 2500):
            N1 < N2 of the image score (Eqs. 9-10).
        use_vision_prompts (`bool`, defaults to `True`):
            Add the multi-layer vision prompts V_P to the query tokens (MVP). When off, V_Q = Q_P.
        use_query_branch (`bool`, defaults to `True`):
            Fuse the query-only branch at inference (GQP). When off, alpha is taken as 1.
        use_cnf (`bool`, defaults to `True`):
            Apply class-name filtering at inference.
        focal_gamma (`float`, defaults to 2.0):
            Focusing parameter of the focal loss (Eq. 5).
        dice_smooth (`float`, defaults to 1.0):
            Smoothing term s of the dice loss `1 - (2 sum(S G) + s) / (sum(S) + sum(G) + s)`, as in the AnomalyCLIP and
            AdaCLIP loss code; 0 gives Eq. 15 literally (epsilon only in the denominator), which has no gradient on
            normal images. A checkpoint saved without this field loads with 0.
        prompt_init_std (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of the learnable prompt tokens.
        score_threshold (`float`, *optional*):
            Image score at or above which an image is labelled anomalous. `None` means half the number of feature
            layers: the score of a map whose fused anomaly probability is 0.5 everywhere.

    Example:

    ```python
    >>> from genclip_hf import GenCLIPConfig
    >>> config = GenCLIPConfig(feature_layers=[6, 12, 18, 24], generic_term="object")
    ```
    """

    model_type = "genclip"
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=CLIPConfig, init_kwargs=CLIP_VIT_L_14_336)}

    clip_config: dict | CLIPConfig | None = None
    feature_layers: list[int] | tuple[int, ...] = (6, 12, 18, 24)
    image_size: int = PAPER_IMAGE_SIZE
    n_state_tokens: int = 1
    n_query_tokens: int = 2
    text_prompt_depth: int | None = None
    text_prompt_length: int = 1
    text_prompt_position: str | None = None
    position_interpolation: str = "bicubic"
    normal_state_word: str = "good"
    abnormal_state_word: str = "damaged"
    generic_term: str = "object"
    logit_scale: float = 1 / 0.07
    alpha: float = 0.8
    sigma: float = 9.0
    few_shot_weight: float = 0.5
    top_n1: int = 500
    top_n2: int = 2500
    use_vision_prompts: bool = True
    use_query_branch: bool = True
    use_cnf: bool = True
    focal_gamma: float = 2.0
    dice_smooth: float | None = None
    prompt_init_std: float = 0.02
    score_threshold: float | None = None

    def __post_init__(self, **kwargs):
        if INSTALLED_PACKAGE:
            # The installed package registers the task itself; a custom_pipelines entry would make
            # `pipeline("anomaly-detection", model=...)` demand trust_remote_code.
            kwargs.pop("custom_pipelines", None)
        # A config.json written before these fields existed records `transformers_version` but not the fields: it
        # loads with the behaviour it was trained with; a new config gets DESIGN's defaults.
        saved_before_the_fields = self.transformers_version is not None
        if self.text_prompt_position is None:
            self.text_prompt_position = "before_eot" if saved_before_the_fields else "after_sot"
        if self.dice_smooth is None:
            self.dice_smooth = 0.0 if saved_before_the_fields else 1.0
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value the backbone or the method cannot use."""
        validate_fields(self, CHECKED_FIELDS)
        vision_layers = self.clip_config.vision_config.num_hidden_layers
        text_layers = self.clip_config.text_config.num_hidden_layers
        layers = list(self.feature_layers)
        if max(layers) > vision_layers:
            raise ValueError(
                f"feature_layers must be 1-based vision block indices in [1, {vision_layers}] for this backbone, "
                f"got {layers}."
            )
        patch_size = self.clip_config.vision_config.patch_size
        if self.image_size < patch_size:
            raise ValueError(f"image_size must be at least the patch size {patch_size}, got {self.image_size}.")
        if self.text_prompt_depth is not None and self.text_prompt_depth > text_layers:
            raise ValueError(
                f"text_prompt_depth must be in [0, {text_layers}] (or None for all text layers), "
                f"got {self.text_prompt_depth}."
            )
        if self.top_n1 >= self.top_n2:
            raise ValueError(f"top_n1 must be smaller than top_n2, got top_n1={self.top_n1}, top_n2={self.top_n2}.")

    def to_dict(self) -> dict:
        """Serialise, adding the Hub pipeline entry (see `HUB_CUSTOM_PIPELINES`)."""
        output = super().to_dict()
        output["custom_pipelines"] = HUB_CUSTOM_PIPELINES
        return output

    @property
    def num_feature_layers(self) -> int:
        """Number of feature layers L."""
        return len(self.feature_layers)

    @property
    def deep_prompt_depth(self) -> int:
        """Number of text layers that receive the deep text prompt (`text_prompt_depth`, `None` resolved)."""
        if self.text_prompt_depth is None:
            return self.clip_config.text_config.num_hidden_layers
        return self.text_prompt_depth

    def label_threshold(self, num_layers: int | None = None) -> float:
        """`score_threshold`, or (when `None`) half the number of feature layers in use (all of them by default):
        the score of a map whose fused anomaly probability is 0.5 everywhere."""
        if self.score_threshold is not None:
            return self.score_threshold
        return (self.num_feature_layers if num_layers is None else num_layers) / 2


__all__ = ["DEFAULT_CLIP_MODEL", "PAPER_IMAGE_SIZE", "GenCLIPConfig"]
