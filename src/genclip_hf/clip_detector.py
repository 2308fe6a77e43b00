"""What every CLIP-based detector of this package shares: a frozen `CLIPModel` as `self.clip`, built from any HF CLIP
checkpoint with its tokenizer bound, frozen again after loading, and kept in eval mode while the learnable parts
train."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPModel, PreTrainedTokenizerBase

from .detection import AnomalyDetectorMixin

logger = logging.getLogger(__name__)

LOADING_KWARGS = (
    "dtype",
    "device_map",
    "attn_implementation",
    "revision",
    "token",
    "cache_dir",
    "local_files_only",
    "force_download",
)
"""Options of `CLIPModel.from_pretrained` that `from_clip` passes on (a pipeline passes some of them)."""
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")
IGNORED_KWARGS = ("trust_remote_code", "code_revision", "_from_pipeline", "_commit_hash")
"""Options a pipeline passes that a local class does not need."""


class FrozenCLIPDetector(AnomalyDetectorMixin):
    """Mixin for detectors wrapping a frozen [`CLIPModel`] (put it first among the bases; the model class sets
    `config_class`, whose config has a `clip_config`)."""

    def attach_clip(self, clip_model: CLIPModel | None) -> None:
        """Set `self.clip` to `clip_model` (or a new CLIP of `config.clip_config`), frozen, with the model's attention
        implementation."""
        if clip_model is None:
            clip_model = CLIPModel(self.config.clip_config)
        else:
            clip_model.set_attn_implementation(self.config._attn_implementation)
        self.clip = clip_model
        self.clip.requires_grad_(False)

    @classmethod
    def from_clip(cls, clip_name_or_path: str | Path, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        """Build the detector (untrained where it has learnable parts) around a HF CLIP checkpoint (Hub id or folder),
        with the checkpoint's tokenizer bound.

        Args:
            clip_name_or_path: e.g. `"openai/clip-vit-large-patch14-336"`.
            tokenizer: the CLIP tokenizer; default: the checkpoint's.
            kwargs: config fields of the method (e.g. `image_size=518`; unknown names are refused) and loading options
                of `CLIPModel.from_pretrained` (`LOADING_KWARGS`; `dtype` defaults to float32); the options a
                pipeline passes that are not needed here (`IGNORED_KWARGS`) are accepted.
        """
        loading = {key: kwargs.pop(key) for key in LOADING_KWARGS if key in kwargs}
        loading.setdefault("dtype", torch.float32)
        for key in IGNORED_KWARGS:
            kwargs.pop(key, None)
        known = sorted({item.name for item in fields(cls.config_class)} - {"clip_config"})
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ValueError(
                f"Unknown argument(s) {unknown} of {cls.__name__}.from_clip; it takes the config fields {known} and "
                f"the loading options {list(LOADING_KWARGS)}."
            )
        clip = CLIPModel.from_pretrained(clip_name_or_path, **loading)
        model = cls(cls.config_class(clip_config=clip.config, **kwargs), clip_model=clip)
        if tokenizer is None:
            hub_options = {key: loading[key] for key in HUB_KWARGS if key in loading}
            try:
                tokenizer = AutoTokenizer.from_pretrained(clip_name_or_path, **hub_options)
            except (OSError, ValueError) as error:
                logger.warning("No tokenizer in %s (%s): bind one with set_tokenizer.", clip_name_or_path, error)
        if tokenizer is not None:
            model.set_tokenizer(tokenizer)
        return model.eval()

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        """Load a saved detector; the CLIP backbone is frozen again (loading materialises fresh parameters)."""
        model = super().from_pretrained(*args, **kwargs)
        model.clip.requires_grad_(False)
        return model

    def train(self, mode: bool = True):
        """Set training mode on the learnable parts; the frozen CLIP stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        return self


__all__ = ["HUB_KWARGS", "IGNORED_KWARGS", "LOADING_KWARGS", "FrozenCLIPDetector"]
