"""The `genclip` command line: one sub-command per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the `genclip` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="genclip", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `genclip` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


def _add_data_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip data convert`: a benchmark's native folders -> Parquet shards with embedded images."""
    data = subparsers.add_parser("data", help="convert benchmarks to Hugging Face datasets (Parquet)")
    actions = data.add_subparsers(dest="data_command", required=True)
    convert = actions.add_parser("convert", help="write a benchmark split as Parquet shards")
    convert.add_argument("--benchmark", required=True, help="mvtec, visa, mpdd, btad, sdd or dtd_synthetic")
    convert.add_argument("--root", required=True, help="the dataset's top folder as distributed")
    convert.add_argument("--out", required=True, help="output folder for <split>-NNNNN-of-NNNNN.parquet")
    convert.add_argument("--split", default="test", help="split to convert (default: test)")
    convert.add_argument("--variant", help="SDD only: whole (default) or adaclip_crops")
    convert.add_argument("--no-strict", action="store_true", help="warn (not fail) on anomalous images without mask")
    convert.add_argument("--max-shard-size", default="500MB", help="bytes per shard, e.g. 500MB (default)")
    convert.add_argument("--push-to-hub", metavar="REPO", help="also upload to this Hub dataset repo")
    convert.set_defaults(handler=_run_data_convert)


def _run_data_convert(args: argparse.Namespace) -> int:
    from .data import export_parquet, format_summary, load_benchmark, push_to_hub, summarize

    options = {"variant": args.variant} if args.variant else {}
    if args.no_strict:
        options["strict"] = False
    dataset = load_benchmark(args.benchmark, args.root, split=args.split, **options)
    print(format_summary(summarize(dataset)))
    for path in export_parquet(dataset, args.out, split=args.split, max_shard_size=args.max_shard_size):
        print(f"wrote {path}")
    if args.push_to_hub:
        push_to_hub(dataset, args.push_to_hub, split=args.split, max_shard_size=args.max_shard_size)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    return 0


def _add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    """The paper's inference ablation switches (default: the model's config)."""
    switches = parser.add_argument_group("ablation switches (default: the model config)")
    switches.add_argument("--cnf", dest="use_cnf", action=argparse.BooleanOptionalAction, default=None)
    switches.add_argument(
        "--query-branch", dest="use_query_branch", action=argparse.BooleanOptionalAction, default=None
    )
    switches.add_argument(
        "--vision-prompts", dest="use_vision_prompts", action=argparse.BooleanOptionalAction, default=None
    )
    switches.add_argument("--feature-layers", type=int, nargs="+", help="a subset of the trained feature layers")
    switches.add_argument("--generic-term", help='CNF replacement term, e.g. "object"')
    switches.add_argument("--alpha", type=float, help="weight of the vision-enhanced branch (Eq. 8)")
    switches.add_argument("--sigma", type=float, help="Gaussian smoothing sigma in pixels (Eq. 8)")


def _switches(args: argparse.Namespace) -> dict:
    names = ("use_cnf", "use_query_branch", "use_vision_prompts", "feature_layers", "generic_term", "alpha", "sigma")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip predict`: anomaly scores and heatmaps for image files and folders."""
    predict = subparsers.add_parser("predict", help="anomaly scores and heatmaps for images and folders")
    predict.add_argument("paths", nargs="+", help="image files or folders (walked recursively; masks skipped)")
    predict.add_argument("--model", required=True, help="GenCLIP checkpoint: Hub id or local folder")
    predict.add_argument("--out", required=True, help="output folder (heatmaps/, scores.csv, scores.json, index.html)")
    predict.add_argument("--class-name", help="class name of the images (default: the generic term)")
    predict.add_argument("--threshold", type=float, help="pixel threshold: draw the predicted mask contour")
    predict.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default: 1)")
    predict.add_argument("--device", help='e.g. "cpu", "cuda", "cuda:1" (default: transformers picks)')
    _add_switch_arguments(predict)
    predict.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .predict import ModelUnavailableError, find_images, load_detector, predict_files

    try:
        images = find_images(args.paths)
        detector = load_detector(args.model, device=args.device)
    except (FileNotFoundError, ModelUnavailableError) as error:
        print(f"genclip predict: {error}", file=sys.stderr)
        return 2
    if not images:
        print(f"genclip predict: no images found under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    report = predict_files(
        detector,
        images,
        args.out,
        class_name=args.class_name,
        threshold=args.threshold,
        batch_size=args.batch_size,
        **_switches(args),
    )
    print(f"{len(report.rows)} images scored, {len(report.failures)} failed; see {report.out_dir / 'index.html'}")
    for failure in report.failures:
        print(f"failed: {failure['image']}: {failure['error']}", file=sys.stderr)
    return 1 if report.failures else 0


def _add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip train`: train the prompts (paper defaults); run under `accelerate launch` for several processes."""
    from .training import add_training_arguments

    train = subparsers.add_parser(
        "train",
        help="train GenCLIP's prompts on a benchmark, folder or Parquet export",
        description="Train GenCLIP (Adam, lr 4e-5, 15 epochs, batch 8, 518 px by default). Several processes: "
        "accelerate launch --multi_gpu --num_processes N -m genclip_hf.cli train ... (CPU processes: prefix "
        "ACCELERATE_USE_CPU=1).",
    )
    add_training_arguments(train)
    train.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .training import TrainingArguments, train

    output = train(TrainingArguments.from_namespace(args))
    if PartialState().is_main_process:
        print(f"Saved the trained model to {output.output_dir}")
    return 0


def _add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip evaluate`: per-class metrics, the paper's tables and heatmaps for a benchmark (resumable)."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on a benchmark: paper-format tables, heatmaps (resumable)",
        description="Evaluate at the model input size (GT masks resized with nearest neighbour). Writes per_class, "
        "dataset_row and comparison_with_paper tables (.md/.csv/.json), results.json, report.md and heatmaps. "
        "Finished classes are saved at once and reused by a rerun with the same model and switches.",
    )
    evaluate.add_argument("--model", required=True, help="GenCLIP checkpoint: Hub id or local folder")
    evaluate.add_argument(
        "--benchmark",
        required=True,
        help="mvtec, visa, mpdd, btad, sdd, dtd_synthetic (native layouts), folder, parquet (a `genclip data "
        "convert` folder) or meta_json",
    )
    evaluate.add_argument("--root", required=True, help="the benchmark folder (meta_json: the json file)")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--classes", nargs="+", help="evaluate only these classes (default: all)")
    evaluate.add_argument("--split", default="test", help="split to evaluate (default: test)")
    evaluate.add_argument("--variant", help="SDD only: whole (default) or adaclip_crops")
    evaluate.add_argument(
        "--dataset-name", help="name in the tables, e.g. mvtec for a Parquet export (default: --benchmark)"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    evaluate.add_argument(
        "--aupro-mode",
        choices=("exact", "anomalyclip"),
        default="exact",
        help="AUPRO shown in the tables (default: exact); both are saved, the paper comparison uses anomalyclip",
    )
    evaluate.add_argument("--no-resume", action="store_true", help="recompute classes that were already saved")
    evaluate.add_argument(
        "--heatmaps-per-class", type=int, default=3, help="pictures per kind (detected, missed, false alarm)"
    )
    evaluate.add_argument("--device", help='e.g. "cpu", "cuda", "cuda:1" (default: transformers picks)')
    _add_switch_arguments(evaluate)
    evaluate.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_benchmark, load_evaluation_dataset
    from .metrics.reports import dataset_row_markdown
    from .predict import ModelUnavailableError, load_detector

    try:
        dataset = load_evaluation_dataset(args.benchmark, args.root, args.split, args.classes, args.variant)
        detector = load_detector(args.model, device=args.device)
    except (FileNotFoundError, ValueError, ModelUnavailableError) as error:
        print(f"genclip evaluate: {error}", file=sys.stderr)
        return 2
    dataset_name = args.dataset_name or args.benchmark
    try:
        result = evaluate_benchmark(
            detector,
            dataset,
            args.out,
            classes=args.classes,
            batch_size=args.batch_size,
            aupro_mode=args.aupro_mode,
            resume=not args.no_resume,
            heatmaps_per_class=args.heatmaps_per_class,
            split=args.split,
            dataset_name=dataset_name,
            **_switches(args),
        )
    except ValueError as error:
        print(f"genclip evaluate: {error} (finished classes are saved in {args.out}/classes)", file=sys.stderr)
        return 1
    print(dataset_row_markdown(result.results, dataset_name), end="")
    print(
        f"{len(result.computed_classes)} classes evaluated, {len(result.reused_classes)} reused; "
        f"see {result.out_dir / 'report.md'}"
    )
    return 0


def _add_card_options(parser: argparse.ArgumentParser) -> None:
    """Options of the Hub model card, shared by `genclip card` and `genclip push`."""
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="[DATASET=]JSON",
        help="evaluation results: `genclip evaluate` folders or their results.json / dataset_row.json; per_class.json "
        "as DATASET=PATH",
    )
    parser.add_argument("--model-name", help="card title and model-index name (default: the repo or folder name)")
    parser.add_argument("--training-log", help="the trainer's training_log.json (default: the one in --model)")
    parser.add_argument("--license", default="apache-2.0", help="Hub licence id of the weights (default: apache-2.0)")
    parser.add_argument("--datasets", nargs="+", help="Hub dataset ids of the training data (default: its benchmark)")


def _card_options(args: argparse.Namespace) -> dict:
    return {
        "model_name": args.model_name,
        "training_log": args.training_log,
        "license": args.license,
        "datasets": args.datasets,
    }


def _add_card_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip card`: the Hub model card (metadata, model-index, usage, training details) of a checkpoint."""
    card = subparsers.add_parser("card", help="write the Hub model card (README.md) of a checkpoint")
    card.add_argument("--model", required=True, help="saved GenCLIP checkpoint folder")
    card.add_argument("--out", required=True, help="card to write, e.g. README.md")
    card.add_argument("--repo-id", help="Hub repo id shown in the usage snippets")
    _add_card_options(card)
    card.set_defaults(handler=_run_card)


def _run_card(args: argparse.Namespace) -> int:
    from .model_card import write_model_card

    try:
        path = write_model_card(args.model, args.out, metrics=args.metrics, repo_id=args.repo_id, **_card_options(args))
    except (FileNotFoundError, ValueError) as error:
        print(f"genclip card: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _add_push_command(subparsers: argparse._SubParsersAction) -> None:
    """`genclip push`: build the Hub upload folder (weights, processor, code, card) and upload it."""
    push = subparsers.add_parser("push", help="publish a checkpoint with its code and model card to the Hub")
    push.add_argument("--model", required=True, help="saved GenCLIP checkpoint folder (e.g. a `genclip train` output)")
    push.add_argument("--repo", required=True, help="Hub model repo id, e.g. user/genclip-mvtec")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--folder", help="build the upload folder here (new or empty) and keep it")
    push.add_argument("--no-upload", action="store_true", help="only build --folder, do not upload")
    push.add_argument("--commit-message", default="Upload GenCLIP checkpoint")
    _add_card_options(push)
    push.set_defaults(handler=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from .publishing import build_upload_folder, push_to_hub, upload_file_names

    if args.no_upload and not args.folder:
        print("genclip push: --no-upload needs --folder (where to build the upload folder)", file=sys.stderr)
        return 2
    try:
        if args.no_upload:
            options = {"repo_id": args.repo, **_card_options(args)}
            folder = build_upload_folder(args.model, args.folder, args.metrics, **options)
            print(f"built {folder}: {', '.join(upload_file_names(folder))}")
            return 0
        commit = push_to_hub(
            args.model,
            args.repo,
            args.metrics,
            private=args.private,
            commit_message=args.commit_message,
            folder=args.folder,
            **_card_options(args),
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"genclip push: {error}", file=sys.stderr)
        return 2
    print(f"pushed to https://huggingface.co/{args.repo} ({commit})")
    return 0


# Each entry adds one sub-command to the parser and sets `handler` (args -> exit status).
_COMMANDS: list = [
    _add_predict_command,
    _add_data_command,
    _add_train_command,
    _add_evaluate_command,
    _add_card_command,
    _add_push_command,
]


if __name__ == "__main__":
    sys.exit(main())
