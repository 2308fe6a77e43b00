"""Processor class for GenCLIP: the shared image and mask preparation plus GenCLIP's prompt token layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, BatchFeature

from .configuration_genclip import GenCLIPConfig
from .detection import expand_class_names
from .images import ImageLike
from .processing_anomaly_detection import AnomalyDetectionProcessor, clip_image_statistics, square_image_processor
from .prompts import PromptLayout, PromptTokenizer

PROMPT_FIELDS = (
    "n_state_tokens",
    "n_query_tokens",
    "text_prompt_length",
    "text_prompt_position",
    "normal_state_word",
    "abnormal_state_word",
    "generic_term",
)


class GenCLIPProcessor(AnomalyDetectionProcessor):
    r"""
    Prepares everything [`GenCLIPModel`] needs for training: images resized (no crop) to `image_size` and
    normalised with CLIP's mean/std (PIL), the prompt token ids and slot positions of each class name, and masks
    resized with nearest neighbour. Its prompt settings must match the model's config ([`check_model`]).

    Args:
        image_processor ([`CLIPImageProcessorPil`]): resizes to `image_size` x `image_size` without cropping.
        tokenizer: the CLIP tokenizer.
        n_state_tokens, n_query_tokens, text_prompt_length, text_prompt_position, normal_state_word,
        abnormal_state_word, generic_term: As in [`GenCLIPConfig`]. A processor saved before `text_prompt_position`
            existed loads with `"before_eot"`, the layout it was made with.
        max_text_length (`int`, defaults to 77): CLIP's text context.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        n_state_tokens: int = 1,
        n_query_tokens: int = 2,
        text_prompt_length: int = 1,
        text_prompt_position: str | None = None,
        normal_state_word: str = "good",
        abnormal_state_word: str = "damaged",
        generic_term: str = "object",
        max_text_length: int = 77,
        **kwargs,
    ):
        if text_prompt_position is None:
            text_prompt_position = "before_eot" if "processor_class" in kwargs else "after_sot"
        self.n_state_tokens = n_state_tokens
        self.n_query_tokens = n_query_tokens
        self.text_prompt_length = text_prompt_length
        self.text_prompt_position = text_prompt_position
        self.normal_state_word = normal_state_word
        self.abnormal_state_word = abnormal_state_word
        self.generic_term = generic_term
        self.max_text_length = max_text_length
        self._prompt_tokenizer: PromptTokenizer | None = None
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_clip(
        cls, clip_name_or_path: str | Path, config: GenCLIPConfig | None = None, **config_overrides
    ) -> GenCLIPProcessor:
        """Build the processor matching `config` (or `GenCLIPConfig(**config_overrides)`) from a CLIP checkpoint's
        tokenizer. The checkpoint's own image mean/std are used when it has an image processor config."""
        if config is None:
            config = GenCLIPConfig(**config_overrides)
        mean, std = clip_image_statistics(clip_name_or_path)
        return cls(
            image_processor=square_image_processor(config.image_size, mean, std),
            tokenizer=AutoTokenizer.from_pretrained(clip_name_or_path),
            **{name: getattr(config, name) for name in PROMPT_FIELDS},
            max_text_length=config.clip_config.text_config.max_position_embeddings,
        )

    @property
    def prompt_tokenizer(self) -> PromptTokenizer:
        """Class names to prompt ids under this processor's prompt settings."""
        if self._prompt_tokenizer is None:
            self._prompt_tokenizer = PromptTokenizer(
                self.tokenizer,
                (self.normal_state_word, self.abnormal_state_word),
                self.n_state_tokens,
                self.n_query_tokens,
                self.text_prompt_length,
                self.text_prompt_position,
                self.max_text_length,
            )
        return self._prompt_tokenizer

    def _mismatches(self, config) -> list[tuple[str, object, object]]:
        found = super()._mismatches(config)
        found += [
            (name, getattr(self, name), getattr(config, name))
            for name in PROMPT_FIELDS
            if getattr(self, name) != getattr(config, name)
        ]
        return found

    def prompt_layouts(self, class_name: str) -> tuple[PromptLayout, PromptLayout]:
        """The (normal, abnormal) prompt layouts of one class name, cached per name."""
        return self.prompt_tokenizer.layouts(class_name)

    def prompt_inputs(self, class_names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Prompt ids and slot positions for one class name per image, padded to the longest prompt.

        Returns:
            `input_ids` `(B, 2, T)`, `query_positions` and `eot_positions` `(B, 2)`.
        """
        return self.prompt_tokenizer(class_names)

    def __call__(
        self,
        images: ImageLike | Sequence[ImageLike] | None = None,
        class_names: str | Sequence[str] | None = None,
        masks: ImageLike | Sequence[ImageLike | None] | None = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare images, prompts and (optionally) masks for [`GenCLIPModel`].

        Args:
            images: one image or a list (PIL, path or array; converted to RGB).
            class_names: one name for all images, or one per image; defaults to the generic term.
            masks: one mask per image (`None` for a normal image), each the size of its image.
            return_tensors: only `"pt"` is supported.
        Returns:
            A [`BatchFeature`] with `pixel_values` `(B, 3, S, S)`, `input_ids` `(B, 2, T)`, `query_positions` and
            `eot_positions` `(B, 2)`, and `masks` `(B, S, S)` when given.
        """
        features = super().__call__(images=images, masks=masks, return_tensors=return_tensors)
        names = expand_class_names(class_names, len(features["pixel_values"]), self.generic_term)
        features.update(self.prompt_inputs(names))
        return features


__all__ = ["GenCLIPProcessor", "PROMPT_FIELDS"]
