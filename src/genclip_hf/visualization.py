"""Pictures people can look at: colour-mapped anomaly maps over their images, an HTML gallery, and PNG plots of
ROC curves, the PRO curve and score histograms (matplotlib, Agg backend, imported on first use)."""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import numpy as np
from PIL import Image
from scipy import ndimage

from .metrics.aupro import FPR_LIMIT
from .metrics.curves import DEFAULT_MAX_POINTS, image_roc_curve, pixel_roc_curve, pro_curve
from .metrics.errors import UndefinedMetricError
from .metrics.inputs import as_float, check_finite, to_numpy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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

    Links and image sources are percent-encoded relative URLs (file names may hold `#`, `?`, `%`, spaces or
    non-ASCII characters); captions are HTML-escaped text.

    Args:
        path: the `index.html` to write; heatmap paths in `rows` are made relative to its folder.
        rows: dicts with `image`, `heatmap`, `score`, `label` and `class_name` (`None` for methods without one).
        failures: dicts with `image` and `error`.
        title: page title.
    """
    folder = path.parent
    cards = []
    for row in sorted(rows, key=lambda row: row["score"], reverse=True):
        heatmap = Path(row["heatmap"]).resolve().relative_to(folder.resolve()).as_posix()
        url = html.escape(quote(heatmap))
        cards.append(
            f'<figure class="{html.escape(row["label"])}"><a href="{url}"><img src="{url}" loading="lazy"></a>'
            f"<figcaption><b>{row['score']:.4f}</b> {html.escape(row['label'])}"
            + (f" ({html.escape(row['class_name'])})" if row.get("class_name") else "")
            + f"<br><small>{html.escape(str(row['image']))}</small>"
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


PLOT_SIZE = (6.4, 4.8)
PLOT_DPI = 100


def _figure() -> tuple[Figure, Axes]:
    """A figure with one axes, drawn by the Agg canvas (no pyplot, no global state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | Path, title: str, notes: Sequence[str]) -> Path:
    """Sets the title (followed by the notes on degenerate input, one a line) and writes the PNG."""
    lines = [title, *(textwrap.fill(note, width=80) for note in notes)]
    figure.axes[0].set_title("\n".join(lines), fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _finite_scores(values: Any, name: str) -> np.ndarray:
    values = as_float(to_numpy(values)).reshape(-1)
    check_finite(values, name)
    return values


def plot_roc_curves(
    scores: Any,
    labels: Any,
    path: str | Path,
    *,
    anomaly_maps: Any = None,
    masks: Any = None,
    title: str = "ROC curves",
    max_points: int | None = DEFAULT_MAX_POINTS,
) -> Path:
    """Draws the exact image ROC curve and, with maps and masks, the pixel ROC curve, AUROC in the legend.

    A curve that is undefined (one class only) is left out and the title says why; constant scores give the
    diagonal and the title says so.

    Args:
        scores: `(N,)` image scores, or None for no image curve.
        labels: `(N,)` binary image labels (1 = anomalous), required with `scores`.
        path: the PNG to write.
        anomaly_maps: `(N, H, W)` maps for the pixel curve.
        masks: `(N, H, W)` binary ground truth for the pixel curve.
        title: first title line.
        max_points: points kept on the pixel curve.
    """
    if scores is not None and labels is None:
        raise ValueError("labels are required with scores")
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="chance")
    notes = []
    inputs = []
    if scores is not None:
        inputs.append(("image", scores, lambda: image_roc_curve(scores, labels)))
    if anomaly_maps is not None:
        inputs.append(("pixel", anomaly_maps, lambda: pixel_roc_curve(anomaly_maps, masks, max_points)))
    for level, values, make_curve in inputs:
        try:
            curve = make_curve()
        except UndefinedMetricError as error:
            notes.append(f"no {level} curve: {error.reason}")
            continue
        axes.plot(curve.fpr, curve.tpr, linewidth=1.5, label=f"{level} AUROC = {100 * curve.auroc:.2f}%")
        values = to_numpy(values)
        if values.min() == values.max():
            notes.append(f"{level} scores are constant")
    if not inputs:
        notes.append("no data")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    axes.legend(loc="lower right")
    return _save(figure, path, title, notes)


def plot_pro_curve(
    anomaly_maps: Any,
    masks: Any,
    path: str | Path,
    *,
    mode: Literal["exact", "anomalyclip"] = "exact",
    fpr_limit: float = FPR_LIMIT,
    title: str = "PRO curve",
    max_points: int | None = DEFAULT_MAX_POINTS,
) -> Path:
    """Draws the PRO curve up to `fpr_limit` (marked by a dashed line), AUPRO in the legend.

    When the curve is undefined (no anomalous region, no normal pixel, or constant maps in `anomalyclip` mode)
    the axes stay empty and the title says why. In `anomalyclip` mode the FPRs are drawn unscaled, while the
    AUPRO is the protocol's area over FPRs rescaled to [0, 1].

    Args:
        anomaly_maps: `(N, H, W)` anomaly maps.
        masks: `(N, H, W)` binary ground truth.
        path: the PNG to write.
        mode: `"exact"` or `"anomalyclip"`, as `aupro`.
        fpr_limit: the AUPRO integration limit, in (0, 1].
        title: first title line.
        max_points: points kept on the `exact` curve.
    """
    figure, axes = _figure()
    notes = []
    try:
        curve = pro_curve(anomaly_maps, masks, mode=mode, fpr_limit=fpr_limit, max_points=max_points)
    except UndefinedMetricError as error:
        notes.append(f"no PRO curve: {error.reason}")
    else:
        label = f"AUPRO@{fpr_limit:g} ({mode}) = {100 * curve.aupro:.2f}%"
        axes.plot(curve.fpr, curve.pro, linewidth=1.5, label=label)
        maps = to_numpy(anomaly_maps)
        if maps.min() == maps.max():
            notes.append("anomaly maps are constant")
    axes.axvline(fpr_limit, linestyle="--", color="black", linewidth=1, label=f"FPR limit {fpr_limit:g}")
    axes.set(
        xlim=(0, min(1.0, 1.1 * fpr_limit)),
        ylim=(0, 1.01),
        xlabel="False positive rate (normal pixels)",
        ylabel="Per-region overlap",
    )
    axes.legend(loc="lower right")
    return _save(figure, path, title, notes)


def plot_score_histogram(
    normal_scores: Any,
    anomalous_scores: Any,
    path: str | Path,
    *,
    threshold: float | None = None,
    bins: int = 50,
    title: str = "Anomaly scores",
) -> Path:
    """Overlaid histograms of the scores of normal and anomalous images on shared bins, with an optional
    threshold line; an empty class is left out and the title says so.

    Args:
        normal_scores: `(N0,)` scores of normal images (may be empty).
        anomalous_scores: `(N1,)` scores of anomalous images (may be empty).
        path: the PNG to write.
        threshold: a decision threshold to mark, if any.
        bins: number of shared bins.
        title: first title line.
    """
    normal = _finite_scores(normal_scores, "normal_scores")
    anomalous = _finite_scores(anomalous_scores, "anomalous_scores")
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    figure, axes = _figure()
    notes = [f"no {name} images" for name, values in (("normal", normal), ("anomalous", anomalous)) if not values.size]
    both = np.concatenate([normal, anomalous])
    if both.size:
        low, high = float(both.min()), float(both.max())
        if low == high:
            notes.append("all scores are equal")
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        for name, values, color in (("normal", normal, "tab:blue"), ("anomalous", anomalous, "tab:red")):
            if values.size:
                axes.hist(values, bins=edges, alpha=0.5, color=color, label=f"{name} (n = {values.size})")
    if threshold is not None:
        axes.axvline(threshold, linestyle="--", color="black", linewidth=1, label=f"threshold {threshold:.4g}")
    axes.set(xlabel="Anomaly score", ylabel="Images")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper right")
    return _save(figure, path, title, notes)


__all__ = [
    "colorize",
    "mask_contour",
    "overlay_heatmap",
    "plot_pro_curve",
    "plot_roc_curves",
    "plot_score_histogram",
    "write_gallery",
]
