"""Training loop, feature cache, checkpoints and resume on the tiny backbone and synthetic MVTec-layout data (CPU)."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from PIL import Image

from genclip_hf import GenCLIPModel, GenCLIPProcessor
from genclip_hf.cli import main
from genclip_hf.data import export_parquet, load_benchmark, open_dataset, write_synthetic_benchmark
from genclip_hf.images import image_content_hash
from genclip_hf.training import (
    EpochShuffleSampler,
    TrainingArguments,
    add_training_arguments,
    latest_checkpoint,
    open_training_data,
    train,
)
from genclip_hf.training.feature_cache import FeatureCache, backbone_fingerprint

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

TINY_TRAINING = {"image_size": 64, "feature_layers": [1, 2, 4], "batch_size": 4, "epochs": 3, "learning_rate": 1e-3}


class SimulatedKillError(Exception):
    """Raised from `on_step_end` to stop a run the way a killed process would."""


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic classes, 16 test images (a multiple of the batch)."""
    return write_synthetic_benchmark(tmp_path_factory.mktemp("synthetic"), classes=["stripes", "disc"], seed=3)


def tiny_arguments(tmp_path: Path, clip_dir: Path, data_root: Path, name: str, **changes) -> TrainingArguments:
    values = dict(
        TINY_TRAINING,
        output_dir=str(tmp_path / name),
        data=[str(data_root)],
        benchmark="mvtec",
        clip_model=str(clip_dir),
        feature_cache_dir=str(tmp_path / "feature-cache"),
    )
    values.update(changes)
    return TrainingArguments(**values)


def learnable_state(model: GenCLIPModel) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters() if parameter.requires_grad}


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max((first[name] - second[name]).abs().max().item() for name in first)


def test_cache_holds_each_images_own_features_and_trains_like_the_uncached_path(
    tmp_path, tiny_clip_dir, synthetic_root
):
    """The cache stores float16 features; the uncached path trains on the exact float32 ones. Each cached file must be
    its own image's features (a cache that mixed up images would fail the first check), and the two runs must end
    within float16 rounding of each other while both moved far from the initial weights."""
    cached_args = tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "cached", epochs=2)
    cached = train(cached_args)
    dataset = load_benchmark("mvtec", synthetic_root)
    cache = FeatureCache.for_model(tmp_path / "feature-cache", cached.model, cached.processor)
    assert len(list(cache.directory.rglob("*.safetensors"))) == len(dataset) == 16
    for row in dataset.select(range(0, 16, 5)):
        image = row["image"].convert("RGB")
        expected = cached.model.frozen_features(cached.processor.pixel_values(image))[0].half()
        torch.testing.assert_close(cache.load(image_content_hash(image)), expected, rtol=0, atol=0)
    AcceleratorState._reset_state(reset_partial_state=True)
    uncached = train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "uncached", epochs=2, feature_cache=False))
    set_seed(0)
    initial = GenCLIPModel.from_clip(str(tiny_clip_dir), image_size=64, feature_layers=[1, 2, 4])
    assert max_difference(learnable_state(cached.model), learnable_state(initial)) > 1e-3
    for cached_entry, uncached_entry in zip(cached.history, uncached.history, strict=True):
        assert cached_entry["loss"] == pytest.approx(uncached_entry["loss"], rel=1e-3)
    # Adam's sign-like steps amplify float16 rounding in single weights; what the weights compute must agree.
    pixel_values = cached.processor.pixel_values([row["image"] for row in dataset.select(range(4))])
    maps = [
        model.detect(pixel_values, "stripes", use_cnf=False).anomaly_maps for model in (cached.model, uncached.model)
    ]
    untrained = initial.detect(pixel_values, "stripes", use_cnf=False).anomaly_maps
    assert (maps[0] - maps[1]).abs().max() < 0.05 * (maps[0] - untrained).abs().max()


def test_cli_train_evaluates_and_publishes_after_training(tmp_path, tiny_clip_dir, synthetic_root, monkeypatch):
    uploads = []
    monkeypatch.setattr("genclip_hf.publishing.create_repo", lambda repo_id, **kwargs: None)
    monkeypatch.setattr(
        "genclip_hf.publishing.upload_folder",
        lambda repo_id, folder_path, **kwargs: uploads.append(
            (repo_id, sorted(p.name for p in Path(folder_path).iterdir()))
        ),
    )
    output_dir = tmp_path / "trained"
    argv = ["train", "--data", str(synthetic_root), "--benchmark", "mvtec", "--clip-model", str(tiny_clip_dir)]
    argv += ["--output-dir", str(output_dir), "--image-size", "64", "--feature-layers", "1", "2", "4"]
    argv += ["--epochs", "1", "--batch-size", "4", "--feature-cache-dir", str(tmp_path / "feature-cache")]
    argv += ["--eval-benchmark", "mvtec", "--eval-root", str(synthetic_root), "--push-to-hub", "someone/genclip-test"]
    assert main(argv) == 0
    results = json.loads((output_dir / "evaluation" / "mvtec" / "results.json").read_text())
    assert set(results["per_class"]) == {"stripes", "disc"}
    [(repo_id, uploaded)] = uploads
    assert repo_id == "someone/genclip-test"
    assert {"README.md", "config.json", "model.safetensors", "pipeline_anomaly_detection.py"} <= set(uploaded)
    assert "training_log.json" not in uploaded and "checkpoints" not in uploaded


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, tiny_clip_dir, synthetic_root):
    uninterrupted = train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "uninterrupted"))
    assert [entry["steps"] for entry in uninterrupted.history] == [4, 4, 4]

    def kill_mid_epoch_two(epoch: int, global_step: int) -> None:
        if global_step == 6:
            raise SimulatedKillError

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    killed_args = tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "killed")
    with pytest.raises(SimulatedKillError):
        train(killed_args, on_step_end=kill_mid_epoch_two)
    checkpoints = Path(killed_args.output_dir) / "checkpoints"
    assert latest_checkpoint(checkpoints).name == "epoch_001"
    # A kill while epoch 2 was being checkpointed leaves a partial folder, which must be ignored and replaced.
    (checkpoints / ".epoch_002.partial").mkdir()
    (checkpoints / ".epoch_002.partial" / "model.safetensors").write_bytes(b"truncated")

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    resumed_args = tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "killed", resume=True)
    resumed = train(resumed_args)
    assert max_difference(learnable_state(resumed.model), learnable_state(uninterrupted.model)) == 0.0
    assert resumed.history == uninterrupted.history
    assert sorted(path.name for path in checkpoints.iterdir()) == ["epoch_001", "epoch_002", "epoch_003"]
    saved = dict(GenCLIPModel.from_pretrained(resumed_args.output_dir).named_parameters())
    expected = learnable_state(uninterrupted.model)
    assert max_difference({name: saved[name] for name in expected}, expected) == 0.0
    GenCLIPProcessor.from_pretrained(resumed_args.output_dir)
    log = json.loads((Path(resumed_args.output_dir) / "training_log.json").read_text())
    assert [entry["epoch"] for entry in log["history"]] == [1, 2, 3]


def test_resume_refuses_changed_settings_and_restart_needs_resume(tmp_path, tiny_clip_dir, synthetic_root):
    train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "run", epochs=1))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "run", epochs=2))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match="learning_rate"):
        train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "run", epochs=2, resume=True, learning_rate=0.1))


def test_feature_cache_round_trip_key_and_atomic_files(tmp_path, tiny_model, tiny_processor):
    cache = FeatureCache.for_model(tmp_path, tiny_model, tiny_processor)
    cache.prepare()
    assert cache.features_shape == (3, 65, 48)
    features = torch.randn(*cache.features_shape)
    cache.save("ab" * 32, features)
    loaded = cache.load("ab" * 32)
    assert loaded.dtype == torch.float16
    torch.testing.assert_close(loaded, features.half(), rtol=0, atol=0)
    assert not list(tmp_path.rglob("*.tmp"))
    assert cache.path("ab" * 32).stat().st_size <= cache.bytes_per_image
    with pytest.raises(ValueError, match=r"must have shape \(3, 65, 48\)"):
        cache.save("cd" * 32, features[:, 1:])
    with pytest.raises(FileNotFoundError):
        cache.load("ef" * 32)
    cache.path("ab" * 32).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="unreadable.*delete it to recompute"):
        cache.load("ab" * 32)

    fingerprint = backbone_fingerprint(tiny_model)
    assert FeatureCache.for_model(tmp_path, tiny_model, tiny_processor, fingerprint).key == cache.key
    with torch.no_grad():
        tiny_model.clip.vision_model.encoder.layers[0].mlp.fc1.bias[0] += 1.0
    assert backbone_fingerprint(tiny_model) != fingerprint
    other_layers = copy.deepcopy(tiny_model)
    other_layers.config.feature_layers = [1, 2]
    assert FeatureCache.for_model(tmp_path, other_layers, tiny_processor, fingerprint).key != cache.key


def test_image_hash_is_content_based():
    image = Image.new("RGB", (20, 10), (10, 20, 30))
    same_pixels = Image.new("L", (20, 10), 0).convert("RGB")
    same_pixels.paste((10, 20, 30), (0, 0, 20, 10))
    assert image_content_hash(image) == image_content_hash(same_pixels)
    image.putpixel((3, 3), (11, 20, 30))
    assert image_content_hash(image) != image_content_hash(same_pixels)


def test_epoch_order_depends_only_on_seed_and_epoch():
    first, second = EpochShuffleSampler(50, seed=7), EpochShuffleSampler(50, seed=7)
    second.set_epoch(3)
    first.set_epoch(3)
    assert list(first) == list(second)
    assert sorted(first) == list(range(50))
    first.set_epoch(4)
    assert list(first) != list(second)


def test_training_data_sources(tmp_path, synthetic_root):
    benchmark = load_benchmark("mvtec", synthetic_root)
    export_parquet(benchmark, tmp_path / "parquet")
    from_parquet = open_dataset(tmp_path / "parquet", classes=["disc"])
    assert set(from_parquet["class_name"]) == {"disc"} and len(from_parquet) == 8
    benchmark.save_to_disk(str(tmp_path / "on-disk"))
    assert len(open_dataset(tmp_path / "on-disk")) == 16
    with pytest.warns(UserWarning, match="no ground_truth folder"):
        assert len(open_dataset(synthetic_root / "stripes" / "test")) == 8
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    several = open_training_data([f"mvtec={synthetic_root}", str(tmp_path / "parquet")], split="test")
    assert len(several) == 32


def test_bad_inputs_are_named(tmp_path, tiny_clip_dir, synthetic_root):
    with pytest.raises(ValueError, match="batch_size"):
        TrainingArguments(output_dir="out", batch_size=0)
    with pytest.raises(ValueError, match="own arguments"):
        TrainingArguments(output_dir="out", config_overrides={"image_size": 224})
    with pytest.raises(ValueError, match="has no field 'use_vision_promts'. Did you mean 'use_vision_prompts'"):
        TrainingArguments(output_dir="out", config_overrides={"use_vision_promts": False})
    with pytest.raises(ValueError, match="learning_rate"):
        TrainingArguments(output_dir="out", learning_rate=float("nan"))
    with pytest.raises(ValueError, match="adam_betas"):
        TrainingArguments(output_dir="out", adam_betas=(0.5, 1.5))
    dataset = load_benchmark("mvtec", synthetic_root).remove_columns("mask")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['mask'\]"):
        train(tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "bad", data=[]), dataset=dataset)
    assert main(["train", "--data", "d", "--output-dir", "o", "--eval-benchmark", "mvtec"]) == 2


def test_cli_and_example_share_the_arguments():
    from genclip_hf.cli import build_parser

    argv = ["--data", "d", "--output-dir", "o", "--no-feature-cache", "--config", "use_vision_prompts=false"]
    cli_args = build_parser().parse_args(["train", *argv, "--feature-layers", "1", "2"])
    arguments = TrainingArguments.from_namespace(cli_args)
    assert arguments.feature_cache is False and arguments.feature_layers == [1, 2]
    assert arguments.config_overrides == {"use_vision_prompts": False}
    assert (arguments.epochs, arguments.batch_size, arguments.learning_rate) == (15, 8, 4e-5)
    assert (arguments.adam_betas, arguments.mixed_precision, arguments.image_size) == ((0.5, 0.999), "no", None)
    example_args = add_training_arguments(argparse.ArgumentParser()).parse_args(argv)
    assert TrainingArguments.from_namespace(example_args) == TrainingArguments(
        **{**vars(arguments), "feature_layers": None}
    )


def test_image_size_scales_the_pixel_sized_settings():
    arguments = TrainingArguments(output_dir="o", image_size=259)
    overrides = arguments.model_config_overrides()
    assert overrides["sigma"] == pytest.approx(4.5)
    assert (overrides["top_n1"], overrides["top_n2"]) == (125, 625)
    kept = TrainingArguments(output_dir="o", image_size=259, config_overrides={"sigma": 9.0}).model_config_overrides()
    assert kept["sigma"] == 9.0
    assert "sigma" not in TrainingArguments(output_dir="o").model_config_overrides()


def test_train_anomalyclip_with_the_same_loop(tmp_path, tiny_clip_dir, synthetic_root):
    """`genclip train --method anomalyclip`: its paper's learning rate, its own loss, cached features, a model that
    the pipeline loads."""
    from transformers import pipeline

    from genclip_hf.modeling_anomalyclip import AnomalyCLIPModel

    arguments = tiny_arguments(
        tmp_path,
        tiny_clip_dir,
        synthetic_root,
        "anomalyclip",
        method="anomalyclip",
        learning_rate=None,
        epochs=2,
        config_overrides={"dpam_start_layer": 2, "text_prompt_depth": 3, "n_ctx": 4, "text_prompt_length": 2},
    )
    assert arguments.learning_rate == 1e-3
    result = train(arguments)
    assert isinstance(result.model, AnomalyCLIPModel)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[0]["layer_loss"] == {}
    trained = {name for name, parameter in result.model.named_parameters() if parameter.requires_grad}
    assert trained and not any(name.startswith("clip.") for name in trained)
    detector = pipeline("anomaly-detection", model=arguments.output_dir)
    assert detector(Image.new("RGB", (40, 30), (90, 120, 40)))["anomaly_map"].shape == (30, 40)


@pytest.mark.parametrize(
    ("changes", "expected_betas", "expected_autocast"),
    [({}, (0.5, 0.999), False), ({"adam_betas": (0.9, 0.98), "mixed_precision": "bf16"}, (0.9, 0.98), True)],
    ids=["defaults", "alternatives"],
)
def test_optimizer_betas_and_autocast_reach_the_step(
    tmp_path, tiny_clip_dir, synthetic_root, monkeypatch, changes, expected_betas, expected_autocast
):
    """The Adam the loop builds carries the run's betas, and the loss runs under autocast only when asked."""
    optimizers: list[torch.optim.Adam] = []
    real_adam = torch.optim.Adam

    def recording_adam(*args, **kwargs) -> torch.optim.Adam:
        optimizers.append(real_adam(*args, **kwargs))
        return optimizers[-1]

    autocast_seen: list[tuple[bool, torch.dtype]] = []
    real_loss = GenCLIPModel.training_loss

    def recording_loss(self, *args, **kwargs):
        autocast_seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    monkeypatch.setattr(GenCLIPModel, "training_loss", recording_loss)
    arguments = tiny_arguments(tmp_path, tiny_clip_dir, synthetic_root, "precision", epochs=1, **changes)
    train(arguments)
    assert len(optimizers) == 1
    assert optimizers[0].param_groups[0]["betas"] == expected_betas
    assert autocast_seen and {enabled for enabled, _ in autocast_seen} == {expected_autocast}
    if expected_autocast:
        assert {dtype for _, dtype in autocast_seen} == {torch.bfloat16}
    log = json.loads((tmp_path / "precision" / "training_log.json").read_text())
    assert log["arguments"]["adam_betas"] == str(expected_betas)
