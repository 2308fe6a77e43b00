"""Two CPU processes under `accelerate launch` train the same weights as one process.

`accelerate launch --num_processes 2 --cpu` starts a single process in accelerate 1.x unless mpirun is configured
(huggingface/accelerate#2741), so two CPU processes are launched with `ACCELERATE_USE_CPU=1 accelerate launch
--multi_gpu --num_processes 2` (torchrun underneath, gloo backend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.training import TrainingArguments, train

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_two_cpu_processes_match_one_process(tmp_path, tiny_clip_dir):
    data_root = write_synthetic_benchmark(tmp_path / "data", classes=["checker", "ring"], seed=5)
    options = {
        "benchmark": "mvtec",
        "clip_model": str(tiny_clip_dir),
        "epochs": 2,
        "batch_size": 4,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-3,
        "image_size": 64,
        "feature_layers": [1, 2, 4],
    }
    # Both runs recompute the features (the cache is tested on its own): one process and two must agree.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO_ROOT / "examples" / "train.py"),
        "--data",
        str(data_root),
        "--output-dir",
        str(tmp_path / "two"),
        "--no-feature-cache",
    ]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        command += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert finished.returncode == 0, finished.stderr[-4000:]
    log = json.loads((tmp_path / "two" / "training_log.json").read_text())
    assert log["num_processes"] == 2

    single = train(
        TrainingArguments(
            output_dir=str(tmp_path / "one"),
            data=[str(data_root)],
            feature_cache=False,
            **options,
        )
    )
    two_processes = load_file(str(tmp_path / "two" / "model.safetensors"))
    learnable = {name: p for name, p in single.model.named_parameters() if p.requires_grad}
    for name, parameter in learnable.items():
        torch.testing.assert_close(two_processes[name], parameter.detach(), rtol=0, atol=1e-5, msg=name)
    assert [entry["steps"] for entry in log["history"]] == [entry["steps"] for entry in single.history] == [2, 2]
    for two_entry, one_entry in zip(log["history"], single.history, strict=True):
        assert two_entry["loss"] == pytest.approx(one_entry["loss"], abs=1e-5)
