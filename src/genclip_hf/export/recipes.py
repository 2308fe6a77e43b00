"""What each exportable method needs besides its graph: the text tensors that do not depend on the image, computed
once per class name at export time, and how a class name given at run time finds its row.

A recipe holds the graph module, the per-class tables (one row per class name, gathered per image at run time), the
shared tensors (the same for every image) and the class-name rules the runtime applies without torch models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..class_names import ClassNameFilter, class_sentence, clip_text_encoder, generic_sentence, normalize_class_name
from ..modeling_winclip import DEFAULT_CLASS_NAME
from .graphs import AnomalyCLIPGraph, GenCLIPGraph, WinCLIPGraph

CLASS_KEY_RULES = ("cnf", "strip", "ignore")
"""How a class name becomes the key of its table row: `cnf` cleans it as class-name filtering does ("metal_plate" and
"metal plate" share a row), `strip` only strips it, `ignore` means the method does not use class names."""


def class_key(name: str, rule: str, generic_term: str) -> str:
    """The table key of a class name under `rule` (see [`CLASS_KEY_RULES`])."""
    if rule == "cnf":
        return normalize_class_name(name.strip(), generic_term)
    return name.strip()


@dataclass
class ExportRecipe:
    """One detector ready for export.

    Args:
        graph: the traceable `detect` (see [`genclip_hf.export.graphs`]); its inputs are `pixel_values`, then
            `per_class` names, then `shared` names, in that order.
        per_class: input name -> `(K, ...)` table, row `k` for `class_keys[k]`.
        shared: input name -> tensor fed as it is to every batch.
        output_names: the graph's outputs (`anomaly_maps`, `pred_scores` and, for CNF, `keeps_class_name`).
        class_keys: the table keys, in row order.
        reported_names: the class name `detect` reports for each key when the image keeps it.
        key_rule: one of [`CLASS_KEY_RULES`].
        default_class_name: what `class_names=None` means.
        fallback_class_name: the name reported when CNF drops an image's class name (else `None`).
    """

    graph: nn.Module
    per_class: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor]
    output_names: tuple[str, ...]
    class_keys: list[str]
    reported_names: list[str]
    key_rule: str
    default_class_name: str | None
    fallback_class_name: str | None = None
    input_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.graph.eval()
        self.input_names = ("pixel_values", *self.per_class, *self.shared)

    def example_inputs(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's inputs for `pixel_values` `(B, 3, S, S)`, every image with the first class row."""
        batch = pixel_values.shape[0]
        rows = [table[torch.zeros(batch, dtype=torch.long)] for table in self.per_class.values()]
        return (pixel_values, *rows, *self.shared.values())


def _ordered_keys(class_names: Sequence[str], default: str, rule: str, generic_term: str) -> list[str]:
    keys = [class_key(default, rule, generic_term)]
    for name in class_names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class_names must hold non-empty strings, got {name!r}.")
        key = class_key(name, rule, generic_term)
        if key not in keys:
            keys.append(key)
    return keys


def genclip_recipe(model: Any, settings: dict[str, Any], class_names: Sequence[str]) -> ExportRecipe:
    """GenCLIP: per class, the prompt ids of both CNF candidates (the class name, the generic term) and their CNF
    sentence embeddings; shared, the query-only branch's text embeddings `F_Q`. The vision-enhanced prompts are
    encoded inside the graph."""
    generic = settings["generic_term"]
    rule = "cnf" if settings["use_cnf"] else "strip"
    keys = _ordered_keys(class_names, generic, rule, generic)
    prompts = model.prompt_tokenizer([*keys, generic])
    class_rows = {name: tensor[:-1] for name, tensor in prompts.items()}
    generic_row = {name: tensor[-1:].expand_as(class_rows[name]) for name, tensor in prompts.items()}
    sentences = ClassNameFilter(clip_text_encoder(model.clip, model.tokenizer), generic)
    generic_text = generic_sentence(generic)
    class_texts = [generic_text if key == generic else class_sentence(key) for key in keys]
    sentence_embeds = sentences.sentence_embeddings([*class_texts, generic_text])
    per_class = {
        "prompt_ids": torch.stack([class_rows["input_ids"], generic_row["input_ids"]], dim=1),
        "query_positions": torch.stack([class_rows["query_positions"], generic_row["query_positions"]], dim=1),
        "eot_positions": torch.stack([class_rows["eot_positions"], generic_row["eot_positions"]], dim=1),
        "sentence_embeds": torch.stack(
            [sentence_embeds[:-1], sentence_embeds[-1:].expand(len(keys), -1)], dim=1
        ).float(),
    }
    return ExportRecipe(
        graph=GenCLIPGraph(model, settings),
        per_class=per_class,
        shared={"query_text_embeds": model.query_text_embeddings().float()},
        output_names=("anomaly_maps", "pred_scores", "keeps_class_name"),
        class_keys=keys,
        reported_names=keys,
        key_rule=rule,
        default_class_name=generic,
        fallback_class_name=generic if settings["use_cnf"] else None,
    )


def winclip_recipe(model: Any, settings: dict[str, Any], class_names: Sequence[str]) -> ExportRecipe:
    """WinCLIP zero-shot: per class, the normal and anomalous text embeddings of its prompt ensemble."""
    keys = _ordered_keys(class_names, DEFAULT_CLASS_NAME, "strip", DEFAULT_CLASS_NAME)
    return ExportRecipe(
        graph=WinCLIPGraph(model, settings),
        per_class={"text_embeds": torch.stack([model.text_embeddings(key) for key in keys]).float()},
        shared={},
        output_names=("anomaly_maps", "pred_scores"),
        class_keys=keys,
        reported_names=keys,
        key_rule="strip",
        default_class_name=DEFAULT_CLASS_NAME,
    )


def anomalyclip_recipe(model: Any, settings: dict[str, Any], class_names: Sequence[str]) -> ExportRecipe:
    """AnomalyCLIP: its object-agnostic text features, shared by every image; class names are not used."""
    return ExportRecipe(
        graph=AnomalyCLIPGraph(model, settings),
        per_class={},
        shared={"text_features": model.text_features().float()},
        output_names=("anomaly_maps", "pred_scores"),
        class_keys=[],
        reported_names=[],
        key_rule="ignore",
        default_class_name=None,
    )


RECIPES: dict[str, Callable[[Any, dict[str, Any], Sequence[str]], ExportRecipe]] = {
    "genclip": genclip_recipe,
    "winclip": winclip_recipe,
    "anomalyclip": anomalyclip_recipe,
}
"""`model_type` -> recipe builder of every method that exports."""


def build_recipe(model: Any, settings: dict[str, Any], class_names: Sequence[str]) -> ExportRecipe:
    """The recipe of `model` (a detector in eval mode) under its resolved `settings`.

    Raises:
        ValueError: naming the model type when the method has no export recipe.
    """
    model_type = model.config.model_type
    if model_type not in RECIPES:
        raise ValueError(f"{model_type!r} models cannot be exported; exportable methods: {sorted(RECIPES)}.")
    with torch.no_grad():
        return RECIPES[model_type](model, settings, class_names)


__all__ = ["CLASS_KEY_RULES", "RECIPES", "ExportRecipe", "build_recipe", "class_key"]
