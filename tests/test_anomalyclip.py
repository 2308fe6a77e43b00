"""AnomalyCLIP on tiny random CLIPs: hand-computable pieces, batching, caching, training and the safe converter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

from genclip_hf.cli import main
from genclip_hf.clip_backbone import position_embeddings
from genclip_hf.configuration_anomalyclip import (
    AnomalyCLIPConfig,
    default_dpam_start_layer,
    official_dpam_start_layer,
)
from genclip_hf.convert_anomalyclip import convert_anomalyclip_checkpoint, load_official_checkpoint
from genclip_hf.losses import dice_loss, label_smoothed_focal_loss
from genclip_hf.modeling_anomalyclip import (
    AnomalyCLIPModel,
    build_prompt_token_ids,
    dual_stream_block,
    value_value_attention,
)
from genclip_hf.settings import SettingError

# The tiny CLIP has 4 vision and 4 text layers (widths 48 and 64); 80 px gives a 10x10 grid, resized from 8x8.
TINY_ANOMALYCLIP = {
    "feature_layers": [1, 2, 4],
    "dpam_start_layer": 2,
    "image_size": 80,
    "sigma": 1.0,
    "n_ctx": 4,
    "text_prompt_depth": 3,
    "text_prompt_length": 2,
}

# Test-time settings of the tiny backbone for the converter (the official defaults need 24 vision layers).
TINY_CONVERSION = {"feature_layers": [1, 2, 4], "image_size": 80, "dpam_start_layer": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_anomalyclip(tiny_clip_dir: Path) -> AnomalyCLIPModel:
    torch.manual_seed(0)
    return AnomalyCLIPModel.from_clip(str(tiny_clip_dir), **TINY_ANOMALYCLIP).eval()


def random_pixels(batch: int, size: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# Configuration.


def test_config_defaults_are_the_official_settings():
    config = AnomalyCLIPConfig()
    assert config.clip_config.vision_config.num_hidden_layers == 24
    assert (config.image_size, config.feature_layers, config.dpam_start_layer) == (518, [6, 12, 18, 24], 6)
    assert (config.n_ctx, config.text_prompt_depth, config.text_prompt_length, config.num_deep_prompts) == (12, 9, 4, 8)
    assert (config.sigma, config.temperature, config.position_interpolation) == (4.0, 0.07, "bilinear")
    assert config.round_deep_prompts_to_fp16 is True
    assert config.label_threshold() == 0.5


def test_dpam_start_layer_follows_the_official_replacement():
    assert official_dpam_start_layer(20, 24) == 6
    assert default_dpam_start_layer(24) == 6
    assert default_dpam_start_layer(12) == 3
    assert default_dpam_start_layer(2) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"feature_layers": [6, 25]}, "feature_layers"),
        ({"feature_layers": []}, "feature_layers"),
        ({"dpam_start_layer": 0}, "dpam_start_layer"),
        ({"dpam_start_layer": 25}, "dpam_start_layer"),
        ({"n_ctx": 0}, "n_ctx"),
        ({"text_prompt_depth": 13}, "text_prompt_depth"),
        ({"text_prompt_length": 13}, "text_prompt_length"),
        ({"sigma": -1.0}, "sigma"),
        ({"temperature": 0.0}, "temperature"),
        ({"position_interpolation": "nearest"}, "position_interpolation"),
        ({"image_size": 520}, "image_size"),
        ({"score_threshold": float("nan")}, "score_threshold"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        AnomalyCLIPConfig(**overrides)


# Hand-computable pieces.


def test_value_value_attention_on_two_tokens_by_hand():
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[None, None]
    e = math.e
    by_hand = torch.tensor([[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]])
    assert torch.allclose(value_value_attention(values, scale=1.0)[0, 0], by_hand, atol=1e-6)
    # scale 0: uniform attention, every token gets the mean value.
    assert torch.allclose(value_value_attention(values, scale=0.0)[0, 0], torch.full((2, 2), 0.5), atol=1e-6)


def test_dual_stream_block_equals_the_unfused_official_recipe(tiny_anomalyclip: AnomalyCLIPModel):
    layer = tiny_anomalyclip.clip.vision_model.encoder.layers[1]
    generator = torch.Generator().manual_seed(1)
    hidden, value_states = torch.randn(2, 5, 48, generator=generator), torch.randn(2, 5, 48, generator=generator)
    with torch.no_grad():
        new_hidden, new_values = dual_stream_block(layer, hidden, value_states)
        plain = layer(hidden, attention_mask=None)
    attention = layer.self_attn
    values = attention.v_proj(layer.layer_norm1(hidden)).detach().double().numpy().reshape(2, 5, 4, 12)
    values = values.transpose(0, 2, 1, 3)
    logits = values @ values.transpose(0, 1, 3, 2) / math.sqrt(12)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    merged = (weights @ values).transpose(0, 2, 1, 3).reshape(2, 5, 48)
    reference = value_states + attention.out_proj(torch.from_numpy(merged).float()).detach()
    assert torch.allclose(new_hidden, plain, atol=1e-5)
    assert torch.allclose(new_values, reference, atol=1e-5)


def test_bilinear_position_table_by_hand():
    config = CLIPVisionConfig(hidden_size=1, image_size=16, patch_size=8, num_attention_heads=1)
    embeddings = CLIPVisionEmbeddings(config)
    with torch.no_grad():
        embeddings.position_embedding.weight.copy_(torch.tensor([[9.0], [0.0], [2.0], [4.0], [8.0]]))
    table = position_embeddings(embeddings, 3, 3, mode="bilinear")[0, :, 0]
    # 2 -> 3 with align_corners=False samples the source at -1/6 (clamped to 0), 1/2 and 7/6 (clamped to 1).
    by_hand = torch.tensor([9.0, 0.0, 1.0, 2.0, 2.0, 3.5, 5.0, 4.0, 6.0, 8.0])
    assert torch.allclose(table, by_hand)


def test_vision_streams_follow_the_hf_recipe(tiny_clip_dir: Path):
    """With bicubic positions the original stream is HF's; the V-V stream is `vv_k = vv_(k-1) +
    VV_k(layer_norm1(hidden_states[k-1]))` from `vv_1 = hidden_states[1]`; the global feature has no post-LN."""
    model = AnomalyCLIPModel.from_clip(str(tiny_clip_dir), **TINY_ANOMALYCLIP, position_interpolation="bicubic")
    pixel_values = random_pixels(2)
    vision = model.clip.vision_model
    with torch.no_grad():
        ours = model.encode_image(pixel_values, feature_layers=[1, 3, 4])
        stock = vision(pixel_values, interpolate_pos_encoding=True, output_hidden_states=True)
        states = stock.hidden_states
        value_states = states[1]
        for depth in (2, 3, 4):
            layer = vision.encoder.layers[depth - 1]
            _, value_states = dual_stream_block(layer, states[depth - 1], value_states)
            if depth == 3:
                layer_3 = value_states

    def project(tokens: torch.Tensor) -> torch.Tensor:
        return model.clip.visual_projection(vision.post_layernorm(tokens))

    assert torch.allclose(ours.layer_tokens[:, 0], project(states[1]), atol=1e-5)
    assert torch.allclose(ours.layer_tokens[:, 1], project(layer_3), atol=1e-5)
    assert torch.allclose(ours.layer_tokens[:, 2], project(value_states), atol=1e-5)
    assert torch.allclose(ours.image_embeds, model.clip.visual_projection(stock.last_hidden_state[:, 0]), atol=1e-5)


def test_each_block_projects_q_k_v_once(tiny_anomalyclip: AnomalyCLIPModel):
    calls = []
    hooks = [
        layer.self_attn.v_proj.register_forward_hook(lambda *_, depth=depth: calls.append(depth))
        for depth, layer in enumerate(tiny_anomalyclip.clip.vision_model.encoder.layers, start=1)
    ]
    tiny_anomalyclip.encode_image(random_pixels(1))
    for hook in hooks:
        hook.remove()
    assert calls == [1, 2, 3, 4]


def test_deep_prompts_replace_positions_1_to_length_in_layers_2_to_depth(tiny_anomalyclip: AnomalyCLIPModel):
    seen = []
    layers = tiny_anomalyclip.clip.text_model.encoder.layers
    hooks = [layer.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach())) for layer in layers]
    with torch.no_grad():
        tiny_anomalyclip.encode_prompts()
    for hook in hooks:
        hook.remove()
    deep = tiny_anomalyclip.deep_text_prompts.half().float()
    assert not torch.equal(seen[0][:, 1:3], deep[0].expand(2, -1, -1))
    for index in (1, 2):
        assert torch.equal(seen[index][:, 1:3], deep[index - 1].expand(2, -1, -1))
    assert not torch.equal(seen[3][:, 1:3], deep[1].expand(2, -1, -1))


def test_fp16_rounding_switch_of_the_deep_prompts(tiny_anomalyclip: AnomalyCLIPModel):
    model = tiny_anomalyclip
    with torch.no_grad():
        model.deep_text_prompts.copy_(torch.full_like(model.deep_text_prompts, 0.1) + 1e-6)
        rounded_on = model.text_features().clone()
        model.config.round_deep_prompts_to_fp16 = False
        rounded_off = model.text_features().clone()
        model.deep_text_prompts.copy_(model.deep_text_prompts.half().float())
        pre_rounded = model.text_features().clone()
    assert not torch.equal(rounded_on, rounded_off)
    assert torch.equal(rounded_on, pre_rounded)


def test_text_features_are_cached_until_a_parameter_changes(tiny_anomalyclip: AnomalyCLIPModel):
    with torch.no_grad():
        first = tiny_anomalyclip.text_features()
        assert tiny_anomalyclip.text_features() is first
        tiny_anomalyclip.abnormal_context.add_(0.5)
        changed = tiny_anomalyclip.text_features()
    assert not torch.allclose(first, changed)
    assert torch.allclose(changed.norm(dim=-1), torch.ones(2))


def test_losses_by_hand():
    probabilities = torch.tensor([[0.2, 0.6], [0.8, 0.4]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    smooth = 1e-5
    p_first = (1 - smooth) * 0.8 + smooth * 0.2 + smooth
    p_second = (1 - smooth) * 0.6 + smooth * 0.4 + smooth
    focal = (-((1 - p_first) ** 2) * math.log(p_first) - (1 - p_second) ** 2 * math.log(p_second)) / 2
    assert label_smoothed_focal_loss(probabilities, target).item() == pytest.approx(focal, rel=1e-6)
    prediction = torch.tensor([[[0.8, 0.4]]])
    assert dice_loss(prediction, target).item() == pytest.approx(1 - (2 * 0.8 + 1) / (1.2 + 1 + 1))


# Detection.


def test_batched_scores_and_maps_equal_one_image_at_a_time(tiny_anomalyclip: AnomalyCLIPModel):
    pixel_values = random_pixels(2)
    together = tiny_anomalyclip.detect(pixel_values)
    for index in range(2):
        alone = tiny_anomalyclip.detect(pixel_values[index : index + 1])
        assert torch.allclose(alone.pred_scores, together.pred_scores[index : index + 1], atol=1e-6)
        assert torch.allclose(alone.anomaly_maps, together.anomaly_maps[index : index + 1], atol=1e-5)
    assert not torch.allclose(together.pred_scores[0], together.pred_scores[1])


def test_detect_output_and_settings(tiny_anomalyclip: AnomalyCLIPModel):
    pixel_values = random_pixels(2)
    output = tiny_anomalyclip.detect(pixel_values, class_names=["pcb", "screw"], return_component_maps=True)
    assert output.anomaly_maps.shape == (2, 80, 80)
    assert output.pred_scores.shape == (2,)
    assert output.class_names is None
    assert output.score_threshold == 0.5
    layer_maps = output.component_maps["layers"]
    assert layer_maps.shape == (2, 3, 80, 80)
    assert float(layer_maps.min()) >= 0.0 and float(layer_maps.max()) <= 1.0
    unsmoothed = tiny_anomalyclip.detect(pixel_values, sigma=0.0, feature_layers=[4])
    assert torch.allclose(unsmoothed.anomaly_maps, layer_maps[:, 2], atol=1e-6)
    assert torch.allclose(unsmoothed.pred_scores, output.pred_scores)
    with pytest.raises(SettingError, match="sigma"):
        tiny_anomalyclip.detect(pixel_values, sigma=-1.0)
    with pytest.raises(SettingError, match="alpha"):
        tiny_anomalyclip.detect(pixel_values, alpha=0.5)
    with pytest.raises(ValueError, match="feature_layers"):
        tiny_anomalyclip.detect(pixel_values, feature_layers=[5])
    with pytest.raises(ValueError, match="80x80"):
        tiny_anomalyclip.detect(random_pixels(1, size=64))


def test_a_fresh_model_builds_its_prompt_ids_from_the_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    from genclip_hf.testing import TINY_CLIP

    config = AnomalyCLIPConfig(clip_config=TINY_CLIP, **TINY_ANOMALYCLIP)
    model = AnomalyCLIPModel(config).eval()
    with pytest.raises(ValueError, match="set_tokenizer"):
        model.text_features()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model.set_tokenizer(tokenizer)
    assert model.text_features().shape == (2, 32)
    assert torch.equal(model.prompt_token_ids, build_prompt_token_ids(tokenizer, 4, 77))


# Training and serialisation.


def test_the_loss_decreases_and_only_the_prompts_learn(tiny_anomalyclip: AnomalyCLIPModel):
    model = tiny_anomalyclip.train()
    pixel_values = random_pixels(2)
    masks = torch.zeros(2, 80, 80)
    masks[0, 20:50, 30:60] = 1.0
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01, betas=(0.5, 0.999))
    losses = []
    for _ in range(6):
        output = model(pixel_values, masks=masks)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert losses[-1] < losses[0]
    assert output.layer_maps.shape == (2, 3, 2, 80, 80)
    assert output.image_logits.shape == (2, 2)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable == {"normal_context", "abnormal_context", "deep_text_prompts"}
    assert all(parameter.grad is None for parameter in model.clip.parameters())
    assert not model.clip.training


def test_loss_parts_and_labels(tiny_anomalyclip: AnomalyCLIPModel):
    pixel_values, masks = random_pixels(2), torch.zeros(2, 80, 80)
    masks[1, :10, :10] = 1.0
    with torch.no_grad():
        derived = tiny_anomalyclip(pixel_values, masks=masks)
        given = tiny_anomalyclip(pixel_values, masks=masks, labels=torch.tensor([0, 1]))
        image_only = tiny_anomalyclip(pixel_values, labels=torch.tensor([0, 1]))
        maps_only = tiny_anomalyclip(pixel_values)
    assert torch.allclose(derived.loss, given.loss)
    assert torch.allclose(derived.loss, derived.segmentation_loss + derived.image_loss)
    assert torch.allclose(image_only.loss, derived.image_loss)
    assert image_only.segmentation_loss is None and maps_only.loss is None
    with pytest.raises(ValueError, match="masks"):
        tiny_anomalyclip(pixel_values, masks=masks[:, :64, :64])


def test_save_and_load_round_trip(tiny_anomalyclip: AnomalyCLIPModel, tmp_path: Path):
    pixel_values = random_pixels(1)
    before = tiny_anomalyclip.detect(pixel_values)
    tiny_anomalyclip.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AnomalyCLIPModel.from_pretrained(tmp_path).eval()
    assert loaded.config.dpam_start_layer == 2 and loaded.config.feature_layers == [1, 2, 4]
    assert torch.equal(loaded.prompt_token_ids, tiny_anomalyclip.prompt_token_ids)
    assert not any(parameter.requires_grad for parameter in loaded.clip.parameters())
    after = loaded.detect(pixel_values)
    assert torch.equal(before.pred_scores, after.pred_scores)
    assert torch.equal(before.anomaly_maps, after.anomaly_maps)


# The converter.


class WritesAMarkerWhenUnpickled:
    """Unpickling this object would create `marker` (what a malicious checkpoint could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def official_state_dict(model: AnomalyCLIPModel, seed: int = 3) -> dict[str, torch.Tensor]:
    """A prompt-learner state under the official key names for `model`'s CLIP (text width 64), as train.py saves."""
    generator = torch.Generator().manual_seed(seed)
    width, n_ctx = 64, 4
    ids = build_prompt_token_ids(model.tokenizer, n_ctx, 77)
    embeddings = model.clip.text_model.embeddings.token_embedding.weight.detach()[ids]
    state = {
        "ctx_pos": 0.02 * torch.randn(1, 1, n_ctx, width, generator=generator),
        "ctx_neg": 0.02 * torch.randn(1, 1, n_ctx, width, generator=generator),
        "tokenized_prompts_pos": ids[0].int().reshape(1, 1, 77),
        "tokenized_prompts_neg": ids[1].int().reshape(1, 1, 77),
        "token_prefix_pos": embeddings[0, :1].reshape(1, 1, 1, width),
        "token_suffix_pos": embeddings[0, 1 + n_ctx :].reshape(1, 1, -1, width),
        "token_prefix_neg": embeddings[1, :1].reshape(1, 1, 1, width),
        "token_suffix_neg": embeddings[1, 1 + n_ctx :].reshape(1, 1, -1, width),
    }
    for index in range(2):
        state[f"compound_prompts_text.{index}"] = 0.02 * torch.randn(2, width, generator=generator)
        state[f"compound_prompt_projections.{index}.weight"] = torch.randn(896, width, generator=generator).half()
        state[f"compound_prompt_projections.{index}.bias"] = torch.randn(896, generator=generator).half()
    return state


def test_converter_round_trip_of_an_official_pth(
    tiny_anomalyclip: AnomalyCLIPModel, tiny_clip_dir: Path, tmp_path: Path, capsys
):
    state = official_state_dict(tiny_anomalyclip)
    checkpoint = tmp_path / "epoch_15.pth"
    torch.save({"prompt_learner": state}, checkpoint)
    arguments = ["convert", "anomalyclip", "--checkpoint", str(checkpoint), "--clip", str(tiny_clip_dir)]
    arguments += ["--out", str(tmp_path / "out")]
    arguments += ["--feature-layers", "1", "2", "4", "--image-size", "80", "--dpam-start-layer", "2"]
    assert main(arguments) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    model = AnomalyCLIPModel.from_pretrained(tmp_path / "out").eval()
    assert (model.config.n_ctx, model.config.text_prompt_depth, model.config.text_prompt_length) == (4, 3, 2)
    assert (model.config.feature_layers, model.config.image_size, model.config.dpam_start_layer) == ([1, 2, 4], 80, 2)
    assert torch.equal(model.normal_context, state["ctx_pos"][0, 0])
    assert torch.equal(model.abnormal_context, state["ctx_neg"][0, 0])
    deep = torch.stack([state["compound_prompts_text.0"], state["compound_prompts_text.1"]])
    assert torch.equal(model.deep_text_prompts, deep)
    assert torch.equal(model.prompt_token_ids[1], state["tokenized_prompts_neg"][0, 0].long())
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json"):
        assert (tmp_path / "out" / name).exists(), name
    assert model.detect(random_pixels(1)).anomaly_maps.shape == (1, 80, 80)


def test_the_package_registers_the_detector(tiny_anomalyclip: AnomalyCLIPModel, tmp_path: Path):
    from PIL import Image
    from transformers import AutoProcessor, pipeline

    from genclip_hf import AnomalyCLIPConfig as ExportedConfig
    from genclip_hf import AnomalyDetectionProcessor, AutoModelForAnomalyDetection
    from genclip_hf.detection import registered_detectors

    assert ExportedConfig is AnomalyCLIPConfig
    assert registered_detectors()["anomalyclip"] is AnomalyCLIPModel
    processor = AnomalyDetectionProcessor.for_model(tiny_anomalyclip, tokenizer=tiny_anomalyclip.tokenizer)
    tiny_anomalyclip.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert isinstance(AutoModelForAnomalyDetection.from_pretrained(tmp_path), AnomalyCLIPModel)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), AnomalyDetectionProcessor)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    result = pipeline("anomaly-detection", model=str(tmp_path))(image)
    expected = tiny_anomalyclip.detect(processor(images=[image])["pixel_values"]).pred_scores.item()
    assert result["score"] == pytest.approx(expected, abs=1e-6)
    assert result["anomaly_map"].shape == (50, 70)


def test_shape_derived_settings_cannot_be_overridden(tiny_anomalyclip: AnomalyCLIPModel, tiny_clip_dir, tmp_path):
    checkpoint = tmp_path / "epoch_15.pth"
    torch.save({"prompt_learner": official_state_dict(tiny_anomalyclip)}, checkpoint)
    with pytest.raises(ValueError, match="n_ctx"):
        convert_anomalyclip_checkpoint(checkpoint, tiny_clip_dir, tmp_path / "out", **TINY_CONVERSION, n_ctx=8)


def test_a_pth_that_would_run_code_is_refused(tmp_path: Path, tiny_clip_dir: Path):
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "evil.pth"
    torch.save({"prompt_learner": {"ctx_pos": WritesAMarkerWhenUnpickled(marker)}}, checkpoint)
    with pytest.raises(ValueError, match="evil.pth"):
        convert_anomalyclip_checkpoint(checkpoint, tiny_clip_dir, tmp_path / "out", **TINY_CONVERSION)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda state: state.update(ctx_pos=torch.zeros(1, 1, 4, 32)), "ctx_pos"),
        (lambda state: state.update({"compound_prompts_text.1": torch.zeros(3, 64)}), "compound_prompts_text.1"),
        (lambda state: state.update(tokenized_prompts_pos=torch.zeros(1, 1, 76, dtype=torch.int32)), "tokenized"),
        (lambda state: state.pop("ctx_neg"), "ctx_neg"),
        (lambda state: state.update(extra=torch.zeros(1)), "extra"),
        (lambda state: state.update(ctx_neg=3), "ctx_neg"),
        (lambda state: state.update(token_suffix_neg=state["token_suffix_neg"] + 0.1), "another CLIP"),
    ],
)
def test_a_wrong_state_dict_is_refused(
    tiny_anomalyclip: AnomalyCLIPModel, tiny_clip_dir: Path, tmp_path, change, message
):
    state = official_state_dict(tiny_anomalyclip)
    change(state)
    checkpoint = tmp_path / "wrong.pth"
    torch.save({"prompt_learner": state}, checkpoint)
    with pytest.raises(ValueError, match=message) as error:
        convert_anomalyclip_checkpoint(checkpoint, tiny_clip_dir, tmp_path / "out", **TINY_CONVERSION)
    assert "wrong.pth" in str(error.value)


@pytest.mark.parametrize(
    "content",
    [{"state_dict": {}}, [torch.zeros(1)], {"prompt_learner": torch.zeros(1)}, {"prompt_learner": {}, "epoch": 3}],
)
def test_a_checkpoint_of_the_wrong_layout_is_refused(tmp_path: Path, content):
    checkpoint = tmp_path / "layout.pth"
    torch.save(content, checkpoint)
    with pytest.raises(ValueError, match="layout.pth"):
        load_official_checkpoint(checkpoint)


def test_a_missing_or_garbled_file_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_official_checkpoint(tmp_path / "absent.pth")
    garbled = tmp_path / "garbled.pth"
    garbled.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbled.pth"):
        load_official_checkpoint(garbled)
    command = ["convert", "anomalyclip", "--checkpoint", str(garbled), "--clip", "unused"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
