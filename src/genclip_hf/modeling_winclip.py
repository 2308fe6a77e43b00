"""PyTorch WinCLIP: training-free zero-shot (WinCLIP) and few-shot (WinCLIP+) anomaly detection with a frozen HF CLIP,
reproducing anomalib's `WinClipModel` (Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation",
CVPR 2023)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional
from transformers import BatchEncoding, CLIPModel, PreTrainedModel
from transformers.utils import ModelOutput

from .clip_backbone import embed_images
from .clip_detector import FrozenCLIPDetector
from .configuration_winclip import WinCLIPConfig
from .detection import AnomalyDetectionOutput, expand_class_names
from .few_shot import nearest_neighbour_distances
from .settings import SETTINGS

logger = logging.getLogger(__name__)

# The compositional prompt ensemble of the WinCLIP paper as anomalib lists it: every state in every template,
# state-major. The template list holds "a jpeg corrupted photo of the {}." twice, which weights it double in the mean.
NORMAL_STATES = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
PROMPT_TEMPLATES = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
DEFAULT_CLASS_NAME = "object"

# Window sequences are run through the tower in chunks of at most this many tokens, which bounds the activations.
_WINDOW_TOKENS_PER_CHUNK = 1 << 16


def winclip_prompts(class_name: str) -> tuple[list[str], list[str]]:
    """The prompt ensemble of `class_name`: 7 x 21 = 147 normal and 4 x 21 = 84 anomalous prompts, state-major."""
    normal = [template.format(state.format(class_name)) for state in NORMAL_STATES for template in PROMPT_TEMPLATES]
    anomalous = [
        template.format(state.format(class_name)) for state in ANOMALOUS_STATES for template in PROMPT_TEMPLATES
    ]
    return normal, anomalous


def window_patch_indices(
    grid_height: int, grid_width: int, scale: int, device: torch.device | None = None
) -> torch.Tensor:
    """Patch indices covered by every `scale` x `scale` window sliding with stride 1 over the patch grid.

    Args:
        grid_height, grid_width: the patch grid.
        scale: the window side in patches, at most both grid sides.
        device: where to create the indices.
    Returns:
        `torch.LongTensor` of shape `(n_windows, scale * scale)` with `n_windows = (gh - k + 1) * (gw - k + 1)`:
        windows row-major by their top-left patch, each window's patch indices (0-based, row-major over the grid, CLS
        excluded) row-major inside the window. Its transpose is anomalib's `make_masks(grid, scale, 1)`.
    """
    if not 1 <= scale <= min(grid_height, grid_width):
        raise ValueError(
            f"window scale must be in [1, {min(grid_height, grid_width)}] for a {grid_height}x{grid_width} patch "
            f"grid, got {scale}."
        )
    grid = torch.arange(grid_height * grid_width, device=device).reshape(grid_height, grid_width)
    return grid.unfold(0, scale, 1).unfold(1, scale, 1).reshape(-1, scale * scale)


def anomaly_probabilities(embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """WinCLIP's zero-shot score: `softmax([cos(e, t_normal), cos(e, t_anomalous)] / temperature)[1]`, in float32.

    Args:
        embeddings (`torch.Tensor` of shape `(B, N, D)`): visual embeddings (not normalised).
        text_embeddings (`torch.Tensor` of shape `(B, 2, D)`): each image's normal and anomalous text embeddings.
        temperature: softmax temperature.
    Returns:
        `torch.FloatTensor` of shape `(B, N)`: the anomalous probability of each embedding.
    """
    visual = functional.normalize(embeddings.float(), dim=-1)
    text = functional.normalize(text_embeddings.to(visual.device, torch.float32), dim=-1)
    return (visual @ text.transpose(1, 2) / temperature).softmax(dim=-1)[..., 1]


def harmonic_aggregation(
    window_scores: torch.Tensor, patch_indices: torch.Tensor, grid_size: tuple[int, int]
) -> torch.Tensor:
    """Per-patch harmonic mean of the scores of the windows covering it: `n_cover / sum_w (1 / s_w)`.

    Args:
        window_scores (`torch.Tensor` of shape `(B, n_windows)`): positive window scores (a zero gives a zero mean).
        patch_indices (`torch.LongTensor` of shape `(n_windows, k)`): the patches of each window (see
            [`window_patch_indices`]); every patch of the grid must be covered by at least one window.
        grid_size: `(gh, gw)`.
    Returns:
        `torch.FloatTensor` of shape `(B, gh, gw)`.
    """
    batch = window_scores.shape[0]
    num_patches = grid_size[0] * grid_size[1]
    flat_indices = patch_indices.flatten()
    reciprocals = window_scores.reciprocal().repeat_interleave(patch_indices.shape[1], dim=1)
    sums = reciprocals.new_zeros(batch, num_patches).index_add_(1, flat_indices, reciprocals)
    counts = torch.bincount(flat_indices, minlength=num_patches).to(sums.dtype)
    return (counts / sums).reshape(batch, *grid_size)


def harmonic_mean(maps: torch.Tensor, dim: int) -> torch.Tensor:
    """Harmonic mean of positive `maps` along `dim`: `K / sum_k (1 / m_k)`."""
    return maps.shape[dim] / maps.reciprocal().sum(dim=dim)


@dataclass
class WinCLIPVisionOutput(ModelOutput):
    """Frozen CLIP embeddings of a batch of images, of their windows and (for WinCLIP+) of their patches.

    Args:
        image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`):
            Projected CLS feature of the full image (not normalised).
        window_embeds (`tuple[torch.FloatTensor]`, one `(B, n_windows_k, projection_dim)` per window scale):
            Projected CLS feature of every window, each encoded on its own (not normalised); windows ordered as in
            [`window_patch_indices`].
        patch_embeds (`torch.FloatTensor` of shape `(B, gh * gw, vision_width)`, *optional*):
            Last-layer patch tokens of the full image after `post_layernorm`, not projected (the few-shot patch
            features of anomalib / open_clip).
    """

    image_embeds: torch.FloatTensor | None = None
    window_embeds: tuple[torch.FloatTensor, ...] | None = None
    patch_embeds: torch.FloatTensor | None = None


@dataclass
class WinCLIPOutput(ModelOutput):
    """Output of [`WinCLIPModel`]: scores and maps on the patch grid `(gh, gw)`, with the embeddings they came from.

    Args:
        image_scores (`torch.FloatTensor` of shape `(B,)`):
            Zero-shot anomalous probability of the full image.
        window_scores (`tuple[torch.FloatTensor]`, one `(B, n_windows_k)` per window scale):
            Zero-shot anomalous probability of every window.
        scale_maps (`torch.FloatTensor` of shape `(B, n_scales, gh, gw)`):
            Per-scale maps: each patch's harmonic mean of the scores of the windows covering it.
        zero_shot_map (`torch.FloatTensor` of shape `(B, gh, gw)`):
            Harmonic mean of the image score (as a map) and the per-scale maps.
        few_shot_maps (`torch.FloatTensor` of shape `(B, 1 + n_scales, gh, gw)`, *optional*):
            With a reference memory: the nearest-neighbour distance map of the patches (channel 0), then one
            harmonically aggregated window distance map per scale.
        few_shot_map (`torch.FloatTensor` of shape `(B, gh, gw)`, *optional*):
            The mean of `few_shot_maps` over its channels.
        text_embeds (`torch.FloatTensor` of shape `(B, 2, projection_dim)`):
            Each image's normal and anomalous text embedding (not normalised).
        vision (`WinCLIPVisionOutput`):
            The image, window and (with a memory) patch embeddings.
    """

    image_scores: torch.FloatTensor | None = None
    window_scores: tuple[torch.FloatTensor, ...] | None = None
    scale_maps: torch.FloatTensor | None = None
    zero_shot_map: torch.FloatTensor | None = None
    few_shot_maps: torch.FloatTensor | None = None
    few_shot_map: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    vision: WinCLIPVisionOutput | None = None


class WinCLIPModel(FrozenCLIPDetector, PreTrainedModel):
    r"""
    WinCLIP on a frozen [`CLIPModel`]; it has no trainable parameters.

    Zero-shot (WinCLIP), as anomalib computes it: the class name fills the prompt ensemble ([`winclip_prompts`]); the
    normal and anomalous text embeddings are the means of the unnormalised prompt features. Any visual embedding `e`
    scores `softmax([cos(e, t_n), cos(e, t_a)] / temperature)[1]`. The full image gives the image score. For each
    window scale `k`, every `k x k` window (stride 1) is the CLS token plus its `k * k` patch tokens, taken after the
    patch and position embeddings, and is encoded through `pre_layrnorm`, the whole tower, `post_layernorm` and the
    projection on its own (windows never attend to each other). Each patch gets the harmonic mean of the scores of
    the windows covering it; the per-scale maps and the image score (as a constant map) are combined by another
    harmonic mean, then upsampled bilinearly to the input size. The image score is the full-image score.

    Few-shot (WinCLIP+), with a memory from [`~WinCLIPModel.build_reference_memory`] of `k` normal images: the
    distance of a feature to the memory is `min 0.5 * (1 - cos)` ([`nearest_neighbour_distances`]); the few-shot map
    is the mean of the patch-level distance map (last-layer patch tokens) and of the harmonically aggregated
    window-level distance maps at the same scales. With `w = few_shot_weight` the map is
    `(1 - w) * zero-shot + w * few-shot` and the image score `(1 - w) * image score + w * max(few-shot map)`, both on
    the patch grid before upsampling; `w = 0.5` is the paper's and anomalib's average.

    `forward` returns every intermediate on the patch grid ([`WinCLIPOutput`]); [`~WinCLIPModel.detect`] is the
    detector contract (fusion, upsampling, settings).

    Example:

    ```python
    >>> from PIL import Image
    >>> from genclip_hf import AnomalyDetectionProcessor, WinCLIPModel
    >>> image = Image.open("bottle.png")
    >>> model = WinCLIPModel.from_clip("openai/clip-vit-base-patch16", image_size=240)
    >>> processor = AnomalyDetectionProcessor.from_clip("openai/clip-vit-base-patch16", image_size=240)
    >>> output = model.detect(processor(images=image)["pixel_values"], class_names=["bottle"])
    ```
    """

    config: WinCLIPConfig
    config_class = WinCLIPConfig
    base_model_prefix = "winclip"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True
    detection_settings = ("window_scales", "few_shot_weight")

    def __init__(self, config: WinCLIPConfig, clip_model: CLIPModel | None = None):
        super().__init__(config)
        self.attach_clip(clip_model)
        self._text_embeddings_cache: dict[tuple, torch.Tensor] = {}
        self.post_init()
        self.requires_grad_(False)

    def set_tokenizer(self, tokenizer) -> None:
        """Bind the tokenizer that turns class names into prompts; cached text embeddings are dropped."""
        super().set_tokenizer(tokenizer)
        self._text_embeddings_cache.clear()

    # Text side.

    def tokenize_prompts(self, prompts: list[str]) -> BatchEncoding:
        """Token ids `(P, T)` and attention mask of `prompts`, padded to the longest and truncated to the text
        context; ids agree with open_clip's `tokenize` up to and including the first EOT."""
        max_length = self.config.clip_config.text_config.max_position_embeddings
        return self.tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    @torch.no_grad()
    def prompt_embeddings(self, class_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Text features of every prompt of the ensemble of `class_name` (projected EOT features, not normalised).

        Returns:
            `(147, projection_dim)` normal and `(84, projection_dim)` anomalous prompt embeddings.
        """
        normal, anomalous = winclip_prompts(class_name)
        tokens = self.tokenize_prompts(normal + anomalous)
        device = self.clip.text_model.embeddings.token_embedding.weight.device
        features = self.clip.get_text_features(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        ).pooler_output
        return features[: len(normal)], features[len(normal) :]

    @torch.no_grad()
    def text_embeddings(self, class_name: str) -> torch.Tensor:
        """The normal and anomalous text embeddings of `class_name`: `(2, projection_dim)`, the means of the
        unnormalised prompt embeddings. Computed once per name, dtype and device, then cached."""
        if not isinstance(class_name, str) or not class_name.strip():
            raise ValueError(f"class_name must be a non-empty string, got {class_name!r}.")
        weight = self.clip.text_projection.weight
        key = (class_name, weight.dtype, weight.device)
        if key not in self._text_embeddings_cache:
            normal, anomalous = self.prompt_embeddings(class_name)
            self._text_embeddings_cache[key] = torch.stack([normal.mean(dim=0), anomalous.mean(dim=0)])
        return self._text_embeddings_cache[key]

    # Vision side.

    @torch.no_grad()
    def encode_image(
        self,
        pixel_values: torch.Tensor,
        window_scales: list[int] | None = None,
        return_patch_embeds: bool = False,
    ) -> WinCLIPVisionOutput:
        """Full-image, window and (optionally) patch embeddings.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): normalised images, H and W multiples of the
                patch size (position embeddings are resized bicubically when the grid differs from CLIP's).
            window_scales: window sides in patches; defaults to `config.window_scales`.
            return_patch_embeds: also return the last-layer patch tokens (for WinCLIP+).
        Returns:
            [`WinCLIPVisionOutput`].
        """
        self._check_images(pixel_values)
        vision = self.clip.vision_model
        pixel_values = pixel_values.to(vision.embeddings.patch_embedding.weight.device)
        tokens = embed_images(vision, pixel_values)
        grid_size = self._grid_size(pixel_values)
        scales = self._window_scales(window_scales, grid_size)
        hidden = self._run_tower(tokens)
        patch_embeds = vision.post_layernorm(hidden[:, 1:]) if return_patch_embeds else None
        window_embeds = tuple(self._window_embeddings(tokens, grid_size, scale) for scale in scales)
        return WinCLIPVisionOutput(
            image_embeds=self._project_cls(hidden), window_embeds=window_embeds, patch_embeds=patch_embeds
        )

    def _run_tower(self, tokens: torch.Tensor) -> torch.Tensor:
        """`pre_layrnorm` and every encoder layer on independent sequences `(n, L, width)` -> `(n, L, width)`."""
        vision = self.clip.vision_model
        return vision.encoder(inputs_embeds=vision.pre_layrnorm(tokens)).last_hidden_state

    def _project_cls(self, hidden: torch.Tensor) -> torch.Tensor:
        """`(n, L, width)` tower outputs -> `(n, projection_dim)` projected CLS features."""
        return self.clip.visual_projection(self.clip.vision_model.post_layernorm(hidden[:, 0]))

    def _window_embeddings(self, tokens: torch.Tensor, grid_size: tuple[int, int], scale: int) -> torch.Tensor:
        """`(B, 1 + N, width)` embedded tokens -> `(B, n_windows, projection_dim)`: every window of side `scale` is
        its own sequence (CLS + its patch tokens, positions kept), all windows of all images in one batch."""
        batch, _, width = tokens.shape
        indices = window_patch_indices(*grid_size, scale, device=tokens.device)
        patches = tokens[:, 1:][:, indices]
        cls = tokens[:, :1, None].expand(batch, indices.shape[0], 1, width)
        sequences = torch.cat([cls, patches], dim=2).flatten(0, 1)
        per_chunk = max(1, _WINDOW_TOKENS_PER_CHUNK // sequences.shape[1])
        embeds = torch.cat([self._project_cls(self._run_tower(chunk)) for chunk in sequences.split(per_chunk)])
        return embeds.reshape(batch, indices.shape[0], -1)

    # Scores and maps.

    @torch.no_grad()
    def build_reference_memory(
        self, pixel_values: torch.Tensor, window_scales: list[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """The WinCLIP+ memory of `k` normal reference images of one class.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(k, 3, S, S)`): the reference images at `config.image_size`.
            window_scales: the scales to store; defaults to `config.window_scales` (detect may use any subset).
        Returns:
            `"patch_embeddings"` `(k * gh * gw, vision_width)` and, per scale, `"window_embeddings_scale{s}"`
            `(k * n_windows_s, projection_dim)`.
        """
        self.check_pixel_values(pixel_values)
        scales = self._window_scales(window_scales, self._grid_size(pixel_values))
        vision = self.encode_image(pixel_values, scales, return_patch_embeds=True)
        memory = {"patch_embeddings": vision.patch_embeds.flatten(0, 1)}
        for scale, embeds in zip(scales, vision.window_embeds, strict=True):
            memory[_window_memory_key(scale)] = embeds.flatten(0, 1)
        return memory

    @torch.no_grad()
    def forward(
        self,
        pixel_values: torch.Tensor,
        class_names: str | list[str] | None = None,
        reference_memory: dict[str, torch.Tensor] | None = None,
        window_scales: list[int] | None = None,
    ) -> WinCLIPOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`):
                Normalised images, H and W multiples of the patch size.
            class_names (`str` or `list[str]`, *optional*):
                One name per image, or one for all; `None` uses `"object"`.
            reference_memory (`dict[str, torch.Tensor]`, *optional*):
                From [`~WinCLIPModel.build_reference_memory`]; adds the few-shot maps.
            window_scales (`list[int]`, *optional*):
                Window sides in patches; defaults to `config.window_scales`.
        Returns:
            [`WinCLIPOutput`] on the patch grid.
        """
        self._check_images(pixel_values)
        batch = pixel_values.shape[0]
        grid_size = self._grid_size(pixel_values)
        scales = self._window_scales(window_scales, grid_size)
        if reference_memory is not None:
            self._check_reference_memory(reference_memory, scales)
        names = expand_class_names(class_names, batch, DEFAULT_CLASS_NAME)
        text_embeds = torch.stack([self.text_embeddings(name) for name in names])
        vision = self.encode_image(pixel_values, scales, return_patch_embeds=reference_memory is not None)
        temperature = self.config.temperature
        image_scores = anomaly_probabilities(vision.image_embeds[:, None], text_embeds, temperature)[:, 0]
        window_scores = tuple(
            anomaly_probabilities(embeds, text_embeds, temperature) for embeds in vision.window_embeds
        )
        scale_maps = self._aggregate_windows(window_scores, scales, grid_size)
        image_map = image_scores[:, None, None, None].expand(batch, 1, *grid_size)
        zero_shot_map = harmonic_mean(torch.cat([image_map, scale_maps], dim=1), dim=1)
        few_shot_maps = few_shot_map = None
        if reference_memory is not None:
            few_shot_maps = self._few_shot_maps(vision, reference_memory, scales, grid_size)
            few_shot_map = few_shot_maps.mean(dim=1)
        return WinCLIPOutput(
            image_scores=image_scores,
            window_scores=window_scores,
            scale_maps=scale_maps,
            zero_shot_map=zero_shot_map,
            few_shot_maps=few_shot_maps,
            few_shot_map=few_shot_map,
            text_embeds=text_embeds,
            vision=vision,
        )

    @torch.no_grad()
    def detect(
        self,
        pixel_values: torch.Tensor,
        class_names: str | list[str] | None = None,
        reference_memory: dict[str, torch.Tensor] | None = None,
        return_component_maps: bool = False,
        **settings: Any,
    ) -> AnomalyDetectionOutput:
        """Anomaly maps and image scores (zero-shot, or WinCLIP+ with `reference_memory`).

        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, S, S)`): images at `config.image_size` = S.
            class_names: one name per image, or one for all; `None` uses `"object"`.
            reference_memory: from [`~WinCLIPModel.build_reference_memory`] (normal images of the same class).
            return_component_maps: also return `"window_scales"`, the zero-shot per-scale maps `(B, n_scales, S, S)`,
                and with a memory `"few_shot"`, the patch and per-scale distance maps `(B, 1 + n_scales, S, S)`.
            settings: `window_scales`, `few_shot_weight` (defaults from the config).
        Returns:
            [`AnomalyDetectionOutput`] with `anomaly_maps` `(B, S, S)` and `pred_scores` `(B,)`.
        """
        self.check_pixel_values(pixel_values)
        resolved = self.resolve_settings(settings)
        names = expand_class_names(class_names, pixel_values.shape[0], DEFAULT_CLASS_NAME)
        outputs = self(pixel_values, names, reference_memory, resolved["window_scales"])
        grid_map, pred_scores = outputs.zero_shot_map, outputs.image_scores
        if outputs.few_shot_map is not None:
            weight = resolved["few_shot_weight"]
            grid_map = (1 - weight) * grid_map + weight * outputs.few_shot_map
            pred_scores = (1 - weight) * pred_scores + weight * outputs.few_shot_map.amax(dim=(-2, -1))
        size = tuple(pixel_values.shape[-2:])
        component_maps = None
        if return_component_maps:
            component_maps = {"window_scales": _upsample(outputs.scale_maps, size)}
            if outputs.few_shot_maps is not None:
                component_maps["few_shot"] = _upsample(outputs.few_shot_maps, size)
        return AnomalyDetectionOutput(
            anomaly_maps=_upsample(grid_map[:, None], size)[:, 0],
            pred_scores=pred_scores,
            score_threshold=self.config.label_threshold(),
            class_names=names,
            component_maps=component_maps,
        )

    def _aggregate_windows(
        self, window_scores: tuple[torch.Tensor, ...], scales: list[int], grid_size: tuple[int, int]
    ) -> torch.Tensor:
        """One harmonic-aggregation map per scale: `(B, n_scales, gh, gw)`."""
        maps = [
            harmonic_aggregation(scores, window_patch_indices(*grid_size, scale, device=scores.device), grid_size)
            for scores, scale in zip(window_scores, scales, strict=True)
        ]
        return torch.stack(maps, dim=1)

    def _few_shot_maps(
        self,
        vision: WinCLIPVisionOutput,
        memory: dict[str, torch.Tensor],
        scales: list[int],
        grid_size: tuple[int, int],
    ) -> torch.Tensor:
        """Patch-level distance map, then one aggregated window-level distance map per scale: `(B, 1 + n, gh, gw)`."""
        patch_map = nearest_neighbour_distances(vision.patch_embeds, memory["patch_embeddings"])
        window_distances = tuple(
            nearest_neighbour_distances(embeds, memory[_window_memory_key(scale)])
            for embeds, scale in zip(vision.window_embeds, scales, strict=True)
        )
        window_maps = self._aggregate_windows(window_distances, scales, grid_size)
        return torch.cat([patch_map.reshape(-1, 1, *grid_size), window_maps], dim=1)

    # Checks.

    def _grid_size(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        patch = self.config.clip_config.vision_config.patch_size
        return pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch

    def _window_scales(self, window_scales: list[int] | None, grid_size: tuple[int, int]) -> list[int]:
        """`window_scales` (or the config's) validated against the patch grid."""
        scales = SETTINGS["window_scales"].validate(
            self.config.window_scales if window_scales is None else window_scales
        )
        if max(scales) > min(grid_size):
            raise ValueError(
                f"window_scales must be at most {min(grid_size)} for a {grid_size[0]}x{grid_size[1]} patch grid, "
                f"got {scales}."
            )
        return scales

    def _check_images(self, pixel_values: torch.Tensor) -> None:
        patch = self.config.clip_config.vision_config.patch_size
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must have shape (batch, 3, H, W), got {shape}.")
        if pixel_values.shape[-2] % patch or pixel_values.shape[-1] % patch:
            raise ValueError(
                f"pixel_values height and width must be multiples of the patch size {patch}, "
                f"got {tuple(pixel_values.shape[-2:])}."
            )

    def _check_reference_memory(self, memory: dict[str, torch.Tensor], scales: list[int]) -> None:
        """Raise `ValueError` naming the first missing or misshapen entry of a reference memory."""
        if not isinstance(memory, dict):
            raise ValueError(f"reference_memory must be the dict of build_reference_memory, got {type(memory)}.")
        expected = {"patch_embeddings": self.config.clip_config.vision_config.hidden_size}
        expected.update({_window_memory_key(scale): self.config.clip_config.projection_dim for scale in scales})
        for key, width in expected.items():
            if key not in memory:
                raise ValueError(
                    f"reference_memory has no {key!r} (it holds {sorted(memory)}); build it with "
                    f"build_reference_memory(..., window_scales={scales})."
                )
            value = memory[key]
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] == 0 or value.shape[1] != width:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(f"reference_memory[{key!r}] must have shape (M, {width}) with M >= 1, got {shape}.")


def _window_memory_key(scale: int) -> str:
    return f"window_embeddings_scale{scale}"


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (no corner alignment, no antialias) of `(B, K, gh, gw)` maps to `(B, K, *size)`."""
    return functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)


__all__ = [
    "WinCLIPModel",
    "WinCLIPOutput",
    "WinCLIPVisionOutput",
    "anomaly_probabilities",
    "harmonic_aggregation",
    "harmonic_mean",
    "window_patch_indices",
    "winclip_prompts",
]
