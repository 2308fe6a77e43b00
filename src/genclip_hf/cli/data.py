"""`genclip data convert`: a benchmark's native folders to Parquet shards with embedded images."""

from __future__ import annotations

import argparse

from .options import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data import BENCHMARKS

    parser = subparsers.add_parser("data", help="convert benchmarks to Hugging Face datasets (Parquet)")
    actions = parser.add_subparsers(dest="data_command", required=True, parser_class=type(parser))
    convert = actions.add_parser("convert", help="write a benchmark split as Parquet shards")
    convert.add_argument("--benchmark", required=True, help=", ".join(BENCHMARKS))
    convert.add_argument("--root", required=True, help="the dataset's top folder as distributed")
    convert.add_argument(
        "--out", required=True, type=output_path, help="output folder for <split>-NNNNN-of-NNNNN.parquet"
    )
    convert.add_argument("--split", default="test", help="split to convert (default: test)")
    convert.add_argument("--variant", help="SDD only: whole (default) or adaclip_crops")
    convert.add_argument("--no-strict", action="store_true", help="warn (not fail) on anomalous images without mask")
    convert.add_argument("--max-shard-size", default="500MB", help="bytes per shard, e.g. 500MB (default)")
    convert.add_argument("--push-to-hub", metavar="REPO", help="also upload to this Hub dataset repo")
    convert.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from ..data import export_parquet, format_summary, load_benchmark, push_to_hub, summarize

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
