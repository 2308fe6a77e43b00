"""Train GenCLIP on any benchmark, folder or Parquet export of `genclip_hf.data`.

    accelerate launch examples/train.py --benchmark mvtec --data /data/mvtec_anomaly_detection --output-dir out
    accelerate launch --multi_gpu --num_processes 4 examples/train.py --data visa_parquet/ --output-dir out
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/train.py --data dir --output-dir out

(Two CPU processes need the last form: `accelerate launch --cpu --num_processes 2` starts one process unless mpirun
is set up, huggingface/accelerate#2741.)

The options are those of `genclip train` (see `genclip_hf.training.add_training_arguments`).
"""

from __future__ import annotations

import argparse

from genclip_hf.training import TrainingArguments, add_training_arguments, train


def main() -> None:
    parser = add_training_arguments(argparse.ArgumentParser(description="Train GenCLIP's prompts (paper defaults)."))
    train(TrainingArguments.from_namespace(parser.parse_args()))


if __name__ == "__main__":
    main()
