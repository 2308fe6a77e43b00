"""Evaluate any detector on a benchmark through the Python API (what `genclip evaluate` does).

    python examples/evaluate.py --model path/or/hub-id --benchmark mpdd --root data/MPDD --out runs/mpdd

Writes per-class and dataset tables (Markdown, CSV, JSON), a comparison with the paper, report.md and heatmaps to
--out; a rerun skips the classes already finished with the same model, settings and data. Notes such as undefined
metrics are logged, listed in report.md and in `result.messages`.
"""

from __future__ import annotations

import argparse

from genclip_hf.data import open_dataset
from genclip_hf.detection import DEFAULT_DETECTOR
from genclip_hf.evaluation import evaluate_benchmark
from genclip_hf.metrics.reports import dataset_row_markdown, per_class_markdown
from genclip_hf.predict import load_detector


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=DEFAULT_DETECTOR, help=f"any detector or plain CLIP (default {DEFAULT_DETECTOR})"
    )
    parser.add_argument("--benchmark", required=True, help="mvtec, visa, mpdd, btad, sdd, dtd_synthetic, folder, ...")
    parser.add_argument("--root", required=True, help="the benchmark's top folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--classes", nargs="+", help="evaluate only these classes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--aupro-mode", choices=("exact", "anomalyclip"), default="exact")
    parser.add_argument("--alpha", type=float, help="GenCLIP: weight of the vision-enhanced branch (default: config)")
    parser.add_argument("--device", help='e.g. "cpu" or "cuda"')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    detector = load_detector(args.model, device=args.device)
    dataset = open_dataset(args.root, args.benchmark, classes=args.classes)
    settings = {"alpha": args.alpha} if args.alpha is not None else {}
    result = evaluate_benchmark(
        detector,
        dataset,
        args.out,
        classes=args.classes,
        batch_size=args.batch_size,
        aupro_mode=args.aupro_mode,
        dataset_name=args.benchmark,
        **settings,
    )
    print(dataset_row_markdown(result.results, args.benchmark))
    print(per_class_markdown(result.results))
    print(f"Full report: {result.out_dir / 'report.md'}")


if __name__ == "__main__":
    main()
