"""The CoOp baseline of Table 1 on a tiny random CLIP (64 px, patch 8: an 8x8 grid): the token layout, the text path
against stock CLIP, training (only the context learns, the loss falls), caching, serialisation, the CLI and
`genclip train --method coop` end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.nn import functional
from transformers import pipeline

from genclip_hf import AnomalyDetectionProcessor, AutoModelForAnomalyDetection, CoOpConfig, CoOpModel
from genclip_hf.cli import main
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.detection import registered_detectors
from genclip_hf.losses import genclip_loss
from genclip_hf.modeling_coop import build_coop_prompt
from genclip_hf.testing import TINY_CLIP

SIZE = 64
N_CTX = 4
TINY_COOP = {"image_size": SIZE, "n_ctx": N_CTX}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def untrained(tiny_clip_dir: Path) -> CoOpModel:
    torch.manual_seed(0)
    return CoOpModel.from_clip(str(tiny_clip_dir), **TINY_COOP).eval()


@pytest.fixture
def model(untrained: CoOpModel) -> CoOpModel:
    """A fresh copy for each test (tests train it and change its context)."""
    return copy.deepcopy(untrained)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes, 8 test images (a multiple of the batch)."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_benchmark(root, ["stripes", "disc"], n_train_good=0, n_test_good=2, n_test_bad=2, seed=3)


def images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def decoded(model: CoOpModel, ids) -> list[str]:
    return model.tokenizer.convert_ids_to_tokens([int(token) for token in ids])


# The prompts.


def test_context_slots_are_where_the_layout_puts_them(model: CoOpModel):
    """[SOT] [V] x 4 normal metal nut . [EOT]; the abnormal prompt differs only in its state word."""
    prompts = model.prompt_tokenizer(["metal nut", "pcb"])
    assert prompts["input_ids"].shape[:2] == (2, 2)
    normal = decoded(model, prompts["input_ids"][0, 0])
    assert normal[0] == "<|startoftext|>"
    assert normal[1 : 1 + N_CTX] == ["x</w>"] * N_CTX
    assert normal[1 + N_CTX : 10] == ["normal</w>", "metal</w>", "nut</w>", ".</w>", "<|endoftext|>"]
    abnormal = decoded(model, prompts["input_ids"][0, 1])
    eot = int(prompts["eot_positions"][0, 1])
    assert abnormal[1 + N_CTX : eot + 1] == ["anom", "al", "ous</w>", "metal</w>", "nut</w>", ".</w>", "<|endoftext|>"]
    assert prompts["eot_positions"].tolist() == [[9, 11], [8, 10]]


def test_text_path_equals_stock_clip_when_the_context_holds_the_placeholder_embeddings(model: CoOpModel):
    """With the context set to the embedding of "x", the prompt is the plain sentence "x x x x normal bottle.", so the
    custom text path (truncated at the EOT) must give CLIP's own text features; a changed slot changes them."""
    embedding = model.clip.text_model.embeddings.token_embedding
    placeholder = model.tokenizer("X", add_special_tokens=False)["input_ids"]
    sentences = ["x x x x normal bottle.", "x x x x anomalous bottle."]
    tokens = model.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        model.context.copy_(embedding(torch.tensor(placeholder * N_CTX)))
        ours = model.encode_prompts(**model.prompt_tokenizer(["bottle"]))[0]
        stock = functional.normalize(model.clip.get_text_features(**tokens).pooler_output, dim=-1)
        torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)
        model.context[N_CTX - 1, 0] += 1.0  # not a constant shift, which the layer norms would remove
        changed = model.encode_prompts(**model.prompt_tokenizer(["bottle"]))[0]
    assert (changed - stock).abs().max() > 1e-3


def test_too_long_class_name_is_refused(model: CoOpModel):
    with pytest.raises(ValueError, match="class_name 'word word"):
        build_coop_prompt(model.tokenizer, N_CTX, "normal", "word " * 80, 77)
    with pytest.raises(ValueError, match="class_name"):
        model.detect(images(1), class_names="word " * 80)


# Scores, maps and training.


def test_maps_and_scores_are_the_two_state_softmax(model: CoOpModel):
    pixels = images(2)
    output = model(pixel_values=pixels, class_names=["metal_nut", "pcb1"])
    assert output.class_names == ["metal nut", "pcb"]
    tokens = model.encode_image(pixels)
    text = model.text_embeddings(["metal nut", "pcb"])
    scale = float(model.clip.logit_scale.exp())
    image = functional.normalize(tokens[:, 0], dim=-1)
    expected = (scale * torch.einsum("bd,bsd->bs", image, text)).softmax(dim=-1)
    torch.testing.assert_close(output.image_probabilities, expected)
    assert output.state_maps.shape == (2, 2, SIZE, SIZE)
    torch.testing.assert_close(output.state_maps.sum(dim=1), torch.ones(2, SIZE, SIZE))
    detected = model.detect(pixels, class_names=["metal_nut", "pcb1"])
    torch.testing.assert_close(detected.pred_scores, expected[:, 1])
    torch.testing.assert_close(detected.anomaly_maps, output.state_maps[:, 1])


def test_training_lowers_the_loss_and_updates_only_the_context(model: CoOpModel):
    model.train()
    assert [name for name, _ in model.named_parameters() if _.requires_grad] == ["context"]
    assert model.learnable_parameters() == [model.context]
    clip_before = {name: tensor.clone() for name, tensor in model.clip.state_dict().items()}
    context_before = model.context.detach().clone()
    features = model.frozen_features(images(4))
    assert features.shape == (4, *model.frozen_features_shape()) == (4, 1 + 8 * 8, 32)
    masks = torch.zeros(4, SIZE, SIZE)
    masks[0, 8:40, 16:48] = 1.0
    masks[2, 40:, :24] = 1.0
    names, labels = ["bottle", "cable", "bottle", "screw"], torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.Adam(model.learnable_parameters(), lr=0.05, betas=(0.5, 0.999))
    losses = []
    for _ in range(5):
        loss, layer_loss = model.training_loss(features, names, masks, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert layer_loss is None
    assert losses[-1] < losses[0]
    assert not torch.equal(model.context, context_before)
    assert all(torch.equal(tensor, clip_before[name]) for name, tensor in model.clip.state_dict().items())
    assert all(parameter.grad is None for parameter in model.clip.parameters())
    assert not model.clip.training


def test_the_loss_is_eq5_on_the_state_maps(model: CoOpModel):
    features = model.frozen_features(images(2))
    masks = torch.zeros(2, SIZE, SIZE)
    masks[1, :16, :16] = 1.0
    loss, _ = model.training_loss(features, ["disc", "disc"], masks, torch.tensor([0, 1]))
    with torch.no_grad():
        maps = model(frozen_features=features, class_names="disc").state_maps
    expected, _ = genclip_loss(maps[:, None], masks, gamma=2.0, dice_smooth=1.0)
    torch.testing.assert_close(loss.detach(), expected)


def test_text_embeddings_are_cached_until_the_context_changes(model: CoOpModel, monkeypatch):
    calls = []
    encode = model.encode_prompts
    monkeypatch.setattr(model, "encode_prompts", lambda **kwargs: calls.append(kwargs) or encode(**kwargs))
    with torch.no_grad():
        first = model.text_embeddings(["bottle", "pcb", "bottle"])
        again = model.text_embeddings(["pcb", "bottle"])
        assert len(calls) == 1 and calls[0]["input_ids"].shape[0] == 2
        torch.testing.assert_close(again, first[[1, 0]], rtol=0, atol=0)
        model.context[0, :8].add_(0.5)
        moved = model.text_embeddings(["bottle"])
    assert len(calls) == 2
    assert (moved[0] - first[0]).abs().max() > 1e-4


def test_batched_detection_equals_one_image_at_a_time(model: CoOpModel):
    pixels = images(3, seed=1)
    together = model.detect(pixels, class_names=["bottle", "cable", "bottle"], sigma=1.0)
    for index, name in enumerate(["bottle", "cable", "bottle"]):
        alone = model.detect(pixels[index : index + 1], class_names=name, sigma=1.0)
        torch.testing.assert_close(together.anomaly_maps[index], alone.anomaly_maps[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(together.pred_scores[index], alone.pred_scores[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_ctx": 0}, "n_ctx"),
        ({"n_ctx": 73}, "n_ctx"),
        ({"n_ctx": 2.0}, "n_ctx"),
        ({"image_size": 66}, "image_size"),
        ({"logit_scale": -1.0}, "logit_scale"),
        ({"normal_state_word": " "}, "normal_state_word"),
        ({"dice_smooth": -1.0}, "dice_smooth"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        CoOpConfig(clip_config=TINY_CLIP, **{"image_size": SIZE, **overrides})


def test_bad_inputs_are_named(model: CoOpModel, tiny_clip_dir: Path):
    features = model.frozen_features(images(2))
    with pytest.raises(ValueError, match="Unknown argument.*feature_layers"):
        CoOpModel.from_clip(str(tiny_clip_dir), feature_layers=[4])
    with pytest.raises(ValueError, match="needs pixel_values .* or precomputed frozen_features"):
        model()
    with pytest.raises(ValueError, match=r"frozen_features must have shape \(batch, 65, 32\)"):
        model(frozen_features=features[:, 1:])
    with pytest.raises(ValueError, match="masks must have shape"):
        model.training_loss(features, ["a", "b"], torch.zeros(2, 32, 32), torch.zeros(2))
    with pytest.raises(ValueError, match="masks must hold only 0 and 1"):
        model.training_loss(features, ["a", "b"], torch.full((2, SIZE, SIZE), 0.5), torch.zeros(2))
    with pytest.raises(ValueError, match="class_names must hold 1 or 2"):
        model(frozen_features=features, class_names=["a", "b", "c"])


# Serialisation, registration and the command line.


def test_save_and_load_round_trip(model: CoOpModel, tmp_path: Path):
    with torch.no_grad():
        model.context.normal_(std=0.5)
    pixels = images(2)
    before = model.detect(pixels, class_names="bottle")
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "coop"
    torch.testing.assert_close(load_file(tmp_path / "model.safetensors")["context"], model.context.detach())
    loaded = CoOpModel.from_pretrained(tmp_path).eval()
    loaded.set_tokenizer(model.tokenizer)
    assert [name for name, p in loaded.named_parameters() if p.requires_grad] == ["context"]
    after = loaded.detect(pixels, class_names="bottle")
    torch.testing.assert_close(after.anomaly_maps, before.anomaly_maps, rtol=0, atol=0)
    torch.testing.assert_close(after.pred_scores, before.pred_scores, rtol=0, atol=0)


def test_registered_and_runs_in_the_pipeline(model: CoOpModel, tiny_clip_dir: Path, tmp_path: Path):
    assert registered_detectors()["coop"] is CoOpModel
    model.save_pretrained(tmp_path)
    AnomalyDetectionProcessor.from_clip(str(tiny_clip_dir), config=model.config).save_pretrained(tmp_path)
    assert isinstance(AutoModelForAnomalyDetection.from_pretrained(tmp_path), CoOpModel)
    result = pipeline("anomaly-detection", model=str(tmp_path))(
        torch.rand(30, 20, 3).mul(255).byte().numpy(), class_name="pcb1"
    )
    assert result["anomaly_map"].shape == (30, 20) and result["class_name"] == "pcb"


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_genclip_train_method_coop_then_predict_and_evaluate(tiny_clip_dir: Path, synthetic_root: Path, tmp_path):
    out = tmp_path / "coop"
    argv = ["train", "--method", "coop", "--data", str(synthetic_root), "--benchmark", "mvtec"]
    argv += ["--clip-model", str(tiny_clip_dir), "--image-size", str(SIZE), "--config", f"n_ctx={N_CTX}"]
    argv += ["--epochs", "2", "--batch-size", "4", "--learning-rate", "0.01", "--output-dir", str(out)]
    assert main([*argv, "--feature-cache-dir", str(tmp_path / "cache")]) == 0

    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["n_ctx"], config["image_size"]) == ("coop", N_CTX, SIZE)
    history = json.loads((out / "training_log.json").read_text())["history"]
    assert [entry["steps"] for entry in history] == [2, 2] and history[0]["layer_loss"] == {}
    set_seed(0)
    untrained = CoOpModel.from_clip(str(tiny_clip_dir), **TINY_COOP)
    trained = CoOpModel.from_pretrained(out)
    assert not torch.allclose(trained.context, untrained.context)
    assert torch.equal(trained.clip.text_projection.weight, untrained.clip.text_projection.weight)
    cached = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(cached) == 8 and load_file(cached[0])["features"].shape == (65, 32)

    predictions = tmp_path / "predictions"
    assert main(["predict", str(synthetic_root / "disc" / "test"), "--model", str(out), "--out", str(predictions)]) == 0
    assert len(json.loads((predictions / "scores.json").read_text())["results"]) == 4
    evaluation = tmp_path / "evaluation"
    argv = ["evaluate", "--model", str(out), "--benchmark", "mvtec", "--root", str(synthetic_root)]
    assert main([*argv, "--out", str(evaluation), "--heatmaps-per-class", "0"]) == 0
    results = json.loads((evaluation / "results.json").read_text())
    assert set(results["per_class"]) == {"stripes", "disc"} and results["run"]["method"] == "coop"
