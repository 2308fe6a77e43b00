"""The plain-CLIP baseline of Table 1 on a tiny random CLIP (64 px, patch 8: an 8x8 grid): maps and scores computed by
hand on a CLIP whose vision tower is set to known values, text caching, settings, serialisation and the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPModel, pipeline

from genclip_hf import AnomalyDetectionProcessor, AutoModelForAnomalyDetection, CLIPBaselineConfig, CLIPBaselineModel
from genclip_hf.cli import main
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.detection import registered_detectors
from genclip_hf.modeling_clip_baseline import probability_maps, prompt_class_name
from genclip_hf.scoring import gaussian_smooth
from genclip_hf.testing import TINY_CLIP

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stock(tiny_clip_dir: Path) -> CLIPBaselineModel:
    return CLIPBaselineModel.from_clip(str(tiny_clip_dir), image_size=SIZE)


@pytest.fixture
def model(stock: CLIPBaselineModel) -> CLIPBaselineModel:
    """A fresh copy for each test (some set its weights by hand)."""
    return copy.deepcopy(stock)


@pytest.fixture(scope="module")
def saved_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved baseline folder: model and processor, as a user writes it."""
    folder = tmp_path_factory.mktemp("clip-baseline")
    model = CLIPBaselineModel.from_clip(str(tiny_clip_dir), image_size=SIZE)
    model.save_pretrained(folder)
    AnomalyDetectionProcessor.from_clip(str(tiny_clip_dir), config=model.config).save_pretrained(folder)
    return folder


def images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def stock_text_features(clip_dir: Path, sentences: list[str]) -> torch.Tensor:
    """CLIP's own text features of `sentences`, from a separately loaded stock model."""
    clip = CLIPModel.from_pretrained(str(clip_dir))
    tokens = AutoTokenizer.from_pretrained(str(clip_dir))(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        return clip.get_text_features(**tokens).pooler_output


def set_vision_tower_by_hand(model: CLIPBaselineModel, normal: torch.Tensor, anomalous: torch.Tensor) -> None:
    """Make every block the identity (attention and MLP outputs zeroed), drop the position embeddings and set the
    patch embedding so that a patch whose red mean is `a` becomes `a * (e_0 - e_3)`, and the CLS `e_1 - e_2`. Both
    layer norms then give `sign(a) * sqrt(24) * (e_0 - e_3)` and `sqrt(24) * (e_1 - e_2)`, and the projection maps
    `e_0` to the anomalous text feature and `e_1` to the normal one: a patch of positive red mean points along
    `anomalous`, one of negative red mean along `-anomalous`, the CLS along `normal`."""
    vision = model.clip.vision_model
    with torch.no_grad():
        for layer in vision.encoder.layers:
            for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        vision.embeddings.position_embedding.weight.zero_()
        patch = vision.embeddings.patch_embedding.weight
        patch.zero_()
        patch[0, 0] = 1 / 64
        patch[3, 0] = -1 / 64
        vision.embeddings.class_embedding.zero_()
        vision.embeddings.class_embedding[1] = 1.0
        vision.embeddings.class_embedding[2] = -1.0
        for norm in (vision.pre_layrnorm, vision.post_layernorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        projection = model.clip.visual_projection.weight
        projection.zero_()
        projection[:, 0] = anomalous
        projection[:, 1] = normal


def test_maps_and_scores_are_the_softmax_computed_by_hand(model: CLIPBaselineModel, tiny_clip_dir: Path):
    normal, anomalous = stock_text_features(
        tiny_clip_dir, ["a photo of a normal metal nut.", "a photo of an anomalous metal nut."]
    )
    set_vision_tower_by_hand(model, normal, anomalous)
    scale = math.exp(model.clip.logit_scale.item())
    cosine = torch.nn.functional.cosine_similarity(normal, anomalous, dim=0).item()
    along_anomalous = 1 / (1 + math.exp(scale * (cosine - 1)))  # softmax(s * [c, 1])[1]
    against_anomalous = 1 / (1 + math.exp(scale * (1 - cosine)))  # softmax(s * [-c, -1])[1]
    along_normal = 1 / (1 + math.exp(scale * (1 - cosine)))  # softmax(s * [1, c])[1]
    pixels = torch.zeros(1, 3, SIZE, SIZE)
    pixels[:, 0, :, :32] = 1.0  # red > 0 in patch columns 0-3
    pixels[:, 0, :, 32:] = -1.0  # red < 0 in patch columns 4-7

    output = model.detect(pixels, class_names="metal_nut")

    assert output.class_names == ["metal nut"]
    assert output.score_threshold == 0.5
    torch.testing.assert_close(output.pred_scores, torch.tensor([along_normal]), rtol=0, atol=1e-5)
    anomaly_map = output.anomaly_maps[0]
    assert anomaly_map.shape == (SIZE, SIZE)
    # Output column x samples the patch grid at (x + 0.5) / 8 - 0.5: up to x = 27 only columns 0-3, from 36 on 4-7.
    torch.testing.assert_close(anomaly_map[:, :28], torch.full((SIZE, 28), along_anomalous), rtol=0, atol=1e-5)
    torch.testing.assert_close(anomaly_map[:, 36:], torch.full((SIZE, 28), against_anomalous), rtol=0, atol=1e-5)
    between = 0.5625 * along_anomalous + 0.4375 * against_anomalous  # x = 31 samples column 3.4375
    torch.testing.assert_close(anomaly_map[:, 31], torch.full((SIZE,), between), rtol=0, atol=1e-5)
    assert along_anomalous > 0.5 > against_anomalous


def test_logit_scale_overrides_clips_own(model: CLIPBaselineModel, tiny_clip_dir: Path):
    normal, anomalous = stock_text_features(
        tiny_clip_dir, ["a photo of a normal object.", "a photo of an anomalous object."]
    )
    set_vision_tower_by_hand(model, normal, anomalous)
    model.config.logit_scale = 3.0
    cosine = torch.nn.functional.cosine_similarity(normal, anomalous, dim=0).item()
    score = model.detect(torch.zeros(1, 3, SIZE, SIZE)).pred_scores
    torch.testing.assert_close(score, torch.tensor([1 / (1 + math.exp(3.0 * (1 - cosine)))]), rtol=0, atol=1e-6)


def test_bilinear_upsampling_of_a_2x2_grid_by_hand():
    # Patches row-major: [[0, 1], [2, 3]] with anomalous probabilities 0.1, 0.5, 0.3, 0.9.
    anomalous = torch.tensor([0.1, 0.5, 0.3, 0.9])
    probabilities = torch.stack([1 - anomalous, anomalous], dim=-1)[None]
    maps = probability_maps(probabilities, 4)
    # Output pixel i samples the grid at (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]).
    weights = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected = weights @ anomalous.reshape(2, 2) @ weights.T
    torch.testing.assert_close(maps[0, 1], expected)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(1, 4, 4))


def test_text_embeddings_are_cached_per_class_name(model: CLIPBaselineModel, monkeypatch):
    calls = []
    encode = model.clip.get_text_features
    monkeypatch.setattr(model.clip, "get_text_features", lambda **kwargs: calls.append(1) or encode(**kwargs))
    model.detect(images(3), class_names=["bottle", "bottle", "pcb1"])
    model.detect(images(1), class_names="pcb2")
    assert len(calls) == 2  # "bottle" and "pcb" (pcb1 and pcb2 clean to the same name)
    assert model.text_embeddings("bottle") is model.text_embeddings("bottle")
    model.set_tokenizer(model.tokenizer)
    model.detect(images(1), class_names="bottle")
    assert len(calls) == 3


def test_class_names_are_cleaned_for_the_prompts():
    assert [prompt_class_name(name) for name in ("metal_nut", "pcb1", "02", "pipe-fryum")] == [
        "metal nut",
        "pcb",
        "object",
        "pipe fryum",
    ]


def test_batched_detection_equals_one_image_at_a_time(model: CLIPBaselineModel):
    pixels = images(3, seed=1)
    together = model.detect(pixels, class_names=["bottle", "cable", "bottle"])
    for index, name in enumerate(["bottle", "cable", "bottle"]):
        alone = model.detect(pixels[index : index + 1], class_names=name)
        torch.testing.assert_close(together.anomaly_maps[index], alone.anomaly_maps[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(together.pred_scores[index], alone.pred_scores[0], rtol=0, atol=1e-5)


def test_sigma_is_a_per_call_smoothing(model: CLIPBaselineModel):
    pixels = images(2)
    plain = model.detect(pixels)
    smoothed = model.detect(pixels, sigma=2.0)
    torch.testing.assert_close(smoothed.anomaly_maps, gaussian_smooth(plain.anomaly_maps, 2.0))
    torch.testing.assert_close(smoothed.pred_scores, plain.pred_scores)
    assert 0 <= float(plain.anomaly_maps.min()) and float(plain.anomaly_maps.max()) <= 1
    with pytest.raises(ValueError, match="sigma"):
        model.detect(pixels, sigma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        model.detect(pixels, alpha=0.5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 60}, "image_size"),
        ({"logit_scale": 0.0}, "logit_scale"),
        ({"normal_prompt": "a photo of a normal thing."}, "normal_prompt"),
        ({"anomalous_prompt": "{} {}"}, "anomalous_prompt"),
        ({"sigma": float("nan")}, "sigma"),
        ({"position_interpolation": "nearest"}, "position_interpolation"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        CLIPBaselineConfig(clip_config=TINY_CLIP, **{"image_size": SIZE, **overrides})


def test_bad_inputs_are_named(model: CLIPBaselineModel, tiny_clip_dir: Path):
    with pytest.raises(ValueError, match="Unknown argument.*windows"):
        CLIPBaselineModel.from_clip(str(tiny_clip_dir), windows=3)
    with pytest.raises(ValueError, match="pixel_values must be 64x64"):
        model.detect(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="class_names must hold 1 or 2"):
        model.detect(images(2), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="class_name 'word word"):
        model.detect(images(1), class_names="word " * 80)


def test_save_and_load_round_trip(model: CLIPBaselineModel, tmp_path: Path):
    pixels = images(2)
    before = model.detect(pixels, class_names="bottle")
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "clip_baseline"
    assert all(key.startswith("clip.") for key in load_file(tmp_path / "model.safetensors"))
    loaded = CLIPBaselineModel.from_pretrained(tmp_path)
    loaded.set_tokenizer(model.tokenizer)
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    after = loaded.detect(pixels, class_names="bottle")
    torch.testing.assert_close(after.anomaly_maps, before.anomaly_maps, rtol=0, atol=0)
    torch.testing.assert_close(after.pred_scores, before.pred_scores, rtol=0, atol=0)


def test_registered_and_runs_in_the_pipeline(saved_dir: Path):
    assert registered_detectors()["clip_baseline"] is CLIPBaselineModel
    assert isinstance(AutoModelForAnomalyDetection.from_pretrained(saved_dir), CLIPBaselineModel)
    detector = pipeline("anomaly-detection", model=str(saved_dir))
    result = detector(torch.rand(40, 50, 3).mul(255).byte().numpy(), class_name="metal_nut", threshold=0.5)
    assert result["anomaly_map"].shape == (40, 50)
    assert result["class_name"] == "metal nut" and result["score_threshold"] == 0.5
    assert result["mask"].dtype == bool


def test_cli_predict_and_evaluate(saved_dir: Path, tmp_path: Path, capsys):
    root = write_synthetic_benchmark(tmp_path / "data", ["stripes"], n_train_good=0, n_test_good=2, n_test_bad=2)
    predictions = tmp_path / "predictions"
    argv = ["predict", str(root / "stripes" / "test"), "--model", str(saved_dir), "--out", str(predictions)]
    assert main([*argv, "--class-name", "stripes", "--sigma", "1"]) == 0
    assert len(json.loads((predictions / "scores.json").read_text())["results"]) == 4
    evaluation = tmp_path / "evaluation"
    argv = ["evaluate", "--model", str(saved_dir), "--benchmark", "mvtec", "--root", str(root)]
    assert main([*argv, "--out", str(evaluation), "--heatmaps-per-class", "0"]) == 0
    results = json.loads((evaluation / "results.json").read_text())
    assert list(results["per_class"]) == ["stripes"]
    assert results["run"]["method"] == "clip_baseline" and results["run"]["settings"] == {"sigma": 0.0}
    assert "1 classes evaluated" in capsys.readouterr().out
