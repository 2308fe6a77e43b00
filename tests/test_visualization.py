import re
from html.parser import HTMLParser
from urllib.parse import quote, unquote

import numpy as np
import pytest
from metrics_references import random_maps_and_masks
from PIL import Image

from genclip_hf.visualization import (
    PLOT_DPI,
    PLOT_SIZE,
    plot_pro_curve,
    plot_roc_curves,
    plot_score_histogram,
    write_gallery,
)

PNG_SIZE = (round(PLOT_SIZE[0] * PLOT_DPI), round(PLOT_SIZE[1] * PLOT_DPI))


def _assert_png(path):
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == PNG_SIZE and image.mode == "RGBA"
        image.verify()


def _data():
    maps, masks = random_maps_and_masks(np.random.default_rng(0), n_images=6, size=16)
    labels = masks.any(axis=(1, 2))
    return maps, masks, labels, maps.max(axis=(1, 2))


def test_plots_write_valid_pngs(tmp_path):
    maps, masks, labels, scores = _data()
    paths = [
        plot_roc_curves(scores, labels, tmp_path / "roc.png", anomaly_maps=maps, masks=masks),
        plot_roc_curves(None, None, tmp_path / "pixel_only.png", anomaly_maps=maps, masks=masks, max_points=50),
        plot_pro_curve(maps, masks, tmp_path / "pro.png"),
        plot_pro_curve(maps, masks, tmp_path / "nested" / "pro_clip.png", mode="anomalyclip", fpr_limit=0.5),
        plot_score_histogram(scores[~labels], scores[labels], tmp_path / "hist.png", threshold=float(scores.mean())),
    ]
    for path in paths:
        _assert_png(path)


def test_plots_accept_degenerate_input(tmp_path):
    maps, masks, labels, scores = _data()
    constant = np.full(maps.shape, 0.5)
    paths = [
        plot_roc_curves(scores, np.zeros_like(labels), tmp_path / "one_class.png", anomaly_maps=maps, masks=masks),
        plot_roc_curves(np.ones(6), labels, tmp_path / "constant.png", anomaly_maps=constant, masks=masks),
        plot_roc_curves(None, None, tmp_path / "nothing.png"),
        plot_pro_curve(maps, np.zeros_like(masks), tmp_path / "no_region.png"),
        plot_pro_curve(constant, masks, tmp_path / "constant_pro.png"),
        plot_pro_curve(constant, masks, tmp_path / "constant_clip.png", mode="anomalyclip"),
        plot_score_histogram(scores, [], tmp_path / "normal_only.png"),
        plot_score_histogram([], [0.7, 0.7], tmp_path / "constant_hist.png", threshold=0.7),
        plot_score_histogram([], [], tmp_path / "empty_hist.png"),
    ]
    for path in paths:
        _assert_png(path)


def test_plots_refuse_non_finite_scores(tmp_path):
    with pytest.raises(ValueError, match=r"anomalous_scores\[1\] contains NaN"):
        plot_score_histogram([0.1], [0.2, np.nan], tmp_path / "hist.png")
    with pytest.raises(ValueError, match="labels are required"):
        plot_roc_curves([0.1, 0.2], None, tmp_path / "roc.png")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href")]


def test_gallery_encodes_urls_and_escapes_captions(tmp_path):
    names = ["a #1?.png", "50% off.png", "défaut ü.png", "plain.png", "x:y&z.png"]
    folder = tmp_path / "heat maps"
    folder.mkdir()
    rows = []
    for index, name in enumerate(names):
        (folder / name).write_bytes(b"png")
        rows.append(
            {
                "image": f"/data/<{name}>",
                "heatmap": folder / name,
                "score": float(index),
                "label": "anomalous",
                "class_name": "<b>nut</b>",
            }
        )
    page = write_gallery(tmp_path / "index.html", rows, [{"image": "bad <x>.png", "error": "a & b"}], "T <1>")
    text = page.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    assert len(parser.urls) == 2 * len(names)
    for url in parser.urls:
        assert re.fullmatch(r"[A-Za-z0-9_.~/%-]+", url), url
        assert (tmp_path / unquote(url)).is_file()
    assert f'src="{quote("heat maps/a #1?.png")}"' in text and "heat%20maps/a%20%231%3F.png" in text
    assert "50%25%20off.png" in text and "d%C3%A9faut%20%C3%BC.png" in text and "x%3Ay%26z.png" in text
    assert "&lt;b&gt;nut&lt;/b&gt;" in text and "/data/&lt;défaut ü.png&gt;" in text
    assert "bad &lt;x&gt;.png: a &amp; b" in text and "<title>T &lt;1&gt;</title>" in text
