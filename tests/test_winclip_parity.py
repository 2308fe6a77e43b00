"""WinCLIP zero-shot equals anomalib 2.7.0 (open_clip 2.24.0) on the shared fixture: every stored tensor, within the
fixture README's tolerances (1e-5 on scores and maps, 1e-4 on unnormalised embeddings, tokens exact)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genclip_hf.modeling_winclip import (
    WinCLIPModel,
    WinCLIPOutput,
    harmonic_aggregation,
    winclip_prompts,
    window_patch_indices,
)

FIXTURE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "winclip"
CLASS_NAME = "metal plate"
EOT = 49407
SCALES = (2, 3)
SCORE_TOLERANCE = 1e-5
EMBEDDING_TOLERANCE = 1e-4


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: the WinCLIP parity test needs the project's ../shared/parity folder")
    return path


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return _require(FIXTURE_DIR)


@pytest.fixture(scope="module")
def expected(fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(fixture_dir / "expected.safetensors")


@pytest.fixture(scope="module")
def model(fixture_dir: Path, tokenizer_dir: Path) -> WinCLIPModel:
    from transformers import AutoTokenizer

    model = WinCLIPModel.from_clip(str(fixture_dir / "clip"), image_size=240, dtype=torch.float32)
    model.set_tokenizer(AutoTokenizer.from_pretrained(tokenizer_dir))
    return model


@pytest.fixture(scope="module")
def pixel_values(fixture_dir: Path) -> torch.Tensor:
    return load_file(fixture_dir / "inputs.safetensors")["pixel_values"]


@pytest.fixture(scope="module")
def outputs(model: WinCLIPModel, pixel_values: torch.Tensor) -> WinCLIPOutput:
    return model(pixel_values, CLASS_NAME, window_scales=list(SCALES))


def assert_matches(name: str, actual: torch.Tensor, expected: dict[str, torch.Tensor], tolerance: float) -> None:
    reference = expected[name]
    assert actual.shape == reference.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(reference.shape)}"
    difference = (actual.float() - reference.float()).abs().max().item()
    assert difference <= tolerance, f"{name}: max abs diff {difference:.3g} > {tolerance:g}"
    print(f"{name}: max abs diff {difference:.3g}")


def test_prompts_are_anomalibs(fixture_dir):
    stored = json.loads((fixture_dir / "prompts.json").read_text())
    assert stored["class_name"] == CLASS_NAME
    assert list(winclip_prompts(CLASS_NAME)) == [stored["normal"], stored["anomalous"]]


@pytest.mark.parametrize(("name", "group"), [("normal_tokens", 0), ("anomalous_tokens", 1)])
def test_tokens_up_to_the_first_eot(model, expected, name, group):
    ids = model.tokenize_prompts(winclip_prompts(CLASS_NAME)[group])["input_ids"]
    reference = expected[name]
    assert ids.shape[0] == reference.shape[0]
    for index, (row, stored) in enumerate(zip(ids.tolist(), reference.tolist(), strict=True)):
        end = stored.index(EOT) + 1
        assert row[:end] == stored[:end], f"{name}[{index}] differs before the first EOT"


def test_text_embeddings(model, expected):
    normal, anomalous = model.prompt_embeddings(CLASS_NAME)
    assert_matches("normal_prompt_embeddings", normal, expected, EMBEDDING_TOLERANCE)
    assert_matches("anomalous_prompt_embeddings", anomalous, expected, EMBEDDING_TOLERANCE)
    assert_matches("text_embeddings", model.text_embeddings(CLASS_NAME), expected, EMBEDDING_TOLERANCE)


def test_image_embeddings_and_scores(outputs, expected):
    assert_matches("image_embeddings", outputs.vision.image_embeds, expected, EMBEDDING_TOLERANCE)
    assert_matches("image_scores", outputs.image_scores, expected, SCORE_TOLERANCE)


@pytest.mark.parametrize("scale", SCALES)
def test_windows(outputs, expected, scale):
    index = SCALES.index(scale)
    indices = window_patch_indices(15, 15, scale)
    assert_matches(f"masks_scale{scale}", indices.T, expected, 0)
    assert_matches(
        f"window_embeddings_scale{scale}", outputs.vision.window_embeds[index], expected, EMBEDDING_TOLERANCE
    )
    assert_matches(f"window_scores_scale{scale}", outputs.window_scores[index], expected, SCORE_TOLERANCE)
    assert_matches(f"score_map_scale{scale}", outputs.scale_maps[:, index], expected, SCORE_TOLERANCE)
    stored_scores = expected[f"window_scores_scale{scale}"]
    recombined = harmonic_aggregation(stored_scores, indices, (15, 15))
    assert_matches(f"score_map_scale{scale}", recombined, expected, SCORE_TOLERANCE)


def test_maps_and_image_score(model, pixel_values, outputs, expected):
    assert_matches("multi_scale_map", outputs.zero_shot_map, expected, SCORE_TOLERANCE)
    detection = model.detect(pixel_values, CLASS_NAME, window_scales=list(SCALES))
    assert_matches("anomaly_map", detection.anomaly_maps, expected, SCORE_TOLERANCE)
    assert_matches("pred_score", detection.pred_scores, expected, SCORE_TOLERANCE)
