"""WinCLIP: hand-computable pieces (windows, harmonic means, score), window isolation, batch independence, input sizes,
few-shot nearest neighbours, loading and serialisation, on a tiny random CLIP (64 px, patch 8: an 8x8 grid)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genclip_hf.configuration_winclip import WinCLIPConfig
from genclip_hf.few_shot import nearest_neighbour_distances
from genclip_hf.modeling_winclip import (
    WinCLIPModel,
    anomaly_probabilities,
    harmonic_aggregation,
    harmonic_mean,
    winclip_prompts,
    window_patch_indices,
)
from genclip_hf.processing_anomaly_detection import AnomalyDetectionProcessor
from genclip_hf.testing import TINY_CLIP

PARITY_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "winclip"
PATCH = 8


@pytest.fixture(scope="module")
def model(tiny_clip_dir: Path) -> WinCLIPModel:
    return WinCLIPModel.from_clip(str(tiny_clip_dir), image_size=64)


def images(count: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# Hand-computable pieces.


def test_window_indices_on_a_3x3_grid():
    expected = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert window_patch_indices(3, 3, 2).tolist() == expected
    assert window_patch_indices(3, 3, 3).tolist() == [list(range(9))]
    assert window_patch_indices(2, 3, 1).tolist() == [[0], [1], [2], [3], [4], [5]]


@pytest.mark.parametrize("scale", [2, 3])
def test_window_indices_are_anomalib_masks(scale):
    path = PARITY_DIR / "expected.safetensors"
    if not path.exists():
        pytest.skip(f"{path} is missing: the stored anomalib masks live in ../shared/parity")
    masks = load_file(path)[f"masks_scale{scale}"]
    assert torch.equal(window_patch_indices(15, 15, scale).T, masks.long())


def test_harmonic_aggregation_on_a_3x3_grid():
    window_scores = torch.tensor([[0.5, 0.25, 1.0, 0.2]])
    expected = torch.tensor(
        [
            [0.5, 2 / (2 + 4), 0.25],
            [2 / (2 + 1), 4 / (2 + 4 + 1 + 5), 2 / (4 + 5)],
            [1.0, 2 / (1 + 5), 0.2],
        ]
    )
    aggregated = harmonic_aggregation(window_scores, window_patch_indices(3, 3, 2), (3, 3))
    torch.testing.assert_close(aggregated, expected[None], rtol=0, atol=1e-7)


def test_cross_scale_harmonic_mean():
    maps = torch.tensor([[[[0.5]], [[0.25]], [[1.0]]]])
    torch.testing.assert_close(harmonic_mean(maps, dim=1), torch.tensor([[[3 / 7]]]))


def test_score_is_the_softmax_of_cosines_over_the_temperature():
    text = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])
    embeddings = torch.tensor([[[3.0, 0.0], [0.0, 0.1], [1.0, 1.0]]])
    scores = anomaly_probabilities(embeddings, text, 0.07)
    expected = torch.tensor([[1 / (1 + math.exp(1 / 0.07)), 1 / (1 + math.exp(-1 / 0.07)), 0.5]])
    torch.testing.assert_close(scores, expected)


def test_prompt_ensemble():
    normal, anomalous = winclip_prompts("bottle")
    assert (len(normal), len(anomalous)) == (147, 84)
    assert normal[0] == "a cropped photo of the bottle."
    assert normal[21] == "a cropped photo of the flawless bottle."
    assert anomalous[-1] == "a photo of a bottle with damage for anomaly detection."
    assert normal.count("a jpeg corrupted photo of the bottle.") == 2


def test_nearest_neighbour_distances_by_hand_and_in_chunks():
    features = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]])
    memory = torch.tensor([[0.0, 1.0], [-3.0, 0.0]])
    expected = torch.tensor([[0.5, 0.0, 0.0]])
    torch.testing.assert_close(nearest_neighbour_distances(features, memory), expected)
    torch.testing.assert_close(nearest_neighbour_distances(features, memory, chunk_size=1), expected)
    features, memory = torch.randn(2, 7, 5), torch.randn(11, 5)
    torch.testing.assert_close(
        nearest_neighbour_distances(features, memory, chunk_size=3), nearest_neighbour_distances(features, memory)
    )
    with pytest.raises(ValueError, match="memory"):
        nearest_neighbour_distances(features, torch.randn(4, 6))


# Config.


def test_config_defaults():
    config = WinCLIPConfig()
    assert (config.image_size, config.window_scales, config.temperature) == (240, [2, 3], 0.07)
    assert config.grid_size == 15
    assert config.label_threshold() == 0.5
    assert WinCLIPConfig(score_threshold=0.7).label_threshold() == 0.7


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"window_scales": [2, 16]}, "window_scales"),
        ({"window_scales": []}, "window_scales"),
        ({"window_scales": [0]}, "window_scales"),
        ({"image_size": 250}, "image_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "0.07"}, "temperature"),
        ({"few_shot_weight": 1.5}, "few_shot_weight"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        WinCLIPConfig(**overrides)


# The model on a tiny CLIP.


def test_model_is_frozen_and_caches_text(model):
    assert not any(parameter.requires_grad for parameter in model.parameters())
    first = model.text_embeddings("pcb")
    assert first.shape == (2, TINY_CLIP["projection_dim"])
    assert model.text_embeddings("pcb") is first


def test_image_embedding_is_clips(model):
    pixel_values = images(2)
    with torch.no_grad():
        stock = model.clip.get_image_features(pixel_values=pixel_values).pooler_output
    torch.testing.assert_close(model.encode_image(pixel_values).image_embeds, stock, rtol=1e-5, atol=1e-5)


def test_windows_do_not_attend_to_each_other(model):
    pixel_values = images(1)
    changed = pixel_values.clone()
    changed[..., 5 * PATCH : 6 * PATCH, 5 * PATCH : 6 * PATCH] += 1.0  # patch (5, 5) only
    before, after = (model.encode_image(x, window_scales=[2]).window_embeds[0][0] for x in (pixel_values, changed))
    indices = window_patch_indices(8, 8, 2)
    touched = (indices == 5 * 8 + 5).any(dim=1)
    assert touched.sum() == 4
    torch.testing.assert_close(after[~touched], before[~touched], rtol=0, atol=1e-6)
    assert (after[touched] - before[touched]).abs().amax(dim=1).min() > 1e-3


def test_results_do_not_depend_on_the_batch(model):
    pixel_values = images(2)
    together = model.detect(pixel_values, class_names=["pcb", "screw"], return_component_maps=True)
    alone = model.detect(pixel_values[1:], class_names="screw", return_component_maps=True)
    torch.testing.assert_close(alone.anomaly_maps[0], together.anomaly_maps[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(alone.pred_scores[0], together.pred_scores[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        alone.component_maps["window_scales"][0], together.component_maps["window_scales"][1], rtol=0, atol=1e-6
    )


def test_detect_output(model):
    output = model.detect(images(2), return_component_maps=True, window_scales=[1, 2, 3])
    assert output.anomaly_maps.shape == (2, 64, 64)
    assert output.pred_scores.shape == (2,)
    assert output.component_maps["window_scales"].shape == (2, 3, 64, 64)
    assert output.class_names == ["object", "object"]
    assert output.score_threshold == 0.5
    assert ((output.anomaly_maps > 0) & (output.anomaly_maps < 1)).all()
    grid = model(images(2), window_scales=[1, 2, 3])
    torch.testing.assert_close(output.pred_scores, grid.image_scores)


def test_bad_detect_inputs_name_the_argument(model):
    with pytest.raises(ValueError, match="window_scales"):
        model.detect(images(1), window_scales=[9])
    with pytest.raises(ValueError, match="pixel_values"):
        model.detect(images(1, size=72))
    with pytest.raises(ValueError, match="class_names"):
        model.detect(images(2), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="sigma"):
        model.detect(images(1), sigma=1.0)


def test_non_native_input_size(tiny_clip_dir):
    model = WinCLIPModel.from_clip(str(tiny_clip_dir), image_size=80, window_scales=[2, 4])
    pixel_values = images(1, size=80)
    output = model.detect(pixel_values, return_component_maps=True)
    assert output.anomaly_maps.shape == (1, 80, 80)
    assert output.component_maps["window_scales"].shape == (1, 2, 80, 80)
    with torch.no_grad():
        stock = model.clip.get_image_features(pixel_values=pixel_values, interpolate_pos_encoding=True).pooler_output
    torch.testing.assert_close(model.encode_image(pixel_values).image_embeds, stock, rtol=1e-5, atol=1e-5)


# Few-shot (WinCLIP+).


def test_few_shot_distance_is_zero_for_a_reference_image(model):
    references = images(3, seed=1)
    memory = model.build_reference_memory(references)
    assert memory["patch_embeddings"].shape == (3 * 64, model.config.clip_config.vision_config.hidden_size)
    assert memory["window_embeddings_scale2"].shape == (3 * 49, TINY_CLIP["projection_dim"])
    seen = model.detect(references[1:2], reference_memory=memory, return_component_maps=True)
    assert seen.component_maps["few_shot"].shape == (1, 3, 64, 64)
    assert seen.component_maps["few_shot"].abs().max() < 1e-5
    unseen = model.detect(images(1, seed=2), reference_memory=memory, return_component_maps=True)
    assert (unseen.component_maps["few_shot"] > 1e-4).all()


def test_few_shot_fusion(model):
    pixel_values, memory = images(1, seed=2), model.build_reference_memory(images(2, seed=1))
    zero_shot = model.detect(pixel_values)
    outputs = model(pixel_values, reference_memory=memory)
    fused = model.detect(pixel_values, reference_memory=memory, few_shot_weight=0.25)
    expected = 0.75 * outputs.image_scores + 0.25 * outputs.few_shot_map.amax(dim=(-2, -1))
    torch.testing.assert_close(fused.pred_scores, expected)
    only_zero_shot = model.detect(pixel_values, reference_memory=memory, few_shot_weight=0.0)
    torch.testing.assert_close(only_zero_shot.anomaly_maps, zero_shot.anomaly_maps)
    partial = {key: value for key, value in memory.items() if key != "window_embeddings_scale3"}
    with pytest.raises(ValueError, match="window_embeddings_scale3"):
        model.detect(pixel_values, reference_memory=partial)
    model.detect(pixel_values, reference_memory=partial, window_scales=[2])


# Loading and saving.


def test_from_clip_takes_pipeline_loading_arguments(tiny_clip_dir, tmp_path):
    model = WinCLIPModel.from_clip(
        str(tiny_clip_dir),
        image_size=64,
        dtype=torch.float32,
        revision="main",
        token=None,
        cache_dir=str(tmp_path),
        local_files_only=True,
        trust_remote_code=True,
        device_map="cpu",
        _from_pipeline="anomaly-detection",
        window_scales=[3],
    )
    assert model.config.window_scales == [3]
    assert model.tokenizer is not None
    with pytest.raises(ValueError, match="sigma"):
        WinCLIPModel.from_clip(str(tiny_clip_dir), image_size=64, sigma=1.0)


def test_save_and_load_round_trip(model, tmp_path):
    processor = AnomalyDetectionProcessor.for_model(model, tokenizer=model.tokenizer)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = WinCLIPModel.from_pretrained(tmp_path)
    saved, original = (dict(config.to_dict(), _name_or_path="") for config in (loaded.config, model.config))
    assert saved == original
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    pixel_values = images(1)
    expected, actual = model.detect(pixel_values, "pcb"), loaded.detect(pixel_values, "pcb")
    torch.testing.assert_close(actual.anomaly_maps, expected.anomaly_maps, rtol=0, atol=1e-6)
    torch.testing.assert_close(actual.pred_scores, expected.pred_scores, rtol=0, atol=1e-6)
    reloaded_processor = AnomalyDetectionProcessor.from_pretrained(tmp_path)
    reloaded_processor.check_model(loaded)


def test_auto_model_loads_a_clip_checkpoint_and_a_saved_winclip(model, tiny_clip_dir, tmp_path):
    from genclip_hf import AutoModelForAnomalyDetection

    from_clip = AutoModelForAnomalyDetection.from_pretrained(str(tiny_clip_dir), dtype=torch.float32)
    assert isinstance(from_clip, WinCLIPModel)
    model.save_pretrained(tmp_path)
    AnomalyDetectionProcessor.for_model(model, tokenizer=model.tokenizer).save_pretrained(tmp_path)
    loaded = AutoModelForAnomalyDetection.from_pretrained(str(tmp_path))
    assert isinstance(loaded, WinCLIPModel)
    assert loaded.config.image_size == 64
