"""Class-name filtering (CNF, paper Sec. 3.4): clean a class name, then keep it only if the frozen CLIP finds the
image closer to "a photo of a {class}." than to "a photo of an {generic term}."."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


def normalize_class_name(class_name: str, generic_term: str = "object") -> str:
    """Strip digits, turn `_` and `-` into spaces and collapse whitespace; an empty result becomes `generic_term`.

    Examples: "pcb2" -> "pcb", "pipe_fryum" -> "pipe fryum", "02" -> "object".
    """
    cleaned = re.sub(r"\d+", "", class_name)
    cleaned = re.sub(r"[_\-]+", " ", cleaned)
    cleaned = " ".join(cleaned.split())
    return cleaned or generic_term


def class_sentence(class_name: str) -> str:
    """The CNF sentence of a class name: "a photo of a pcb."."""
    return f"a photo of a {class_name}."


def generic_sentence(generic_term: str) -> str:
    """The CNF sentence of the generic term, with its article: "a photo of an object."."""
    article = "an" if generic_term[:1].lower() in "aeiou" else "a"
    return f"a photo of {article} {generic_term}."


class ClassNameFilter:
    """CNF with sentence embeddings cached per sentence.

    Args:
        encode_text: maps sentences to CLIP text embeddings `(N, D)` (need not be normalised); with a real model,
            [`clip_text_encoder`].
        generic_term: the replacement term, e.g. "object".
    """

    def __init__(self, encode_text: TextEncoder, generic_term: str = "object"):
        self.encode_text = encode_text
        self.generic_term = generic_term
        self._sentence_embeddings: dict[str, torch.Tensor] = {}

    def sentence_embeddings(self, sentences: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings `(N, D)` of `sentences`, encoding only those not cached yet."""
        missing = sorted({sentence for sentence in sentences if sentence not in self._sentence_embeddings})
        if missing:
            encoded = functional.normalize(self.encode_text(missing).float(), dim=-1)
            self._sentence_embeddings.update(zip(missing, encoded, strict=True))
        return torch.stack([self._sentence_embeddings[sentence] for sentence in sentences])

    def __call__(self, image_embeds: torch.Tensor, class_names: Sequence[str]) -> list[str]:
        """Filtered class name of each image.

        Args:
            image_embeds: `(B, D)` frozen CLIP image embeddings.
            class_names: `B` raw class names.
        Returns:
            `B` names: the cleaned name, or the generic term when the image is at least as similar to the generic
            sentence as to the class sentence.
        """
        if len(class_names) != image_embeds.shape[0]:
            raise ValueError(
                f"class_names must hold one name per image ({image_embeds.shape[0]}), got {len(class_names)}."
            )
        cleaned = [normalize_class_name(name, self.generic_term) for name in class_names]
        candidates = [index for index, name in enumerate(cleaned) if name != self.generic_term]
        if not candidates:
            return cleaned
        images = functional.normalize(image_embeds[candidates].float(), dim=-1)
        class_embeds = self.sentence_embeddings([class_sentence(cleaned[index]) for index in candidates])
        generic_embed = self.sentence_embeddings([generic_sentence(self.generic_term)])[0]
        class_similarity = (images * class_embeds.to(images.device)).sum(dim=-1)
        generic_similarity = images @ generic_embed.to(images.device)
        filtered = list(cleaned)
        for index, specific, generic in zip(
            candidates, class_similarity.tolist(), generic_similarity.tolist(), strict=True
        ):
            if generic >= specific:
                filtered[index] = self.generic_term
        return filtered


def clip_text_encoder(clip_model, tokenizer) -> TextEncoder:
    """A [`TextEncoder`] with a frozen HF `CLIPModel` and its tokenizer: projected pooled text features `(N, D)`."""

    def encode(sentences: Sequence[str]) -> torch.Tensor:
        tokens = tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=clip_model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        ).to(clip_model.device)
        with torch.no_grad():
            return clip_model.get_text_features(**tokens).pooler_output

    return encode


__all__ = [
    "ClassNameFilter",
    "class_sentence",
    "clip_text_encoder",
    "generic_sentence",
    "normalize_class_name",
]
