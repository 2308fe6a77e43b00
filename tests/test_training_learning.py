"""The learning test: training on some synthetic categories moves GenCLIP's inference outputs, the fused and smoothed
map (Eq. 8) and the image score (Eqs. 9-10) from `detect`, not only the training-path layer maps.

Tiny random CLIP (`TINY_CLIP`, fixture seed 0) run at 128 px, i.e. a 16x16 patch grid (at its native 64 px the 8x8
grid is too coarse: held-out gains were inconsistent across seeds). Training uses the zero-shot protocol's "test"
split of four categories; evaluation uses four other categories rendered with another seed. The untrained model is
the exact model `train` starts from (same seed, same `build_model`), so the two differ only by the optimizer steps.

Measured with this setup for CLIP and initialisation seeds 0-4 (untrained -> trained, per-class means):

- held-out categories, pixel AUROC of the fused map: 0.442 0.557 0.518 0.584 0.522 (mean 0.525, std 0.054, range
  0.142) -> 0.755 0.700 0.702 0.777 0.753; gains +0.14 to +0.31 in every seed.
- held-out categories, image AUROC: 0.527 0.645 0.516 0.586 0.648 -> 0.598 0.602 0.629 0.668 0.570; gains -0.08 to
  +0.11, within the seed spread. The same on fresh renders of the training categories (0.39-0.48 -> 0.42-0.60, two
  seeds down). With a random backbone the image score does not generalise, so no held-out image assertion is made:
  it would test noise. It is printed.
- the training images themselves, image AUROC: 0.527 0.574 0.574 0.465 0.473 (mean 0.523, std 0.053, range 0.109)
  -> 0.742 0.664 0.660 0.723 0.754: training reaches the image score (a fit, asserted as such).
- a trivial darkness detector scores pixel AUROC 0.50 on the held-out set, so the held-out gain is not that shortcut.
- loss (sum over 3 layers): 3.6-3.95 in epoch 1 -> 1.65-1.75 in epoch 10.

Removing the optimizer step leaves the trained model equal to the untrained one: every assertion below fails then.
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from genclip_hf import GenCLIPModel, GenCLIPProcessor
from genclip_hf.data import load_benchmark, write_synthetic_benchmark
from genclip_hf.metrics import AnomalyMetricAccumulator
from genclip_hf.training import TrainingArguments, build_model, train

TRAIN_CATEGORIES = ["stripes", "checker", "disc", "ring"]
HELD_OUT_CATEGORIES = ["weave", "noise", "square", "cross"]
IMAGE_SIZE = 128
FEATURE_LAYERS = [1, 2, 4]
# Learning rate from a loss-only sweep (seed 0, 10 epochs; loss in epoch 1 -> epoch 10): 4e-5 (the paper's, for a
# pretrained ViT-L over ~3200 steps) 4.90 -> 4.10, 3e-4 4.56 -> 3.11, 1e-3 4.21 -> 2.10, 3e-3 3.95 -> 1.75, 1e-2
# 3.95 -> 1.70. Here there are 80 steps from randomly initialised projections: 3e-3 is the smallest rate that reaches
# the loss floor (~1.7) in 10 epochs; 1e-2 ends no lower and was bumpier on other seeds (seed 4: 2.75 -> 3.24).
LEARNING_RATE = 3e-3
EPOCHS = 10
# Margins against the measurements above: the pixel gain must exceed the untrained range across seeds (0.142, about
# 2.7 std) and the result the best untrained value (0.584); the image-score fit gain 2 std of its untrained spread.
MIN_HELD_OUT_PIXEL_GAIN = 0.15
MIN_HELD_OUT_PIXEL_AUROC = 0.65
MIN_FIT_IMAGE_GAIN = 0.10
MIN_FIT_IMAGE_AUROC = 0.65


def fused_metrics(model: GenCLIPModel, processor: GenCLIPProcessor, dataset: datasets.Dataset) -> dict[str, float]:
    """Pixel AUROC of the fused, smoothed map and image AUROC of the image score, both from `detect` at the model
    size, per class and averaged over classes as the evaluation does."""
    images = [image.convert("RGB") for image in dataset["image"]]
    inputs = processor(images=images, masks=list(dataset["mask"]))
    model.eval()
    with torch.no_grad():
        output = model.detect(inputs["pixel_values"], class_names=list(dataset["class_name"]))
    accumulator = AnomalyMetricAccumulator()
    accumulator.update(
        output.anomaly_maps.numpy(),
        inputs["masks"].bool().numpy(),
        output.pred_scores.numpy(),
        np.asarray(dataset["label"], dtype=bool),
        list(dataset["class_name"]),
    )
    mean = accumulator.compute()["mean"]
    return {"pixel_auroc": mean["pixel_auroc"], "image_auroc": mean["image_auroc"]}


@pytest.mark.slow
def test_training_improves_the_fused_map_on_held_out_categories(tmp_path, tiny_clip_dir, fresh_accelerate_state):
    size = (IMAGE_SIZE, IMAGE_SIZE)
    train_root = write_synthetic_benchmark(
        tmp_path / "train", classes=TRAIN_CATEGORIES, n_test_good=8, n_test_bad=8, image_size=size, seed=1
    )
    held_out_root = write_synthetic_benchmark(
        tmp_path / "held-out", classes=HELD_OUT_CATEGORIES, n_test_good=8, n_test_bad=8, image_size=size, seed=2
    )
    trained_on = load_benchmark("mvtec", train_root)
    held_out = load_benchmark("mvtec", held_out_root)
    args = TrainingArguments(
        output_dir=str(tmp_path / "model"),
        data=[str(train_root)],
        benchmark="mvtec",
        clip_model=str(tiny_clip_dir),
        epochs=EPOCHS,
        batch_size=8,
        learning_rate=LEARNING_RATE,
        image_size=IMAGE_SIZE,
        feature_layers=FEATURE_LAYERS,
        seed=0,
        feature_cache_dir=str(tmp_path / "cache"),
    )
    set_seed(args.seed)
    untrained, processor = build_model(args)
    before = {"held_out": fused_metrics(untrained, processor, held_out)}
    before["fit"] = fused_metrics(untrained, processor, trained_on)

    result = train(args)
    after = {"held_out": fused_metrics(result.model, result.processor, held_out)}
    after["fit"] = fused_metrics(result.model, result.processor, trained_on)
    losses = [entry["loss"] for entry in result.history]
    print(f"untrained {before}\ntrained {after}\nlosses {[round(loss, 3) for loss in losses]}")

    assert losses[-1] < 0.6 * losses[0], losses
    held_out_pixel = (before["held_out"]["pixel_auroc"], after["held_out"]["pixel_auroc"])
    assert held_out_pixel[1] >= held_out_pixel[0] + MIN_HELD_OUT_PIXEL_GAIN, held_out_pixel
    assert held_out_pixel[1] >= MIN_HELD_OUT_PIXEL_AUROC, held_out_pixel
    fit_image = (before["fit"]["image_auroc"], after["fit"]["image_auroc"])
    assert fit_image[1] >= fit_image[0] + MIN_FIT_IMAGE_GAIN, fit_image
    assert fit_image[1] >= MIN_FIT_IMAGE_AUROC, fit_image
