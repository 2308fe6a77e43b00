"""`genclip export`: a detector's whole `detect` as an ONNX graph folder that `genclip predict --model` and
`pipeline("anomaly-detection")` load and onnxruntime runs."""

from __future__ import annotations

import argparse
import sys

from ..settings import add_setting_arguments
from .options import DETECTION_SETTINGS, detection_settings, output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a detector to ONNX (onnxruntime) with precomputed class-name text",
        description="Export the whole detect path (pixels to anomaly maps and image scores, dynamic batch) of "
        "GenCLIP, WinCLIP (zero-shot) or AnomalyCLIP. Detection settings are fixed in the graph; text that does not "
        "depend on the image is precomputed for the class names listed. Needs the export extra "
        "(pip install 'genclip-hf[export]').",
    )
    parser.add_argument("--model", required=True, help="a saved detector or a plain CLIP (Hub id or folder)")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="graph format (default: onnx)")
    parser.add_argument(
        "--out", required=True, type=output_path, help="output folder (graph, text tensors, config, processor)"
    )
    parser.add_argument(
        "--class-names", nargs="+", default=[], metavar="NAME", help="class names to precompute (default: none)"
    )
    parser.add_argument("--int8", action="store_true", help="also write the int8 graph (onnxruntime quantization)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    add_setting_arguments(parser, DETECTION_SETTINGS, "detection settings fixed in the graph (default: the model's)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..export import OptionalDependencyError, export_detector

    try:
        report = export_detector(
            args.model,
            args.out,
            class_names=args.class_names,
            format=args.format,
            settings=detection_settings(args),
            int8=args.int8,
            opset_version=args.opset,
        )
    except OptionalDependencyError as error:
        print(f"genclip export: {error}", file=sys.stderr)
        return 2
    print(
        f"exported to {report.folder} in {report.seconds:.0f} s ({report.size_bytes / 2**20:.1f} MiB); graph vs torch "
        f"on a check image: max map difference {report.max_map_difference:.2e}, max score difference "
        f"{report.max_score_difference:.2e}"
        + (
            f"; int8 graph max map difference {report.int8_max_map_difference:.2e}"
            if report.int8_max_map_difference is not None
            else ""
        )
    )
    return 0
