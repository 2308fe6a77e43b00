"""`genclip calibrate`: decision thresholds for a model from normal images (a target false-positive rate) or from
labelled images (F1-optimal), written as the model folder's `calibration.json` that the pipeline, `genclip predict`
and the demo then use."""

from __future__ import annotations

import argparse

from .options import add_model_arguments, batch_size, detection_settings, output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="thresholds from normal images (target FPR) or labelled images (F1-optimal)",
        description="Writes calibration.json into the model folder (or --out). From --normal folders: the image and "
        "pixel thresholds at the (1 - FPR) quantile of normal scores and pixels. From --labelled data: anomalib's "
        "F1-optimal thresholds. One entry per class where classes are known, plus a default.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--normal", nargs="+", metavar="DIR", help="folders of normal images")
    source.add_argument("--labelled", metavar="DIR", help="labelled data (a folder with good/ and defect folders)")
    parser.add_argument("--benchmark", help="read --labelled as this benchmark or data source (default: recognised)")
    parser.add_argument("--class-names", nargs="+", help="class of each --normal folder (default: no classes)")
    parser.add_argument("--target-fpr", type=float, default=0.01, help="--normal only (default: 0.01)")
    parser.add_argument(
        "--out", type=output_path, help="calibration file to write (default: <model folder>/calibration.json)"
    )
    parser.add_argument("--batch-size", type=batch_size, default=8, help="images per forward pass (default: 8)")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..calibrate import calibrate_from_labelled, calibrate_from_normal, calibration_path, save_calibration
    from ..data import open_dataset
    from ..predict import load_detector

    settings = detection_settings(args)
    path = calibration_path(args.model, args.out)
    detector = load_detector(args.model, device=args.device, calibration=False)
    skipped: list[str] = []
    if args.normal is not None:
        calibration = calibrate_from_normal(
            detector, args.normal, args.class_names, args.target_fpr, args.batch_size, skipped, **settings
        )
    else:
        dataset = open_dataset(args.labelled, args.benchmark)
        calibration = calibrate_from_labelled(detector, dataset, args.batch_size, skipped=skipped, **settings)
    save_calibration(calibration, path)
    default = calibration.default
    print(
        f"wrote {path}: image threshold {default.image_threshold:.6g}, pixel threshold {default.pixel_threshold:.6g}"
        f" ({calibration.method}; {len(calibration.per_class)} class entries)"
    )
    for line in skipped:
        print(f"skipped {line}")
    if skipped:
        print(f"{len(skipped)} unreadable file(s) skipped")
    return 1 if skipped else 0
