"""`genclip train`: train a detector (GenCLIP by default; paper settings), then optionally evaluate and publish it.
Run under `accelerate launch` for several processes."""

from __future__ import annotations

import argparse

from .publish import add_card_options, card_options


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..training import add_training_arguments

    parser = subparsers.add_parser(
        "train",
        help="train a detector on benchmarks, folders or Parquet exports",
        description="Train GenCLIP (Adam lr 4e-5, betas 0.5/0.999, 15 epochs, batch 8, 518 px, fp32 by default). "
        "Several processes: accelerate launch --multi_gpu --num_processes N -m genclip_hf.cli train ... (CPU "
        "processes: prefix ACCELERATE_USE_CPU=1).",
    )
    add_training_arguments(parser)
    after = parser.add_argument_group("after training (main process)")
    after.add_argument("--eval-benchmark", help="evaluate the trained model on this benchmark (needs --eval-root)")
    after.add_argument("--eval-root", help="root folder of --eval-benchmark")
    after.add_argument("--push-to-hub", metavar="REPO", help="upload the trained model with its card and code")
    add_card_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from accelerate import PartialState

    from ..training import TrainingArguments, train

    if (args.eval_benchmark is None) != (args.eval_root is None):
        raise ValueError("--eval-benchmark and --eval-root go together: give both or neither.")
    if args.eval_root is not None and not Path(args.eval_root).exists():
        raise FileNotFoundError(f"--eval-root {args.eval_root} does not exist.")
    if args.push_to_hub is not None and args.method != "genclip":
        raise ValueError(
            f"--push-to-hub publishes GenCLIP checkpoints only (with their model card), not {args.method}."
        )
    output = train(TrainingArguments.from_namespace(args))
    if not PartialState().is_main_process:
        return 0
    print(f"Saved the trained model to {output.output_dir}")
    metrics = list(args.metrics)
    if args.eval_benchmark is not None:
        from ..evaluation import evaluate_benchmark
        from ..predict import load_detector

        out_dir = output.output_dir / "evaluation" / args.eval_benchmark
        evaluate_benchmark(load_detector(str(output.output_dir)), (args.eval_benchmark, args.eval_root), out_dir)
        print(f"Wrote the {args.eval_benchmark} evaluation to {out_dir}")
        metrics.append(str(out_dir / "results.json"))
    if args.push_to_hub is not None:
        from ..publishing import push_to_hub

        print(f"Uploaded to {push_to_hub(output.output_dir, args.push_to_hub, metrics, **card_options(args))}")
    return 0
