r"""Paper Fig. 6: every non-empty combination of the four feature layers, on VisA with the model trained on
MVTec-AD with all four. The combinations are inference-time subsets of that one model (`--feature-layers`), scored
with the vision-enhanced branch only; a last row adds the query-only branch to all four layers, as the paper's
analysis does (Appendix C.1).

    python examples/reproduce/fig6.py --mvtec /data/mvtec_anomaly_detection --visa /data/VisA_20220922

The paper gives Fig. 6 as a chart only, without numbers, so only two rows have paper numbers: all four layers
without the query-only branch (Table 2, "MVP") and with it (Table 2, "MVP + GQP").
"""

from __future__ import annotations

import itertools
import sys

from common import Reproduction, build_parser, comparison_row, paper_name, paper_row, percent


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__doc__, ["visa"]).parse_args(argv)
    reproduction = Reproduction(args, "fig6")
    reproduction.given(["visa"])
    layers = sorted(args.feature_layers)
    model_dir = reproduction.train("mvtec")
    combinations = [list(c) for size in range(1, len(layers) + 1) for c in itertools.combinations(layers, size)]
    runs = [(combination, False) for combination in combinations] + [(layers, True)]
    rows = []
    for combination, query_branch in runs:
        name = "layers_" + "_".join(map(str, combination)) + ("_query" if query_branch else "")
        switches = ["--feature-layers", *map(str, combination)] + ([] if query_branch else ["--no-query-branch"])
        results = reproduction.evaluate(model_dir, "visa", name, switches)
        if results is None:
            continue
        paper = None
        if combination == layers:
            paper = paper_row(2, paper_name("visa"), "MVP + GQP" if query_branch else "MVP")
        label = {"layers": ", ".join(map(str, combination)), "query_branch": "on" if query_branch else "off"}
        rows.append(comparison_row(label, percent(results["mean"]), paper))
    reproduction.write(
        rows,
        "Fig. 6: feature-layer combinations on VisA (%)",
        [
            "Fig. 6 has no numbers in the paper's text; the all-layer rows are compared with Table 2.",
            "PRO: the `anomalyclip` AUPRO protocol.",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
