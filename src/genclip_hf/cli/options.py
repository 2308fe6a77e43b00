"""Options several sub-commands share: the model, the device and the detection settings (derived from
`genclip_hf.settings`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..detection import DEFAULT_DETECTOR
from ..settings import PER_CALL_SETTINGS, SettingError, add_setting_arguments, settings_from_arguments

DECISIONS = ("threshold", "score_threshold")
DETECTION_SETTINGS = tuple(name for name in PER_CALL_SETTINGS if name not in DECISIONS)


def add_model_arguments(parser: argparse.ArgumentParser, default_model: bool = True) -> None:
    """`--model`, `--device`, `--batch-size` and one flag per detection setting."""
    if default_model:
        parser.add_argument(
            "--model",
            default=DEFAULT_DETECTOR,
            help=f"a saved detector or a plain CLIP (Hub id or folder; default: {DEFAULT_DETECTOR}, WinCLIP zero-shot)",
        )
    else:
        parser.add_argument("--model", required=True, help="a saved detector or a plain CLIP (Hub id or folder)")
    parser.add_argument("--device", help='e.g. "cpu", "cuda", "cuda:1" (default: transformers picks)')
    add_setting_arguments(parser, DETECTION_SETTINGS, "detection settings (default: the model's config)")


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """`--precision` and `--compile`: the fast inference paths of `load_detector` (pass [`precision_options`])."""
    from ..export.torch_fast import PRECISIONS

    group = parser.add_argument_group("speed")
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (exact, default); int8 = the faster int8 path (onnxruntime; a torch checkpoint is exported first), "
        "int8-onnx, int8-torch (CPU); fp16/bf16 (CUDA). An exported folder runs fp32 or int8.",
    )
    group.add_argument(
        "--compile", action="store_true", help="torch.compile the vision blocks (torch models; eager where it fails)"
    )


def precision_options(args: argparse.Namespace) -> dict:
    """`load_detector` keyword arguments of [`add_precision_arguments`]' flags."""
    return {"precision": args.precision, "compile": args.compile}


def detection_settings(args: argparse.Namespace) -> dict:
    """The detection settings given on the command line, validated."""
    return settings_from_arguments(args, DETECTION_SETTINGS)


def integer_at_least(minimum: int, flag: str | None = None) -> Callable[[str], int]:
    """The argparse type of a count >= `minimum` (0 or 1); its errors name `flag` when given (argparse already
    prefixes `argument --flag:`)."""
    kind = "positive" if minimum == 1 else "non-negative"
    prefix = f"{flag} must" if flag else "must"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{prefix} be a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{prefix} be a {kind} integer, got {value}")
        return value

    return parse


def positive_integer(flag: str) -> Callable[[str], int]:
    """The argparse type of a count >= 1 whose errors name `flag` (e.g. `--batch-size`, `--k-shot`)."""
    return integer_at_least(1, flag)


non_negative = integer_at_least(0)
"""A count >= 0 (`--seeds`, `--heatmaps-per-class`)."""

batch_size = positive_integer("--batch-size")
"""`--batch-size`: a positive integer."""


def output_path(text: str) -> str:
    """An output folder or file (`--out`): a non-empty path, since '' would write into the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder or file, got '' (an empty path is the current folder)")
    return text


def decision(name: str, args: argparse.Namespace) -> float | None:
    """`--threshold` / `--score-threshold` parsed and validated."""
    return settings_from_arguments(args, (name,)).get(name)


__all__ = [
    "DETECTION_SETTINGS",
    "SettingError",
    "add_model_arguments",
    "add_precision_arguments",
    "batch_size",
    "decision",
    "detection_settings",
    "integer_at_least",
    "non_negative",
    "output_path",
    "positive_integer",
    "precision_options",
]
