"""Shared parts of the paper-reproduction scripts: arguments, the `genclip train` / `genclip evaluate` command lines,
running them (or printing them with `--dry-run`) and result tables beside the paper's numbers.

Layout under `--out` (default `reproduce_runs/`), shared by all scripts so that a model is trained once:

    models/<training benchmark>[-<variant>][-<ablations>]/ `genclip train` outputs (resumable)
    <script>[-<ablations>]/<evaluation>/                  `genclip evaluate` outputs (resumable, per class)
    <script>[-<ablations>]/results.{md,csv,json}          the script's table: ours, the paper's and the difference

Every evaluation uses the `anomalyclip` AUPRO protocol, the one behind the paper's PRO numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genclip_hf.benchmark_registry import BENCHMARK_REGISTRY
from genclip_hf.metrics.reports import METRIC_HEADERS, paper_results
from genclip_hf.training.arguments import MIXED_PRECISION_CHOICES

METRICS = tuple(METRIC_HEADERS)
PAPER_LAYERS = [6, 12, 18, 24]
# The benchmarks of `genclip train/evaluate` in the paper's order; names, root options and the zero-shot protocol's
# training benchmark (MVTec-AD is evaluated with a model trained on VisA, every other dataset with one trained on
# MVTec-AD) all come from the registry.
BENCHMARKS = list(BENCHMARK_REGISTRY)
# Ablations of DESIGN.md §1's open choices: GenCLIP config fields set with `--config KEY=VALUE`, and optimisation
# flags of `genclip train` (every trained method). Unset, `genclip train` keeps its defaults (the references').
CONFIG_ABLATIONS = ("text_prompt_position", "position_interpolation", "dice_smooth")
TRAINING_ABLATIONS = ("learning_rate", "adam_betas", "mixed_precision")


def paper_name(benchmark: str) -> str:
    """The paper's name of `benchmark` ("mvtec" -> "MVTec")."""
    return BENCHMARK_REGISTRY[benchmark].paper_name


def training_benchmark(benchmark: str) -> str:
    """The benchmark the protocol trains on before evaluating `benchmark`."""
    return BENCHMARK_REGISTRY[benchmark].training_benchmark


def build_parser(description: str, datasets: Sequence[str]) -> argparse.ArgumentParser:
    """The arguments every script takes: the roots of `datasets` (and of their training benchmarks), training and
    evaluation settings (paper defaults) and `--dry-run`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    roots = parser.add_argument_group("dataset roots (native layouts, as distributed)")
    needed = sorted({*datasets, *(training_benchmark(name) for name in datasets)}, key=BENCHMARKS.index)
    for name in needed:
        benchmark = BENCHMARK_REGISTRY[name]
        roots.add_argument(
            benchmark.root_flag,
            dest=name,
            metavar="ROOT",
            help=f"{benchmark.display_name} root, e.g. {benchmark.default_root}",
        )
    if "sdd" in needed:
        roots.add_argument("--sdd-variant", default="whole", help="SDD: whole (default) or adaclip_crops")
    training = parser.add_argument_group("training (paper defaults)")
    training.add_argument("--clip-model", default="openai/clip-vit-large-patch14-336", help="CLIP backbone")
    training.add_argument("--epochs", type=int, default=15)
    training.add_argument("--batch-size", type=int, default=8)
    training.add_argument("--image-size", type=int, default=518)
    training.add_argument(
        "--feature-layers", type=int, nargs="+", default=PAPER_LAYERS, help="1-based vision layers (6 12 18 24)"
    )
    training.add_argument("--seed", type=int, default=0)
    ablations = parser.add_argument_group(
        "ablations of DESIGN.md §1's open choices (unset: genclip train's defaults; models go to a tagged folder)"
    )
    ablations.add_argument("--text-prompt-position", choices=["after_sot", "before_eot"], help="GenCLIP's [D] slot")
    ablations.add_argument("--position-interpolation", choices=["bicubic", "bilinear"], help="position-table resize")
    ablations.add_argument("--dice-smooth", type=float, help="dice smoothing s (0: Eq. 15 literally)")
    ablations.add_argument("--learning-rate", type=float, help="Adam learning rate")
    ablations.add_argument("--adam-betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam betas")
    ablations.add_argument("--mixed-precision", choices=MIXED_PRECISION_CHOICES, help="training precision")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default="reproduce_runs", help="models and results (default: reproduce_runs)")
    run.add_argument("--eval-batch-size", type=int, default=8, help="images per forward pass in evaluation")
    run.add_argument("--heatmaps-per-class", type=int, default=3, help="heatmaps per kind and class (0: none)")
    run.add_argument("--device", help='evaluation device, e.g. "cuda" (default: transformers picks)')
    run.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the genclip commands in this Python process (saves the start-up of one process per command)",
    )
    return parser


class Reproduction:
    """Trains and evaluates through the `genclip` command line, or only prints the commands (`--dry-run`)."""

    def __init__(self, args: argparse.Namespace, name: str):
        self.args = args
        self.out = Path(args.out)
        tag = self.ablations("genclip")[1]
        self.results_dir = self.out / (f"{name}-{tag}" if tag else name)
        self._trained: set[Path] = set()

    def root(self, benchmark: str) -> str:
        """The root given for `benchmark`; a placeholder in a dry run, else an error naming the option."""
        root = getattr(self.args, benchmark, None)
        if root is None:
            option = BENCHMARK_REGISTRY[benchmark].root_flag
            if self.args.dry_run:
                return f"<{option[2:]}-root>"
            display_name = BENCHMARK_REGISTRY[benchmark].display_name
            raise SystemExit(f"{display_name} is needed here: give its root with {option} ROOT.")
        return root

    def given(self, datasets: Sequence[str]) -> list[str]:
        """The datasets whose root (and whose training benchmark's root) was given; all of them in a dry run."""
        if self.args.dry_run:
            return list(datasets)
        chosen = [
            name for name in datasets if getattr(self.args, name) and getattr(self.args, training_benchmark(name))
        ]
        if not chosen:
            options = ", ".join(BENCHMARK_REGISTRY[name].root_flag for name in datasets)
            raise SystemExit(f"Give the roots of the datasets to evaluate ({options}) and of their training data.")
        return chosen

    def train(
        self, benchmark: str, feature_layers: Sequence[int] | None = None, variant: str = "", method: str = "genclip"
    ) -> Path:
        """Train `method` on `benchmark` (its test split, the zero-shot protocol) once per script; `genclip train
        --resume` continues an interrupted run and returns at once from a finished one. GenCLIP models live in
        `models/<benchmark>[-<variant>]`, other methods' in `models/<method>-<benchmark>` (they have no feature-layer
        choice)."""
        ablation_options, ablation_tag = self.ablations(method)
        name = benchmark + "".join(f"-{part}" for part in (variant, ablation_tag) if part)
        model_dir = self.out / "models" / (name if method == "genclip" else f"{method}-{name}")
        if model_dir in self._trained:
            return model_dir
        self._trained.add(model_dir)
        method_options = ["--method", method] if method != "genclip" else []
        layers = list(feature_layers or self.args.feature_layers) if method == "genclip" else []
        command = [
            "genclip", "train", *method_options,
            "--benchmark", benchmark,
            "--data", self.root(benchmark),
            "--clip-model", self.args.clip_model,
            "--epochs", str(self.args.epochs),
            "--batch-size", str(self.args.batch_size),
            "--image-size", str(self.args.image_size),
            *(["--feature-layers", *map(str, layers)] if layers else []),
            "--seed", str(self.args.seed),
            *ablation_options,
            "--output-dir", str(model_dir),
            "--resume",
        ]  # fmt: skip
        self.run(command)
        return model_dir

    def ablations(self, method: str) -> tuple[list[str], str]:
        """`genclip train` options of the ablations given (config fields for GenCLIP only) and the tag naming them in
        the model folder, e.g. `(["--config", "dice_smooth=0.0"], "dice_smooth=0.0")`; `([], "")` when none is."""
        options: list[str] = []
        tags: list[str] = []
        for name in (CONFIG_ABLATIONS if method == "genclip" else ()) + TRAINING_ABLATIONS:
            value = getattr(self.args, name)
            if value is None:
                continue
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            if name in CONFIG_ABLATIONS:
                options += ["--config", f"{name}={text}"]
            else:
                options += ["--" + name.replace("_", "-"), *text.split()]
            tags.append(f"{name}={text.replace(' ', ',')}")
        return options, "-".join(tags)

    def clip_baseline(self) -> Path:
        """The training-free CLIP baseline on `--clip-model` at `--image-size`, saved with its processor to
        `models/clip-baseline-<size>` (kept while it was made from the same CLIP at the same size, so that evaluations
        resume). It is written in this process; a dry run only says where."""
        model_dir = self.out / "models" / f"clip-baseline-{self.args.image_size}"
        clip_model, size = self.args.clip_model, self.args.image_size
        self.note(f"CLIP baseline, training-free: CLIPBaselineModel.from_clip({clip_model!r}, image_size={size})")
        self.note(f"  saved with its processor to {model_dir}")
        if self.args.dry_run or _saved_clip_baseline(model_dir) == (clip_model, size):
            return model_dir
        from genclip_hf import AnomalyDetectionProcessor, CLIPBaselineModel

        model = CLIPBaselineModel.from_clip(clip_model, image_size=size)
        model.save_pretrained(model_dir)
        AnomalyDetectionProcessor.from_clip(clip_model, config=model.config).save_pretrained(model_dir)
        return model_dir

    def evaluate(self, model_dir: Path | str, benchmark: str, name: str, switches: Sequence[str] = ()) -> dict | None:
        """`genclip evaluate` of `model_dir` (a saved detector, or a plain CLIP: WinCLIP zero-shot) on `benchmark` into
        `<script>/<name>`; its results.json (None: dry run)."""
        out_dir = self.results_dir / name
        command = [
            "genclip", "evaluate",
            "--model", str(model_dir),
            "--benchmark", benchmark,
            "--root", self.root(benchmark),
            "--out", str(out_dir),
            "--aupro-mode", "anomalyclip",
            "--batch-size", str(self.args.eval_batch_size),
            "--heatmaps-per-class", str(self.args.heatmaps_per_class),
        ]  # fmt: skip
        if benchmark == "sdd":
            command += ["--variant", self.args.sdd_variant]
        if self.args.device:
            command += ["--device", self.args.device]
        self.run(command + list(switches))
        if self.args.dry_run:
            return None
        return json.loads((out_dir / "results.json").read_text())

    def note(self, text: str) -> None:
        """Print a line that is not a command (`# text`), in a dry run too."""
        print(f"# {text}", flush=True)

    def run(self, command: list[str]) -> None:
        """Print a `genclip` command; unless in a dry run, run it with this Python and stop if it fails."""
        print(shlex.join(command), flush=True)
        if self.args.dry_run:
            return
        if self.args.in_process:
            from genclip_hf.cli import main

            status = main(command[1:])
        else:
            status = subprocess.run([sys.executable, "-m", "genclip_hf.cli", *command[1:]]).returncode
        if status != 0:
            raise SystemExit(f"command failed with exit status {status}: {shlex.join(command)}")

    def write(
        self, rows: list[dict[str, Any]], title: str, notes: Sequence[str] = (), appendix: str = ""
    ) -> list[Path] | None:
        """Write the script's table to `<script>/results.{md,csv,json}` and print it (nothing in a dry run);
        `appendix` is more Markdown after the notes (in results.md only)."""
        if self.args.dry_run:
            return None
        self.results_dir.mkdir(parents=True, exist_ok=True)
        markdown = f"# {title}\n\n" + comparison_markdown(rows) + "".join(f"\n{note}\n" for note in notes)
        markdown += f"\n{appendix}" if appendix else ""
        paths = [self.results_dir / f"results.{suffix}" for suffix in ("md", "csv", "json")]
        paths[0].write_text(markdown)
        with open(paths[1], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        paths[2].write_text(json.dumps({"title": title, "notes": list(notes), "rows": rows}, indent=2) + "\n")
        print(markdown)
        return paths


def _saved_clip_baseline(model_dir: Path) -> tuple[str, int] | None:
    """`(CLIP it was made from, image size)` of a saved CLIP baseline folder, or None when there is none."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    return config.get("clip_config", {}).get("_name_or_path"), config.get("image_size")


def percent(values: dict[str, float | None]) -> dict[str, float | None]:
    """Metrics in [0, 1] (None or nan when undefined) -> percent with 2 decimals."""
    converted = {}
    for metric in METRICS:
        value = values.get(metric)
        converted[metric] = None if value is None or math.isnan(value) else round(100 * value, 2)
    return converted


def paper_row(table: int, dataset: str, setting: str | None = None, class_name: str = "mean") -> dict | None:
    """The paper's metrics (percent) for one row of `table`, or None when the paper has no such row."""
    rows = paper_results(table=table, dataset=dataset, setting=setting)
    rows = [row for row in rows if row["class_name"] == class_name]
    return {metric: rows[0][metric] for metric in METRICS} if rows else None


def comparison_row(label: dict[str, str], ours: dict | None, paper: dict | None) -> dict[str, Any]:
    """`label` columns, then `<metric>_ours`, `<metric>_paper` and `<metric>_diff` (ours - paper) per metric."""
    row: dict[str, Any] = dict(label)
    for metric in METRICS:
        mine = None if ours is None else ours[metric]
        theirs = None if paper is None else paper[metric]
        difference = None if mine is None or theirs is None else round(mine - theirs, 2)
        row.update({f"{metric}_ours": mine, f"{metric}_paper": theirs, f"{metric}_diff": difference})
    return row


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """`comparison_row`s as a Markdown table with `ours / paper / Δ` per metric."""
    labels = [key for key in rows[0] if not key.endswith(("_ours", "_paper", "_diff"))]
    header = [label.replace("_", " ").capitalize() for label in labels]
    header += [f"{METRIC_HEADERS[metric]} ours / paper / Δ" for metric in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        cells = [str(row[label]) for label in labels]
        for metric in METRICS:
            ours, paper, difference = (row[f"{metric}_{part}"] for part in ("ours", "paper", "diff"))
            cells.append(f"{_cell(ours)} / {_cell(paper)} / {'n/a' if difference is None else f'{difference:+.2f}'}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
