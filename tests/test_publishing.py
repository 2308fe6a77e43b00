"""Hub model card (`genclip card`) and upload folder (`genclip push`); the network upload itself is mocked."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from remote_code import run_without_genclip

from genclip_hf import GenCLIPConfig
from genclip_hf.cli import main
from genclip_hf.metrics.reports import write_comparison, write_dataset_row, write_per_class_table
from genclip_hf.model_card import DEFAULT_BASE_MODEL, build_model_card, load_metrics, resolve_base_model
from genclip_hf.publishing import build_upload_folder, check_upload_folder, upload_file_names

REPO_ID = "someone/genclip-tiny"
UPLOAD_FILES = [
    "README.md",
    "calibration.py",
    "class_names.py",
    "clip_backbone.py",
    "clip_detector.py",
    "config.json",
    "configuration_genclip.py",
    "detection.py",
    "few_shot.py",
    "images.py",
    "losses.py",
    "model.safetensors",
    "modeling_genclip.py",
    "pipeline_anomaly_detection.py",
    "processing_anomaly_detection.py",
    "processing_genclip.py",
    "processor_config.json",
    "prompts.py",
    "scoring.py",
    "settings.py",
    "storage.py",
    "tokenizer.json",
    "tokenizer_config.json",
]
TRAINING_LOG = {
    "arguments": {
        "benchmark": "mvtec",
        "split": "test",
        "classes": "None",
        "clip_model": "/tmp/some-local-clip",
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 4e-05,
        "gradient_accumulation_steps": 1,
        "seed": 0,
        "mixed_precision": "auto",
    },
    "num_processes": 1,
    "history": [{"epoch": 1, "steps": 3, "loss": 2.5}, {"epoch": 2, "steps": 3, "loss": 1.25}],
}


def results(values: tuple[float, float, float, float], classes: tuple[str, ...] = ("candle", "pcb1")) -> dict:
    metrics = dict(zip(("pixel_auroc", "aupro", "image_auroc", "image_ap"), values, strict=True))
    return {
        "per_class": {name: dict(metrics) for name in classes},
        "mean": dict(metrics),
        "undefined": {},
        "aupro_mode": "anomalyclip",
        "fpr_limit": 0.3,
    }


@pytest.fixture
def trained_dir(tiny_checkpoint_dir: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint as a `genclip train` output folder: with training_log.json and checkpoints/."""
    model_dir = shutil.copytree(tiny_checkpoint_dir, tmp_path / "trained")
    (model_dir / "training_log.json").write_text(json.dumps(TRAINING_LOG))
    (model_dir / "checkpoints" / "epoch_002").mkdir(parents=True)
    (model_dir / "checkpoints" / "epoch_002" / "trainer_state.json").write_text("{}")
    return model_dir


@pytest.fixture
def metrics_files(tmp_path: Path) -> list[str]:
    """One evaluation file of every accepted format, for four datasets."""
    folder = tmp_path / "metrics"
    write_dataset_row(results((0.953, 0.893, 0.833, math.nan)), "visa", folder / "visa_row")
    write_per_class_table(results((0.9, 0.8, 0.7, 0.6)), folder / "mpdd_per_class")
    write_comparison(results((0.5, 0.4, 0.3, 0.2)), "btad", folder / "btad_comparison")
    evaluate_folder = folder / "sdd_evaluation"
    evaluate_folder.mkdir()
    raw = {**results((0.25, 0.5, 0.75, 1.0)), "dataset": "sdd"}
    (evaluate_folder / "results.json").write_text(json.dumps(raw))
    return [
        str(folder / "visa_row.json"),
        f"MPDD={folder / 'mpdd_per_class.json'}",
        str(folder / "btad_comparison.json"),
        str(evaluate_folder),
    ]


def test_card_metadata_and_model_index(trained_dir: Path, metrics_files: list[str], tmp_path: Path) -> None:
    card_path = tmp_path / "README.md"
    command = ["card", "--model", str(trained_dir), "--out", str(card_path), "--repo-id", REPO_ID, "--metrics"]
    assert main(command + metrics_files) == 0

    card = ModelCard.load(card_path)
    assert card.data.library_name == "transformers"
    assert card.data.license == "apache-2.0"
    assert {"anomaly-detection", "zero-shot", "genclip"} <= set(card.data.tags)
    assert card.data.pipeline_tag == "image-segmentation"
    assert card.data.datasets == ["mvtec_ad"]
    # The trainer's backbone is a local folder and the tiny CLIP is not ViT-L/14-336: no base model is claimed.
    assert card.data.base_model is None

    model_name, evaluations = model_index_to_eval_results(metadata_load(card_path)["model-index"])
    assert model_name == "genclip-tiny"
    found = {(e.dataset_name, e.metric_name): e.metric_value for e in evaluations}
    expected = {
        ("VisA", "Pixel AUROC (%)"): 95.3,
        ("VisA", "PRO / AUPRO, FPR <= 0.3 (%)"): 89.3,
        ("VisA", "Image AUROC (%)"): 83.3,
        ("MPDD", "Image AP (%)"): 60.0,
        ("BTAD", "Pixel AUROC (%)"): 50.0,
        ("KolektorSDD (SDD)", "Image AUROC (%)"): 75.0,
        ("KolektorSDD (SDD)", "Image AP (%)"): 100.0,
    }
    assert {key: found[key] for key in expected} == expected
    # VisA's image AP is undefined (nan -> null): left out of the model-index, "n/a" in the table.
    assert len(evaluations) == 4 * 4 - 1
    assert ("VisA", "Image AP (%)") not in found
    assert all(e.dataset_split == "test" for e in evaluations)

    text = card.text
    assert "| VisA | 95.3 | 89.3 | 83.3 | n/a | anomalyclip |" in text
    assert f'pipeline("anomaly-detection", model="{REPO_ID}", trust_remote_code=True)' in text
    assert "Trained on MVTec-AD." in text
    assert "- Final training loss: 1.2500 (epoch 2)." in text
    assert "learning rate 4e-05, 2 epochs, global batch 4" in text
    assert "GenCLIP: Generalizing CLIP Prompts for Zero-shot Anomaly Detection" in text
    assert "$" not in text.replace("$$", "")


def test_card_without_training_log_or_metrics(tiny_checkpoint_dir: Path) -> None:
    card = build_model_card(tiny_checkpoint_dir)
    assert card.data.eval_results is None
    assert "No evaluation results were given" in card.text
    assert "not recorded (no `training_log.json` beside the weights)" in card.text
    assert '"<user>/<repo>"' in card.text


def test_base_model_resolution(tiny_checkpoint_dir: Path) -> None:
    tiny = GenCLIPConfig.from_pretrained(tiny_checkpoint_dir)
    assert resolve_base_model(tiny) is None
    assert resolve_base_model(tiny, {"arguments": {"clip_model": "org/my-clip"}}) == "org/my-clip"
    assert resolve_base_model(GenCLIPConfig()) == DEFAULT_BASE_MODEL


def test_metrics_errors_name_the_file(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    write_per_class_table(results((0.9, 0.8, 0.7, 0.6)), tmp_path / "per_class")
    with pytest.raises(ValueError, match=r"per_class\.json.*does not name its dataset; give it as DATASET="):
        load_metrics(tmp_path / "per_class.json")
    assert load_metrics(tmp_path / "per_class.json", "mvtec")[0].dataset == "MVTec"
    (tmp_path / "other.json").write_text(json.dumps({"scores": [1, 2]}))
    with pytest.raises(ValueError, match=r"other\.json.*none of the accepted formats"):
        load_metrics(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_metrics(tmp_path / "missing.json")
    write_dataset_row(results((0.9, 0.8, 0.7, 0.6)), "mvtec", tmp_path / "row")
    with pytest.raises(ValueError, match="Two evaluation results for MVTec"):
        build_model_card(tiny_checkpoint_dir, [tmp_path / "row.json", f"mvtec={tmp_path / 'per_class.json'}"])


def test_card_escapes_user_text(trained_dir: Path, tmp_path: Path) -> None:
    log = json.loads((trained_dir / "training_log.json").read_text())
    log["arguments"].update({"classes": ["a|b", "<script>alert(1)</script>"], "split": "test|<b>"})
    (trained_dir / "training_log.json").write_text(json.dumps(log))
    write_dataset_row(results((0.9, 0.8, 0.7, 0.6)), "my|parts <img src=x>", tmp_path / "row")
    card = build_model_card(trained_dir, [tmp_path / "row.json"], model_name="tiny <b>|x</b>", repo_id=REPO_ID)
    text = card.text
    assert not re.search(r"<(script|img|b)\b", text)
    assert "# tiny &lt;b&gt;\\|x&lt;/b&gt;" in text and "&lt;script&gt;" in text
    row = next(line for line in text.splitlines() if line.startswith("| my"))
    assert row.startswith("| my\\|parts &lt;img src=x&gt; | 90.0 |")
    assert len(re.findall(r"(?<!\\)\|", row)) == 7  # the table's 6 columns, not one more
    with pytest.raises(ValueError, match=r"repo_id must be a Hub id like 'user/model', got 'a b/c\"d'"):
        build_model_card(trained_dir, repo_id='a b/c"d')


def test_card_command_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["card", "--model", str(tmp_path), "--out", str(tmp_path / "README.md")]) == 2
    assert "has no config.json" in capsys.readouterr().err


REMOTE_SCRIPT = r"""
import re, runpy
from pathlib import Path

import numpy as np
from PIL import Image

folder, repo_id = sys.argv[1], sys.argv[2]
Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 90, 3), dtype=np.uint8)).save("part.png")
card = Path(folder, "README.md").read_text()
snippets = re.findall(r"```python\n(.*?)```", card, re.S)
assert len(snippets) == 2, snippets
namespaces = []
for index, snippet in enumerate(snippets):
    Path(f"snippet_{index}.py").write_text(snippet.replace(repo_id, folder))
    namespaces.append(runpy.run_path(f"snippet_{index}.py"))
assert "genclip_hf" not in sys.modules
assert namespaces[0]["anomaly_map"].shape == (40, 90)
assert namespaces[1]["vision_branch"].shape == namespaces[1]["query_branch"].shape
print(type(namespaces[0]["detector"]).__module__)
"""


def test_upload_folder_file_set_and_remote_code(
    trained_dir: Path, metrics_files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "upload"
    command = ["push", "--model", str(trained_dir), "--repo", REPO_ID, "--folder", str(folder), "--no-upload"]
    assert main(command + ["--metrics", *metrics_files]) == 0
    assert "built" in capsys.readouterr().out
    assert upload_file_names(folder) == UPLOAD_FILES

    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_genclip.GenCLIPConfig",
        "AutoModel": "modeling_genclip.GenCLIPModel",
    }
    assert config["custom_pipelines"]["anomaly-detection"]["impl"] == (
        "pipeline_anomaly_detection.AnomalyDetectionPipeline"
    )
    card = ModelCard.load(folder / "README.md")
    assert len(card.data.eval_results) == 15

    completed = run_without_genclip(REMOTE_SCRIPT, [str(folder), REPO_ID], tmp_path)
    assert completed.stdout.strip().splitlines()[-1].startswith("transformers_modules.")


def test_upload_folder_checks(trained_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        build_upload_folder(tmp_path, tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="busy"):
        build_upload_folder(trained_dir, busy)
    folder = build_upload_folder(trained_dir, tmp_path / "upload")
    check_upload_folder(folder)
    (folder / "training_log.json").write_text("{}")
    (folder / "scoring.py").unlink()
    with pytest.raises(ValueError, match=re.escape("missing ['scoring.py'], unexpected ['training_log.json']")):
        check_upload_folder(folder)


def test_push_uploads_the_folder_in_one_commit(
    trained_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {}

    def fake_create_repo(repo_id: str, private: bool, token, exist_ok: bool) -> None:
        calls["create_repo"] = (repo_id, private, exist_ok)

    def fake_upload_folder(repo_id: str, folder_path: Path, commit_message: str, token) -> str:
        calls["upload"] = (repo_id, upload_file_names(folder_path), commit_message)
        calls["card"] = Path(folder_path, "README.md").read_text()
        return "https://huggingface.co/someone/genclip-tiny/commit/abc"

    monkeypatch.setattr("genclip_hf.publishing.create_repo", fake_create_repo)
    monkeypatch.setattr("genclip_hf.publishing.upload_folder", fake_upload_folder)
    assert main(["push", "--model", str(trained_dir), "--repo", REPO_ID, "--private"]) == 0
    assert calls["create_repo"] == (REPO_ID, True, True)
    assert calls["upload"] == (REPO_ID, UPLOAD_FILES, "Upload GenCLIP checkpoint")
    assert f'model="{REPO_ID}"' in calls["card"]


def test_model_and_processor_push_to_hub_upload_code_and_config(
    tiny_checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model.push_to_hub` + `processor.push_to_hub` (what `genclip train --push-to-hub` runs) upload the same
    weights, code and processor files as `genclip push`; the card comes from the repo (or a stub) instead."""
    import transformers.utils.hub as hub

    from genclip_hf import GenCLIPModel, GenCLIPProcessor

    uploaded: dict[str, list[str]] = {}

    class FakeApi:
        def create_repo(self, repo_id: str, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

    def fake_upload(self, working_dir, repo_id, files_timestamps, **kwargs):
        uploaded[type(self).__name__] = upload_file_names(working_dir)
        return "commit"

    monkeypatch.setattr(hub, "hf_api", FakeApi)
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *args, **kwargs: ModelCard("---\n---\nstub"))
    monkeypatch.setattr(hub.PushToHubMixin, "_upload_modified_files", fake_upload)
    GenCLIPModel.from_pretrained(tiny_checkpoint_dir).push_to_hub(REPO_ID)
    GenCLIPProcessor.from_pretrained(tiny_checkpoint_dir).push_to_hub(REPO_ID)
    model_files = set(uploaded["GenCLIPModel"])
    processor_files = set(uploaded["GenCLIPProcessor"])
    assert model_files | processor_files == set(UPLOAD_FILES)
    assert {"config.json", "model.safetensors", "modeling_genclip.py", "pipeline_anomaly_detection.py"} <= model_files
