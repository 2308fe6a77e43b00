"""`genclip evaluate`: per-class metrics, the paper's tables and heatmaps of any detector on a dataset (resumable)."""

from __future__ import annotations

import argparse

from ..data.sources import SOURCES
from .options import (
    add_model_arguments,
    add_precision_arguments,
    batch_size,
    detection_settings,
    non_negative,
    output_path,
    positive_integer,
    precision_options,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data import BENCHMARKS

    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a detector on a benchmark: paper-format tables, heatmaps (resumable)",
        description="Evaluate at the model input size (GT masks resized with nearest neighbour). Writes per_class, "
        "dataset_row and comparison_with_paper tables (.md/.csv/.json), results.json, report.md and heatmaps. "
        "Finished classes are saved at once and reused by a rerun with the same model, settings and data.",
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        help=f"{', '.join(BENCHMARKS)} (native layouts), or {', '.join(SOURCES)}",
    )
    parser.add_argument("--root", required=True, help="the data folder (meta_json: the json file)")
    parser.add_argument("--out", required=True, type=output_path, help="output folder")
    parser.add_argument("--classes", nargs="+", help="evaluate only these classes (default: all)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--variant", help="SDD only: whole (default) or adaclip_crops")
    parser.add_argument("--dataset-name", help="name in the tables, e.g. mvtec for a Parquet export")
    parser.add_argument("--batch-size", type=batch_size, default=8, help="images per forward pass (default: 8)")
    parser.add_argument(
        "--aupro-mode",
        choices=("exact", "anomalyclip"),
        default="exact",
        help="AUPRO shown in the tables (default: exact); both are saved, the paper comparison uses anomalyclip",
    )
    parser.add_argument("--no-resume", action="store_true", help="recompute classes that were already saved")
    parser.add_argument(
        "--k-shot",
        type=positive_integer("--k-shot"),
        metavar="K",
        help="few-shot: K normal references per class from the train split",
    )
    parser.add_argument(
        "--seeds", type=non_negative, nargs="+", default=[0], help="--k-shot only: one evaluation per seed (default: 0)"
    )
    parser.add_argument(
        "--heatmaps-per-class", type=non_negative, default=3, help="pictures per kind (detected, missed, false alarm)"
    )
    add_model_arguments(parser)
    add_precision_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.sources import open_dataset
    from ..evaluation import evaluate_benchmark, evaluate_k_shot
    from ..metrics.reports import dataset_row_markdown
    from ..predict import load_detector

    settings = detection_settings(args)
    dataset_name = args.dataset_name or args.benchmark
    options = {
        "batch_size": args.batch_size,
        "aupro_mode": args.aupro_mode,
        "resume": not args.no_resume,
        "heatmaps_per_class": args.heatmaps_per_class,
        **settings,
    }
    if args.k_shot is not None:
        detector = load_detector(args.model, device=args.device, **precision_options(args))
        summary = evaluate_k_shot(
            detector,
            args.benchmark,
            args.root,
            args.out,
            args.k_shot,
            args.seeds,
            args.classes,
            dataset_name,
            **options,
        )
        mean = summary["mean"]
        print(
            f"{args.k_shot}-shot over seeds {args.seeds}: pixel AUROC "
            f"{_percent(mean['pixel_auroc'])}, image AUROC {_percent(mean['image_auroc'])}; see {args.out}/k_shot.md"
        )
        return 0
    dataset = open_dataset(args.root, args.benchmark, args.split, args.classes, args.variant)
    class_names = list(dict.fromkeys(dataset["class_name"]))
    detector = load_detector(args.model, device=args.device, class_names=class_names, **precision_options(args))
    result = evaluate_benchmark(
        detector, dataset, args.out, classes=args.classes, split=args.split, dataset_name=dataset_name, **options
    )
    print(dataset_row_markdown(result.results, dataset_name), end="")
    skipped = len(result.skipped)
    print(
        f"{len(result.computed_classes)} classes evaluated, {len(result.reused_classes)} reused"
        + (f", {skipped} unreadable files skipped" if skipped else "")
        + f"; see {result.out_dir / 'report.md'}"
    )
    return 0


def _percent(value: dict) -> str:
    """`mean ± std` of a k-shot summary entry, in percent."""
    if value["mean"] is None:
        return "n/a"
    return f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"
