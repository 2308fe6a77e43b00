r"""Paper Tables 10-15: the generic term that replaces filtered class names (object, manufacture, product, item,
something), per dataset, with the zero-shot protocol of Table 1 (MVTec-AD with the VisA-trained model, the others
with the MVTec-AD-trained model). The term is an inference setting (`--generic-term`); the models are not retrained.

    python examples/reproduce/tables10_15.py --mvtec /data/mvtec_anomaly_detection --visa /data/VisA_20220922 \
        --mpdd /data/MPDD --btad /data/BTAD --sdd /data/KolektorSDD --dtd-synthetic /data/DTD-Synthetic

Datasets without a root are skipped.
"""

from __future__ import annotations

import sys

from common import (
    BENCHMARK_REGISTRY,
    Reproduction,
    build_parser,
    comparison_row,
    paper_name,
    paper_row,
    percent,
    training_benchmark,
)

TERMS = ["object", "manufacture", "product", "item", "something"]
# Benchmark -> its generic-term table, in the paper's table order.
PAPER_TABLES = {
    name: benchmark.generic_term_table
    for name, benchmark in sorted(BENCHMARK_REGISTRY.items(), key=lambda item: item[1].generic_term_table)
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__, list(PAPER_TABLES))
    parser.add_argument("--terms", nargs="+", default=TERMS, help="generic terms to compare (default: the paper's)")
    args = parser.parse_args(argv)
    reproduction = Reproduction(args, "tables10_15")
    rows = []
    for benchmark in reproduction.given(list(PAPER_TABLES)):
        model_dir = reproduction.train(training_benchmark(benchmark))
        for term in args.terms:
            results = reproduction.evaluate(model_dir, benchmark, f"{benchmark}/{term}", ["--generic-term", term])
            if results is None:
                continue
            paper = paper_row(PAPER_TABLES[benchmark], paper_name(benchmark), f"generic term: {term}")
            label = {"table": str(PAPER_TABLES[benchmark]), "dataset": paper_name(benchmark), "generic_term": term}
            rows.append(comparison_row(label, percent(results["mean"]), paper))
    reproduction.write(
        rows,
        "Tables 10-15: generic terms of class-name filtering, dataset means (%)",
        ["PRO: the `anomalyclip` AUPRO protocol."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
