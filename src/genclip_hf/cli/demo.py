"""`genclip demo`: the browser demo (Gradio) of a detector: upload images, pick the settings and thresholds, see the
heatmaps, scores and labels."""

from __future__ import annotations

import argparse
import sys

from ..detection import DEFAULT_DETECTOR


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="a browser app: upload images, see heatmaps, scores and labels",
        description="Serve a Gradio app of a detector: images, class name, detection settings and thresholds in; "
        "each image beside its anomaly-map overlay, its score and label out. Needs the demo extra "
        "(pip install 'genclip-hf[demo]').",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_DETECTOR,
        help=f"a saved detector or a plain CLIP (Hub id or folder; default: {DEFAULT_DETECTOR}, WinCLIP zero-shot)",
    )
    parser.add_argument("--device", help='e.g. "cpu", "cuda" (default: transformers picks)')
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=port, help="port to listen on (default: the first free one from 7860)")
    parser.add_argument("--share", action="store_true", help="also serve through a temporary public gradio.live link")
    parser.set_defaults(handler=run)


def port(text: str) -> int:
    """`--port`: an integer in [1, 65535]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be an integer in [1, 65535], got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be an integer in [1, 65535], got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..demo import GradioMissingError, build_demo, import_gradio
    from ..predict import load_detector

    try:
        import_gradio()
    except GradioMissingError as error:
        print(f"genclip demo: {error}", file=sys.stderr)
        return 2
    demo = build_demo(load_detector(args.model, device=args.device))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0
