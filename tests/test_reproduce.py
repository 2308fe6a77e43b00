"""The paper-reproduction scripts (examples/reproduce/) end to end: a tiny random CLIP, one training epoch, synthetic
stand-ins for the six benchmarks in each benchmark's native layout (so the real loaders run), and a dry run.

The stand-ins are synthetic images (`genclip_hf.data.write_synthetic_benchmark`) rearranged into the layouts of
MVTec-AD, MPDD and DTD-Synthetic (MVTec-style trees), BTAD (class folders 01, 02), VisA (split_csv/1cls.csv, with
the VisA class names of paper Table 3) and KolektorSDD (kosNN/PartK.jpg + PartK_label.bmp). Their numbers mean
nothing; the tests check that every script trains, evaluates and writes its table beside the paper's numbers.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genclip_hf.benchmark_registry import BENCHMARK_REGISTRY
from genclip_hf.data import write_synthetic_benchmark
from genclip_hf.metrics.reports import paper_results
from genclip_hf.testing import save_random_clip

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "examples" / "reproduce"
TINY_OPTIONS = [
    "--epochs", "1",
    "--batch-size", "4",
    "--image-size", "64",
    "--feature-layers", "1", "2", "3", "4",
    "--eval-batch-size", "8",
    "--heatmaps-per-class", "0",
]  # fmt: skip
VISA_CLASSES = {"chewinggum": "stripes", "fryum": "disc", "macaroni1": "ring", "pcb1": "square", "pipe_fryum": "cross"}


def synthetic(root: Path, classes: list[str]) -> Path:
    return write_synthetic_benchmark(root, classes, n_train_good=0, n_test_good=2, n_test_bad=2, image_size=(32, 32))


def write_btad(root: Path, source: Path) -> Path:
    synthetic(source, ["ring", "cross"])
    for number, category in enumerate(("ring", "cross"), start=1):
        shutil.copytree(source / category, root / f"{number:02d}")
    return root


def write_visa(root: Path, source: Path) -> Path:
    synthetic(source, list(VISA_CLASSES.values()))
    rows = []
    for name, category in VISA_CLASSES.items():
        for image in sorted((source / category / "test").rglob("*.png")):
            defect = image.parent.name
            state = "normal" if defect == "good" else "anomaly"
            relative = f"{name}/Data/Images/{state.capitalize()}/{defect}_{image.stem}.JPG"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.open(image).save(root / relative, format="JPEG", quality=95)
            mask = ""
            if state == "anomaly":
                mask = f"{name}/Data/Masks/Anomaly/{defect}_{image.stem}.png"
                (root / mask).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source / category / "ground_truth" / defect / f"{image.stem}_mask.png", root / mask)
            rows.append({"object": name, "split": "test", "label": state, "image": relative, "mask": mask})
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["object", "split", "label", "image", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_kolektor(root: Path, source: Path) -> Path:
    synthetic(source, ["noise"])
    for index, image in enumerate(sorted((source / "noise" / "test").rglob("*.png"))):
        item = root / f"kos{index // 2 + 1:02d}"
        item.mkdir(parents=True, exist_ok=True)
        part = index % 2
        Image.open(image).convert("L").save(item / f"Part{part}.jpg", quality=95)
        mask_path = source / "noise" / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"
        mask = np.asarray(Image.open(mask_path)) if mask_path.is_file() else np.zeros((32, 32), np.uint8)
        Image.fromarray((mask > 0).astype(np.uint8), mode="L").convert("P").save(item / f"Part{part}_label.bmp")
    return root


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, str]:
    """Dataset-root options of every benchmark and the tiny CLIP."""
    base = tmp_path_factory.mktemp("reproduce-data")
    roots = {
        "--mvtec": synthetic(base / "mvtec", ["stripes", "disc"]),
        "--mpdd": synthetic(base / "mpdd", ["checker", "square"]),
        "--dtd-synthetic": synthetic(base / "dtd", ["weave", "noise"]),
        "--btad": write_btad(base / "btad", base / "btad-source"),
        "--visa": write_visa(base / "visa", base / "visa-source"),
        "--sdd": write_kolektor(base / "sdd", base / "sdd-source"),
    }
    options = {option: str(path) for option, path in roots.items()}
    options["--clip-model"] = str(save_random_clip(base / "clip", tokenizer_dir, "tiny"))
    return options


def run_script(name: str, options: dict[str, str], *extra: str, in_process: bool = True) -> str:
    arguments = [item for pair in options.items() for item in pair] + list(extra)
    if in_process:
        arguments.append("--in-process")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GENCLIP_FEATURE_CACHE": str(Path(options["--out"]) / "cache")}
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / f"{name}.py"), *arguments], capture_output=True, text=True, env=env
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


def table(out: Path, name: str) -> list[dict]:
    results = json.loads((out / name / "results.json").read_text())
    assert (out / name / "results.md").read_text().startswith("# ")
    assert (out / name / "results.csv").is_file()
    return results["rows"]


def test_dry_run_prints_the_commands(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "table1.py"), "--dry-run", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["train", "evaluate", "train"] + ["evaluate"] * 5
    assert all(line.startswith("genclip ") for line in lines)
    assert "--benchmark visa --data '<visa-root>'" in lines[0]
    assert "--clip-model openai/clip-vit-large-patch14-336 --epochs 15 --batch-size 8 --image-size 518" in lines[0]
    assert "--benchmark mvtec --root '<mvtec-root>'" in lines[1]
    assert not (tmp_path / "runs").exists()
    for name, count in (("table2", 6), ("table3", 3), ("tables10_15", 32), ("fig6", 17)):
        output = subprocess.run(
            [sys.executable, str(SCRIPTS_DIR / f"{name}.py"), "--dry-run"], capture_output=True, text=True
        )
        assert output.returncode == 0, output.stderr
        assert len(output.stdout.splitlines()) == count, (name, output.stdout)


def test_missing_root_is_named(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "table3.py"), "--visa", str(tmp_path), "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert completed.returncode != 0
    assert "give the roots" in completed.stderr.lower()


def test_docs_list_the_registry() -> None:
    text = (SCRIPTS_DIR.parents[1] / "docs" / "reproduce.md").read_text()
    for benchmark in BENCHMARK_REGISTRY.values():
        trained_on = BENCHMARK_REGISTRY[benchmark.training_benchmark].display_name
        cells = [
            benchmark.display_name,
            f"`{benchmark.root_flag}`",
            f"`{benchmark.default_root}`",
            trained_on,
            f"{benchmark.per_class_table}, {benchmark.generic_term_table}",
        ]
        assert "| " + " | ".join(cells) + " |" in text


@pytest.mark.slow
def test_every_script_end_to_end(stand_ins: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    options = {**stand_ins, "--out": str(out)}

    run_script("table1", options, *TINY_OPTIONS)
    rows = table(out, "table1")
    assert [row["dataset"] for row in rows] == ["MVTec", "VisA", "MPDD", "BTAD", "SDD", "DTD-Synthetic", "Average"]
    assert rows[-1]["pixel_auroc_paper"] == paper_results(1, "Average", "GenCLIP")[0]["pixel_auroc"]
    for row in rows:
        assert row["pixel_auroc_diff"] == pytest.approx(row["pixel_auroc_ours"] - row["pixel_auroc_paper"], abs=0.011)
    assert (out / "table1" / "visa" / "comparison_with_paper.md").is_file()
    assert (out / "models" / "mvtec" / "training_log.json").is_file()

    visa_only = {key: options[key] for key in ("--mvtec", "--visa", "--clip-model", "--out")}
    run_script("table2", visa_only, *TINY_OPTIONS)
    rows = table(out, "table2")
    assert [row["setting"] for row in rows] == [
        "no MVP, no GQP",
        "no MVP (inference switch), no GQP",
        "MVP",
        "MVP + GQP",
    ]
    assert [row["image_ap_paper"] for row in rows] == [86.4, None, 86.8, 87.5]
    final_layer_config = json.loads((out / "models" / "mvtec-layer4" / "config.json").read_text())
    assert final_layer_config["feature_layers"] == [4]

    run_script("table3", visa_only, *TINY_OPTIONS, in_process=False)
    rows = table(out, "table3")
    assert len(rows) == 12
    assert {row["class"] for row in rows} == {*VISA_CLASSES, "mean of VisA"}
    assert all(row["image_auroc_ours"] is not None and row["image_auroc_paper"] is not None for row in rows)

    run_script("tables10_15", options, *TINY_OPTIONS, "--terms", "object", "something")
    rows = table(out, "tables10_15")
    assert len(rows) == 6 * 2
    assert {row["table"] for row in rows} == {str(number) for number in range(10, 16)}
    assert all(row["aupro_paper"] is not None for row in rows)

    run_script("fig6", visa_only, *TINY_OPTIONS)
    rows = table(out, "fig6")
    assert len(rows) == 15 + 1
    assert rows[0]["layers"] == "1" and rows[-1]["layers"] == "1, 2, 3, 4"
    assert [row["query_branch"] for row in rows].count("on") == 1
    assert sum(row["pixel_auroc_paper"] is not None for row in rows) == 2
