"""GenCLIPConfig, GenCLIPModel and GenCLIPProcessor: features, training step, serialisation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoProcessor

from genclip_hf import GenCLIPConfig, GenCLIPModel, GenCLIPProcessor
from genclip_hf.testing import TINY_CLIP


def sample_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (90, 50), dtype=np.uint8)),
    ]


def test_config_defaults_are_the_paper_setting():
    config = GenCLIPConfig()
    assert config.feature_layers == [6, 12, 18, 24]
    assert config.image_size == 518
    assert config.clip_config.vision_config.num_hidden_layers == 24
    assert config.clip_config.vision_config.hidden_size == 1024
    assert config.clip_config.projection_dim == 768
    assert (config.n_state_tokens, config.n_query_tokens, config.text_prompt_length) == (1, 2, 1)
    assert config.deep_prompt_depth == 12
    assert (config.alpha, config.sigma, config.top_n1, config.top_n2) == (0.8, 9.0, 500, 2500)
    assert config.logit_scale == pytest.approx(1 / 0.07)
    assert (config.text_prompt_position, config.position_interpolation, config.dice_smooth) == (
        "after_sot",
        "bicubic",
        1.0,
    )


def test_a_config_saved_before_the_fidelity_fields_loads_with_its_old_behaviour(tmp_path):
    import json

    GenCLIPConfig().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["text_prompt_position"], saved["dice_smooth"]) == ("after_sot", 1.0)
    del saved["text_prompt_position"], saved["dice_smooth"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    old = GenCLIPConfig.from_pretrained(tmp_path)
    assert (old.text_prompt_position, old.dice_smooth) == ("before_eot", 0.0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"feature_layers": [6, 25]}, "feature_layers"),
        ({"feature_layers": []}, "feature_layers"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"sigma": -1.0}, "sigma"),
        ({"top_n1": 3000}, "top_n1"),
        ({"n_query_tokens": 0}, "n_query_tokens"),
        ({"text_prompt_depth": 13}, "text_prompt_depth"),
        ({"image_size": 10}, "image_size"),
        ({"generic_term": "  "}, "generic_term"),
        ({"feature_layers": [24.7]}, "feature_layers"),
        ({"feature_layers": [6, 6]}, "feature_layers"),
        ({"use_cnf": "false"}, "use_cnf"),
        ({"logit_scale": float("nan")}, "logit_scale"),
        ({"sigma": float("inf")}, "sigma"),
        ({"image_size": "518"}, "image_size"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"text_prompt_position": "middle"}, "text_prompt_position"),
        ({"position_interpolation": "nearest"}, "position_interpolation"),
        ({"dice_smooth": -1.0}, "dice_smooth"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        GenCLIPConfig(**overrides)


def test_layer_features_and_image_embeds_match_stock_clip(tiny_model, tiny_processor):
    inputs = tiny_processor(images=sample_images(), class_names="pcb")
    with torch.no_grad():
        vision = tiny_model.encode_image(inputs["pixel_values"])
        stock = tiny_model.clip.vision_model(
            inputs["pixel_values"], interpolate_pos_encoding=True, output_hidden_states=True
        )
        stock_embeds = tiny_model.clip.get_image_features(inputs["pixel_values"], interpolate_pos_encoding=True)
    assert vision.layer_features.shape == (2, 3, 1 + 64, 48)
    for index, layer in enumerate(tiny_model.config.feature_layers):
        assert torch.allclose(vision.layer_features[:, index], stock.hidden_states[layer], atol=1e-5)
    assert torch.allclose(vision.image_embeds, stock_embeds.pooler_output, atol=1e-5)


def bilinear_resize(grid: np.ndarray, size: int) -> np.ndarray:
    """`(n, n, D)` -> `(size, size, D)` bilinear with half-pixel centres (`align_corners=False`), edges clamped."""
    source = np.clip((np.arange(size) + 0.5) * grid.shape[0] / size - 0.5, 0, None)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, grid.shape[0] - 1)
    weight = (source - low)[:, None]
    rows = grid[low] * (1 - weight[..., None]) + grid[high] * weight[..., None]
    return rows[:, low] * (1 - weight[None]) + rows[:, high] * weight[None]


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_position_interpolation_setting_reaches_the_vision_pass(tiny_clip_dir, mode):
    """At 96 px (12x12 grid, the tower was trained at 8x8) layer 1 is computed with the configured position table:
    bilinear by hand in numpy, bicubic as HF's `interpolate_pos_encoding`."""
    model = GenCLIPModel.from_clip(
        str(tiny_clip_dir), feature_layers=[1, 2], image_size=96, position_interpolation=mode
    ).eval()
    pixel_values = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    vision = model.clip.vision_model
    table = vision.embeddings.position_embedding.weight.detach().numpy()
    with torch.no_grad():
        ours = model.encode_image(pixel_values).layer_features[:, 0]
        if mode == "bicubic":
            expected = vision(pixel_values, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states[1]
        else:
            patches = vision.embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
            grid = bilinear_resize(table[1:].reshape(8, 8, -1), 12).reshape(144, -1)
            positions = torch.from_numpy(np.concatenate([table[:1], grid]).astype(np.float32))
            tokens = torch.cat([vision.embeddings.class_embedding.expand(1, 1, -1), patches], dim=1) + positions
            expected = vision.encoder.layers[0](vision.pre_layrnorm(tokens), None)
            expected = expected[0] if isinstance(expected, tuple) else expected
    assert ours.shape == (1, 145, 48)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_vision_pass_stops_after_the_last_needed_layer(tiny_model, tiny_processor):
    calls = []
    hook = tiny_model.clip.vision_model.encoder.layers[3].register_forward_hook(lambda *_: calls.append(1))
    inputs = tiny_processor(images=sample_images()[:1])
    tiny_model.config.feature_layers = [1, 2, 3]
    tiny_model.encode_image(inputs["pixel_values"], return_image_embeds=False)
    assert calls == []
    tiny_model.encode_image(inputs["pixel_values"], return_image_embeds=True)
    assert calls == [1]
    hook.remove()


def test_forward_outputs_shapes_and_probabilities(tiny_model, tiny_processor):
    inputs = tiny_processor(images=sample_images(), class_names=["pcb", "pipe fryum"])
    with torch.no_grad():
        output = tiny_model(**inputs)
        detection = tiny_model.detect(inputs["pixel_values"], ["pcb", "pipe fryum"], return_component_maps=True)
    assert output.layer_maps.shape == (2, 3, 2, 64, 64)
    assert detection.component_maps["query_maps"].shape == (2, 3, 64, 64)
    assert output.image_embeds.shape == (2, 32)
    assert output.text_embeds.shape == (2, 3, 2, 32)
    assert output.loss is None
    assert torch.allclose(output.layer_maps.sum(dim=2), torch.ones(2, 3, 64, 64), atol=1e-5)
    # The query branch does not depend on the image or the class name: its text is shared.
    query_text = tiny_model.query_text_embeddings()
    assert torch.allclose(
        tiny_model.score_maps(tiny_model.encode_image(inputs["pixel_values"]).layer_features, query_text)[:, :, 1],
        detection.component_maps["query_maps"],
        atol=1e-6,
    )


def test_vision_prompts_switch_changes_only_the_vision_branch(tiny_model, tiny_processor):
    """MVP off: the vision-enhanced maps change, the query-only maps stay bitwise the same, and the vision-enhanced
    text no longer depends on the image or the layer (V_Q = Q_P)."""
    inputs = tiny_processor(images=sample_images(), class_names="pcb")
    pixel_values = inputs["pixel_values"]
    with torch.no_grad():
        with_mvp = tiny_model.detect(pixel_values, "pcb", use_cnf=False, return_component_maps=True)
        without = tiny_model.detect(
            pixel_values, "pcb", use_cnf=False, use_vision_prompts=False, return_component_maps=True
        )
        text_without = tiny_model.text_embeddings(
            tiny_model.encode_image(pixel_values).layer_features,
            **tiny_model.prompt_inputs(["pcb", "pcb"]),
            use_vision_prompts=False,
        )
    assert not torch.allclose(with_mvp.component_maps["vision_maps"], without.component_maps["vision_maps"])
    assert torch.equal(with_mvp.component_maps["query_maps"], without.component_maps["query_maps"])
    assert torch.allclose(text_without[0], text_without[1], atol=1e-6)
    assert torch.allclose(text_without[:, 0], text_without[:, 2], atol=1e-6)


def test_training_step_updates_exactly_the_learnable_parameters(tiny_model, tiny_processor):
    model = tiny_model.train()
    clip_before = {name: tensor.clone() for name, tensor in model.clip.state_dict().items()}
    learnable_before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    expected = {
        "prompt_learner.normal_state_tokens",
        "prompt_learner.abnormal_state_tokens",
        "prompt_learner.query_tokens",
        "prompt_learner.deep_text_prompts",
    }
    expected |= {f"prompt_learner.vision_prompt_projections.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    expected |= {f"patch_projections.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert set(learnable_before) == expected
    mask = np.zeros((40, 70), dtype=np.uint8)
    mask[10:20, 30:50] = 255
    inputs = tiny_processor(images=sample_images(), class_names="pcb", masks=[mask, None])
    assert inputs["masks"].shape == (2, 64, 64) and inputs["masks"][1].sum() == 0
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    output = model(**inputs)
    assert output.loss.ndim == 0 and output.layer_loss.shape == (3,)
    output.loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == expected
    optimizer.step()
    for name, tensor in model.clip.state_dict().items():
        assert torch.equal(tensor, clip_before[name]), name
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert not torch.equal(parameter, learnable_before[name]), name
    assert not model.clip.training


@pytest.mark.parametrize("dice_smooth", [1.0, 0.0])
def test_dice_smooth_setting_reaches_the_loss(tiny_model, tiny_processor, dice_smooth):
    """On a batch of normal images the layer loss moves with `config.dice_smooth` by exactly the dice terms, by hand:
    anomaly channel `1 - s / (sum p1 + s)` (1 when s = 0), normal channel `1 - (2 sum p0 + s) / (sum p0 + HW + s)`."""
    inputs = tiny_processor(images=sample_images(), class_names="pcb", masks=[None, None])
    tiny_model.config.dice_smooth = 1.0
    with torch.no_grad():
        reference = tiny_model(**inputs)
        tiny_model.config.dice_smooth = dice_smooth
        output = tiny_model(**inputs)
    maps = reference.layer_maps.double().numpy()
    anomaly_sum = maps[:, :, 1].sum(axis=(2, 3))
    normal_sum = maps[:, :, 0].sum(axis=(2, 3))
    pixels = maps.shape[-1] * maps.shape[-2]

    def dice_terms(smooth: float) -> np.ndarray:
        anomaly = 1 - smooth / (anomaly_sum + (smooth or 1e-5))
        normal = 1 - (2 * normal_sum + smooth) / (normal_sum + pixels + (smooth or 1e-5))
        return (anomaly + normal).mean(axis=0)

    expected_shift = dice_terms(dice_smooth) - dice_terms(1.0)
    shift = (output.layer_loss - reference.layer_loss).double().numpy()
    assert np.allclose(shift, expected_shift, atol=1e-5)
    if dice_smooth == 0.0:
        assert (expected_shift > 2e-4).all()  # well above the tolerance: the check can see the setting


def test_query_text_cache_follows_parameter_updates(tiny_model):
    with torch.no_grad():
        first = tiny_model.query_text_embeddings()
        assert tiny_model.query_text_embeddings() is first
        tiny_model.prompt_learner.query_tokens.add_(1.0)
        second = tiny_model.query_text_embeddings()
    assert not torch.allclose(first, second)


def test_save_and_load_round_trip_is_identical_and_pickle_free(tiny_model, tiny_processor, tmp_path):
    import genclip_hf  # noqa: F401  (registers the auto classes)

    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, GenCLIPModel)
    assert not any(parameter.requires_grad for parameter in loaded.clip.parameters())
    trainable = {name for name, parameter in loaded.named_parameters() if parameter.requires_grad}
    assert trainable == {name for name, parameter in tiny_model.named_parameters() if parameter.requires_grad}
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GenCLIPConfig)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, GenCLIPProcessor)
    assert processor.image_size == 64 and processor.n_query_tokens == 2
    inputs = tiny_processor(images=sample_images(), class_names="pcb")
    reloaded_inputs = processor(images=sample_images(), class_names="pcb")
    for key, value in inputs.items():
        assert torch.equal(value, reloaded_inputs[key]), key
    with torch.no_grad():
        before = tiny_model.detect(inputs["pixel_values"], "pcb", return_component_maps=True)
        after = loaded.detect(reloaded_inputs["pixel_values"], "pcb", return_component_maps=True)
    assert torch.equal(before.anomaly_maps, after.anomaly_maps)
    assert torch.equal(before.component_maps["query_maps"], after.component_maps["query_maps"])
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_bad_inputs_name_the_argument_and_expected_shape(tiny_model, tiny_processor):
    with pytest.raises(ValueError, match=r"images\[0\].*\(H, W, C\)"):
        tiny_processor(images=[np.zeros((20, 20, 2), dtype=np.uint8)])
    with pytest.raises(ValueError, match=r"masks\[0\].*\(40, 70\)"):
        tiny_processor(images=sample_images(), masks=[np.zeros((10, 10)), None])
    with pytest.raises(ValueError, match=r"masks must hold one mask per image"):
        tiny_processor(images=sample_images(), masks=[None])
    with pytest.raises(ValueError, match="class_names.*empty list"):
        tiny_processor(images=sample_images(), class_names=[])
    with pytest.raises(ValueError, match=r"class_names\[1\]"):
        tiny_processor(images=sample_images(), class_names=["pcb", " "])
    inputs = tiny_processor(images=sample_images())
    with pytest.raises(ValueError, match=r"pixel_values.*\(batch, 3, 64, 64\)"):
        tiny_model(**{**inputs, "pixel_values": inputs["pixel_values"][:, :2]})
    with pytest.raises(ValueError, match=r"masks must have shape \(batch=2, 64, 64\)"):
        tiny_model(**inputs, masks=torch.zeros(2, 32, 32))


def test_processor_converts_sixteen_bit_grayscale_and_rgba(tiny_processor):
    sixteen = Image.fromarray(np.full((30, 30), 65535, dtype=np.uint16))
    rgba = Image.fromarray(np.full((30, 30, 4), 255, dtype=np.uint8))
    pixels = tiny_processor(images=[sixteen, rgba])["pixel_values"]
    assert torch.allclose(pixels[0], pixels[1], atol=1e-4)


def test_model_builds_from_a_config_without_download():
    torch.manual_seed(0)
    model = GenCLIPModel(GenCLIPConfig(clip_config=TINY_CLIP, feature_layers=[2, 4], image_size=72))
    assert model.grid_size == 9
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_processor_keeps_the_pil_backend(tiny_processor):
    from transformers import CLIPImageProcessorPil, ViTImageProcessorPil

    other_backend = ViTImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.1] * 3, image_std=[0.2] * 3)
    processor = GenCLIPProcessor(image_processor=other_backend, tokenizer=tiny_processor.tokenizer)
    assert type(processor.image_processor) is CLIPImageProcessorPil
    assert processor.image_size == 64 and list(processor.image_processor.image_mean) == [0.1] * 3
    assert processor.image_processor.do_center_crop is False
