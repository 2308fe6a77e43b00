"""The "anomaly-detection" pipeline: outputs, switches, batching, and loading with trust_remote_code."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from remote_code import run_without_genclip
from transformers import pipeline

import genclip_hf  # noqa: F401  (registers the task)
from genclip_hf import AnomalyDetectionPipeline


@pytest.fixture
def detector(tiny_checkpoint_dir):
    return pipeline("anomaly-detection", model=str(tiny_checkpoint_dir))


def images() -> list:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 255, (45, 120, 3), dtype=np.uint8)),
        rng.random((90, 33)),
        Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), mode="RGBA"),
    ]


def test_outputs_at_the_original_size_for_non_square_inputs(detector):
    assert isinstance(detector, AnomalyDetectionPipeline)
    results = detector(images(), class_name="pcb1", threshold=1.5)
    assert [r["anomaly_map"].shape for r in results] == [(45, 120), (90, 33), (64, 64)]
    for result in results:
        assert result["anomaly_map"].dtype == np.float32
        assert isinstance(result["score"], float)
        assert result["label"] in ("anomalous", "normal")
        assert result["mask"].shape == result["anomaly_map"].shape and result["mask"].dtype == bool
    single = detector(images()[0])
    assert isinstance(single, dict) and "mask" not in single
    at_model_size = detector(images()[0], map_at_model_size=True)
    assert at_model_size["anomaly_map"].shape == (64, 64)
    assert at_model_size["score"] == single["score"]


def test_score_does_not_depend_on_the_input_resolution(detector):
    """Smoothing and scoring run at the model resolution; only the returned map follows the input size."""
    colour = np.array([90, 140, 200], dtype=np.uint8)
    scores = [detector(np.tile(colour, (height, width, 1)))["score"] for height, width in ((64, 64), (300, 120))]
    assert scores[0] == pytest.approx(scores[1], rel=1e-5)


def test_batching_gives_the_same_results_as_one_by_one(detector):
    one_by_one = detector(images(), class_name=["pcb", "candle", "02"], batch_size=1)
    batched = detector(images(), class_name=["pcb", "candle", "02"], batch_size=3)
    for first, second in zip(one_by_one, batched, strict=True):
        assert first["score"] == pytest.approx(second["score"], rel=1e-5)
        assert np.allclose(first["anomaly_map"], second["anomaly_map"], atol=1e-5)
        assert first["class_name"] == second["class_name"]


def test_label_follows_the_score_threshold(detector):
    result = detector(images()[0])
    assert detector(images()[0], score_threshold=result["score"] - 1e-3)["label"] == "anomalous"
    assert detector(images()[0], score_threshold=result["score"] + 1e-3)["label"] == "normal"


def test_query_branch_off_equals_alpha_one(detector):
    off = detector(images()[0], use_query_branch=False)
    alpha_one = detector(images()[0], alpha=1.0)
    fused = detector(images()[0])
    assert off["score"] == pytest.approx(alpha_one["score"], rel=1e-6)
    assert not np.allclose(off["anomaly_map"], fused["anomaly_map"])


def test_switches_have_their_specified_effect(detector):
    """Each switch, through the pipeline, equals Eq. 8-10 recomputed with scipy/numpy from the per-layer branch maps
    of the full-setting run (so a switch that were ignored, or applied to the wrong branch, fails)."""
    from scipy import ndimage

    config = detector.model.config
    image = images()[0]
    pixel_values = detector.image_processor([image.convert("RGB")], return_tensors="pt")["pixel_values"]
    components = detector.model.detect(pixel_values, "pcb", use_cnf=False, return_component_maps=True).component_maps
    vision = components["vision_maps"][0].numpy().astype(np.float64)
    query = components["query_maps"][0].numpy().astype(np.float64)

    def expected(alpha: float, sigma: float, layers: list[int], query_branch: bool = True) -> tuple[np.ndarray, float]:
        indices = [config.feature_layers.index(layer) for layer in layers]
        fused = alpha * vision[indices].sum(0) + (1 - alpha) * query[indices].sum(0)
        if not query_branch:
            fused = vision[indices].sum(0)
        smoothed = ndimage.gaussian_filter(fused, sigma, mode="reflect", truncate=4.0) if sigma > 0 else fused
        values = np.sort(smoothed.ravel())[::-1]
        n1, n2 = min(config.top_n1, values.size), min(config.top_n2, values.size)
        score = np.exp(values[:n1]).mean() / np.exp(values[:n2]).mean() * values[:n1].mean()
        return smoothed, float(score)

    cases = [
        ({}, expected(config.alpha, config.sigma, config.feature_layers)),
        ({"feature_layers": [2, 4]}, expected(config.alpha, config.sigma, [2, 4])),
        ({"sigma": 0.0}, expected(config.alpha, 0.0, config.feature_layers)),
        ({"alpha": 0.3}, expected(0.3, config.sigma, config.feature_layers)),
        ({"use_query_branch": False}, expected(config.alpha, config.sigma, config.feature_layers, query_branch=False)),
    ]
    for switch, (expected_map, expected_score) in cases:
        result = detector(image, class_name="pcb", use_cnf=False, map_at_model_size=True, **switch)
        assert np.allclose(result["anomaly_map"], expected_map, atol=1e-4), switch
        assert result["score"] == pytest.approx(expected_score, rel=1e-4), switch
    assert detector(image, class_name="pcb", feature_layers=[2, 4])["score_threshold"] == 1.0
    assert detector(image, class_name="pcb2", use_cnf=False)["class_name"] == "pcb2"


def test_cnf_compares_the_image_with_both_sentences_through_the_clip_text_encoder(detector, monkeypatch):
    """CNF keeps the class name when the image embedding is closer to "a photo of a {class}." and falls back to the
    call's generic term when it is at least as close to "a photo of a {generic}."; the image embedding is set to one
    of the two sentence embeddings computed by the CLIP text encoder, so the comparison's outcome is known."""
    from genclip_hf.class_names import clip_text_encoder
    from genclip_hf.modeling_genclip import GenCLIPVisionOutput

    model = detector.model
    sentences = clip_text_encoder(model.clip, model.tokenizer)(["a photo of a product.", "a photo of a pcb."])
    original = model.encode_image

    def image_embedded_as(embeds):
        def encode_image(pixel_values, return_image_embeds=True):
            vision = original(pixel_values, return_image_embeds)
            return GenCLIPVisionOutput(vision.layer_features, embeds.expand(len(pixel_values), -1))

        return encode_image

    monkeypatch.setattr(model, "encode_image", image_embedded_as(sentences[0]))
    assert detector(images()[0], class_name="pcb", generic_term="product")["class_name"] == "product"
    monkeypatch.setattr(model, "encode_image", image_embedded_as(sentences[1]))
    assert detector(images()[0], class_name="pcb2", generic_term="product")["class_name"] == "pcb"
    assert detector(images()[0], class_name="02", generic_term="item")["class_name"] == "item"


def test_invalid_arguments_are_named(detector):
    with pytest.raises(ValueError, match="feature_layers must be a non-empty subset"):
        detector(images()[0], feature_layers=[3])
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\]"):
        detector(images()[0], alpha=2.0)
    with pytest.raises(ValueError, match=r"class_name must hold 1 or 3 names"):
        detector(images(), class_name=["a", "b"])
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['colour'\] of GenCLIPModel"):
        detector(images()[0], colour="red")
    with pytest.raises(ValueError, match=r"image must be an array of shape"):
        detector(np.zeros((10, 10, 2)))
    with pytest.raises(ValueError, match=r"images\[1\]"):
        detector([images()[0], np.zeros((10, 10, 2))])


def test_hub_folder_holds_code_and_config_entries(tiny_checkpoint_dir):
    files = set(os.listdir(tiny_checkpoint_dir))
    assert {"config.json", "model.safetensors", "processor_config.json", "modeling_genclip.py"} <= files
    assert {"configuration_genclip.py", "processing_genclip.py", "pipeline_anomaly_detection.py"} <= files
    config = json.loads((tiny_checkpoint_dir / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_genclip.GenCLIPConfig",
        "AutoModel": "modeling_genclip.GenCLIPModel",
    }
    assert config["custom_pipelines"]["anomaly-detection"]["impl"] == (
        "pipeline_anomaly_detection.AnomalyDetectionPipeline"
    )
    processor_config = json.loads((tiny_checkpoint_dir / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_genclip.GenCLIPProcessor"


REMOTE_SCRIPT = """
import json
import numpy as np
from transformers import pipeline

detector = pipeline("anomaly-detection", model=sys.argv[1], trust_remote_code=True)
result = detector(np.random.default_rng(1).integers(0, 255, (45, 120, 3), dtype=np.uint8), class_name="pcb1")
assert "genclip_hf" not in sys.modules
print(json.dumps({"module": type(detector).__module__, "score": result["score"],
                  "shape": list(result["anomaly_map"].shape)}))
"""


def test_trust_remote_code_works_without_the_package(tiny_checkpoint_dir, tmp_path):
    completed = run_without_genclip(REMOTE_SCRIPT, [str(tiny_checkpoint_dir)], tmp_path)
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.")
    assert remote["shape"] == [45, 120]
    local = pipeline("anomaly-detection", model=str(tiny_checkpoint_dir))
    image = np.random.default_rng(1).integers(0, 255, (45, 120, 3), dtype=np.uint8)
    assert remote["score"] == pytest.approx(local(image, class_name="pcb1")["score"], rel=1e-5)


def test_query_text_is_computed_once_per_model(detector):
    calls = []
    original = detector.model.prompt_learner.encode

    def counting_encode(clip, input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        return original(clip, input_ids, *args, **kwargs)

    detector.model.prompt_learner.encode = counting_encode
    detector(images()[0])
    detector(images()[1])
    detector.model.prompt_learner.encode = original
    # Vision-enhanced prompts run per image (one pair per feature layer); the query-only pair runs once.
    assert calls == [3, 1, 3]


def test_standard_pipeline_inputs_generators_datasets_and_workers(detector):
    import datasets
    from transformers.pipelines.pt_utils import KeyDataset

    pictures = [Image.fromarray(np.asarray(images()[0])), Image.fromarray(np.asarray(images()[2])[..., :3])]
    expected = [result["score"] for result in detector(pictures)]
    dataset = datasets.Dataset.from_dict({"image": pictures})
    streamed = detector(KeyDataset(dataset, "image"), batch_size=2)
    assert not isinstance(streamed, list)
    assert [result["score"] for result in streamed] == pytest.approx(expected, rel=1e-5)
    generated = detector((picture for picture in pictures), batch_size=2)
    assert [result["score"] for result in generated] == pytest.approx(expected, rel=1e-5)
    with_workers = detector(pictures, batch_size=2, num_workers=2)
    assert [result["score"] for result in with_workers] == pytest.approx(expected, rel=1e-5)
    per_item = detector([{"image": pictures[0], "class_name": "pcb"}, {"image": pictures[1], "class_name": "pcb"}])
    assert [result["score"] for result in per_item] == pytest.approx(
        [result["score"] for result in detector(pictures, class_name="pcb")], rel=1e-6
    )


def test_build_time_arguments_and_dtype_are_honoured(tiny_checkpoint_dir):
    import torch

    thresholded = pipeline("anomaly-detection", model=str(tiny_checkpoint_dir), threshold=1.0, alpha=1.0)
    result = thresholded(images()[0])
    assert result["mask"].shape == result["anomaly_map"].shape
    assert result["score"] == pytest.approx(thresholded(images()[0], use_query_branch=False)["score"], rel=1e-6)
    assert thresholded(images()[0], alpha=0.5)["score"] != pytest.approx(result["score"], rel=1e-6)
    bf16 = pipeline("anomaly-detection", model=str(tiny_checkpoint_dir), dtype=torch.bfloat16)
    assert bf16.model.dtype == torch.bfloat16
    assert all(parameter.dtype == torch.bfloat16 for parameter in bf16.model.parameters())
    low_precision = bf16(images()[0])
    assert low_precision["anomaly_map"].dtype == np.float32
    assert np.isfinite(low_precision["score"])
