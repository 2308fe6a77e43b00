"""The Accelerate training loop of any trainable detector (paper Sec. 3.3 and B.4; DESIGN §1).

One code path runs on a CPU, one GPU, several GPUs or several CPU processes. `batch_size` is the global batch: it is
split evenly across processes, so a run gives the same weights (up to float rounding) whatever the number of
processes, provided the number of images is a multiple of the batch (otherwise Accelerate completes the last batch of
a multi-process run with images from the start of the epoch).

The model's training contract (`genclip_hf.detection.AnomalyDetectorMixin`) decides what is learned:
`frozen_features(pixel_values)` is computed in float32 outside autocast (and cached on disk, float16, by default) and
`training_loss(frozen_features, class_names, masks, labels)` runs under the chosen mixed precision (fp32 by default,
the paper protocol).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoProcessor, CLIPConfig, PreTrainedModel

from ..detection import registered_processor_class
from ..processing_anomaly_detection import AnomalyDetectionProcessor
from ..storage import atomic_write_json
from .arguments import TrainingArguments
from .checkpoints import (
    latest_checkpoint,
    register_learnable_checkpointing,
    restore,
    run_signature,
    save_checkpoint,
)
from .data import EpochShuffleSampler, TrainingSamples, check_training_dataset, collate_samples, open_training_data
from .feature_cache import (
    FeatureCache,
    backbone_fingerprint,
    default_feature_cache_dir,
    fill_feature_cache,
    format_bytes,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainingOutput:
    """Result of [`train`].

    Args:
        model: the trained model (unwrapped, on the training device).
        processor: its processor.
        history: one entry per epoch: `{"epoch", "steps", "loss", "layer_loss": {"layer_<i>": float}}` (means over
            batches and processes; `layer_loss` empty for methods without per-layer losses).
        output_dir: where the model was saved.
    """

    model: PreTrainedModel
    processor: AnomalyDetectionProcessor
    history: list[dict]
    output_dir: Path


class TrainingStep(nn.Module):
    """The module Accelerate prepares: its forward is the model's `training_loss`, so distributed data parallelism
    synchronises the gradients of exactly what the loss reaches."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(
        self, frozen_features: torch.Tensor, class_names: list[str], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.training_loss(frozen_features, class_names, masks, labels)


def build_model(args: TrainingArguments) -> tuple[PreTrainedModel, AnomalyDetectionProcessor]:
    """A fresh model of `args.method` on `args.clip_model` with the run's config, or the `args.init_from` checkpoint
    (whose config the run keeps), and its processor."""
    model_class = args.method_class
    if args.init_from is not None:
        changed = [name for name in ("feature_layers", "image_size") if getattr(args, name) is not None]
        if changed or args.config_overrides:
            raise ValueError(
                f"--init-from {args.init_from} keeps that checkpoint's config; do not also set "
                f"{changed + sorted(args.config_overrides)}."
            )
        model = model_class.from_pretrained(args.init_from)
        processor = AutoProcessor.from_pretrained(args.init_from)
        return model, processor
    try:
        clip_config = AutoConfig.from_pretrained(args.clip_model)
    except OSError as error:
        raise OSError(f"--clip-model {args.clip_model} cannot be loaded: {error}") from None
    if not isinstance(clip_config, CLIPConfig):
        raise ValueError(
            f"--clip-model {args.clip_model} holds a {clip_config.model_type!r} checkpoint, not a plain CLIP; to "
            "continue training a saved checkpoint, pass it as --init-from."
        )
    model = model_class.from_clip(args.clip_model, **args.model_config_overrides())
    processor = registered_processor_class(model.config.model_type).from_clip(args.clip_model, config=model.config)
    return model, processor


def train(
    args: TrainingArguments,
    dataset: datasets.Dataset | None = None,
    on_step_end: Callable[[int, int], None] | None = None,
) -> TrainingOutput:
    """Train a detector's learnable parameters and save the model and processor to `args.output_dir`.

    Args:
        args: the run's settings.
        dataset: training rows of the common schema; default: the sources in `args.data`.
        on_step_end: called as `on_step_end(epoch, global_step)` after every optimizer step (0-based epoch).
    Returns:
        [`TrainingOutput`] with the trained model and the per-epoch losses.
    """
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if args.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size {args.batch_size} is the global batch and must split evenly across "
            f"{accelerator.num_processes} processes."
        )
    checkpoint_dir = Path(args.output_dir) / "checkpoints"
    if not args.resume and latest_checkpoint(checkpoint_dir) is not None:
        raise FileExistsError(
            f"{checkpoint_dir} already holds checkpoints: pass --resume (resume=True) to continue that run, or "
            "choose another output directory."
        )
    if dataset is None:
        with accelerator.main_process_first():
            dataset = open_training_data(args.data, args.benchmark, args.split, args.classes)
    check_training_dataset(dataset)

    set_seed(args.seed)
    model, processor = build_model(args)
    processor.check_model(model)
    learnable = [parameter for parameter in model.learnable_parameters()]
    model.train()

    samples = _training_samples(args, accelerator, model, processor, dataset)
    sampler = EpochShuffleSampler(len(samples), args.seed)
    loader = DataLoader(
        samples, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers, collate_fn=collate_samples
    )
    optimizer = torch.optim.Adam(learnable, lr=args.learning_rate, betas=args.adam_betas)
    step, optimizer, loader = accelerator.prepare(TrainingStep(model), optimizer, loader)
    register_learnable_checkpointing(accelerator)

    signature = run_signature(args, model, dataset)
    start_epoch, history = restore(accelerator, checkpoint_dir, signature)
    accelerator.init_trackers("genclip", config=_tracker_config(args))
    global_step = sum(entry["steps"] for entry in history)

    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        entry = _train_one_epoch(
            accelerator, step, model, optimizer, loader, epoch, args.epochs, global_step, on_step_end
        )
        global_step += entry["steps"]
        history.append(entry)
        accelerator.log({"loss": entry["loss"], **{f"loss/{k}": v for k, v in entry["layer_loss"].items()}}, epoch + 1)
        details = ", ".join(f"{name} {value:.4f}" for name, value in entry["layer_loss"].items())
        accelerator.print(
            f"epoch {epoch + 1}/{args.epochs}: loss {entry['loss']:.4f}" + (f" ({details})" if details else "")
        )
        save_checkpoint(accelerator, checkpoint_dir, epoch + 1, {"signature": signature, "history": history})

    output_dir = Path(args.output_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        log = {
            "arguments": _tracker_config(args),
            "model_config_overrides": args.model_config_overrides() if args.init_from is None else {},
            "num_processes": accelerator.num_processes,
            "history": history,
        }
        atomic_write_json(output_dir / "training_log.json", log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingOutput(model=model, processor=processor, history=history, output_dir=output_dir)


def _train_one_epoch(
    accelerator: Accelerator,
    step: nn.Module,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    epoch: int,
    epochs: int,
    global_step: int,
    on_step_end: Callable[[int, int], None] | None,
) -> dict:
    """One pass over `loader`; returns the epoch's history entry (losses averaged over batches and processes)."""
    loss_sum = torch.zeros((), device=accelerator.device)
    layer_loss_sum: torch.Tensor | None = None
    batches = steps = 0
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not accelerator.is_local_main_process)
    for batch in progress:
        with accelerator.accumulate(step):
            features = batch.get("frozen_features")
            if features is None:
                features = model.frozen_features(batch["pixel_values"])
            loss, layer_loss = step(features.float(), batch["class_names"], batch["masks"], batch["labels"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        loss_sum += loss.detach().float()
        if layer_loss is not None:
            layer_loss = layer_loss.detach().float()
            layer_loss_sum = layer_loss if layer_loss_sum is None else layer_loss_sum + layer_loss
        batches += 1
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if accelerator.sync_gradients:
            steps += 1
            if on_step_end is not None:
                on_step_end(epoch, global_step + steps)
    mean_loss = accelerator.reduce(loss_sum / max(batches, 1), reduction="mean").item()
    layer_names = [f"layer_{layer}" for layer in getattr(model.config, "feature_layers", [])]
    layer_means = {}
    if layer_loss_sum is not None:
        reduced = accelerator.reduce(layer_loss_sum / max(batches, 1), reduction="mean").tolist()
        layer_means = dict(zip(layer_names, reduced, strict=True))
    return {"epoch": epoch + 1, "steps": steps, "loss": float(mean_loss), "layer_loss": layer_means}


def _training_samples(
    args: TrainingArguments,
    accelerator: Accelerator,
    model: PreTrainedModel,
    processor: AnomalyDetectionProcessor,
    dataset: datasets.Dataset,
) -> TrainingSamples:
    if not args.feature_cache:
        return TrainingSamples(dataset, processor)
    root = Path(args.feature_cache_dir) if args.feature_cache_dir else default_feature_cache_dir()
    cache = FeatureCache.for_model(root, model, processor, backbone_id=backbone_fingerprint(model))
    if accelerator.is_main_process:
        total = len(dataset) * cache.bytes_per_image
        free = shutil.disk_usage(_existing_parent(root)).free
        print(
            f"Feature cache {cache.directory}: {len(dataset)} images x {format_bytes(cache.bytes_per_image)} = "
            f"{format_bytes(total)} at most ({format_bytes(free)} free); --no-feature-cache to recompute instead."
        )
    model.to(accelerator.device)
    per_process_batch = args.batch_size // accelerator.num_processes
    image_hashes = fill_feature_cache(
        cache, model, processor, dataset, accelerator, batch_size=per_process_batch, num_workers=args.num_workers
    )
    accelerator.wait_for_everyone()
    return TrainingSamples(dataset, processor, cache, image_hashes)


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _tracker_config(args: TrainingArguments) -> dict:
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in asdict(args).items()
    }


__all__ = ["TrainingOutput", "TrainingStep", "build_model", "train"]
