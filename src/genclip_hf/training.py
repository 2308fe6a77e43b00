"""Training of GenCLIP's prompt learner with Accelerate (paper Sec. 3.3 and B.4; DESIGN §1).

One code path runs on a CPU, one GPU, several GPUs or several CPU processes (`accelerate launch --num_processes 2
--cpu`). `batch_size` is the global batch: it is split evenly across processes, so a run gives the same weights
(up to float rounding) whatever the number of processes, provided the number of images is a multiple of the batch
(otherwise Accelerate completes the last batch of a multi-process run with images from the start of the epoch).

Numerics: the frozen vision features are always rounded to float16 before they reach the learnable layers, in the
cached and the uncached path alike, so both paths train the same model. They are computed in float32 outside
autocast; mixed precision (`bf16` by default on a CUDA GPU) applies to the prompt learner, text encoder and loss.

Checkpoints: after every epoch `accelerator.save_state` writes the learnable weights (safetensors), the optimizer,
the RNG states and `trainer_state.json` to `<output_dir>/checkpoints/.epoch_NNN.partial`, which is then renamed to
`epoch_NNN`, so a folder named `epoch_NNN` is always complete. The data order of epoch `e` depends only on
`(seed, e)`, so `resume=True` continues from the last complete epoch and ends with the weights of an uninterrupted
run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, parse_flag_from_env, set_seed
from accelerate.utils.constants import SAFE_WEIGHTS_NAME
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .class_names import normalize_class_name
from .feature_cache import (
    STORAGE_DTYPE,
    FeatureCache,
    backbone_fingerprint,
    default_feature_cache_dir,
    fill_feature_cache,
    format_bytes,
)
from .modeling_genclip import GenCLIPModel
from .processing_genclip import GenCLIPProcessor, to_rgb_image

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14-336"
REQUIRED_COLUMNS = ("image", "mask", "class_name")
CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"
MIXED_PRECISION_CHOICES = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainingArguments:
    """Settings of one training run; the defaults are the paper's (B.4).

    Args:
        output_dir: where the trained model, processor, `training_log.json` and `checkpoints/` are written.
        data: training data: a benchmark root (with `benchmark`), a folder of Parquet shards, a `save_to_disk`
            folder, or an image folder (`genclip_hf.data.load_folder` layout). Not needed when `train` gets a dataset.
        benchmark: name for `genclip_hf.data.load_benchmark` ("mvtec", "visa", ...), reading `data` as its root.
        split: benchmark split; the zero-shot protocol trains on "test".
        classes: keep only these class names.
        clip_model: Hub id or folder of the CLIP backbone.
        epochs, batch_size, learning_rate: Adam training length, global batch (split across processes) and rate.
        image_size: model input side.
        feature_layers: 1-based vision layers; default: the config's (6, 12, 18, 24).
        config_overrides: any other `GenCLIPConfig` field (e.g. `{"use_vision_prompts": False}` for an ablation).
        gradient_accumulation_steps: batches per optimizer step.
        seed: seeds the prompt initialisation and the data order.
        mixed_precision: "auto" (bf16 on a CUDA GPU that supports it, else the `accelerate launch` setting, else
            fp32), "no", "bf16" or "fp16".
        feature_cache: reuse frozen vision features from `feature_cache_dir` (computed once per image).
        feature_cache_dir: default `$GENCLIP_FEATURE_CACHE` or `<HF_HOME>/genclip_hf/features`.
        resume: continue from the last complete checkpoint in `<output_dir>/checkpoints` (a fresh start if none).
        report_to: Accelerate tracker(s): "tensorboard", "wandb", "all", ...; `None` logs to stdout only.
        num_workers: DataLoader worker processes.
        eval_benchmark, eval_root: after training, evaluate on this benchmark ([`evaluate_trained_model`]).
        push_to_hub: upload the trained model and processor to this Hub repo.
    """

    output_dir: str
    data: str | None = None
    benchmark: str | None = None
    split: str = "test"
    classes: list[str] | None = None
    clip_model: str = DEFAULT_CLIP_MODEL
    epochs: int = 15
    batch_size: int = 8
    learning_rate: float = 4e-5
    image_size: int = 518
    feature_layers: list[int] | None = None
    config_overrides: dict = field(default_factory=dict)
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str = "auto"
    feature_cache: bool = True
    feature_cache_dir: str | None = None
    resume: bool = False
    report_to: str | None = None
    num_workers: int = 0
    eval_benchmark: str | None = None
    eval_root: str | None = None
    push_to_hub: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "image_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}.")
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {self.mixed_precision!r}.")
        if (self.eval_benchmark is None) != (self.eval_root is None):
            raise ValueError("eval_benchmark and eval_root go together: give both or neither.")
        reserved = {"image_size", "feature_layers"} & set(self.config_overrides)
        if reserved:
            raise ValueError(f"Set {sorted(reserved)} with their own arguments, not in config_overrides.")

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainingArguments:
        """Build from the arguments added by [`add_training_arguments`]."""
        values = {item.name: getattr(namespace, item.name) for item in fields(cls) if hasattr(namespace, item.name)}
        values["feature_cache"] = not namespace.no_feature_cache
        values["config_overrides"] = dict(namespace.config_overrides or [])
        return cls(**values)


@dataclass
class TrainingOutput:
    """Result of [`train`].

    Args:
        model: the trained model (unwrapped, on the training device).
        processor: its processor.
        history: one entry per epoch: `{"epoch", "loss", "layer_loss": {"layer_<i>": float}}` (mean over batches).
        output_dir: where the model was saved.
    """

    model: GenCLIPModel
    processor: GenCLIPProcessor
    history: list[dict]
    output_dir: Path


class EpochShuffleSampler(Sampler[int]):
    """A permutation of `range(num_samples)` that depends only on `(seed, epoch)`: the same on every process, in
    every run and after a resume."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        return iter(order.tolist())


class TrainingSamples(Dataset):
    """Rows of a training dataset as model inputs.

    Each item holds `masks` `(S, S)` float32, `class_name`, and either `layer_features` `(L, 1 + H*W, vision_width)`
    float16 from `cache` or `pixel_values` `(3, S, S)` when there is no cache.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        processor: GenCLIPProcessor,
        cache: FeatureCache | None = None,
        image_hashes: Sequence[str] | None = None,
    ):
        if (cache is None) != (image_hashes is None):
            raise ValueError("cache and image_hashes go together: give both or neither.")
        columns = ["mask", "class_name"] if cache is not None else ["image", "mask", "class_name"]
        self.rows = dataset.select_columns(columns)
        self.processor = processor
        self.cache = cache
        self.image_hashes = image_hashes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        size = self.processor.image_size
        sample = {"class_name": row["class_name"]}
        if self.cache is not None:
            sample["layer_features"] = self.cache.load(self.image_hashes[index])[0]
            image_size = None if row["mask"] is None else row["mask"].size
        else:
            image = to_rgb_image(row["image"], f"image of row {index}")
            sample["pixel_values"] = self.processor.image_processor([image], return_tensors="pt")["pixel_values"][0]
            image_size = image.size
        if row["mask"] is None:
            sample["masks"] = torch.zeros(size, size)
        else:
            sample["masks"] = self.processor.resize_masks([row["mask"]], [image_size])[0]
        return sample


class TrainingCollator:
    """Stacks [`TrainingSamples`] items and adds the prompt inputs of their class names, cleaned as CNF cleans them
    at inference ("metal_nut" -> "metal nut", "pcb1" -> "pcb"); the similarity test of CNF is inference-only."""

    def __init__(self, processor: GenCLIPProcessor):
        self.processor = processor

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        generic_term = self.processor.generic_term
        batch = self.processor.prompt_inputs(
            [normalize_class_name(sample["class_name"], generic_term) for sample in samples]
        )
        for name in ("masks", "layer_features", "pixel_values"):
            if name in samples[0]:
                batch[name] = torch.stack([sample[name] for sample in samples])
        return batch


def load_training_dataset(
    data: str | Path, benchmark: str | None = None, split: str = "test", classes: Sequence[str] | None = None
) -> datasets.Dataset:
    """Open training data of the common schema (`genclip_hf.data`).

    Args:
        data: a benchmark root (with `benchmark`), a folder of `*.parquet` shards (or one Parquet file), a
            `Dataset.save_to_disk` folder, or an image folder in the `load_folder` layout.
        benchmark: a `genclip_hf.data.load_benchmark` name.
        split: benchmark split, or the split of a `save_to_disk` `DatasetDict`.
        classes: keep only these class names.
    """
    from .data import load_benchmark, load_folder

    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"Training data {str(path)!r} does not exist.")
    if benchmark is not None:
        options = {"classes": list(classes)} if classes else {}
        return load_benchmark(benchmark, path, split=split, **options)
    parquet_files = [path] if path.suffix == ".parquet" else sorted(path.rglob("*.parquet"))
    if parquet_files:
        dataset = datasets.load_dataset("parquet", data_files=[str(file) for file in parquet_files], split="train")
    elif (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{str(path)!r} holds splits {sorted(dataset)}, not split {split!r}.")
            dataset = dataset[split]
    else:
        dataset = load_folder(path)
    if classes:
        wanted = set(classes)
        dataset = dataset.filter(lambda name: name in wanted, input_columns="class_name")
        if len(dataset) == 0:
            raise ValueError(f"No rows of {str(path)!r} have a class name in {sorted(wanted)}.")
    return dataset


def check_training_dataset(dataset: datasets.Dataset) -> None:
    """Raise `ValueError` when `dataset` cannot train GenCLIP (missing columns, no rows)."""
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"Training data must be a datasets.Dataset, got {type(dataset).__name__}.")
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"Training data lacks column(s) {missing}; it has {dataset.column_names}. "
            "Load it with genclip_hf.data (schema: image, mask, label, class_name, defect_type, image_path)."
        )
    if len(dataset) == 0:
        raise ValueError("Training data has no rows.")


def frozen_features(model: GenCLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Layer features `(B, L, 1 + H*W, vision_width)` of the frozen encoder, rounded through the cache's float16."""
    return model.encode_image(pixel_values, return_image_embeds=False).layer_features.to(STORAGE_DTYPE)


def train(
    args: TrainingArguments,
    dataset: datasets.Dataset | None = None,
    on_step_end: Callable[[int, int], None] | None = None,
) -> TrainingOutput:
    """Train GenCLIP's learnable prompts and projections (Eq. 5) and save the model to `args.output_dir`.

    Args:
        args: the run's settings.
        dataset: training rows of the common schema; default: [`load_training_dataset`] of `args.data`.
        on_step_end: called as `on_step_end(epoch, global_step)` after every optimizer step (0-based epoch).
    Returns:
        [`TrainingOutput`] with the trained model and the per-epoch losses.
    """
    mixed_precision = _resolve_mixed_precision(args.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
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
    if args.eval_root is not None and not Path(args.eval_root).exists():
        raise FileNotFoundError(f"eval_root {args.eval_root!r} does not exist.")
    if dataset is None:
        if args.data is None:
            raise ValueError("Give training data: args.data (a path) or the dataset argument.")
        with accelerator.main_process_first():
            dataset = load_training_dataset(args.data, args.benchmark, args.split, args.classes)
    check_training_dataset(dataset)

    set_seed(args.seed)
    overrides = dict(args.config_overrides, image_size=args.image_size)
    if args.feature_layers is not None:
        overrides["feature_layers"] = list(args.feature_layers)
    model = GenCLIPModel.from_clip(args.clip_model, **overrides)
    processor = GenCLIPProcessor.from_clip(args.clip_model, config=model.config)
    learnable = _learnable_parameters(model)
    model.train()

    samples = _training_samples(args, accelerator, model, processor, dataset)
    sampler = EpochShuffleSampler(len(samples), args.seed)
    loader = DataLoader(
        samples,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.num_workers,
        collate_fn=TrainingCollator(processor),
    )
    optimizer = torch.optim.Adam(learnable, lr=args.learning_rate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    _register_learnable_checkpointing(accelerator)
    unwrapped = accelerator.unwrap_model(model)

    signature = _run_signature(args, unwrapped, dataset)
    start_epoch, history = _restore(accelerator, checkpoint_dir, signature)
    accelerator.init_trackers("genclip", config=_tracker_config(args))
    global_step = sum(entry["steps"] for entry in history)

    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        entry = _train_one_epoch(accelerator, model, optimizer, loader, epoch, args.epochs, global_step, on_step_end)
        global_step += entry["steps"]
        history.append(entry)
        accelerator.log({"loss": entry["loss"], **{f"loss/{k}": v for k, v in entry["layer_loss"].items()}}, epoch + 1)
        accelerator.print(
            f"epoch {epoch + 1}/{args.epochs}: loss {entry['loss']:.4f} ("
            + ", ".join(f"{name} {value:.4f}" for name, value in entry["layer_loss"].items())
            + ")"
        )
        _save_checkpoint(accelerator, checkpoint_dir, epoch + 1, {"signature": signature, "history": history})

    output_dir = Path(args.output_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        arguments = {**_tracker_config(args), "mixed_precision": accelerator.mixed_precision}
        log = {"arguments": arguments, "num_processes": accelerator.num_processes, "history": history}
        _write_json(output_dir / "training_log.json", log)
        if args.eval_benchmark is not None:
            results = evaluate_trained_model(
                output_dir, args.eval_benchmark, args.eval_root, device=str(accelerator.device)
            )
            print(f"Wrote the {args.eval_benchmark} evaluation to {results}")
        if args.push_to_hub is not None:
            from .publishing import push_to_hub

            metrics = [results] if args.eval_benchmark is not None else []
            print(f"Uploaded to {push_to_hub(output_dir, args.push_to_hub, metrics)}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingOutput(model=unwrapped, processor=processor, history=history, output_dir=output_dir)


def _train_one_epoch(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    epoch: int,
    epochs: int,
    global_step: int,
    on_step_end: Callable[[int, int], None] | None,
) -> dict:
    """One pass over `loader`; returns the epoch's history entry (losses averaged over batches and processes)."""
    unwrapped = accelerator.unwrap_model(model)
    layer_names = [f"layer_{layer}" for layer in unwrapped.config.feature_layers]
    layer_loss_sum = torch.zeros(len(layer_names), device=accelerator.device)
    batches = steps = 0
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not accelerator.is_local_main_process)
    for batch in progress:
        with accelerator.accumulate(model):
            features = batch.pop("layer_features", None)
            if features is None:
                features = frozen_features(unwrapped, batch.pop("pixel_values"))
            outputs = model(layer_features=features.float(), **batch)
            accelerator.backward(outputs.loss)
            optimizer.step()
            optimizer.zero_grad()
        layer_loss_sum += outputs.layer_loss.detach().float()
        batches += 1
        progress.set_postfix(loss=f"{outputs.loss.item():.4f}")
        if accelerator.sync_gradients:
            steps += 1
            if on_step_end is not None:
                on_step_end(epoch, global_step + steps)
    layer_loss = accelerator.reduce(layer_loss_sum / max(batches, 1), reduction="mean").tolist()
    return {
        "epoch": epoch + 1,
        "steps": steps,
        "loss": float(sum(layer_loss)),
        "layer_loss": dict(zip(layer_names, layer_loss, strict=True)),
    }


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training options (shared by `genclip train` and `examples/train.py`) to `parser`."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", required=True, help="benchmark root, Parquet folder, save_to_disk folder or image folder"
    )
    data.add_argument("--benchmark", help="read --data as this benchmark: mvtec, visa, mpdd, btad, sdd, dtd_synthetic")
    data.add_argument("--split", default="test", help="benchmark split (default: test, the zero-shot protocol)")
    data.add_argument("--classes", nargs="+", help="train on these class names only")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--clip-model", default=DEFAULT_CLIP_MODEL, help=f"CLIP backbone (default: {DEFAULT_CLIP_MODEL})"
    )
    model.add_argument("--image-size", type=int, default=518, help="model input side (default: 518)")
    model.add_argument("--feature-layers", type=int, nargs="+", help="1-based vision layers (default: 6 12 18 24)")
    model.add_argument(
        "--config",
        dest="config_overrides",
        metavar="KEY=VALUE",
        action="append",
        type=_config_override,
        help="any other GenCLIPConfig field, e.g. --config use_vision_prompts=false (repeatable)",
    )
    optimisation = parser.add_argument_group("optimisation (paper defaults)")
    optimisation.add_argument("--epochs", type=int, default=15, help="default: 15")
    optimisation.add_argument("--batch-size", type=int, default=8, help="global batch, split across processes (8)")
    optimisation.add_argument("--learning-rate", type=float, default=4e-5, help="Adam learning rate (default: 4e-5)")
    optimisation.add_argument("--gradient-accumulation-steps", type=int, default=1, help="default: 1")
    optimisation.add_argument("--seed", type=int, default=0, help="prompt initialisation and data order (0)")
    optimisation.add_argument(
        "--mixed-precision", choices=MIXED_PRECISION_CHOICES, default="auto", help="auto: bf16 on a GPU, else fp32"
    )
    runtime = parser.add_argument_group("run")
    runtime.add_argument("--output-dir", required=True, help="trained model, training_log.json and checkpoints/")
    runtime.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    runtime.add_argument("--no-feature-cache", action="store_true", help="recompute frozen features every epoch")
    runtime.add_argument("--feature-cache-dir", help="default: $GENCLIP_FEATURE_CACHE or <HF_HOME>/genclip_hf/features")
    runtime.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")
    runtime.add_argument("--report-to", help="Accelerate tracker(s): tensorboard, wandb, all, ...")
    runtime.add_argument("--eval-benchmark", help="after training, evaluate on this benchmark (needs --eval-root)")
    runtime.add_argument("--eval-root", help="root folder of --eval-benchmark")
    runtime.add_argument("--push-to-hub", metavar="REPO", help="upload the trained model and processor")
    return parser


def _config_override(text: str) -> tuple[str, object]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"--config takes KEY=VALUE, got {text!r}.")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _resolve_mixed_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    on_gpu = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")
    if on_gpu and torch.cuda.is_bf16_supported():
        return "bf16"
    return os.environ.get("ACCELERATE_MIXED_PRECISION", "no")


def _learnable_parameters(model: GenCLIPModel) -> list[torch.nn.Parameter]:
    """The parameters the loss reaches; parameters a config switch leaves unused are frozen (DDP needs every
    trainable parameter to get a gradient)."""
    if not model.config.use_vision_prompts:
        model.prompt_learner.vision_prompt_projections.requires_grad_(False)
    for parameter in model.parameters():
        if parameter.numel() == 0:
            parameter.requires_grad_(False)
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def _training_samples(
    args: TrainingArguments,
    accelerator: Accelerator,
    model: GenCLIPModel,
    processor: GenCLIPProcessor,
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


def _register_learnable_checkpointing(accelerator: Accelerator) -> None:
    """Make `save_state`/`load_state` store only the learnable weights (the frozen CLIP is in the final model)."""

    def keep_learnable(models: list, weights: list, output_dir: str) -> None:
        for index, model in enumerate(models):
            names = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            weights[index] = {name: tensor for name, tensor in weights[index].items() if name in names}

    def load_learnable(models: list, input_dir: str) -> None:
        for index, model in enumerate(models):
            file = Path(input_dir) / (SAFE_WEIGHTS_NAME if index == 0 else SAFE_WEIGHTS_NAME.replace(".", f"_{index}."))
            state = load_file(str(file))
            names = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            if set(state) != names:
                raise ValueError(
                    f"Checkpoint {file} holds weights {sorted(set(state) ^ names)} that do not match this model's "
                    "learnable parameters; it was made with another configuration."
                )
            model.load_state_dict(state, strict=False)
        models.clear()

    accelerator.register_save_state_pre_hook(keep_learnable)
    accelerator.register_load_state_pre_hook(load_learnable)


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The complete checkpoint folder `epoch_NNN` with the highest epoch, or `None`."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None
    complete = [
        (int(match.group(1)), path)
        for path in checkpoint_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name)) and (path / TRAINER_STATE_NAME).is_file()
    ]
    return max(complete)[1] if complete else None


def _restore(accelerator: Accelerator, checkpoint_dir: Path, signature: dict) -> tuple[int, list[dict]]:
    """`(first epoch to run, history)` from the last complete checkpoint, or `(0, [])` when there is none."""
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is None:
        return 0, []
    state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    changed = sorted(key for key in signature if state["signature"].get(key) != signature[key])
    if changed:
        details = "; ".join(f"{key}: {state['signature'].get(key)!r} -> {signature[key]!r}" for key in changed)
        raise ValueError(f"Cannot resume from {checkpoint}: the run's settings changed ({details}).")
    accelerator.load_state(str(checkpoint))
    accelerator.print(f"Resumed from {checkpoint} (epoch {len(state['history'])}).")
    return len(state["history"]), state["history"]


def _save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, epoch: int, trainer_state: dict) -> None:
    """Write the state of all processes to a partial folder, then rename it to `epoch_NNN` (atomic on one disk)."""
    final = checkpoint_dir / f"epoch_{epoch:03d}"
    partial = checkpoint_dir / f".epoch_{epoch:03d}.partial"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(partial / TRAINER_STATE_NAME, trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()


def _run_signature(args: TrainingArguments, model: GenCLIPModel, dataset: datasets.Dataset) -> dict:
    """What must not change between a checkpoint and its resumption."""
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash"):
        config.pop(volatile, None)
    config["clip_config"] = {k: v for k, v in config["clip_config"].items() if not k.startswith("_")}
    listing = dataset.select_columns([c for c in ("image_path", "class_name") if c in dataset.column_names])
    data_digest = hashlib.sha256(str(len(dataset)).encode())
    for batch in listing.iter(batch_size=1024):
        data_digest.update(json.dumps(batch, sort_keys=True).encode())
    return {
        "model_config": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "training_data": data_digest.hexdigest(),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "seed": args.seed,
    }


def _tracker_config(args: TrainingArguments) -> dict:
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in asdict(args).items()
    }


def evaluate_trained_model(model_dir: str | Path, benchmark: str, root: str | Path, device: str | None = None) -> Path:
    """Evaluate a saved model with `genclip_hf.evaluation.evaluate_benchmark` (the `genclip evaluate` protocol).

    Writes the tables, heatmaps and `results.json` (the metrics the model card reads) to
    `<model_dir>/evaluation/<benchmark>/` and returns the path of `results.json`.
    """
    from .evaluation import evaluate_benchmark
    from .predict import load_detector

    out_dir = Path(model_dir) / "evaluation" / benchmark
    evaluate_benchmark(load_detector(str(model_dir), device=device), (benchmark, root), out_dir)
    return out_dir / "results.json"


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


__all__ = [
    "DEFAULT_CLIP_MODEL",
    "EpochShuffleSampler",
    "TrainingArguments",
    "TrainingCollator",
    "TrainingOutput",
    "TrainingSamples",
    "add_training_arguments",
    "check_training_dataset",
    "evaluate_trained_model",
    "frozen_features",
    "latest_checkpoint",
    "load_training_dataset",
    "train",
]
