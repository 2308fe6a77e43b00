"""Convert an official AnomalyCLIP checkpoint (zqhang/AnomalyCLIP `train.py` output, e.g.
`checkpoints/9_12_4_multiscale/epoch_15.pth`) into an [`AnomalyCLIPModel`] folder.

The `.pth` is read with `torch.load(..., weights_only=True)` only: a file that needs any other object than plain
containers of tensors is refused before anything in it runs. The official file is `{"prompt_learner": state_dict}`
with these keys (shapes for ViT-L/14-336, text width 768):

| official key | shape | becomes |
|---|---|---|
| `ctx_pos` | `(1, 1, n_ctx, 768)` | `normal_context` `(n_ctx, 768)` |
| `ctx_neg` | `(1, 1, n_ctx, 768)` | `abnormal_context` `(n_ctx, 768)` |
| `compound_prompts_text.{i}` | `(length, 768)`, i < depth - 1 | `deep_text_prompts[i]` |
| `tokenized_prompts_pos`, `tokenized_prompts_neg` | `(1, 1, 77)` | `prompt_token_ids` `(2, 77)` |
| `token_prefix_*`, `token_suffix_*` | `(1, 1, 1, 768)`, `(1, 1, 76 - n_ctx, 768)` | checked against the CLIP |
| `compound_prompt_projections.{i}.weight/bias` | `(896, 768)`, `(896,)` | dropped (the official code never uses them) |

    python -m genclip_hf.convert_anomalyclip --checkpoint epoch_15.pth --clip openai/clip-vit-large-patch14-336 \
        --out anomalyclip-mvtec
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from .configuration_anomalyclip import AnomalyCLIPConfig
from .modeling_anomalyclip import AnomalyCLIPModel
from .processing_anomaly_detection import AnomalyDetectionProcessor, clip_image_statistics, square_image_processor

CHECKPOINT_KEY = "prompt_learner"
CONTEXT_KEYS = ("ctx_pos", "ctx_neg")
TOKEN_ID_KEYS = ("tokenized_prompts_pos", "tokenized_prompts_neg")
EMBEDDING_KEYS = ("token_prefix_pos", "token_suffix_pos", "token_prefix_neg", "token_suffix_neg")
DEEP_PROMPT_KEY = re.compile(r"compound_prompts_text\.(\d+)")
PROJECTION_KEY = re.compile(r"compound_prompt_projections\.(\d+)\.(weight|bias)")
# The official buffers are embeddings of the prompt ids, possibly computed in float16.
EMBEDDING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ConvertedPromptLearner:
    """An official prompt-learner state mapped to [`AnomalyCLIPModel`].

    Args:
        config_overrides: `n_ctx`, `text_prompt_depth` and `text_prompt_length` derived from the shapes.
        state_dict: `normal_context`, `abnormal_context`, `deep_text_prompts` (float32) and `prompt_token_ids`
            (int64), under the model's names.
    """

    config_overrides: dict[str, int]
    state_dict: dict[str, torch.Tensor]


def load_official_checkpoint(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """The prompt-learner state dict of an official `.pth`, read with `weights_only=True`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, if it is not `{"prompt_learner": {name: tensor}}` or needs anything but plain
            containers of tensors to load.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"AnomalyCLIP checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} is not a plain checkpoint of tensors (refused, nothing in it was run): expected "
            f"{{'{CHECKPOINT_KEY}': {{name: tensor}}}} as saved by AnomalyCLIP's train.py. Loader said: {reason}"
        ) from None
    if not isinstance(loaded, Mapping) or set(loaded) != {CHECKPOINT_KEY}:
        found = sorted(map(str, loaded)) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(
            f"{path} must hold exactly {{'{CHECKPOINT_KEY}': state_dict}} (AnomalyCLIP's train.py format), got {found}."
        )
    state_dict = loaded[CHECKPOINT_KEY]
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path}: '{CHECKPOINT_KEY}' must be a dict of tensors, got {type(state_dict).__name__}.")
    return dict(state_dict)


def map_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    clip_config: CLIPConfig,
    token_embedding: torch.Tensor | None = None,
    source: str = "state_dict",
) -> ConvertedPromptLearner:
    """Map the official `AnomalyCLIP_PromptLearner` state (official key names) to [`AnomalyCLIPModel`]'s tensors.

    `n_ctx`, the deep-prompt depth and length and the width are derived from the shapes and checked against the
    backbone; with `token_embedding`, the stored prefix/suffix embeddings must be those of this CLIP.

    Args:
        state_dict: `prompt_learner.state_dict()` (see the module docstring for the keys).
        clip_config: the backbone's config.
        token_embedding: `(vocab, text_width)` token embedding of the backbone, for the embedding check.
        source: name of the input in error messages (e.g. the file).
    Raises:
        ValueError: naming `source` and the key, for a missing or unknown key, a non-tensor value or a wrong shape.
    """
    text_config = clip_config.text_config
    width, context_length = text_config.hidden_size, text_config.max_position_embeddings
    _check_keys(state_dict, source)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: '{key}' must be a tensor, got {type(value).__name__}.")

    contexts = [_float_tensor(state_dict, key, source) for key in CONTEXT_KEYS]
    n_ctx = contexts[0].shape[-2] if contexts[0].ndim == 4 else -1
    for key, context in zip(CONTEXT_KEYS, contexts, strict=True):
        _check_shape(key, context, (1, 1, n_ctx, width), source, "(1, 1, n_ctx, text_width)")
    if not 1 <= n_ctx <= context_length - 4:
        raise ValueError(
            f"{source}: ctx_pos holds {n_ctx} context vectors; CLIP's text context fits 1..{context_length - 4}."
        )

    deep_keys = sorted((key for key in state_dict if DEEP_PROMPT_KEY.fullmatch(key)), key=_index)
    deep_prompts = [_float_tensor(state_dict, key, source) for key in deep_keys]
    length = deep_prompts[0].shape[0] if deep_prompts and deep_prompts[0].ndim == 2 else 1
    for key, prompt in zip(deep_keys, deep_prompts, strict=True):
        _check_shape(key, prompt, (length, width), source, "(text_prompt_length, text_width)")
    if len(deep_prompts) + 1 > text_config.num_hidden_layers or length > n_ctx:
        raise ValueError(
            f"{source}: {len(deep_prompts)} deep prompts of length {length} do not fit a text encoder of "
            f"{text_config.num_hidden_layers} layers with n_ctx={n_ctx} (at most {text_config.num_hidden_layers - 1} "
            f"prompts of at most n_ctx tokens)."
        )

    token_ids = torch.cat([_token_ids(state_dict, key, context_length, n_ctx, source) for key in TOKEN_ID_KEYS])
    _check_projections(state_dict, width, source)
    _check_prompt_embeddings(state_dict, token_ids, n_ctx, width, token_embedding, source)

    deep = torch.stack(deep_prompts) if deep_prompts else torch.zeros(0, length, width)
    return ConvertedPromptLearner(
        config_overrides={"n_ctx": n_ctx, "text_prompt_depth": len(deep_prompts) + 1, "text_prompt_length": length},
        state_dict={
            "normal_context": contexts[0][0, 0].float(),
            "abnormal_context": contexts[1][0, 0].float(),
            "deep_text_prompts": deep.float(),
            "prompt_token_ids": token_ids.long(),
        },
    )


def _index(key: str) -> int:
    return int(key.rsplit(".", 1)[1])


def _check_keys(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{source} must be a dict of tensors, got {type(state_dict).__name__}.")
    keys = {str(key) for key in state_dict}
    missing = sorted(set(CONTEXT_KEYS + TOKEN_ID_KEYS) - keys)
    if missing:
        raise ValueError(f"{source} is not an AnomalyCLIP prompt learner: missing {missing}.")
    known = set(CONTEXT_KEYS + TOKEN_ID_KEYS + EMBEDDING_KEYS)
    unknown = sorted(
        key
        for key in keys
        if key not in known and not DEEP_PROMPT_KEY.fullmatch(key) and not PROJECTION_KEY.fullmatch(key)
    )
    if unknown:
        raise ValueError(f"{source} holds keys an AnomalyCLIP prompt learner does not have: {unknown}.")
    indices = sorted(_index(key) for key in keys if DEEP_PROMPT_KEY.fullmatch(key))
    if indices != list(range(len(indices))):
        raise ValueError(f"{source}: compound_prompts_text indices must be 0..{len(indices) - 1}, got {indices}.")


def _check_projections(state_dict: Mapping[str, torch.Tensor], width: int, source: str) -> None:
    """The unused `compound_prompt_projections` must still be `Linear(text_width, *)` weights and biases."""
    for key in (key for key in state_dict if PROJECTION_KEY.fullmatch(key)):
        is_weight = key.endswith("weight")
        shape = tuple(state_dict[key].shape)
        if len(shape) != (2 if is_weight else 1) or (is_weight and shape[1] != width):
            expected = f"(out_features, {width})" if is_weight else "(out_features,)"
            raise ValueError(f"{source}: '{key}' must have shape {expected}, got {shape}.")


def _float_tensor(state_dict: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    tensor = state_dict[key]
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{source}: '{key}' must be a finite floating-point tensor, got dtype {tensor.dtype}.")
    return tensor


def _check_shape(key: str, tensor: torch.Tensor, expected: tuple[int, ...], source: str, meaning: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"{source}: '{key}' must have shape {meaning} = {expected} for this CLIP, got {tuple(tensor.shape)}."
        )


def _token_ids(
    state_dict: Mapping[str, torch.Tensor], key: str, context_length: int, n_ctx: int, source: str
) -> torch.Tensor:
    """`(1, context_length)` ids of one prompt; its EOT (the largest id) must follow the context slots."""
    ids = state_dict[key]
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{source}: '{key}' must hold integer token ids, got dtype {ids.dtype}.")
    _check_shape(key, ids, (1, 1, context_length), source, "(1, 1, context_length)")
    if int(ids.argmax()) <= n_ctx:
        raise ValueError(f"{source}: '{key}' has its EOT at {int(ids.argmax())}, inside the {n_ctx} context slots.")
    return ids[0].long()


def _check_prompt_embeddings(
    state_dict: Mapping[str, torch.Tensor],
    token_ids: torch.Tensor,
    n_ctx: int,
    width: int,
    token_embedding: torch.Tensor | None,
    source: str,
) -> None:
    """The stored prefix/suffix embeddings must have the official shapes and, given the backbone's token embedding,
    equal the embeddings of the prompt ids (the checkpoint was trained on this CLIP)."""
    context_length = token_ids.shape[-1]
    for row, state in enumerate(("pos", "neg")):
        for part, positions in (("prefix", slice(0, 1)), ("suffix", slice(1 + n_ctx, context_length))):
            key = f"token_{part}_{state}"
            if key not in state_dict:
                continue
            stored = _float_tensor(state_dict, key, source)
            count = positions.stop - positions.start
            _check_shape(key, stored, (1, 1, count, width), source, f"(1, 1, {count}, text_width)")
            if token_embedding is None:
                continue
            expected = token_embedding[token_ids[row, positions]].float()
            difference = (stored[0, 0].float() - expected).abs().max().item()
            if difference > EMBEDDING_TOLERANCE:
                raise ValueError(
                    f"{source}: '{key}' differs from this CLIP's token embedding of the prompt by {difference:.3g}; "
                    "the checkpoint was trained on another CLIP backbone."
                )


def build_model_from_official(
    state_dict: Mapping[str, torch.Tensor],
    clip: CLIPModel,
    source: str = "state_dict",
    config_overrides: Mapping[str, Any] | None = None,
) -> AnomalyCLIPModel:
    """An [`AnomalyCLIPModel`] on `clip` with the official prompt-learner state (see [`map_official_state_dict`]).

    Args:
        state_dict: the official prompt-learner state.
        clip: the backbone it was trained on.
        source: name of the input in error messages.
        config_overrides: test-time [`AnomalyCLIPConfig`] fields the checkpoint does not hold (e.g. `feature_layers`,
            `image_size`, `dpam_start_layer` for another backbone); the official defaults otherwise.
    """
    overrides = dict(config_overrides or {})
    token_embedding = clip.text_model.embeddings.token_embedding.weight.detach()
    converted = map_official_state_dict(state_dict, clip.config, token_embedding, source)
    derived = sorted(set(overrides) & set(converted.config_overrides))
    if derived:
        raise ValueError(f"{derived} are read from the shapes in {source}; they cannot be overridden.")
    try:
        config = AnomalyCLIPConfig(clip_config=clip.config, **converted.config_overrides, **overrides)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error
    model = AnomalyCLIPModel(config, clip_model=clip)
    with torch.no_grad():
        for name, tensor in converted.state_dict.items():
            getattr(model, name).copy_(tensor)
    return model.eval()


def convert_anomalyclip_checkpoint(
    checkpoint_path: str | Path,
    clip_name_or_path: str | Path,
    out_dir: str | Path,
    tokenizer_name_or_path: str | Path | None = None,
    **config_overrides: Any,
) -> Path:
    """Write an official AnomalyCLIP checkpoint as an [`AnomalyCLIPModel`] folder.

    Args:
        checkpoint_path: the official `.pth` (`{"prompt_learner": state_dict}`).
        clip_name_or_path: the HF CLIP it was trained on (official: `openai/clip-vit-large-patch14-336`).
        out_dir: folder to write `config.json`, `model.safetensors` and the processor into.
        tokenizer_name_or_path: the CLIP tokenizer for the processor; default: the one in `clip_name_or_path`.
        config_overrides: test-time settings (see [`build_model_from_official`]), e.g. `feature_layers=[24]`.
    Returns:
        `out_dir`; `AnomalyCLIPModel.from_pretrained(out_dir)` and `AnomalyDetectionProcessor.from_pretrained(out_dir)`
        load it.
    """
    state_dict = load_official_checkpoint(checkpoint_path)
    clip = CLIPModel.from_pretrained(clip_name_or_path, dtype=torch.float32)
    model = build_model_from_official(state_dict, clip, str(checkpoint_path), config_overrides)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path or clip_name_or_path)
    mean, std = clip_image_statistics(clip_name_or_path)
    processor = AnomalyDetectionProcessor(
        image_processor=square_image_processor(model.config.image_size, mean, std), tokenizer=tokenizer
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


__all__ = [
    "ConvertedPromptLearner",
    "build_model_from_official",
    "convert_anomalyclip_checkpoint",
    "load_official_checkpoint",
    "map_official_state_dict",
]
