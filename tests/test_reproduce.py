"""The paper-reproduction scripts (examples/reproduce/) end to end: a tiny random CLIP, one training epoch, synthetic
stand-ins for the six benchmarks in each benchmark's native layout (so the real loaders run), and a dry run.

The stand-ins are synthetic images (`genclip_hf.data.write_synthetic_benchmark`) rearranged into the layouts of
MVTec-AD, MPDD and DTD-Synthetic (MVTec-style trees), BTAD (class folders 01, 02), VisA (split_csv/1cls.csv, with
the VisA class names of paper Table 3) and KolektorSDD (kosNN/PartK.jpg + PartK_label.bmp). Their numbers mean
nothing; the tests check that every script trains, evaluates and writes its table beside the paper's numbers. Table 1
runs every method: the CLIP baseline and CoOp (trained) on the tiny CLIP, WinCLIP on it at 240 px, AnomalyCLIP from an
untrained tiny folder (given for the MVTec-AD-trained checkpoint only) and AdaCLIP's paper numbers.
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
TABLE1_METHODS = ["CLIP", "CoOp", "WinCLIP", "AnomalyCLIP", "AdaCLIP†", "GenCLIP"]
# AnomalyCLIP on the tiny CLIP (4 blocks): the V-V stream from block 2, the scripts' 64 px input.
TINY_ANOMALYCLIP = {
    "feature_layers": [1, 2, 4],
    "dpam_start_layer": 2,
    "image_size": 64,
    "n_ctx": 4,
    "text_prompt_depth": 3,
}
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


@pytest.fixture(scope="module")
def tiny_anomalyclip(stand_ins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AnomalyCLIP folder on the tiny CLIP as `genclip convert anomalyclip` writes one (untrained prompts)."""
    from genclip_hf import AnomalyCLIPModel, AnomalyDetectionProcessor

    folder = tmp_path_factory.mktemp("anomalyclip")
    model = AnomalyCLIPModel.from_clip(stand_ins["--clip-model"], **TINY_ANOMALYCLIP)
    model.save_pretrained(folder)
    AnomalyDetectionProcessor.from_clip(stand_ins["--clip-model"], config=model.config).save_pretrained(folder)
    return folder


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


def dry_run(script: str, *options: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / f"{script}.py"), "--dry-run", *options], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.splitlines()


def check_table1(rows: list[dict]) -> None:
    """Every method's row per dataset, then every method's Average; each beside the paper's numbers."""
    datasets = ["MVTec", "VisA", "MPDD", "BTAD", "SDD", "DTD-Synthetic", "Average"]
    assert [row["dataset"] for row in rows] == [name for name in datasets for _ in TABLE1_METHODS]
    assert [row["method"] for row in rows] == TABLE1_METHODS * len(datasets)
    cells = {(row["dataset"], row["method"]): row for row in rows}
    for dataset in datasets[:-1]:
        for method in ("CLIP", "CoOp", "WinCLIP", "GenCLIP"):
            assert cells[dataset, method]["run"] == "evaluated", (dataset, method)
            assert cells[dataset, method]["image_auroc_ours"] is not None, (dataset, method)
        adaclip = cells[dataset, "AdaCLIP†"]
        assert adaclip["run"] == "paper only: no port" and adaclip["pixel_auroc_ours"] is None
        assert adaclip["pixel_auroc_paper"] == paper_results(1, dataset, "AdaCLIP(retrained)")[0]["pixel_auroc"]
    assert cells["MVTec", "AnomalyCLIP"]["run"] == "not run: give --anomalyclip-visa-checkpoint"
    assert cells["VisA", "AnomalyCLIP"]["run"] == "evaluated"
    assert cells["Average", "AnomalyCLIP"]["aupro_ours"] is None
    assert cells["DTD-Synthetic", "CoOp"]["aupro_paper"] is None
    five = [cells[name, "CoOp"]["aupro_ours"] for name in datasets[:-2]]
    assert cells["Average", "CoOp"]["aupro_ours"] == pytest.approx(sum(five) / 5, abs=0.006)
    assert rows[-1]["pixel_auroc_paper"] == paper_results(1, "Average", "GenCLIP")[0]["pixel_auroc"]
    for row in rows:
        if row["pixel_auroc_ours"] is not None and row["pixel_auroc_paper"] is not None:
            difference = row["pixel_auroc_ours"] - row["pixel_auroc_paper"]
            assert row["pixel_auroc_diff"] == pytest.approx(difference, abs=0.011)


def independent_metrics(model_dir: Path, benchmark: str, root: str) -> dict[str, float]:
    """Mean per-class pixel and image AUROC (percent) of a saved model on a benchmark, computed apart from `genclip
    evaluate`: the pipeline's maps at the model input size, masks resized with PIL's nearest neighbour, sklearn's
    AUROC."""
    from sklearn.metrics import roc_auc_score
    from transformers import pipeline

    from genclip_hf.data import load_benchmark

    detector = pipeline("anomaly-detection", model=str(model_dir))
    per_class: dict[str, list[tuple[np.ndarray, np.ndarray, float, int]]] = {}
    for row in load_benchmark(benchmark, root):
        result = detector(row["image"], class_name=row["class_name"], map_at_model_size=True)
        size = result["anomaly_map"].shape
        mask = np.zeros(size, bool)
        if row["mask"] is not None:
            mask = np.asarray(row["mask"].resize(size[::-1], Image.Resampling.NEAREST)) > 0
        per_class.setdefault(row["class_name"], []).append((result["anomaly_map"], mask, result["score"], row["label"]))
    pixel, image = [], []
    for items in per_class.values():
        maps, masks, scores, labels = zip(*items, strict=True)
        pixel.append(roc_auc_score(np.stack(masks).ravel(), np.stack(maps).ravel()))
        image.append(roc_auc_score(labels, scores))
    return {"pixel_auroc": 100 * float(np.mean(pixel)), "image_auroc": 100 * float(np.mean(image))}


def test_dry_run_prints_the_commands(tmp_path: Path) -> None:
    lines = dry_run("table1", "--out", str(tmp_path / "runs"), "--methods", "genclip")
    assert [line.split()[1] for line in lines] == ["train", "evaluate", "train"] + ["evaluate"] * 5
    assert all(line.startswith("genclip ") for line in lines)
    assert "--benchmark visa --data '<visa-root>'" in lines[0]
    assert "--clip-model openai/clip-vit-large-patch14-336 --epochs 15 --batch-size 8 --image-size 518" in lines[0]
    assert "--benchmark mvtec --root '<mvtec-root>'" in lines[1]
    assert not (tmp_path / "runs").exists()
    for name, count in (("table2", 6), ("table3", 3), ("tables10_15", 32), ("fig6", 17)):
        assert len(dry_run(name)) == count, name


def test_table1_dry_run_has_every_method(tmp_path: Path) -> None:
    """Per dataset: the CLIP baseline, CoOp (trained once per training benchmark), WinCLIP, AnomalyCLIP (a note
    without its checkpoint) and GenCLIP; AdaCLIP runs nothing."""
    lines = dry_run("table1", "--out", str(tmp_path / "runs"))
    notes = [line for line in lines if line.startswith("# ")]
    commands = [line for line in lines if not line.startswith("# ")]
    assert all(line.startswith("genclip ") for line in commands)
    assert "CLIPBaselineModel.from_clip('openai/clip-vit-large-patch14-336', image_size=518)" in notes[0]
    assert len(commands) == 2 * 6 + 4 * 4
    coop_training = [line for line in commands if line.startswith("genclip train --method coop")]
    assert len(coop_training) == 2 and "--feature-layers" not in coop_training[0]
    assert "--output-dir " + str(tmp_path / "runs" / "models" / "coop-visa") in coop_training[0]
    clip_runs = [line for line in commands if "models/clip-baseline-518 " in line]
    winclip_runs = [line for line in commands if "--model openai/clip-vit-base-patch16 " in line]
    assert len(clip_runs) == len(winclip_runs) == 6
    assert "--out " + str(tmp_path / "runs" / "table1" / "clip" / "mvtec") in clip_runs[0]
    assert notes[2:] == ["# AnomalyCLIP on MVTec not run: give --anomalyclip-visa-checkpoint DIR"] + [
        f"# AnomalyCLIP on {name} not run: give --anomalyclip-checkpoint DIR"
        for name in ("VisA", "MPDD", "BTAD", "SDD", "DTD-Synthetic")
    ]
    checkpoints = ["--anomalyclip-checkpoint", "ac-mvtec", "--anomalyclip-visa-checkpoint", "ac-visa"]
    lines = dry_run("table1", "--methods", "anomalyclip", *checkpoints)
    assert [line.split()[3] for line in lines] == ["ac-visa"] + ["ac-mvtec"] * 5
    assert "--benchmark mvtec " in lines[0] and "--out reproduce_runs/table1/anomalyclip/mvtec " in lines[0]


def test_ablation_options_reach_training_and_keep_runs_apart(tmp_path: Path) -> None:
    """DESIGN §1's open choices: config fields go to GenCLIP as `--config`, optimisation flags to every trained
    method; models and results of an ablation live in folders named after it, never in the default run's."""
    ablations = ["--text-prompt-position", "before_eot", "--position-interpolation", "bilinear", "--dice-smooth", "0"]
    ablations += ["--adam-betas", "0.9", "0.98", "--mixed-precision", "bf16", "--learning-rate", "1e-3"]
    lines = dry_run("table1", "--out", str(tmp_path), "--methods", "genclip", "coop", *ablations)
    tag = "adam_betas=0.9,0.98-mixed_precision=bf16"
    genclip_training = next(line for line in lines if line.startswith("genclip train --benchmark visa"))
    config = (
        "--config text_prompt_position=before_eot --config position_interpolation=bilinear --config dice_smooth=0.0"
    )
    assert config in genclip_training
    assert "--learning-rate 0.001 --adam-betas 0.9 0.98 --mixed-precision bf16" in genclip_training
    assert "models/visa-text_prompt_position=before_eot-position_interpolation=bilinear-dice_smooth=0.0-" in (
        genclip_training
    )
    coop_training = next(line for line in lines if line.startswith("genclip train --method coop"))
    assert "--config" not in coop_training and f"models/coop-visa-learning_rate=0.001-{tag} " in coop_training
    evaluations = [line for line in lines if line.startswith("genclip evaluate")]
    assert evaluations and all(f"{tmp_path}/table1-text_prompt_position=before_eot-" in line for line in evaluations)
    default_training = dry_run("table1", "--out", str(tmp_path), "--methods", "genclip")[0]
    assert "--config" not in default_training and f"--output-dir {tmp_path}/models/visa --resume" in default_training


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
def test_every_script_end_to_end(stand_ins: dict[str, str], tiny_anomalyclip: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    options = {**stand_ins, "--out": str(out)}

    baselines = ["--winclip-clip-model", stand_ins["--clip-model"], "--anomalyclip-checkpoint", str(tiny_anomalyclip)]
    run_script("table1", options, *TINY_OPTIONS, *baselines)
    rows = table(out, "table1")
    check_table1(rows)
    genclip_btad = next(row for row in rows if (row["dataset"], row["method"]) == ("BTAD", "GenCLIP"))
    expected = independent_metrics(out / "models" / "mvtec", "btad", stand_ins["--btad"])
    for metric, value in expected.items():
        assert genclip_btad[f"{metric}_ours"] == pytest.approx(value, abs=0.006), metric
        assert genclip_btad[f"{metric}_paper"] == paper_results(1, "BTAD", "GenCLIP")[0][metric]
    assert "## In the paper's layout" in (out / "table1" / "results.md").read_text()
    assert (out / "table1" / "visa" / "comparison_with_paper.md").is_file()
    assert (out / "models" / "mvtec" / "training_log.json").is_file()
    for folder, method in (("coop-mvtec", "coop"), ("clip-baseline-64", "clip_baseline")):
        assert json.loads((out / "models" / folder / "config.json").read_text())["model_type"] == method
    assert json.loads((out / "table1" / "winclip" / "visa" / "results.json").read_text())["run"]["method"] == "winclip"

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
