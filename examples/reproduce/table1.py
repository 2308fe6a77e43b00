r"""Paper Table 1: zero-shot results of every method on six benchmarks, beside the paper's numbers.

Protocol: a model trained on MVTec-AD (all test images) is evaluated on VisA, MPDD, BTAD, SDD and DTD-Synthetic; a
model trained on VisA is evaluated on MVTec-AD. Give the roots of the datasets to evaluate and of their training
data; datasets without a root are skipped. The Average rows are written when all six are evaluated.

    python examples/reproduce/table1.py --mvtec /data/mvtec_anomaly_detection --visa /data/VisA_20220922 \
        --mpdd /data/MPDD --btad /data/BTAD --sdd /data/KolektorSDD --dtd-synthetic /data/DTD-Synthetic \
        --anomalyclip-checkpoint converted/anomalyclip --anomalyclip-visa-checkpoint converted/anomalyclip-visa

The methods (the paper's columns; `--methods` runs a subset, the others keep the paper's numbers only):
  clip         training-free plain CLIP on --clip-model at --image-size (docs/baselines.md), written by this script
  coop         CoOp, trained by this script (`genclip train --method coop`) like GenCLIP (docs/baselines.md)
  winclip      training-free WinCLIP on --winclip-clip-model (a plain CLIP checkpoint) at WinCLIP's 240 px
  anomalyclip  the official checkpoints converted with `genclip convert anomalyclip`: --anomalyclip-checkpoint
               (trained on MVTec-AD) evaluates the five other datasets, --anomalyclip-visa-checkpoint (trained on
               VisA) evaluates MVTec-AD; rows without their checkpoint are not run (noted in the table)
  adaclip      no port in this package: the paper's numbers only
  genclip      trained by this script

SDD: the paper does not say which of the two SDD variants of the literature its Table 1 uses; `--sdd-variant`
chooses (default: whole images, as AnomalyCLIP).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import (
    BENCHMARKS,
    METRICS,
    Reproduction,
    build_parser,
    comparison_row,
    paper_name,
    paper_row,
    percent,
    training_benchmark,
)

from genclip_hf.detection import DEFAULT_DETECTOR

# Method -> (column name in our table, its setting in the paper's results, whether it is trained on the protocol's
# training benchmark).
METHODS = {
    "clip": ("CLIP", "CLIP", False),
    "coop": ("CoOp", "CoOp", True),
    "winclip": ("WinCLIP", "WinCLIP", False),
    "anomalyclip": ("AnomalyCLIP", "AnomalyCLIP", True),
    "adaclip": ("AdaCLIP†", "AdaCLIP(retrained)", True),
    "genclip": ("GenCLIP", "GenCLIP", True),
}
PAPER_ONLY = "paper only: no port"
# The two metric pairs of the paper's layout: (row title, first metric, second metric).
PAPER_LAYOUT = (("Pixel (AUROC, PRO)", "pixel_auroc", "aupro"), ("Image (AUROC, AP)", "image_auroc", "image_ap"))


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the baselines: which methods run, WinCLIP's backbone and AnomalyCLIP's checkpoints."""
    methods = parser.add_argument_group("methods")
    methods.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="methods to run (default: all)"
    )
    methods.add_argument(
        "--winclip-clip-model",
        default=DEFAULT_DETECTOR,
        help=f"plain CLIP checkpoint WinCLIP runs on at 240 px (default: {DEFAULT_DETECTOR})",
    )
    methods.add_argument(
        "--anomalyclip-checkpoint", metavar="DIR", help="converted AnomalyCLIP trained on MVTec-AD (for the others)"
    )
    methods.add_argument(
        "--anomalyclip-visa-checkpoint", metavar="DIR", help="converted AnomalyCLIP trained on VisA (for MVTec-AD)"
    )


def anomalyclip_option(trained_on: str) -> str:
    """The option that gives the AnomalyCLIP checkpoint trained on `trained_on`."""
    return "--anomalyclip-visa-checkpoint" if trained_on == "visa" else "--anomalyclip-checkpoint"


def run_method(
    reproduction: Reproduction, method: str, benchmark: str, clip_baseline: Path | None
) -> tuple[dict | None, str]:
    """Evaluate `method` on `benchmark` (training it first where the script trains it).

    Returns:
        The dataset means in percent (None when not evaluated) and what was done, for the table's `run` column.
    """
    args = reproduction.args
    if method == "adaclip":
        return None, PAPER_ONLY
    if method not in args.methods:
        return None, "not run (--methods)"
    trained_on = training_benchmark(benchmark)
    if method == "clip":
        model = clip_baseline
    elif method == "winclip":
        model = args.winclip_clip_model
    elif method == "anomalyclip":
        option = anomalyclip_option(trained_on)
        model = getattr(args, option[2:].replace("-", "_"))
        if model is None:
            reproduction.note(f"AnomalyCLIP on {paper_name(benchmark)} not run: give {option} DIR")
            return None, f"not run: give {option}"
    else:
        model = reproduction.train(trained_on, method=method)
    results = reproduction.evaluate(model, benchmark, benchmark if method == "genclip" else f"{method}/{benchmark}")
    return (None, "dry run") if results is None else (percent(results["mean"]), "evaluated")


def average_row(method: str, rows: list[dict]) -> dict:
    """The Average row of `method`: our mean over the datasets the paper's Average covers (all six, or five for CoOp,
    which has no DTD-Synthetic numbers), None where one of them was not evaluated."""
    name, setting, _ = METHODS[method]
    covered = [row for row in rows if row["method"] == name and row[f"{METRICS[0]}_paper"] is not None]
    ours, run = None, next((row["run"] for row in covered if row["run"] != "evaluated"), "evaluated")
    if run == "evaluated":
        ours = {metric: round(sum(row[f"{metric}_ours"] for row in covered) / len(covered), 2) for metric in METRICS}
    label = {"dataset": "Average", "method": name, "trained_on": "-", "run": run}
    return comparison_row(label, ours, paper_row(1, "Average", setting))


def pair(row: dict, source: str, first: str, second: str) -> str:
    """`(a, b)` of two metrics of a row from `source` ("ours" or "paper"); `-` for a missing value."""
    values = [row[f"{metric}_{source}"] for metric in (first, second)]
    return "(" + ", ".join("-" if value is None else f"{value:.1f}" for value in values) + ")"


def paper_layout_markdown(rows: list[dict]) -> str:
    """The table in the paper's layout: one row per metric pair and dataset, one column per method, each cell
    `ours / paper`."""
    names = [name for name, _, _ in METHODS.values()]
    lines = [
        "## In the paper's layout: ours / paper",
        "",
        "| Metric | Dataset | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    cells = {(row["dataset"], row["method"]): row for row in rows}
    for title, first, second in PAPER_LAYOUT:
        for dataset in datasets:
            entries = [cells[dataset, name] for name in names]
            cell_texts = [
                f"{pair(row, 'ours', first, second)} / {pair(row, 'paper', first, second)}" for row in entries
            ]
            lines.append(f"| {title} | {dataset} | " + " | ".join(cell_texts) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__, BENCHMARKS)
    add_method_arguments(parser)
    args = parser.parse_args(argv)
    reproduction = Reproduction(args, "table1")
    benchmarks = reproduction.given(BENCHMARKS)
    clip_baseline = reproduction.clip_baseline() if "clip" in args.methods else None
    rows = []
    for benchmark in benchmarks:
        trained_on = paper_name(training_benchmark(benchmark))
        for method, (name, setting, trained) in METHODS.items():
            ours, run = run_method(reproduction, method, benchmark, clip_baseline)
            label = {"dataset": paper_name(benchmark), "method": name, "trained_on": trained_on if trained else "-"}
            rows.append(comparison_row({**label, "run": run}, ours, paper_row(1, paper_name(benchmark), setting)))
    if len(benchmarks) == len(BENCHMARKS):
        rows += [average_row(method, rows) for method in METHODS]
    notes = [
        "PRO: the `anomalyclip` AUPRO protocol. Evaluation folders: GenCLIP `<dataset>/`, the others "
        "`<method>/<dataset>/`; their `comparison_with_paper.md` holds the paper's per-class numbers, which are "
        "GenCLIP's (Tables 4–9), whatever the method.",
        "CLIP and CoOp: the baselines as defined in docs/baselines.md. CoOp is trained with GenCLIP's loss (Eq. 5) and "
        "the GenCLIP training settings of this run; its Average leaves out DTD-Synthetic, as the paper's does (the "
        f"paper has no CoOp numbers there). WinCLIP runs on {args.winclip_clip_model} at 240 px.",
        "AdaCLIP†: retrained by the GenCLIP authors; this package has no AdaCLIP port, so its rows hold the paper's "
        "numbers only.",
    ]
    reproduction.write(
        rows,
        "Table 1: zero-shot anomaly detection, dataset means (%)",
        notes,
        appendix=paper_layout_markdown(rows),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
