"""`genclip predict`: anomaly scores and heatmaps for image files and folders."""

from __future__ import annotations

import argparse
import sys

from ..settings import add_setting_arguments
from .options import (
    add_model_arguments,
    add_precision_arguments,
    batch_size,
    decision,
    detection_settings,
    output_path,
    precision_options,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="anomaly scores and heatmaps for images and folders",
        description="Score images with any detector. Writes heatmaps/, scores.csv, scores.json and index.html; a "
        "rerun replaces them only when it finishes.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders (walked recursively; masks skipped)")
    parser.add_argument(
        "--out", required=True, type=output_path, help="output folder (heatmaps/, scores.csv, scores.json, index.html)"
    )
    parser.add_argument("--class-name", help="class name of the images (default: the method's generic prompt)")
    parser.add_argument("--batch-size", type=batch_size, default=1, help="images per forward pass (default: 1)")
    parser.add_argument("--reference", metavar="DIR", help="few-shot: a folder of normal images of the same class")
    parser.add_argument(
        "--no-calibration", action="store_true", help="ignore the model folder's calibration.json (genclip calibrate)"
    )
    add_setting_arguments(parser, ("threshold", "score_threshold"), "decisions")
    add_model_arguments(parser)
    add_precision_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..predict import find_images, load_detector, predict_files

    if args.class_name is not None and not args.class_name.strip():
        raise ValueError("--class-name must be a non-empty name, got ''.")
    options = {**detection_settings(args)}
    for name in ("threshold", "score_threshold"):
        value = decision(name, args)
        if value is not None:
            options[name] = value
    search = find_images(args.paths, exclude=[args.out])
    if not search.images:
        raise FileNotFoundError(f"no images found under {' '.join(args.paths)}")
    references = None
    if args.reference is not None:
        references = find_images([args.reference], exclude=[args.out]).images
        if not references:
            raise FileNotFoundError(f"--reference {args.reference}: no normal images found there")
    options_of_the_model = {"calibration": False} if args.no_calibration else {}
    class_names = [args.class_name] if args.class_name else ()
    detector = load_detector(
        args.model, device=args.device, class_names=class_names, **precision_options(args), **options_of_the_model
    )
    report = predict_files(
        detector,
        search.images,
        args.out,
        class_name=args.class_name,
        batch_size=args.batch_size,
        skipped=search.skipped,
        reference_images=references,
        **options,
    )
    print(f"{len(report.rows)} images scored, {len(report.failures)} skipped; see {report.out_dir / 'index.html'}")
    for failure in report.failures:
        print(f"skipped: {failure['image']}: {failure['error']}", file=sys.stderr)
    return 1 if report.failures else 0
