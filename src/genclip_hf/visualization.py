"""Heatmap pictures people can look at: colour-mapped anomaly maps over their images, and an HTML gallery."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

# A perceptually ordered dark-blue -> cyan -> yellow -> red ramp (anchors at 0, 0.25, 0.5, 0.75, 1).
COLORMAP_ANCHORS = np.array([[0, 0, 128], [0, 160, 255], [80, 255, 160], [255, 220, 0], [220, 0, 0]], dtype=np.float32)
CONTOUR_COLOR = (255, 255, 255)


def colorize(anomaly_map: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Map `(H, W)` values to `(H, W, 3)` uint8 colours, `vmin` dark blue to `vmax` red (clipped)."""
    scale = max(vmax - vmin, 1e-12)
    position = np.clip((anomaly_map.astype(np.float32) - vmin) / scale, 0.0, 1.0) * (len(COLORMAP_ANCHORS) - 1)
    lower = np.floor(position).astype(int).clip(0, len(COLORMAP_ANCHORS) - 2)
    fraction = (position - lower)[..., None]
    colours = COLORMAP_ANCHORS[lower] * (1 - fraction) + COLORMAP_ANCHORS[lower + 1] * fraction
    return colours.round().astype(np.uint8)


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: the one-pixel inner boundary of a binary mask."""
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), border_value=0)


def overlay_heatmap(
    image: Image.Image,
    anomaly_map: np.ndarray,
    vmin: float,
    vmax: float,
    mask: np.ndarray | None = None,
    opacity: float = 0.5,
) -> Image.Image:
    """The image beside the image blended with its colour-mapped anomaly map (and the mask contour, if given).

    Args:
        image: the original image (any mode; shown as RGB).
        anomaly_map: `(H, W)` at the image's size.
        vmin, vmax: value range of the colour map.
        mask: `(H, W)` bool predicted mask whose contour is drawn in white.
        opacity: weight of the heatmap in the blend.
    Returns:
        An RGB image of size `(2 * W, H)`.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if anomaly_map.shape != rgb.shape[:2]:
        raise ValueError(f"anomaly_map must have the image's shape {rgb.shape[:2]}, got {anomaly_map.shape}.")
    blended = (1 - opacity) * rgb + opacity * colorize(anomaly_map, vmin, vmax).astype(np.float32)
    blended = blended.round().astype(np.uint8)
    if mask is not None:
        blended[mask_contour(mask)] = CONTOUR_COLOR
    return Image.fromarray(np.concatenate([rgb.astype(np.uint8), blended], axis=1))


def write_gallery(path: Path, rows: Sequence[dict], failures: Sequence[dict], title: str) -> Path:
    """Write an HTML page of heatmaps sorted by descending score.

    Args:
        path: the `index.html` to write; heatmap paths in `rows` are made relative to its folder.
        rows: dicts with `image`, `heatmap`, `score`, `label` and `class_name`.
        failures: dicts with `image` and `error`.
        title: page title.
    """
    folder = path.parent
    cards = []
    for row in sorted(rows, key=lambda row: row["score"], reverse=True):
        heatmap = Path(row["heatmap"]).resolve().relative_to(folder.resolve()).as_posix()
        cards.append(
            f'<figure class="{html.escape(row["label"])}"><img src="{html.escape(heatmap)}" loading="lazy">'
            f"<figcaption><b>{row['score']:.4f}</b> {html.escape(row['label'])} "
            f"({html.escape(row['class_name'])})<br><small>{html.escape(str(row['image']))}</small>"
            "</figcaption></figure>"
        )
    failed = "".join(f"<li>{html.escape(str(item['image']))}: {html.escape(item['error'])}</li>" for item in failures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
figure {{ display: inline-block; margin: 0.5em; max-width: 520px; vertical-align: top; }}
figure img {{ max-width: 100%; border: 3px solid #999; }}
figure.anomalous img {{ border-color: #d00; }}
figcaption {{ font-size: 0.9em; word-break: break-all; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} images, sorted by anomaly score (highest first). Left: image; right: anomaly map.</p>
{"<h2>Failed files</h2><ul>" + failed + "</ul>" if failures else ""}
{"".join(cards)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["colorize", "mask_contour", "overlay_heatmap", "write_gallery"]
