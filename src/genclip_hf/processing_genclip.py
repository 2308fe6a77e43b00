"""Processor class for GenCLIP: image resizing/normalisation, mask resizing and the prompt token layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, CLIPImageProcessorPil, ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .configuration_genclip import GenCLIPConfig
from .prompts import TEMPLATE_NOUN, PromptLayout, build_prompt_layout

ImageLike = Image.Image | np.ndarray | str | Path


def to_rgb_image(image: ImageLike, name: str = "image") -> Image.Image:
    """Convert a PIL image, a path or a numpy array to an 8-bit RGB PIL image.

    Grayscale, palette, RGBA and CMYK images are converted; 16-bit and float images are rescaled by their dtype's
    range (uint16 by 65535, float in [0, 1]). Arrays must be `(H, W)` or `(H, W, C)` with C in {1, 3, 4}.

    Raises:
        ValueError: naming `name` when the array shape or type cannot be an image.
        FileNotFoundError / OSError: when a path does not exist or is not a readable image.
    """
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            opened.load()
            return to_rgb_image(opened, name)
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return to_rgb_image(np.asarray(image), name)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            raise ValueError(
                f"{name} must be an array of shape (H, W) or (H, W, C) with C in {{1, 3, 4}} channels, "
                f"got shape {image.shape}."
            )
        if array.dtype == np.uint8:
            scaled = array
        elif array.dtype == np.uint16:
            scaled = (array.astype(np.float32) / 65535.0 * 255.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.integer):
            scaled = (array.astype(np.float64) / max(float(array.max()), 1.0) * 255.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_:
            scaled = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        else:
            raise ValueError(f"{name} has unsupported dtype {array.dtype}; expected an integer or float image.")
        return Image.fromarray(scaled).convert("RGB")
    raise ValueError(f"{name} must be a PIL image, a path or a numpy array, got {type(image).__name__}.")


def to_binary_mask(mask: ImageLike, name: str = "mask") -> np.ndarray:
    """A mask as a `(H, W)` bool array: any non-zero pixel is anomalous (palette masks included)."""
    if isinstance(mask, (str, Path)):
        with Image.open(mask) as opened:
            return to_binary_mask(opened.convert("L"), name)
    array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a single-channel mask of shape (H, W), got shape {array.shape}.")
    return array > 0


class GenCLIPProcessor(ProcessorMixin):
    r"""
    Prepares everything [`GenCLIPModel`] needs: images resized (no crop) to `image_size` and normalised with CLIP's
    mean/std (PIL), the prompt token ids and slot positions of each class name, and masks resized with nearest
    neighbour.

    Args:
        image_processor ([`CLIPImageProcessorPil`]): resizes to `image_size` x `image_size` without cropping.
        tokenizer: the CLIP tokenizer.
        n_state_tokens, n_query_tokens, text_prompt_length, normal_state_word, abnormal_state_word, generic_term:
            As in [`GenCLIPConfig`]; must match the model.
        max_text_length (`int`, defaults to 77): CLIP's text context.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        n_state_tokens: int = 1,
        n_query_tokens: int = 2,
        text_prompt_length: int = 1,
        normal_state_word: str = "good",
        abnormal_state_word: str = "damaged",
        generic_term: str = "object",
        max_text_length: int = 77,
        **kwargs,
    ):
        self.n_state_tokens = n_state_tokens
        self.n_query_tokens = n_query_tokens
        self.text_prompt_length = text_prompt_length
        self.normal_state_word = normal_state_word
        self.abnormal_state_word = abnormal_state_word
        self.generic_term = generic_term
        self.max_text_length = max_text_length
        self._layouts: dict[str, tuple[PromptLayout, PromptLayout]] = {}
        if image_processor is not None and not isinstance(image_processor, CLIPImageProcessorPil):
            # Where torchvision is installed, AutoImageProcessor returns its backend, whose resize differs slightly
            # from PIL's; keep the PIL backend so scores do not depend on the machine.
            image_processor = CLIPImageProcessorPil(
                size={"height": image_processor.size["height"], "width": image_processor.size["width"]},
                do_center_crop=False,
                resample=image_processor.resample,
                image_mean=list(image_processor.image_mean),
                image_std=list(image_processor.image_std),
            )
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_clip(
        cls, clip_name_or_path: str | Path, config: GenCLIPConfig | None = None, **config_overrides
    ) -> GenCLIPProcessor:
        """Build the processor matching `config` (or `GenCLIPConfig(**config_overrides)`) from a CLIP checkpoint's
        tokenizer. The checkpoint's own image mean/std are used when it has an image processor config."""
        if config is None:
            config = GenCLIPConfig(**config_overrides)
        tokenizer = AutoTokenizer.from_pretrained(clip_name_or_path)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        if (Path(clip_name_or_path) / "preprocessor_config.json").exists() or not Path(clip_name_or_path).exists():
            try:
                checkpoint_processor = CLIPImageProcessorPil.from_pretrained(clip_name_or_path)
                mean, std = checkpoint_processor.image_mean, checkpoint_processor.image_std
            except OSError:
                pass
        image_processor = CLIPImageProcessorPil(
            size={"height": config.image_size, "width": config.image_size},
            do_center_crop=False,
            image_mean=list(mean),
            image_std=list(std),
        )
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            n_state_tokens=config.n_state_tokens,
            n_query_tokens=config.n_query_tokens,
            text_prompt_length=config.text_prompt_length,
            normal_state_word=config.normal_state_word,
            abnormal_state_word=config.abnormal_state_word,
            generic_term=config.generic_term,
            max_text_length=config.clip_config.text_config.max_position_embeddings,
        )

    @property
    def image_size(self) -> int:
        """Side of the square model input."""
        return int(self.image_processor.size["height"])

    def prompt_layouts(self, class_name: str) -> tuple[PromptLayout, PromptLayout]:
        """The (normal, abnormal) prompt layouts of one class name, cached per name."""
        if class_name not in self._layouts:
            self._layouts[class_name] = tuple(
                build_prompt_layout(
                    self.tokenizer,
                    state_word,
                    class_name,
                    self.n_state_tokens,
                    self.n_query_tokens,
                    self.text_prompt_length,
                    self.max_text_length,
                )
                for state_word in (self.normal_state_word, self.abnormal_state_word)
            )
        return self._layouts[class_name]

    def prompt_inputs(self, class_names: Sequence[str], prefix: str = "") -> dict[str, torch.Tensor]:
        """Prompt ids and slot positions for one class name per image, padded to the longest prompt.

        Returns:
            `{prefix}input_ids` `(B, 2, T)`, `{prefix}query_positions` and `{prefix}eot_positions` `(B, 2)`.
        """
        layouts = [self.prompt_layouts(name) for name in class_names]
        length = max(len(layout.input_ids) for pair in layouts for layout in pair)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(layouts), 2, length), pad, dtype=torch.long)
        for row, pair in enumerate(layouts):
            for state, layout in enumerate(pair):
                input_ids[row, state, : len(layout.input_ids)] = torch.tensor(layout.input_ids)
        return {
            f"{prefix}input_ids": input_ids,
            f"{prefix}query_positions": torch.tensor([[layout.query_position for layout in pair] for pair in layouts]),
            f"{prefix}eot_positions": torch.tensor([[layout.eot_position for layout in pair] for pair in layouts]),
        }

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
            `eot_positions` `(B, 2)`, the query-only prompt as `generic_input_ids` `(1, 2, T')`,
            `generic_query_positions` and `generic_eot_positions` `(1, 2)`, and `masks` `(B, S, S)` when given.
        """
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}.")
        if images is None:
            raise ValueError("images is required: a PIL image, a path, a numpy array or a list of them.")
        image_list = list(images) if isinstance(images, (list, tuple)) else [images]
        if not image_list:
            raise ValueError("images must hold at least one image, got an empty list.")
        rgb_images = [to_rgb_image(image, f"images[{index}]") for index, image in enumerate(image_list)]
        names = self.expand_class_names(class_names, len(rgb_images))
        pixel_values = self.image_processor(rgb_images, return_tensors="pt")["pixel_values"]
        data = {"pixel_values": pixel_values, **self.prompt_inputs(names)}
        data.update(self.prompt_inputs([TEMPLATE_NOUN], prefix="generic_"))
        if masks is not None:
            data["masks"] = self.resize_masks(masks, [image.size for image in rgb_images])
        return BatchFeature(data=data, tensor_type=None)

    def expand_class_names(
        self, class_names: str | Sequence[str] | None, batch: int, argument: str = "class_names"
    ) -> list[str]:
        """One stripped class name per image: `None` gives the generic term, one name is repeated.

        Raises:
            ValueError: naming `argument` for an empty list, a count that is neither 1 nor `batch`, or a blank name.
        """
        if class_names is None:
            return [self.generic_term] * batch
        names = [class_names] if isinstance(class_names, str) else list(class_names)
        if not names:
            raise ValueError(f"{argument} must be a string or a list of {batch} strings, got an empty list.")
        if len(names) == 1:
            names = names * batch
        if len(names) != batch:
            raise ValueError(f"{argument} must hold 1 or {batch} names (one per image), got {len(names)}.")
        for index, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{argument}[{index}] must be a non-empty string, got {name!r}.")
        return [name.strip() for name in names]

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
            image = Image.fromarray(binary.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
            resized[index] = torch.from_numpy(np.asarray(image) > 0).float()
        return resized


__all__ = ["GenCLIPProcessor", "to_binary_mask", "to_rgb_image"]
