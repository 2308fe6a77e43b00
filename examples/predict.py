"""Score images and save heatmaps through the Python API (what `genclip predict` does, in a few lines).

    python examples/predict.py --model path/or/hub-id --out runs/example examples/sample_images/*.png

Any detector works (a GenCLIP checkpoint, a converted AnomalyCLIP, or a plain CLIP for training-free WinCLIP).
Prints each image's score, label and the class name the model used (after class-name filtering for GenCLIP), and
writes `<out>/<image stem>.png`: the image beside its anomaly map, with the predicted mask's contour.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from transformers import pipeline

from genclip_hf.detection import DEFAULT_DETECTOR
from genclip_hf.visualization import overlay_heatmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument(
        "--model", default=DEFAULT_DETECTOR, help=f"Hub id or local folder (default: {DEFAULT_DETECTOR})"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the heatmap pictures")
    parser.add_argument("--class-name", help="class name of the images (default: the method's generic prompt)")
    parser.add_argument("--threshold", type=float, help="pixel threshold of the mask contour (default: none)")
    args = parser.parse_args()

    detector = pipeline("anomaly-detection", model=args.model)
    vmin, vmax = detector.model.anomaly_map_range()
    args.out.mkdir(parents=True, exist_ok=True)
    results = detector([str(path) for path in args.images], class_name=args.class_name, threshold=args.threshold)
    for path, result in zip(args.images, results, strict=True):
        with Image.open(path) as image:
            picture = overlay_heatmap(image, result["anomaly_map"], vmin, vmax, result.get("mask"))
        picture.save(args.out / f"{path.stem}.png")
        print(f"{path}: score {result['score']:.4f} ({result['label']}, class '{result['class_name']}')")


if __name__ == "__main__":
    main()
