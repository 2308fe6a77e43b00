"""`genclip convert`: published checkpoints of other methods to safetensors folders this package loads."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a published checkpoint of another method")
    methods = parser.add_subparsers(dest="convert_method", required=True, parser_class=type(parser))
    anomalyclip = methods.add_parser("anomalyclip", help="AnomalyCLIP's official prompt checkpoint (.pth)")
    anomalyclip.add_argument("--checkpoint", required=True, help="e.g. checkpoints/9_12_4_multiscale/epoch_15.pth")
    anomalyclip.add_argument(
        "--clip", default="openai/clip-vit-large-patch14-336", help="the CLIP it was trained on (Hub id or folder)"
    )
    anomalyclip.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, processor)")
    anomalyclip.set_defaults(handler=run_anomalyclip)


def run_anomalyclip(args: argparse.Namespace) -> int:
    from ..convert_anomalyclip import convert_anomalyclip_checkpoint

    print(f"wrote {convert_anomalyclip_checkpoint(args.checkpoint, args.clip, args.out)}")
    return 0
