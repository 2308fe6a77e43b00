"""Publishing a GenCLIP checkpoint to the Hugging Face Hub (`genclip push`).

[`build_upload_folder`] re-saves a checkpoint with the installed package into a fresh folder, so the upload holds
exactly what `from_pretrained` and `pipeline(..., trust_remote_code=True)` need and nothing of the training run
(checkpoints/, training_log.json, metrics): config.json (with auto_map and custom_pipelines), the safetensors
weights, the processor files, the modeling, processing and pipeline code, and README.md, the model card.
[`push_to_hub`] uploads that folder in one commit.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import create_repo, upload_folder
from huggingface_hub.errors import HTTPError

from .configuration_genclip import HUB_CUSTOM_PIPELINES
from .model_card import DatasetMetrics, build_model_card
from .modeling_genclip import GenCLIPModel
from .processing_genclip import GenCLIPProcessor

CARD_NAME = "README.md"
REQUIRED_AUTO_MAP = ("AutoConfig", "AutoModel")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WEIGHTS_PATTERN = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$")
RELATIVE_IMPORT = re.compile(r"^\s*from \.(\w+) import", re.MULTILINE)


def build_upload_folder(
    model_dir: str | Path,
    out_dir: str | Path,
    metrics: Sequence[str | Path | DatasetMetrics] = (),
    **card_options: Any,
) -> Path:
    """Write the Hub upload folder of the checkpoint in `model_dir` to the new or empty folder `out_dir`.

    Args:
        model_dir: a saved GenCLIP checkpoint (e.g. the output folder of `genclip train`).
        out_dir: where to write; must not exist or be empty, so that it holds nothing but the upload.
        metrics: evaluation JSON files for the card's results (see `genclip_hf.model_card`).
        card_options: keyword arguments of `genclip_hf.model_card.build_model_card` (repo_id, model_name, ...).
    Returns:
        `out_dir` as a `Path`, checked by [`check_upload_folder`].
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{str(model_dir)!r} is not a saved GenCLIP checkpoint: it has no config.json.")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"Upload folder {str(out_dir)!r} exists and is not an empty folder; give a new path.")
    card = build_model_card(model_dir, metrics, **card_options)  # checks the checkpoint's kind and the card options
    model = GenCLIPModel.from_pretrained(model_dir)
    processor = GenCLIPProcessor.from_pretrained(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card.save(out_dir / CARD_NAME)
    check_upload_folder(out_dir)
    return out_dir


def upload_file_names(folder: str | Path) -> list[str]:
    """The relative paths of every file under `folder`, sorted."""
    folder = Path(folder)
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def check_upload_folder(folder: str | Path) -> None:
    """Raise `ValueError` naming what is missing from or extra in a Hub upload folder.

    Expected, and nothing else: config.json whose auto_map covers AutoConfig and AutoModel and whose
    custom_pipelines has "anomaly-detection"; model.safetensors (or its shards and index); processor_config.json
    with the tokenizer files; the modules that auto_map, custom_pipelines and the processor's auto_map name, with
    every module they import relatively; and README.md.
    """
    folder = Path(folder)
    names = set(upload_file_names(folder))
    config = _read_json(folder / "config.json")
    processor_config = _read_json(folder / "processor_config.json")
    auto_map = config.get("auto_map", {})
    missing = [f"config.json auto_map[{key!r}]" for key in REQUIRED_AUTO_MAP if key not in auto_map]
    if config.get("custom_pipelines", {}).get("anomaly-detection") != HUB_CUSTOM_PIPELINES["anomaly-detection"]:
        missing.append("config.json custom_pipelines['anomaly-detection']")
    if "AutoProcessor" not in processor_config.get("auto_map", {}):
        missing.append("processor_config.json auto_map['AutoProcessor']")
    references = [
        *auto_map.values(),
        *processor_config.get("auto_map", {}).values(),
        HUB_CUSTOM_PIPELINES["anomaly-detection"]["impl"],
    ]
    expected = {"config.json", "processor_config.json", *TOKENIZER_FILES, CARD_NAME}
    expected |= _code_closure(folder, {f"{reference.split('.')[0]}.py" for reference in references})
    weights = {name for name in names if WEIGHTS_PATTERN.match(name)}
    if not weights:
        missing.append("model.safetensors")
    missing += sorted(expected - names)
    extra = sorted(names - expected - weights)
    if missing or extra:
        raise ValueError(f"Upload folder {str(folder)!r} is not publishable: missing {missing}, unexpected {extra}.")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _code_closure(folder: Path, modules: set[str]) -> set[str]:
    """`modules` (file names) and every module of `folder` they import relatively, transitively."""
    found: set[str] = set()
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        path = folder / name
        if path.is_file():
            pending += [f"{module}.py" for module in RELATIVE_IMPORT.findall(path.read_text())]
    return found


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    metrics: Sequence[str | Path | DatasetMetrics] = (),
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload GenCLIP checkpoint",
    folder: str | Path | None = None,
    **card_options: Any,
) -> str:
    """Build the upload folder of `model_dir` (in `folder`, else a temporary one) and upload it to `repo_id`.

    Returns:
        The URL of the commit.
    """
    card_options.setdefault("repo_id", repo_id)
    with tempfile.TemporaryDirectory() as temporary:
        upload_dir = build_upload_folder(model_dir, folder or Path(temporary) / "upload", metrics, **card_options)
        try:
            create_repo(repo_id, private=private, token=token, exist_ok=True)
            commit = upload_folder(repo_id=repo_id, folder_path=upload_dir, commit_message=commit_message, token=token)
        except HTTPError as error:
            raise OSError(f"Upload to the Hub repo {repo_id!r} failed: {error}") from error
    return str(commit)


__all__ = ["build_upload_folder", "check_upload_folder", "push_to_hub", "upload_file_names"]
