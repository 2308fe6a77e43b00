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


# Each entry adds one sub-command to the parser and sets `handler` (args -> exit status).
_COMMANDS: list = [_add_predict_command, _add_data_command]


if __name__ == "__main__":
    sys.exit(main())
