"""The detector contract: a minimal detector that implements only `detect` runs through the pipeline, `genclip predict`
and `genclip evaluate` without any change to those modules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub.dataclasses import strict
from PIL import Image
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, pipeline

from genclip_hf import AnomalyDetectionOutput, AnomalyDetectorMixin, register_detector
from genclip_hf.cli import main
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.data.synthetic import write_sample_images


@strict
class BrightnessConfig(PreTrainedConfig):
    """A detector whose anomaly map is the image's brightness (the mean of the normalised channels)."""

    model_type = "test-brightness-detector"
    image_size: int = 32
    gain: float = 1.0


class BrightnessDetector(AnomalyDetectorMixin, PreTrainedModel):
    config_class = BrightnessConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BrightnessConfig):
        super().__init__(config)
        self.gain = nn.Parameter(torch.tensor(config.gain))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass

    def detect(self, pixel_values, class_names=None, **settings) -> AnomalyDetectionOutput:
        self.check_pixel_values(pixel_values)
        anomaly_maps = self.gain * pixel_values.float().mean(dim=1)
        return AnomalyDetectionOutput(
            anomaly_maps=anomaly_maps,
            pred_scores=anomaly_maps.flatten(1).max(dim=1).values,
            score_threshold=0.0,
            class_names=None if class_names is None else list(class_names),
        )


@pytest.fixture(scope="module")
def brightness_dir(tmp_path_factory):
    register_detector(BrightnessConfig, BrightnessDetector)
    folder = tmp_path_factory.mktemp("brightness")
    BrightnessDetector(BrightnessConfig(gain=2.0)).save_pretrained(folder)
    return folder


def expected_score(image: Image.Image) -> float:
    """The score by hand: resize to 32x32 (bicubic, no crop), CLIP-normalise, mean over channels, x2, max."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    normalised = (pixels - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    return float((2.0 * normalised.mean(axis=2)).max())


def test_pipeline_runs_a_detector_that_only_implements_the_contract(brightness_dir):
    detector = pipeline("anomaly-detection", model=str(brightness_dir))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 50, 3), dtype=np.uint8))
    result = detector(image, threshold=0.5)
    assert result["anomaly_map"].shape == (20, 50) and result["mask"].shape == (20, 50)
    assert result["score"] == pytest.approx(expected_score(image), abs=1e-3)
    assert result["label"] == ("anomalous" if result["score"] >= 0.0 else "normal")
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['alpha'\] of BrightnessDetector"):
        detector(image, alpha=0.5)


def test_cli_predict_and_evaluate_run_the_minimal_detector(brightness_dir, tmp_path):
    images = tmp_path / "images"
    write_sample_images(images)
    assert main(["predict", str(images), "--model", str(brightness_dir), "--out", str(tmp_path / "predicted")]) == 0
    rows = json.loads((tmp_path / "predicted" / "scores.json").read_text())["results"]
    assert len(rows) == len(list(images.glob("*.png")))
    first = rows[0]
    assert first["score"] == pytest.approx(expected_score(Image.open(first["image"])), abs=1e-3)

    data = write_synthetic_benchmark(tmp_path / "data", classes=["disc"], n_test_good=2, n_test_bad=2, seed=0)
    out = tmp_path / "evaluated"
    command = ["evaluate", "--model", str(brightness_dir), "--benchmark", "mvtec", "--root", str(data)]
    assert main([*command, "--out", str(out), "--batch-size", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["per_class"]) == ["disc"]
    assert results["run"]["method"] == "test-brightness-detector"
    assert 0.0 <= results["per_class"]["disc"]["pixel_auroc"] <= 1.0
