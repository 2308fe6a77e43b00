"""Prompt token layout, deep text prompts and the custom text path."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from genclip_hf.prompts import build_prompt_layout, slot_starts


def decoded(processor, ids) -> list[str]:
    return processor.tokenizer.convert_ids_to_tokens(list(ids))


def test_prompt_slots_are_where_the_design_puts_them(tiny_processor):
    """Default layout (DESIGN §1): [SOT] [D] [P_s] a photo of a good pcb object [Q] [Q] . [EOT]."""
    assert tiny_processor.text_prompt_position == "after_sot"
    normal, abnormal = tiny_processor.prompt_layouts("pcb")
    tokens = decoded(tiny_processor, normal.input_ids)
    assert tokens[0] == "<|startoftext|>"
    assert tokens[3:10] == ["a</w>", "photo</w>", "of</w>", "a</w>", "good</w>", "pcb</w>", "object</w>"]
    assert normal.query_position == 10
    assert tokens[12] == ".</w>" and normal.eot_position == 13 and tokens[13] == "<|endoftext|>"
    assert len(tokens) == 14
    assert decoded(tiny_processor, abnormal.input_ids)[7] == "damaged</w>"
    state, deep = slot_starts(torch.tensor([normal.query_position]), 1, 2, 1, "after_sot")
    assert (int(deep[0]), int(state[0])) == (1, 2)


def test_before_eot_layout_puts_the_deep_slot_before_the_period(tiny_processor):
    """Ablation layout (the first release): [SOT] [P_s] a photo of a good pcb object [Q] [Q] [D] . [EOT]."""
    layout = build_prompt_layout(tiny_processor.tokenizer, "good", "pcb", 1, 2, 1, 77, "before_eot")
    tokens = decoded(tiny_processor, layout.input_ids)
    assert tokens[2:9] == ["a</w>", "photo</w>", "of</w>", "a</w>", "good</w>", "pcb</w>", "object</w>"]
    assert layout.query_position == 9 and tokens[12] == ".</w>" and layout.eot_position == 13
    state, deep = slot_starts(torch.tensor([layout.query_position]), 1, 2, 1, "before_eot")
    assert (int(state[0]), int(deep[0])) == (1, 11)


def test_generic_class_name_is_not_doubled(tiny_processor):
    normal, _ = tiny_processor.prompt_layouts("object")
    tokens = decoded(tiny_processor, normal.input_ids)
    assert tokens[3:9] == ["a</w>", "photo</w>", "of</w>", "a</w>", "good</w>", "object</w>"]
    assert tokens.count("object</w>") == 1


def test_multi_word_class_names_shift_the_query_slots(tiny_processor):
    short, _ = tiny_processor.prompt_layouts("pcb")
    long, _ = tiny_processor.prompt_layouts("pipe fryum")
    assert long.query_position > short.query_position
    assert long.eot_position - long.query_position == short.eot_position - short.query_position


def test_too_long_class_name_is_rejected(tiny_processor):
    import pytest

    with pytest.raises(ValueError, match="class_name"):
        build_prompt_layout(tiny_processor.tokenizer, "good", "word " * 80, 1, 2, 1, 77)


def _plain_sentence(processor):
    ids = processor.tokenizer("a photo of a damaged pcb object with many tiny scratches .")["input_ids"]
    return torch.tensor(ids)


def test_text_path_equals_stock_clip_text_features_for_plain_token_ids(tiny_model, tiny_processor):
    """With depth 0 and the learnable slots set to the embeddings of the plain tokens, the custom path is CLIP."""
    model = tiny_model
    model.config.text_prompt_depth = 0
    learner = model.prompt_learner
    ids = _plain_sentence(tiny_processor)
    embedding = model.clip.text_model.embeddings.token_embedding
    query_position = 5
    state, _ = slot_starts(torch.tensor([query_position]), 1, 2, 1, model.config.text_prompt_position)
    state = int(state[0])
    with torch.no_grad():
        learner.deep_text_prompts.data = learner.deep_text_prompts.data[:0]
        learner.normal_state_tokens.copy_(embedding(ids[state : state + 1]))
        learner.abnormal_state_tokens.copy_(embedding(ids[state : state + 1]))
        learner.query_tokens.copy_(embedding(ids[query_position : query_position + 2]))
        ours = learner.encode(
            model.clip,
            ids.expand(1, 2, -1),
            torch.tensor([[query_position, query_position]]),
            torch.tensor([[len(ids) - 1, len(ids) - 1]]),
            learner.query_prompts(None, (1,)),
        )
        stock = functional.normalize(model.clip.get_text_features(input_ids=ids[None]).pooler_output, dim=-1)
    assert torch.allclose(ours[0, 0], stock[0], atol=1e-5)
    assert torch.allclose(ours[0, 1], stock[0], atol=1e-5)


def _pair_inputs(processor, length: int | None = None):
    inputs = processor.prompt_inputs(["pcb"])
    if length is not None:
        pad = torch.full((1, 2, length - inputs["input_ids"].shape[-1]), processor.tokenizer.pad_token_id)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], pad], dim=-1)
    return inputs


def test_truncated_text_run_equals_the_full_77_token_run(tiny_model, tiny_processor):
    learner = tiny_model.prompt_learner
    inputs = _pair_inputs(tiny_processor, length=77)
    query = learner.query_prompts(torch.randn(1, 64), (1,))
    with torch.no_grad():
        truncated = learner.encode(
            tiny_model.clip,
            inputs["input_ids"],
            inputs["query_positions"],
            inputs["eot_positions"],
            query,
            truncate=True,
        )
        full = learner.encode(
            tiny_model.clip,
            inputs["input_ids"],
            inputs["query_positions"],
            inputs["eot_positions"],
            query,
            truncate=False,
        )
    assert torch.allclose(truncated, full, atol=1e-5)


def test_text_attention_is_causal(tiny_model, tiny_processor):
    """Tokens after EOT must not change the EOT output; bidirectional attention would fail this."""
    learner = tiny_model.prompt_learner
    inputs = _pair_inputs(tiny_processor, length=30)
    query = learner.query_prompts(None, (1,))
    changed = inputs["input_ids"].clone()
    changed[..., 20:] = tiny_processor.tokenizer.convert_tokens_to_ids("cat</w>")
    with torch.no_grad():
        first = learner.encode(
            tiny_model.clip,
            inputs["input_ids"],
            inputs["query_positions"],
            inputs["eot_positions"],
            query,
            truncate=False,
        )
        second = learner.encode(
            tiny_model.clip,
            changed,
            inputs["query_positions"],
            inputs["eot_positions"],
            query,
            truncate=False,
        )
    assert torch.allclose(first, second, atol=1e-6)


@pytest.mark.parametrize("position", ["after_sot", "before_eot"])
def test_deep_prompt_overwrites_only_its_slot_before_every_layer(tiny_model, tiny_processor, position):
    model = tiny_model
    model.config.text_prompt_position = position
    learner = model.prompt_learner
    layers = model.clip.text_model.encoder.layers
    assert learner.deep_text_prompts.shape[0] == len(layers)
    layout = build_prompt_layout(tiny_processor.tokenizer, "good", "pcb", 1, 2, 1, 77, position)
    ids = torch.tensor(layout.input_ids).expand(1, 2, -1)
    query_positions = torch.tensor([[layout.query_position] * 2])
    eot_positions = torch.tensor([[layout.eot_position] * 2])
    _, deep = slot_starts(query_positions[0], 1, 2, 1, position)
    deep_slot = int(deep[0])
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].clone())) for layer in layers]

    def run() -> list[torch.Tensor]:
        captured.clear()
        with torch.no_grad():
            learner.encode(model.clip, ids, query_positions, eot_positions, learner.query_prompts(None, (1,)))
        return list(captured)

    before = run()
    with torch.no_grad():
        learner.deep_text_prompts.add_(torch.randn_like(learner.deep_text_prompts))
    after = run()
    for hook in hooks:
        hook.remove()
    for index, (hidden_before, hidden_after) in enumerate(zip(before, after, strict=True)):
        expected = learner.deep_text_prompts[index, 0].expand(2, -1)
        assert torch.equal(hidden_after[:, deep_slot], expected)
        # Every earlier slot is untouched by the deep prompt (causal attention).
        assert torch.equal(hidden_before[:, :deep_slot], hidden_after[:, :deep_slot])
    # Every later token sees [D]: after SOT the words and query tokens do, before EOT only "." and EOT.
    changed = [
        slot
        for slot in range(deep_slot + 1, layout.eot_position + 1)
        if not torch.allclose(before[-1][:, slot], after[-1][:, slot])
    ]
    assert changed == list(range(deep_slot + 1, layout.eot_position + 1))


def test_state_and_query_tokens_are_written_at_their_slots(tiny_model, tiny_processor):
    model = tiny_model
    learner = model.prompt_learner
    inputs = _pair_inputs(tiny_processor)
    captured = []
    hook = model.clip.text_model.encoder.layers[0].register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].clone())
    )
    query = learner.query_prompts(torch.randn(1, 64), (1,))
    with torch.no_grad():
        learner.encode(model.clip, inputs["input_ids"], inputs["query_positions"], inputs["eot_positions"], query)
    hook.remove()
    hidden = captured[0]
    positions = model.clip.text_model.embeddings.position_embedding.weight
    state = 2  # after [SOT] and [D]
    assert torch.allclose(hidden[0, state], learner.normal_state_tokens[0] + positions[state], atol=1e-6)
    assert torch.allclose(hidden[1, state], learner.abnormal_state_tokens[0] + positions[state], atol=1e-6)
    start = int(inputs["query_positions"][0, 0])
    for state in range(2):
        assert torch.allclose(hidden[state, start : start + 2], query[0] + positions[start : start + 2], atol=1e-6)
