"""The Hub model card of a GenCLIP checkpoint (`genclip card`).

The card is `model_card_template.md` (package data, `string.Template` placeholders, no Jinja) filled with: YAML
metadata built with `huggingface_hub.ModelCardData` (licence, library, pipeline tag, tags, datasets, base model and a
`model-index` holding every metric of the given evaluation files), a results table beside the paper's numbers, usage
snippets, training details from the checkpoint's config and the trainer's `training_log.json`, limitations and the
paper's citation.

Evaluation files are JSON, values in percent unless noted; each gives one entry per dataset:
- dataset row (`metrics.reports.write_dataset_row`): `{"rows": [{"dataset": ..., "pixel_auroc": ..., ...}], ...}`;
- per-class table (`metrics.reports.write_per_class_table`): its `"Mean"` row;
- comparison with the paper (`metrics.reports.write_comparison`): its `"ours_mean"` (the mean over all our classes;
  files written before that key existed: the `<metric>_ours` values of the `"Mean"` row);
- raw results (`AnomalyMetricAccumulator.compute()` or `genclip evaluate`'s results.json, values in [0, 1]): its
  `"mean"`.
The dataset is the row's `"dataset"`, else a top-level `"dataset"` key, else the one given as `DATASET=PATH`.
A folder written by `genclip evaluate` stands for its results.json.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from .benchmark_registry import BENCHMARK_REGISTRY, find_benchmark, paper_dataset_name
from .configuration_genclip import CLIP_VIT_L_14_336, GenCLIPConfig
from .metrics.accumulator import METRIC_NAMES
from .metrics.reports import METRIC_HEADERS, markdown_cell, paper_results

DEFAULT_BASE_MODEL = "openai/clip-vit-large-patch14-336"
DEFAULT_LICENSE = "apache-2.0"
# The Hub has no anomaly-detection task; the per-pixel anomaly map makes segmentation the closest listed one.
DEFAULT_PIPELINE_TAG = "image-segmentation"
TAGS = ["anomaly-detection", "zero-shot", "zero-shot-anomaly-detection", "genclip", "clip", "industrial-inspection"]
TEMPLATE_NAME = "model_card_template.md"
TRAINING_LOG_NAME = "training_log.json"
EVALUATION_RESULTS_NAME = "results.json"
# model-index: pixel metrics are reported as a segmentation task, image metrics as a classification task.
_MODEL_INDEX_METRICS = {
    "pixel_auroc": ("image-segmentation", "Zero-shot anomaly segmentation", "roc_auc", "Pixel AUROC (%)"),
    "aupro": ("image-segmentation", "Zero-shot anomaly segmentation", "aupro", "PRO / AUPRO, FPR <= 0.3 (%)"),
    "image_auroc": ("image-classification", "Zero-shot anomaly detection", "roc_auc", "Image AUROC (%)"),
    "image_ap": ("image-classification", "Zero-shot anomaly detection", "average_precision", "Image AP (%)"),
}
_MEAN_ROW = "mean"
# Trainer arguments shown in the card, with the value shown when the log lacks one.
_LOGGED_ARGUMENTS = {
    "learning_rate": None,
    "epochs": None,
    "batch_size": None,
    "gradient_accumulation_steps": 1,
    "seed": None,
    "mixed_precision": None,
    "adam_betas": None,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class DatasetMetrics:
    """One dataset's mean metrics in percent (`None` where undefined), as read from an evaluation file."""

    dataset: str
    metrics: dict[str, float | None]
    aupro_mode: str | None = None
    source: str = ""

    @property
    def display_name(self) -> str:
        return _display_name(self.dataset)

    @property
    def dataset_id(self) -> str:
        return _dataset_id(self.dataset)


def _dataset_id(dataset: str) -> str:
    """A benchmark's dataset id for the metadata ("MVTec" -> "mvtec_ad"); other names as a lower-case slug."""
    benchmark = find_benchmark(dataset)
    return re.sub(r"[^a-z0-9]+", "_", dataset.lower()).strip("_") if benchmark is None else benchmark.card_dataset_id


def _display_name(dataset: str) -> str:
    """A benchmark's display name ("MVTec" -> "MVTec-AD"); other names unchanged."""
    benchmark = find_benchmark(dataset)
    return dataset if benchmark is None else benchmark.display_name


def load_metrics(path: str | Path, dataset: str | None = None) -> list[DatasetMetrics]:
    """Read one evaluation JSON (formats in the module docstring).

    Args:
        path: the JSON file, or a `genclip evaluate` output folder (its results.json is read).
        dataset: dataset name for files that do not name it (per-class tables, raw results); overrides the file's
            name when the file holds one dataset.
    Returns:
        One [`DatasetMetrics`] per dataset in the file.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / EVALUATION_RESULTS_NAME).is_file():
            raise FileNotFoundError(f"Evaluation folder {str(path)!r} has no {EVALUATION_RESULTS_NAME}.")
        path = path / EVALUATION_RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"Evaluation file {str(path)!r} does not exist.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Evaluation file {str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"Evaluation file {str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    aupro_mode = data.get("aupro_mode")
    rows = data.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(row, dict) and "dataset" in row for row in rows):
        entries = [(row["dataset"], _metric_values(row, "", 1.0, path)) for row in rows]
    elif isinstance(rows, list) and any(isinstance(row, dict) and "class" in row for row in rows):
        mean_rows = [row for row in rows if str(row.get("class", "")).lower() == _MEAN_ROW]
        if not mean_rows:
            raise ValueError(f"Evaluation file {str(path)!r} has per-class rows but no 'Mean' row.")
        if isinstance(data.get("ours_mean"), dict):
            entries = [(data.get("dataset"), _metric_values(data["ours_mean"], "", 1.0, path))]
        else:
            suffix = "_ours" if f"{METRIC_NAMES[0]}_ours" in mean_rows[0] else ""
            entries = [(data.get("dataset"), _metric_values(mean_rows[0], suffix, 1.0, path))]
    elif isinstance(data.get("mean"), dict):
        entries = [(data.get("dataset"), _metric_values(data["mean"], "", 100.0, path))]
    else:
        raise ValueError(
            f"Evaluation file {str(path)!r} is none of the accepted formats: a dataset row, per-class table or "
            "comparison JSON of genclip_hf.metrics.reports (a 'rows' list) or raw results (a 'mean' object)."
        )
    if dataset is not None:
        if len(entries) != 1:
            raise ValueError(f"Evaluation file {str(path)!r} holds {len(entries)} datasets; do not name one for it.")
        entries = [(dataset, entries[0][1])]
    results = []
    for name, values in entries:
        if not name:
            raise ValueError(f"Evaluation file {str(path)!r} does not name its dataset; give it as DATASET={path}.")
        results.append(DatasetMetrics(paper_dataset_name(str(name)), values, aupro_mode, str(path)))
    return results


def parse_metrics_argument(text: str) -> list[DatasetMetrics]:
    """`PATH` or `DATASET=PATH` (for files that do not name their dataset) -> [`load_metrics`]."""
    dataset, separator, path = text.partition("=")
    if separator and not Path(text).exists():
        return load_metrics(path, dataset.strip() or None)
    return load_metrics(text)


def _metric_values(row: dict, suffix: str, scale: float, path: Path) -> dict[str, float | None]:
    values = {}
    for metric in METRIC_NAMES:
        key = metric + suffix
        if key not in row:
            expected = [name + suffix for name in METRIC_NAMES]
            raise ValueError(f"Evaluation file {str(path)!r} lacks {key!r}; expected {expected}.")
        value = row[key]
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"Evaluation file {str(path)!r}: {key} must be a number or null, got {value!r}.")
        values[metric] = None if value is None or math.isnan(value) else round(float(value) * scale, 2)
    return values


def _collect_metrics(metrics: Sequence[str | Path | DatasetMetrics]) -> list[DatasetMetrics]:
    collected: dict[str, DatasetMetrics] = {}
    for item in metrics:
        entries = [item] if isinstance(item, DatasetMetrics) else parse_metrics_argument(str(item))
        for entry in entries:
            if entry.dataset in collected:
                raise ValueError(
                    f"Two evaluation results for {entry.dataset}: {collected[entry.dataset].source!r} and "
                    f"{entry.source!r}; give one per dataset."
                )
            collected[entry.dataset] = entry
    return list(collected.values())


def read_training_log(path: str | Path) -> dict[str, Any] | None:
    """The trainer's summary (`training_log.json`: arguments, process count, per-epoch losses), or `None` if absent.

    `path` is the file or the checkpoint folder holding it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRAINING_LOG_NAME
    if not path.is_file():
        return None
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Training log {str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(log, dict):
        raise ValueError(f"Training log {str(path)!r} must hold a JSON object, got {type(log).__name__}.")
    return log


def _training_arguments(training_log: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer's arguments with its stringified `None`s dropped."""
    arguments = (training_log or {}).get("arguments") or {}
    return {key: value for key, value in arguments.items() if value is not None and value != "None"}


def _is_hub_id(name: Any) -> bool:
    return isinstance(name, str) and bool(_HUB_ID.match(name)) and not Path(name).exists()


def _has_vit_l_14_336_architecture(config: GenCLIPConfig) -> bool:
    clip = config.clip_config
    parts = {"": clip, "text_config": clip.text_config, "vision_config": clip.vision_config}
    for part, expected in CLIP_VIT_L_14_336.items():
        if isinstance(expected, dict):
            if any(getattr(parts[part], key) != value for key, value in expected.items()):
                return False
        elif getattr(clip, part) != expected:
            return False
    return True


def resolve_base_model(config: GenCLIPConfig, training_log: dict[str, Any] | None = None) -> str | None:
    """The backbone's Hub id: the trainer's `clip_model` or the config's CLIP name when either is a Hub id, else
    `openai/clip-vit-large-patch14-336` when the backbone has its architecture, else `None` (e.g. a local test CLIP).
    """
    candidates = (_training_arguments(training_log).get("clip_model"), config.clip_config._name_or_path)
    for candidate in candidates:
        if _is_hub_id(candidate):
            return candidate
    return DEFAULT_BASE_MODEL if _has_vit_l_14_336_architecture(config) else None


def _training_dataset(training_log: dict[str, Any] | None) -> str | None:
    benchmark = _training_arguments(training_log).get("benchmark")
    return paper_dataset_name(str(benchmark)) if benchmark else None


def _eval_results(results: list[DatasetMetrics]) -> list[EvalResult]:
    evaluations = []
    for result in results:
        for metric, (task_type, task_name, metric_type, metric_name) in _MODEL_INDEX_METRICS.items():
            value = result.metrics[metric]
            if value is None:
                continue
            evaluations.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=result.dataset_id,
                    dataset_name=result.display_name,
                    dataset_split="test",
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=value,
                    metric_config=f"{result.aupro_mode} protocol" if metric == "aupro" and result.aupro_mode else None,
                )
            )
    return evaluations


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _results_markdown(results: list[DatasetMetrics], training_dataset: str | None) -> str:
    if not results:
        return "No evaluation results were given when this card was written."
    header = ["Dataset", *METRIC_HEADERS.values(), "PRO protocol"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for result in results:
        name = result.display_name
        if result.dataset == training_dataset:
            name += " (training data: not zero-shot)"
        cells = [name, *(_cell(result.metrics[m]) for m in METRIC_NAMES), result.aupro_mode or "not recorded"]
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
    text = (
        "Mean over each dataset's classes, in percent, on the test split at the model's input size. "
        "The same numbers are in the `model-index` metadata.\n\n" + "\n".join(lines) + "\n"
    )
    paper = {row["dataset"]: row for row in paper_results(table=1, setting="GenCLIP")}
    compared = [result for result in results if result.dataset in paper]
    if compared:
        lines = ["| " + " | ".join(header[:-1]) + " |", "|" + "|".join(["---"] * (len(header) - 1)) + "|"]
        for result in compared:
            row = paper[result.dataset]
            cells = [result.display_name, *(_cell(row[m]) for m in METRIC_NAMES)]
            lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
        text += f"\nThe paper's GenCLIP numbers (Table 1; {_protocol_pairs()}):\n\n" + "\n".join(lines) + "\n"
    return text


def _protocol_pairs() -> str:
    """The zero-shot protocol's training data, e.g. "MVTec-AD trained on VisA; VisA, MPDD, ... trained on MVTec-AD"."""
    evaluated: dict[str, list[str]] = {}
    for benchmark in BENCHMARK_REGISTRY.values():
        evaluated.setdefault(benchmark.training_benchmark, []).append(benchmark.display_name)
    return "; ".join(
        f"{', '.join(names)} trained on {BENCHMARK_REGISTRY[training].display_name}"
        for training, names in evaluated.items()
    )


def _learnable_parameter_count(model_dir: Path) -> int | None:
    """Parameters outside the frozen CLIP backbone, counted from the safetensors headers (no weights loaded)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    count = 0
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():
                if not name.startswith("clip."):
                    count += math.prod(weights.get_slice(name).get_shape())
    return count


def _training_markdown(
    config: GenCLIPConfig, base_model: str | None, training_log: dict[str, Any] | None, model_dir: Path
) -> str:
    clip = config.clip_config
    backbone = (
        f"`{base_model}`"
        if base_model
        else f"a CLIP with a {clip.vision_config.num_hidden_layers}-layer, width-{clip.vision_config.hidden_size} "
        f"vision encoder (patch {clip.vision_config.patch_size}), not a published checkpoint"
    )
    lines = [
        f"- Backbone: {backbone}, frozen.",
        f"- Feature layers (1-based vision blocks): {', '.join(map(str, config.feature_layers))}; "
        f"input {config.image_size}×{config.image_size} px.",
        f"- Learnable prompts: {config.n_state_tokens} normal and {config.n_state_tokens} abnormal state token(s), "
        f"{config.n_query_tokens} general query tokens, a deep text prompt of length {config.text_prompt_length} "
        f"in {config.deep_prompt_depth} text layers (slot: {config.text_prompt_position.replace('_', ' ')}); "
        f"multi-layer vision prompts {'on' if config.use_vision_prompts else 'off'}.",
        f"- Position embeddings resized {config.position_interpolation} to the input grid; dice smoothing "
        f"{config.dice_smooth:g} (0 is the paper's Eq. 15 literally).",
    ]
    learnable = _learnable_parameter_count(model_dir)
    if learnable is not None:
        lines.append(f"- Trainable parameters: {learnable:,}.")
    arguments = _training_arguments(training_log)
    if not arguments:
        lines.append(f"- Data and optimisation: not recorded (no `{TRAINING_LOG_NAME}` beside the weights).")
        return "\n".join(lines)
    benchmark = arguments.get("benchmark")
    data = markdown_cell(_display_name(str(benchmark))) if benchmark else "a custom dataset"
    classes = arguments.get("classes")
    lines.append(
        f"- Training data: {data}, {markdown_cell(arguments.get('split', 'test'))} split"
        + (f", classes {markdown_cell(classes)}" if classes else ", all classes")
        + " (the zero-shot protocol trains on the test split of one benchmark and evaluates on the others)."
    )
    value = {key: markdown_cell(arguments.get(key, default)) for key, default in _LOGGED_ARGUMENTS.items()}
    lines.append(
        f"- Optimisation: Adam (betas {value['adam_betas']}), learning rate {value['learning_rate']}, "
        f"{value['epochs']} epochs, "
        f"global batch {value['batch_size']}, gradient accumulation {value['gradient_accumulation_steps']}, "
        f"seed {value['seed']}, mixed precision {value['mixed_precision']}, "
        f"{markdown_cell(training_log.get('num_processes', 1))} process(es); loss: focal + dice on every layer's "
        "score map (Eq. 5)."
    )
    history = training_log.get("history") or []
    if history and isinstance(history[-1], dict) and "loss" in history[-1]:
        last = history[-1]
        epoch = markdown_cell(last.get("epoch", len(history)))
        lines.append(f"- Final training loss: {float(last['loss']):.4f} (epoch {epoch}).")
    return "\n".join(lines)


def _inference_markdown(config: GenCLIPConfig) -> str:
    threshold = (
        f"{config.score_threshold}"
        if config.score_threshold is not None
        else f"{config.label_threshold()} (half the number of feature layers)"
    )
    return "\n".join(
        [
            f"- Class-name filtering: {'on' if config.use_cnf else 'off'}; generic term "
            f'"{markdown_cell(config.generic_term)}".',
            f"- Query-only branch: {'on' if config.use_query_branch else 'off'}; fusion weight of the "
            f"vision-enhanced branch α = {config.alpha} (Eq. 8).",
            f"- Gaussian smoothing σ = {config.sigma} px at the model resolution; image score from the top "
            f"N1 = {config.top_n1} and N2 = {config.top_n2} pixels (Eqs. 9–10).",
            f"- Image score threshold for the `label`: {threshold}.",
            "- Every setting is a config field and a pipeline argument, e.g. "
            '`detector(image, class_name="pcb", use_cnf=False, alpha=1.0)`.',
        ]
    )


def build_model_card(
    model_dir: str | Path,
    metrics: Sequence[str | Path | DatasetMetrics] = (),
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    training_log: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
    datasets: Sequence[str] | None = None,
    pipeline_tag: str = DEFAULT_PIPELINE_TAG,
) -> ModelCard:
    """The Hub model card of the checkpoint in `model_dir`.

    Args:
        model_dir: a saved GenCLIP checkpoint (config.json and weights).
        metrics: evaluation JSON paths (or `DATASET=PATH`, or [`DatasetMetrics`]); at most one per dataset.
        repo_id: Hub repo id shown in the usage snippets (default: a placeholder).
        model_name: title and `model-index` name (default: the repo name, else the folder name).
        training_log: the trainer's `training_log.json` (default: the one in `model_dir`, if any).
        license: Hub licence id of the weights.
        datasets: Hub dataset ids of the training data (default: the training benchmark's name from the log).
        pipeline_tag: Hub task of the model.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{str(model_dir)!r} is not a saved GenCLIP checkpoint: it has no config.json.")
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    if model_type != GenCLIPConfig.model_type:
        raise ValueError(
            f"{str(model_dir)!r} holds a {model_type!r} model; model cards and Hub uploads are written for GenCLIP "
            "checkpoints only (other methods' folders load from a local path or with save_pretrained/push_to_hub)."
        )
    config = GenCLIPConfig.from_pretrained(model_dir)
    log = read_training_log(training_log if training_log is not None else model_dir)
    if training_log is not None and log is None:
        raise FileNotFoundError(f"Training log {str(training_log)!r} does not exist.")
    if repo_id is not None and not _HUB_ID.match(repo_id):
        raise ValueError(f"repo_id must be a Hub id like 'user/model', got {repo_id!r}.")
    if not isinstance(license, str) or not license.strip() or any(character.isspace() for character in license):
        raise ValueError(f"license must be a Hub licence id such as 'apache-2.0' or 'mit', got {license!r}.")
    results = _collect_metrics(metrics)
    base_model = resolve_base_model(config, log)
    training_dataset = _training_dataset(log)
    name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)
    if datasets is None:
        datasets = [_dataset_id(training_dataset)] if training_dataset else None
    card_data = ModelCardData(
        model_name=name,
        base_model=base_model,
        datasets=list(datasets) if datasets else None,
        eval_results=_eval_results(results) or None,
        library_name="transformers",
        license=license,
        pipeline_tag=pipeline_tag,
        tags=list(TAGS),
    )
    trained_on = markdown_cell(_display_name(training_dataset)) if training_dataset else None
    evaluated_on = ", ".join(markdown_cell(result.display_name) for result in results)
    summary = (
        (f"Trained on {trained_on}. " if trained_on else "")
        + (f"Evaluated on {evaluated_on}." if evaluated_on else "Not evaluated yet.")
    ).strip()
    template = Template(resources.files("genclip_hf").joinpath(TEMPLATE_NAME).read_text())
    text = template.substitute(
        metadata=card_data.to_yaml(),
        title=markdown_cell(name),
        summary=summary,
        results=_results_markdown(results, training_dataset),
        repo_id=repo_id or "<user>/<repo>",
        training=_training_markdown(config, base_model, log, model_dir),
        inference=_inference_markdown(config),
        grid_size=config.image_size // config.clip_config.vision_config.patch_size,
        image_size=config.image_size,
        generic_term=markdown_cell(config.generic_term),
    )
    return ModelCard(text)


def write_model_card(model_dir: str | Path, out: str | Path, **kwargs: Any) -> Path:
    """Write [`build_model_card`]`(model_dir, **kwargs)` to `out` (e.g. `README.md`); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    build_model_card(model_dir, **kwargs).save(out)
    return out


__all__ = [
    "DEFAULT_BASE_MODEL",
    "DatasetMetrics",
    "build_model_card",
    "load_metrics",
    "parse_metrics_argument",
    "read_training_log",
    "resolve_base_model",
    "write_model_card",
]
