"""AnomalyCLIP against the official code's outputs (`../shared/parity/anomalyclip/`, see its README).

The prompt learner goes through the converter's key mapping; both fixture images run as one batch of 2, so the
per-image image score is checked at batch size > 1 (the official `test.py` is only right at batch 1).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPModel

from genclip_hf.convert_anomalyclip import build_model_from_official, convert_anomalyclip_checkpoint
from genclip_hf.modeling_anomalyclip import AnomalyCLIPModel
from genclip_hf.processing_anomaly_detection import AnomalyDetectionProcessor, square_image_processor

PARITY_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "anomalyclip"
PIXEL_SHA256 = "840abbca14a63c47515ec1ab53277efbc6cb9c5e5423e0998846619a89ad74ee"
IMAGES = ("0_bad_val_00013.png", "1_good_val_00000.png")
FEATURE_LAYERS = (6, 12, 18, 24)
# README section 8: 1e-5 on features and probabilities, 2e-5 on similarities, 5e-5 on the map.
TOLERANCES = {
    "text_features": 1e-5,
    "text_features_unnormalized": 1e-5,
    "image_features": 1e-5,
    "image_features_unnormalized": 1e-5,
    "image_probs": 1e-5,
    "image_scores": 1e-5,
    "patch_tokens_layer24": 1e-5,
    **{f"similarity_layer{layer:02d}": 2e-5 for layer in FEATURE_LAYERS},
    "anomaly_map": 5e-5,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parity_dir() -> Path:
    if not PARITY_DIR.exists():
        pytest.skip(f"{PARITY_DIR} is missing: the parity test needs the project's shared folder")
    return PARITY_DIR


@pytest.fixture(scope="module")
def pixel_values(parity_dir: Path) -> torch.Tensor:
    """The exact model input, rebuilt from the stored uint8 pixels as the README says: `(2, 3, 518, 518)`."""
    inputs = load_file(parity_dir / "inputs.safetensors")
    mean, std = inputs["mean"][:, None, None], inputs["std"][:, None, None]
    return (inputs["pixel_values_uint8"].permute(0, 3, 1, 2).float() / 255 - mean) / std


@pytest.fixture(scope="module")
def model(parity_dir: Path) -> AnomalyCLIPModel:
    clip = CLIPModel.from_pretrained(parity_dir / "clip", dtype=torch.float32)
    state_dict = load_file(parity_dir / "prompt_learner.safetensors")
    return build_model_from_official(state_dict, clip, source="prompt_learner.safetensors")


@pytest.fixture(scope="module")
def outputs(model: AnomalyCLIPModel, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor of `expected.safetensors`, computed by our model from one batch of both images."""
    with torch.no_grad():
        detection = model.detect(pixel_values)
        text = model.text_features()
        vision = model.encode_image(pixel_values)
        similarity = model.patch_similarity(vision.layer_tokens, text)
        probabilities = model.image_logits(vision.image_embeds, text).softmax(dim=-1)
        computed = {
            "text_features": text[None],
            "text_features_unnormalized": model.encode_prompts(),
            "image_features_unnormalized": vision.image_embeds,
            "image_features": torch.nn.functional.normalize(vision.image_embeds, dim=-1),
            "image_probs": probabilities,
            "image_scores": detection.pred_scores,
            "patch_tokens_layer24": vision.layer_tokens[:, FEATURE_LAYERS.index(24)],
            "anomaly_map": detection.anomaly_maps,
        }
    for index, layer in enumerate(FEATURE_LAYERS):
        computed[f"similarity_layer{layer:02d}"] = similarity[:, index]
    return computed


@pytest.fixture(scope="module")
def expected(parity_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(parity_dir / "expected.safetensors")


def test_every_expected_tensor_is_covered(expected: dict[str, torch.Tensor]):
    assert set(expected) == set(TOLERANCES)


@pytest.mark.parametrize("name", sorted(TOLERANCES))
def test_matches_the_official_outputs(name: str, outputs: dict, expected: dict):
    assert outputs[name].shape == expected[name].shape
    difference = (outputs[name].float() - expected[name]).abs().max().item()
    assert difference <= TOLERANCES[name], f"{name}: max abs diff {difference:.3g} > {TOLERANCES[name]}"


def test_pixel_values_are_the_fixture_input(pixel_values: torch.Tensor):
    assert hashlib.sha256(pixel_values.numpy().tobytes()).hexdigest() == PIXEL_SHA256


def test_prompt_ids_are_the_official_tokenized_prompts(model: AnomalyCLIPModel, parity_dir: Path):
    tokenized = load_file(parity_dir / "inputs.safetensors")["tokenized_prompts"]
    assert torch.equal(model.prompt_token_ids, tokenized)


def test_our_tokenizer_builds_the_same_prompt_ids(tokenizer_dir: Path, parity_dir: Path):
    from genclip_hf.modeling_anomalyclip import build_prompt_token_ids

    tokenized = load_file(parity_dir / "inputs.safetensors")["tokenized_prompts"]
    assert torch.equal(build_prompt_token_ids(AutoTokenizer.from_pretrained(tokenizer_dir), 12, 77), tokenized)


def test_processor_rebuilds_the_stored_input(parity_dir: Path, tokenizer_dir: Path, pixel_values: torch.Tensor):
    processor = AnomalyDetectionProcessor(
        image_processor=square_image_processor(518), tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir)
    )
    processed = processor(images=[parity_dir / "images" / name for name in IMAGES])["pixel_values"]
    assert torch.equal(processed, pixel_values)


def test_converted_pth_loads_as_the_same_model(
    tmp_path: Path, parity_dir: Path, tokenizer_dir: Path, model: AnomalyCLIPModel
):
    """The official `.pth` format through the converter and `from_pretrained` gives the model checked above."""
    checkpoint = tmp_path / "epoch_15.pth"
    torch.save({"prompt_learner": load_file(parity_dir / "prompt_learner.safetensors")}, checkpoint)
    out_dir = convert_anomalyclip_checkpoint(checkpoint, parity_dir / "clip", tmp_path / "converted", tokenizer_dir)
    loaded = AnomalyCLIPModel.from_pretrained(out_dir)
    assert (loaded.config.n_ctx, loaded.config.text_prompt_depth, loaded.config.text_prompt_length) == (12, 9, 4)
    assert loaded.config.dpam_start_layer == 6
    expected_state = model.state_dict()
    assert loaded.state_dict().keys() == expected_state.keys()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected_state[name]), name
    assert AnomalyDetectionProcessor.from_pretrained(out_dir).image_size == 518
