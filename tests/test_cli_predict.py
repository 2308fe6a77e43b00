"""`genclip predict`: heatmaps, CSV/JSON and HTML for folders of images; bad files are skipped and reported."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from genclip_hf.cli import main
from genclip_hf.data.synthetic import write_sample_images
from genclip_hf.predict import find_images


def _check_outputs(out: Path, expected_images: int) -> list[dict]:
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == expected_images
    summary = json.loads((out / "scores.json").read_text())
    assert len(summary["results"]) == expected_images
    for row in rows:
        heatmap = Path(row["heatmap"])
        assert heatmap.exists()
        with Image.open(heatmap) as picture, Image.open(row["image"]) as original:
            assert picture.size == (2 * original.width, original.height)
    page = (out / "index.html").read_text()
    scores = [float(row["score"]) for row in rows]
    first, last = rows[scores.index(max(scores))], rows[scores.index(min(scores))]
    assert page.index(Path(first["heatmap"]).name) < page.index(Path(last["heatmap"]).name)
    return rows


def test_predict_on_real_images(tiny_checkpoint_dir, real_mini_dir, tmp_path):
    folder = real_mini_dir / "mpdd" / "metal_plate" / "test"
    out = tmp_path / "out"
    status = main(
        [
            "predict",
            str(folder),
            "--model",
            str(tiny_checkpoint_dir),
            "--out",
            str(out),
            "--class-name",
            "metal_plate",
            "--threshold",
            "2.5",
            "--batch-size",
            "4",
        ]
    )
    assert status == 0
    rows = _check_outputs(out, 38)
    assert {row["class_name"] for row in rows} <= {"metal plate", "object"}


def test_predict_on_generated_images_with_a_corrupt_file(tiny_checkpoint_dir, tmp_path):
    folder = tmp_path / "images"
    write_sample_images(folder)
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "ground_truth").mkdir()
    Image.new("L", (8, 8)).save(folder / "ground_truth" / "000_mask.png")
    good = len(find_images([folder]).images) - 1
    out = tmp_path / "out"
    status = main(["predict", str(folder), "--model", str(tiny_checkpoint_dir), "--out", str(out), "--batch-size", "3"])
    assert status == 1
    _check_outputs(out, good)
    failures = json.loads((out / "scores.json").read_text())["failures"]
    assert [Path(item["image"]).name for item in failures] == ["broken.png"]
    assert "broken.png" in (out / "index.html").read_text()


def test_find_images_skips_masks_and_names_missing_paths(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("L", (4, 4)).save(tmp_path / "a_mask.png")
    Image.new("L", (4, 4)).save(tmp_path / "Part0_label.bmp")
    assert find_images([tmp_path]).images == [tmp_path / "a.png"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_images([tmp_path / "nowhere"])


def test_offline_unknown_model_stops_at_once_with_a_clear_message(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    write_sample_images(tmp_path / "images")
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "genclip_hf.cli",
            "predict",
            str(tmp_path / "images"),
            "--model",
            "someone/genclip-not-cached",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "someone/genclip-not-cached" in completed.stderr and "HF_HUB_OFFLINE" in completed.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)


def test_python_api_example(tiny_checkpoint_dir, tmp_path):
    folder = tmp_path / "images"
    write_sample_images(folder)
    images = sorted(folder.glob("*.png"))
    example = Path(__file__).resolve().parents[1] / "examples" / "predict.py"
    completed = subprocess.run(
        [
            sys.executable,
            str(example),
            "--model",
            str(tiny_checkpoint_dir),
            "--out",
            str(tmp_path / "out"),
            *map(str, images),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [path.name for path in images]
    assert completed.stdout.count("score ") == len(images)
