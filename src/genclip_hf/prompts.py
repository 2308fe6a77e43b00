"""GenCLIP's prompts: the token layout (tokenizer side) and the prompt learner with the text path (tensor side).

Token layout of the prompt for state s of one class (DESIGN §1), with the deep-prompt slots `[D]` right after
`[SOT]` (`text_prompt_position="after_sot"`, the default) or just before "." (`"before_eot"`, an ablation):

    [SOT] [D x length] [P_s x n_state] a photo of a {state word} {class} object [V_Q x n_query] . [EOT]
    [SOT] [P_s x n_state] a photo of a {state word} {class} object [V_Q x n_query] [D x length] . [EOT]

`P_s` are the learnable state tokens, `V_Q = Q_P + V_P` the query tokens (Eqs. 1-2) and `[D]` the slots that
the deep text prompts overwrite before every prompted text layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from transformers import CLIPModel, PreTrainedTokenizerBase

from .configuration_genclip import GenCLIPConfig
from .settings import SETTINGS

TEMPLATE_NOUN = "object"


@dataclass(frozen=True)
class PromptLayout:
    """Token ids of one prompt and where its learnable slots are.

    `input_ids` holds the SOT and EOT ids and the word ids; learnable slots hold the tokenizer's pad id (their
    embeddings are replaced). The `n_query` query slots start at `query_position` and `eot_position` is the EOT
    index; the state and deep-prompt slots follow from the config ([`slot_starts`]).
    """

    input_ids: tuple[int, ...]
    query_position: int
    eot_position: int


def prompt_words(state_word: str, class_name: str) -> str:
    """The words of a prompt: "a photo of a good pcb object"; "a photo of a good object" when the class name is
    the template's own noun (not doubled). The query-only branch uses that noun as its class name."""
    class_name = class_name.strip()
    if class_name == TEMPLATE_NOUN:
        return f"a photo of a {state_word} {TEMPLATE_NOUN}"
    return f"a photo of a {state_word} {class_name} {TEMPLATE_NOUN}"


def slot_starts(
    query_positions: torch.Tensor, n_state_tokens: int, n_query_tokens: int, text_prompt_length: int, position: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """First state slot and first deep-prompt slot of each prompt, `(N,)` each, from its first query slot `(N,)`."""
    if position == "after_sot":
        state = torch.full_like(query_positions, 1 + text_prompt_length)
        return state, torch.ones_like(query_positions)
    return torch.ones_like(query_positions), query_positions + n_query_tokens


def build_prompt_layout(
    tokenizer: PreTrainedTokenizerBase,
    state_word: str,
    class_name: str,
    n_state_tokens: int,
    n_query_tokens: int,
    text_prompt_length: int,
    max_length: int,
    text_prompt_position: str = "after_sot",
) -> PromptLayout:
    """Tokenise one prompt into the GenCLIP layout.

    Raises:
        ValueError: if the prompt does not fit CLIP's text context of `max_length` tokens.
    """
    SETTINGS["text_prompt_position"].validate(text_prompt_position)
    word_ids = tokenizer(prompt_words(state_word, class_name), add_special_tokens=False)["input_ids"]
    period_ids = tokenizer(".", add_special_tokens=False)["input_ids"]
    placeholder = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    deep_first = text_prompt_position == "after_sot"
    leading = [placeholder] * (text_prompt_length if deep_first else 0) + [placeholder] * n_state_tokens
    trailing = [placeholder] * (n_query_tokens + (0 if deep_first else text_prompt_length))
    query_position = 1 + len(leading) + len(word_ids)
    ids = [tokenizer.bos_token_id] + leading + list(word_ids) + trailing + list(period_ids) + [tokenizer.eos_token_id]
    if len(ids) > max_length:
        raise ValueError(
            f"class_name {class_name!r} makes a prompt of {len(ids)} tokens; CLIP's text context holds {max_length}."
        )
    return PromptLayout(input_ids=tuple(ids), query_position=query_position, eot_position=len(ids) - 1)


class PromptTokenizer:
    """Class names to GenCLIP prompt ids and slot positions, with the layouts cached per name.

    Args:
        tokenizer: the CLIP tokenizer.
        state_words: the (normal, abnormal) state words.
        n_state_tokens, n_query_tokens, text_prompt_length, text_prompt_position: the slots (see [`GenCLIPConfig`]).
        max_length: CLIP's text context.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        state_words: tuple[str, str],
        n_state_tokens: int,
        n_query_tokens: int,
        text_prompt_length: int,
        text_prompt_position: str,
        max_length: int,
    ):
        self.tokenizer = tokenizer
        self.state_words = state_words
        self.slots = (n_state_tokens, n_query_tokens, text_prompt_length)
        self.text_prompt_position = text_prompt_position
        self.max_length = max_length
        self._layouts: dict[str, tuple[PromptLayout, PromptLayout]] = {}

    @classmethod
    def from_config(cls, tokenizer: PreTrainedTokenizerBase, config: GenCLIPConfig) -> PromptTokenizer:
        """The prompt tokenizer of a model's config."""
        return cls(
            tokenizer,
            (config.normal_state_word, config.abnormal_state_word),
            config.n_state_tokens,
            config.n_query_tokens,
            config.text_prompt_length,
            config.text_prompt_position,
            config.clip_config.text_config.max_position_embeddings,
        )

    def layouts(self, class_name: str) -> tuple[PromptLayout, PromptLayout]:
        """The (normal, abnormal) prompt layouts of one class name."""
        if class_name not in self._layouts:
            self._layouts[class_name] = tuple(
                build_prompt_layout(
                    self.tokenizer, word, class_name, *self.slots, self.max_length, self.text_prompt_position
                )
                for word in self.state_words
            )
        return self._layouts[class_name]

    def __call__(self, class_names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Prompt ids and slot positions for one class name per image, padded to the longest prompt.

        Returns:
            `input_ids` `(B, 2, T)`, `query_positions` and `eot_positions` `(B, 2)`.
        """
        layouts = [self.layouts(name) for name in class_names]
        length = max(len(layout.input_ids) for pair in layouts for layout in pair)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(layouts), 2, length), pad, dtype=torch.long)
        for row, pair in enumerate(layouts):
            for state, layout in enumerate(pair):
                input_ids[row, state, : len(layout.input_ids)] = torch.tensor(layout.input_ids)
        return {
            "input_ids": input_ids,
            "query_positions": torch.tensor([[layout.query_position for layout in pair] for pair in layouts]),
            "eot_positions": torch.tensor([[layout.eot_position for layout in pair] for pair in layouts]),
        }


def _scatter_slots(sequence: torch.Tensor, start: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Write `values` into consecutive token slots of `sequence`, out of place (differentiable in `values`).

    Args:
        sequence: `(N, T, D)` token states.
        start: `(N,)` index of the first slot of each sequence.
        values: `(N, K, D)` states for the K slots `start .. start + K - 1`.
    Returns:
        `(N, T, D)` with the slots replaced.
    """
    offsets = torch.arange(values.shape[1], device=sequence.device)
    index = (start[:, None] + offsets[None, :])[..., None].expand(-1, -1, sequence.shape[-1])
    return sequence.scatter(1, index, values.to(sequence.dtype))


class GenCLIPPromptLearner(nn.Module):
    """The learnable prompts of GenCLIP (state tokens, query tokens, vision-prompt projections, deep text prompts)
    and the text path that turns them into text embeddings with a frozen CLIP text encoder."""

    def __init__(self, config: GenCLIPConfig):
        super().__init__()
        text_width = config.clip_config.text_config.hidden_size
        vision_width = config.clip_config.vision_config.hidden_size
        self.config = config
        self.normal_state_tokens = nn.Parameter(torch.zeros(config.n_state_tokens, text_width))
        self.abnormal_state_tokens = nn.Parameter(torch.zeros(config.n_state_tokens, text_width))
        self.query_tokens = nn.Parameter(torch.zeros(config.n_query_tokens, text_width))
        self.vision_prompt_projections = nn.ModuleList(
            nn.Linear(vision_width, text_width) for _ in config.feature_layers
        )
        self.deep_text_prompts = nn.Parameter(
            torch.zeros(config.deep_prompt_depth, config.text_prompt_length, text_width)
        )

    def reset_prompt_tokens(self, std: float) -> None:
        """Draw every learnable prompt token from N(0, std^2)."""
        for tokens in (
            self.normal_state_tokens,
            self.abnormal_state_tokens,
            self.query_tokens,
            self.deep_text_prompts,
        ):
            nn.init.normal_(tokens, std=std)

    def vision_prompts(self, layer_features: torch.Tensor) -> torch.Tensor:
        """Eq. 1: `V_P^i = MLP_T^i(mean(F_V^i))`, the mean taken over all `1 + H*W` tokens (CLS included).

        Args:
            layer_features: `(B, L, 1 + H*W, vision_width)` outputs of the feature layers.
        Returns:
            `(B, L, text_width)`.
        """
        pooled = layer_features.mean(dim=2)
        return torch.stack(
            [projection(pooled[:, index]) for index, projection in enumerate(self.vision_prompt_projections)],
            dim=1,
        )

    def query_prompts(self, vision_prompts: torch.Tensor | None, batch_shape: tuple[int, ...]) -> torch.Tensor:
        """Eq. 2: `V_Q^i = Q_P + V_P^i`, one vision prompt added to every query token.

        Args:
            vision_prompts: `(*batch_shape, text_width)`, or `None` for the query-only prompt (`V_Q = Q_P`).
            batch_shape: leading shape of the result, e.g. `(B, L)`.
        Returns:
            `(*batch_shape, n_query, text_width)`.
        """
        query = self.query_tokens.expand(*batch_shape, *self.query_tokens.shape)
        if vision_prompts is None:
            return query
        return query + vision_prompts.unsqueeze(-2)

    def encode(
        self,
        clip: CLIPModel,
        input_ids: torch.Tensor,
        query_positions: torch.Tensor,
        eot_positions: torch.Tensor,
        query_embeds: torch.Tensor,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Text embeddings of prompt pairs (normal, abnormal) through the frozen CLIP text encoder.

        With `truncate`, the sequence is cut after the longest EOT: with causal attention the EOT output does not
        depend on later tokens, so this equals the full-length run (`truncate=False`) at a fraction of the cost.

        Args:
            clip: the frozen CLIP model.
            input_ids: `(N, 2, T)` prompt token ids (from [`build_prompt_layout`]); index 0 normal, 1 abnormal.
            query_positions: `(N, 2)` first query slot of each prompt.
            eot_positions: `(N, 2)` EOT position of each prompt.
            query_embeds: `(N, n_query, text_width)` query tokens `V_Q`, shared by both states of a pair.
            truncate: run the encoder only up to the longest EOT position.
        Returns:
            `(N, 2, projection_dim)` L2-normalised text embeddings `F_T`.
        """
        num_pairs = input_ids.shape[0]
        length = int(eot_positions.max()) + 1 if truncate else input_ids.shape[-1]
        text_model = clip.text_model
        flat_ids = input_ids[..., :length].reshape(num_pairs * 2, length)
        flat_query_start = query_positions.reshape(-1)
        flat_eot = eot_positions.reshape(-1)
        config = self.config
        state_start, deep_start = slot_starts(
            flat_query_start,
            config.n_state_tokens,
            config.n_query_tokens,
            config.text_prompt_length,
            config.text_prompt_position,
        )
        embeds = text_model.embeddings.token_embedding(flat_ids)
        state_tokens = torch.stack([self.normal_state_tokens, self.abnormal_state_tokens])
        state_tokens = state_tokens.expand(num_pairs, *state_tokens.shape).reshape(-1, *state_tokens.shape[1:])
        embeds = _scatter_slots(embeds, state_start, state_tokens)
        embeds = _scatter_slots(embeds, flat_query_start, query_embeds.repeat_interleave(2, dim=0))
        hidden = text_model.embeddings(inputs_embeds=embeds)
        causal_mask = torch.full((length, length), torch.finfo(hidden.dtype).min, device=hidden.device).triu(1)
        causal_mask = causal_mask[None, None]
        for index, layer in enumerate(text_model.encoder.layers):
            if index < self.deep_text_prompts.shape[0]:
                deep = self.deep_text_prompts[index].expand(hidden.shape[0], -1, -1)
                hidden = _scatter_slots(hidden, deep_start, deep)
            hidden = layer(hidden, attention_mask=causal_mask, is_causal=True)
        hidden = text_model.final_layer_norm(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), flat_eot]
        text_embeds = functional.normalize(clip.text_projection(pooled), dim=-1)
        return text_embeds.reshape(num_pairs, 2, -1)


__all__ = [
    "TEMPLATE_NOUN",
    "GenCLIPPromptLearner",
    "PromptLayout",
    "PromptTokenizer",
    "build_prompt_layout",
    "prompt_words",
    "slot_starts",
]
