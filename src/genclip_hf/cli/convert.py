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
    anomalyclip.add_argument("--tokenizer", help="CLIP tokenizer folder or Hub id (default: the CLIP's)")
    anomalyclip.add_argument("--feature-layers", type=int, nargs="+", help="test-time layers (default: 6 12 18 24)")
    anomalyclip.add_argument("--image-size", type=int, help="model input side (default: 518)")
    anomalyclip.add_argument("--dpam-start-layer", type=int, help="first V-V block (default: depth // 4)")
    anomalyclip.set_defaults(handler=run_anomalyclip)


def run_anomalyclip(args: argparse.Namespace) -> int:
    from ..convert_anomalyclip import convert_anomalyclip_checkpoint

    names = ("feature_layers", "image_size", "dpam_start_layer")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    print(convert_anomalyclip_checkpoint(args.checkpoint, args.clip, args.out, args.tokenizer, **overrides))
    return 0
