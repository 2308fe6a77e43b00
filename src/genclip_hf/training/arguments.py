"""The settings of one training run (`TrainingArguments`) and their command-line options, shared by `genclip train`
and `examples/train.py`. Defaults are the paper's (B.4) and the references' where the paper is silent (DESIGN §1)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields

from ..configuration_genclip import DEFAULT_CLIP_MODEL, PAPER_IMAGE_SIZE
from ..detection import AnomalyDetectorMixin, registered_detectors
from ..settings import SETTINGS

MIXED_PRECISION_CHOICES = ("no", "bf16", "fp16")
SCALED_WITH_IMAGE_SIZE = {"sigma": 1, "top_n1": 2, "top_n2": 2}
"""Config fields in pixels of the model input: the power of `image_size / 518` they scale with (side or area)."""


@dataclass
class TrainingArguments:
    """Settings of one training run; the defaults are the paper's (B.4) and DESIGN §1's.

    Args:
        output_dir: where the trained model, processor, `training_log.json` and `checkpoints/` are written.
        data: training data, one or more `[SOURCE=]PATH`: a benchmark root (`mvtec=/data/mvtec`, or a plain path with
            `benchmark`), a folder of Parquet shards, a `save_to_disk` folder, an image folder or a `meta.json`
            (recognised from the path). Several sources are concatenated. Not needed when `train` gets a dataset.
        benchmark: the source of `data` entries that name none ("mvtec", "visa", ...); default: recognised.
        split: benchmark split; the zero-shot protocol trains on "test".
        classes: keep only these class names.
        method: the detector to train ("genclip", or another registered trainable method).
        clip_model: Hub id or folder of the CLIP backbone.
        init_from: a saved checkpoint of `method` whose weights the run starts from (instead of a fresh model on
            `clip_model`).
        epochs, batch_size: training length and global batch (split across processes).
        learning_rate: Adam's rate; default: the method's (`training_defaults`; GenCLIP 4e-5, AnomalyCLIP 1e-3).
        adam_betas: Adam's `(beta1, beta2)`; (0.5, 0.999) as in the AnomalyCLIP and AdaCLIP training code.
        image_size: model input side (default: the method's, 518 for the paper's methods). Away from 518, `sigma`,
            `top_n1` and `top_n2` are scaled with the map (side for sigma, area for N1/N2) unless set in
            `config_overrides`; the saved config holds the scaled values.
        feature_layers: 1-based vision layers; default: the method's.
        config_overrides: any other config field of the method (e.g. `{"use_vision_prompts": False}`); unknown
            names are refused.
        gradient_accumulation_steps: batches per optimizer step.
        seed: seeds the prompt initialisation and the data order.
        mixed_precision: "no" (fp32, the paper protocol; default), "bf16" or "fp16" (opt-in for speed).
        feature_cache: reuse frozen features from `feature_cache_dir` (computed once per image).
        feature_cache_dir: default `$GENCLIP_FEATURE_CACHE` or `<HF_HOME>/genclip_hf/features`.
        resume: continue from the last complete checkpoint in `<output_dir>/checkpoints` (a fresh start if none).
        report_to: Accelerate tracker(s): "tensorboard", "wandb", "all", ...; `None` logs to stdout only.
        num_workers: DataLoader worker processes.
    """

    output_dir: str
    data: list[str] = field(default_factory=list)
    benchmark: str | None = None
    split: str = "test"
    classes: list[str] | None = None
    method: str = "genclip"
    clip_model: str = DEFAULT_CLIP_MODEL
    init_from: str | None = None
    epochs: int = 15
    batch_size: int = 8
    learning_rate: float | None = None
    adam_betas: tuple[float, float] = (0.5, 0.999)
    image_size: int | None = None
    feature_layers: list[int] | None = None
    config_overrides: dict = field(default_factory=dict)
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str = "no"
    feature_cache: bool = True
    feature_cache_dir: str | None = None
    resume: bool = False
    report_to: str | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not str(self.output_dir).strip():
            raise ValueError("output_dir must name a folder, got '' (an empty path is the current folder).")
        if isinstance(self.data, str):
            self.data = [self.data]
        for name in ("epochs", "batch_size", "gradient_accumulation_steps"):
            _check_integer(name, getattr(self, name), minimum=1)
        if self.image_size is not None:
            _check_integer("image_size", self.image_size, minimum=1)
        _check_integer("num_workers", self.num_workers, minimum=0)
        _check_integer("seed", self.seed, minimum=0)
        if self.learning_rate is None:
            self.learning_rate = self.method_class.training_defaults.get("learning_rate", 4e-5)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}.")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a positive finite number, got {self.learning_rate!r}.")
        betas = tuple(self.adam_betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}.")
        self.adam_betas = (float(betas[0]), float(betas[1]))
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {self.mixed_precision!r}.")
        if self.feature_layers is not None:
            self.feature_layers = SETTINGS["feature_layers"].validate(self.feature_layers)
        config_class = self.method_class.config_class
        known = {item.name for item in dataclasses.fields(config_class)} - {"clip_config"}
        reserved = {"image_size", "feature_layers"} & set(self.config_overrides)
        if reserved:
            raise ValueError(f"Set {sorted(reserved)} with their own arguments, not in config_overrides.")
        for name in self.config_overrides:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{config_class.__name__} has no field {name!r}.{hint}")

    @property
    def method_class(self) -> type:
        """The model class of `method` (a registered detector with the training contract)."""
        detectors = registered_detectors()
        if self.method not in detectors:
            raise ValueError(f"method must be one of {sorted(detectors)}, got {self.method!r}.")
        model_class = detectors[self.method]
        if not is_trainable(model_class):
            trainable = sorted(name for name, cls in detectors.items() if is_trainable(cls))
            raise ValueError(f"{self.method} has nothing to train (training-free); trainable methods: {trainable}.")
        return model_class

    def model_config_overrides(self) -> dict:
        """The config fields the run sets: overrides, `image_size`, `feature_layers`, and the pixel-sized fields
        scaled to `image_size` (see `SCALED_WITH_IMAGE_SIZE`)."""
        overrides = dict(self.config_overrides)
        if self.image_size is not None:
            overrides["image_size"] = self.image_size
        if self.feature_layers is not None:
            overrides["feature_layers"] = list(self.feature_layers)
        defaults = {item.name: item.default for item in dataclasses.fields(self.method_class.config_class)}
        ratio = overrides.get("image_size", defaults.get("image_size", PAPER_IMAGE_SIZE)) / PAPER_IMAGE_SIZE
        for name, power in SCALED_WITH_IMAGE_SIZE.items():
            if ratio != 1 and name in defaults and name not in self.config_overrides:
                scaled = defaults[name] * ratio**power
                overrides[name] = scaled if isinstance(defaults[name], float) else max(1, round(scaled))
        if overrides.get("top_n1", 0) >= overrides.get("top_n2", math.inf):
            overrides["top_n2"] = overrides["top_n1"] + 1
        return overrides

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainingArguments:
        """Build from the arguments added by [`add_training_arguments`]."""
        values = {item.name: getattr(namespace, item.name) for item in fields(cls) if hasattr(namespace, item.name)}
        values["feature_cache"] = not namespace.no_feature_cache
        values["config_overrides"] = dict(namespace.config_overrides or [])
        values["adam_betas"] = tuple(namespace.adam_betas)
        return cls(**values)


def is_trainable(model_class: type) -> bool:
    """Whether a detector class implements the training contract."""
    return model_class.training_loss is not AnomalyDetectorMixin.training_loss


def _check_integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training options (shared by `genclip train` and `examples/train.py`) to `parser`."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="[SOURCE=]PATH",
        help="training data; repeat for several sources: a benchmark root (mvtec=PATH), Parquet folder, save_to_disk "
        "folder, image folder or meta.json",
    )
    data.add_argument("--benchmark", help="source of --data entries that name none: mvtec, visa, mpdd, btad, sdd, ...")
    data.add_argument("--split", default="test", help="benchmark split (default: test, the zero-shot protocol)")
    data.add_argument("--classes", nargs="+", help="train on these class names only")
    model = parser.add_argument_group("model")
    model.add_argument("--method", default="genclip", help="detector to train (default: genclip)")
    model.add_argument(
        "--clip-model", default=DEFAULT_CLIP_MODEL, help=f"CLIP backbone (default: {DEFAULT_CLIP_MODEL})"
    )
    model.add_argument("--init-from", metavar="DIR", help="start from the weights of this saved checkpoint")
    model.add_argument(
        "--image-size", type=int, help=f"model input side (default: the method's, {PAPER_IMAGE_SIZE} for GenCLIP)"
    )
    model.add_argument("--feature-layers", type=int, nargs="+", help="1-based vision layers (default: the method's)")
    model.add_argument(
        "--config",
        dest="config_overrides",
        metavar="KEY=VALUE",
        action="append",
        type=_config_override,
        help="any other config field, e.g. --config use_vision_prompts=false (repeatable; unknown keys are refused)",
    )
    optimisation = parser.add_argument_group("optimisation (paper defaults)")
    optimisation.add_argument("--epochs", type=int, default=15, help="default: 15")
    optimisation.add_argument("--batch-size", type=int, default=8, help="global batch, split across processes (8)")
    optimisation.add_argument(
        "--learning-rate", type=float, help="Adam learning rate (default: the method's; GenCLIP 4e-5, AnomalyCLIP 1e-3)"
    )
    optimisation.add_argument(
        "--adam-betas", type=float, nargs=2, default=(0.5, 0.999), metavar=("B1", "B2"), help="default: 0.5 0.999"
    )
    optimisation.add_argument("--gradient-accumulation-steps", type=int, default=1, help="default: 1")
    optimisation.add_argument("--seed", type=int, default=0, help="prompt initialisation and data order (0)")
    optimisation.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION_CHOICES,
        default="no",
        help="no: fp32, the paper protocol (default); bf16/fp16: faster on a GPU",
    )
    runtime = parser.add_argument_group("run")
    runtime.add_argument("--output-dir", required=True, help="trained model, training_log.json and checkpoints/")
    runtime.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    runtime.add_argument("--no-feature-cache", action="store_true", help="recompute frozen features every epoch")
    runtime.add_argument("--feature-cache-dir", help="default: $GENCLIP_FEATURE_CACHE or <HF_HOME>/genclip_hf/features")
    runtime.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")
    runtime.add_argument("--report-to", help="Accelerate tracker(s): tensorboard, wandb, all, ...")
    return parser


def _config_override(text: str) -> tuple[str, object]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"--config takes KEY=VALUE, got {text!r}.")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


__all__ = ["MIXED_PRECISION_CHOICES", "TrainingArguments", "add_training_arguments", "is_trainable"]
