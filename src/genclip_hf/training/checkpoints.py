"""Checkpoints of a training run: after every epoch the learnable weights (safetensors), the optimizer, the RNG states
and `trainer_state.json` go to `<output_dir>/checkpoints/.epoch_NNN.partial`, which is then renamed to `epoch_NNN`,
so a folder named `epoch_NNN` is always complete. A resume refuses a run whose settings changed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import datasets
from accelerate import Accelerator
from accelerate.utils.constants import SAFE_WEIGHTS_NAME
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..storage import atomic_write_json, json_digest
from .arguments import TrainingArguments

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


def register_learnable_checkpointing(accelerator: Accelerator) -> None:
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


def restore(accelerator: Accelerator, checkpoint_dir: Path, signature: dict) -> tuple[int, list[dict]]:
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


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, epoch: int, trainer_state: dict) -> None:
    """Write the state of all processes to a partial folder, then rename it to `epoch_NNN` (atomic on one disk)."""
    final = checkpoint_dir / f"epoch_{epoch:03d}"
    partial = checkpoint_dir / f".epoch_{epoch:03d}.partial"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(partial / TRAINER_STATE_NAME, trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()


def run_signature(args: TrainingArguments, model: PreTrainedModel, dataset: datasets.Dataset) -> dict:
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
        "method": args.method,
        "init_from": args.init_from,
        "model_config": json_digest(config),
        "training_data": data_digest.hexdigest(),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "adam_betas": list(args.adam_betas),
        "mixed_precision": args.mixed_precision,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "seed": args.seed,
    }


__all__ = [
    "latest_checkpoint",
    "register_learnable_checkpointing",
    "restore",
    "run_signature",
    "save_checkpoint",
]
