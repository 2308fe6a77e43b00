"""The processor every detector shares: images resized (no crop) to the model's square input and normalised, masks
resized with nearest neighbour, and the tokenizer that turns class names into prompts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, CLIPImageProcessorPil, PreTrainedModel, ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .images import ImageLike, to_binary_mask, to_rgb_image


def square_image_processor(
    image_size: int,
    image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
    image_std: Sequence[float] = OPENAI_CLIP_STD,
    resample: int = Image.Resampling.BICUBIC,
) -> CLIPImageProcessorPil:
    """A PIL CLIP image processor that resizes to `image_size` x `image_size` without cropping."""
    return CLIPImageProcessorPil(
        size={"height": int(image_size), "width": int(image_size)},
        do_center_crop=False,
        resample=resample,
        image_mean=[float(value) for value in image_mean],
        image_std=[float(value) for value in image_std],
    )


def clip_image_statistics(clip_name_or_path: str | Path) -> tuple[list[float], list[float]]:
    """The image mean and std of a CLIP checkpoint (its `preprocessor_config.json`), else OpenAI CLIP's."""
    local = Path(clip_name_or_path)
    if local.exists() and not (local / "preprocessor_config.json").exists():
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    try:
        checkpoint_processor = CLIPImageProcessorPil.from_pretrained(clip_name_or_path)
    except OSError:
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    return list(checkpoint_processor.image_mean), list(checkpoint_processor.image_std)


class AnomalyDetectionProcessor(ProcessorMixin):
    r"""
    Prepares images (and ground-truth masks) for any detector of this package: images are converted to RGB, resized
    without cropping to the model's square input `image_size` and normalised; masks are resized there with nearest
    neighbour. It carries the tokenizer with which a detector turns class names into prompts.

    Args:
        image_processor ([`CLIPImageProcessorPil`]): resizes to `image_size` x `image_size` without cropping.
        tokenizer: the CLIP tokenizer (optional for methods without text).
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        if image_processor is not None and not isinstance(image_processor, CLIPImageProcessorPil):
            # Where torchvision is installed, AutoImageProcessor returns its backend, whose resize differs slightly
            # from PIL's; keep the PIL backend so scores do not depend on the machine.
            image_processor = square_image_processor(
                image_processor.size["height"],
                image_processor.image_mean,
                image_processor.image_std,
                image_processor.resample,
            )
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def for_model(
        cls,
        model: PreTrainedModel,
        tokenizer=None,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ) -> AnomalyDetectionProcessor:
        """The processor of a detector: input size from `model.config.image_size`, CLIP's mean and std, and
        `tokenizer` (default: the model's)."""
        return cls(
            image_processor=square_image_processor(model.config.image_size, image_mean, image_std),
            tokenizer=tokenizer if tokenizer is not None else model.tokenizer,
        )

    @classmethod
    def from_clip(
        cls, clip_name_or_path: str | Path, image_size: int | None = None, config=None
    ) -> AnomalyDetectionProcessor:
        """The processor for a detector built on a CLIP checkpoint: its tokenizer and image statistics, and the input
        size `image_size` (or `config.image_size`)."""
        if image_size is None:
            if config is None:
                raise ValueError("from_clip needs image_size or a config with image_size.")
            image_size = config.image_size
        mean, std = clip_image_statistics(clip_name_or_path)
        return cls(
            image_processor=square_image_processor(image_size, mean, std),
            tokenizer=AutoTokenizer.from_pretrained(clip_name_or_path),
        )

    @property
    def image_size(self) -> int:
        """Side of the square model input."""
        return int(self.image_processor.size["height"])

    def check_model(self, model: PreTrainedModel) -> None:
        """Raise `ValueError` naming each setting where this processor and `model`'s config disagree."""
        mismatches = self._mismatches(model.config)
        if mismatches:
            details = "; ".join(f"{name}: processor {mine!r}, model {theirs!r}" for name, mine, theirs in mismatches)
            raise ValueError(
                f"The processor does not match the model ({details}); save and load them together, or build the "
                "processor from the model's config."
            )

    def _mismatches(self, config) -> list[tuple[str, object, object]]:
        size = self.image_processor.size
        found = []
        if (size["height"], size["width"]) != (config.image_size, config.image_size):
            found.append(("image_size", (size["height"], size["width"]), config.image_size))
        if self.image_processor.do_center_crop:
            found.append(("do_center_crop", True, False))
        return found

    def pixel_values(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """`(B, 3, image_size, image_size)` float32 model inputs of one image or a list."""
        image_list = list(images) if isinstance(images, (list, tuple)) else [images]
        if not image_list:
            raise ValueError("images must hold at least one image, got an empty list.")
        rgb_images = [to_rgb_image(image, f"images[{index}]") for index, image in enumerate(image_list)]
        return self.image_processor(rgb_images, return_tensors="pt")["pixel_values"]

    def __call__(
        self,
        images: ImageLike | Sequence[ImageLike] | None = None,
        masks: ImageLike | Sequence[ImageLike | None] | None = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare images and (optionally) masks.

        Args:
            images: one image or a list (PIL, path or array; converted to RGB).
            masks: one mask per image (`None` for a normal image), each the size of its image.
            return_tensors: only `"pt"` is supported.
        Returns:
            A [`BatchFeature`] with `pixel_values` `(B, 3, S, S)` and `masks` `(B, S, S)` when given.
        """
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}.")
        if images is None:
            raise ValueError("images is required: a PIL image, a path, a numpy array or a list of them.")
        image_list = list(images) if isinstance(images, (list, tuple)) else [images]
        if not image_list:
            raise ValueError("images must hold at least one image, got an empty list.")
        rgb_images = [to_rgb_image(image, f"images[{index}]") for index, image in enumerate(image_list)]
        data = {"pixel_values": self.image_processor(rgb_images, return_tensors="pt")["pixel_values"]}
        if masks is not None:
            data["masks"] = self.resize_masks(masks, [image.size for image in rgb_images])
        return BatchFeature(data=data, tensor_type=None)

    def resize_masks(
        self, masks: ImageLike | Sequence[ImageLike | None], image_sizes: Sequence[tuple[int, int]]
    ) -> torch.Tensor:
        """Binary masks resized with nearest neighbour to `(B, image_size, image_size)` float32.

        Args:
            masks: one mask per image, or `None` for an all-normal image.
            image_sizes: `(width, height)` of each image, which each mask must match.
        """
        mask_list = list(masks) if isinstance(masks, (list, tuple)) else [masks]
        if len(mask_list) != len(image_sizes):
            raise ValueError(f"masks must hold one mask per image ({len(image_sizes)}), got {len(mask_list)}.")
        size = self.image_size
        resized = torch.zeros(len(mask_list), size, size)
        for index, (mask, (width, height)) in enumerate(zip(mask_list, image_sizes, strict=True)):
            if mask is None:
                continue
            binary = to_binary_mask(mask, f"masks[{index}]")
            if binary.shape != (height, width):
                raise ValueError(
                    f"masks[{index}] must have the shape of its image (H, W) = ({height}, {width}), got {binary.shape}."
                )
            resized[index] = torch.from_numpy(resize_mask(binary, (size, size))).float()
        return resized


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a `(H, W)` boolean mask to `size = (height, width)` (the protocol's GT resize)."""
    if mask.shape == tuple(size):
        return mask.astype(bool)
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(image) > 0


def image_processor_for_model(model: PreTrainedModel, processor: ProcessorMixin | None) -> CLIPImageProcessorPil:
    """The image preprocessing to run `model` with: `processor`'s own when it is one of ours (checked against the
    model's config), else a resize without crop to the model's input size that keeps a given processor's image
    statistics (e.g. from the `CLIPProcessor` of a plain CLIP checkpoint, whose centre crop a detector must not use),
    or CLIP's."""
    if isinstance(processor, AnomalyDetectionProcessor):
        processor.check_model(model)
        return processor.image_processor
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return square_image_processor(model.config.image_size)
    return square_image_processor(model.config.image_size, image_processor.image_mean, image_processor.image_std)


__all__ = [
    "AnomalyDetectionProcessor",
    "clip_image_statistics",
    "image_processor_for_model",
    "resize_mask",
    "square_image_processor",
]
