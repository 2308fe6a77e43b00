"""Where an evaluation keeps its finished classes, and when a rerun may reuse them.

A class's record is saved (atomically) as `classes/<class>.<run key>.json` as soon as the class finishes. The run
key hashes everything that changes the numbers: the model (path, weight-file stamps, config), the image processor,
the effective settings and the protocol. A record is reused only under the same run key and the same data
fingerprint, which covers each row's path and label and the content of its image and mask (file size and
modification time, or the bytes of embedded images).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import try_to_load_from_cache

from ..data.rows import undecoded
from ..metrics import FPR_LIMIT
from ..storage import atomic_write_json, json_digest, slug

logger = logging.getLogger(__name__)

RESULTS_FORMAT_VERSION = 2


def run_identity(detector: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything that changes the numbers: model path, weight-file stamps, config, image processor, the effective
    settings (given ones over the config's) and the protocol."""
    model = detector.model
    config = model.config
    name_or_path = str(getattr(model, "name_or_path", "") or config._name_or_path)
    if Path(name_or_path).is_dir():
        name_or_path = str(Path(name_or_path).resolve())
        weights: Any = [
            [path.name, path.stat().st_size, path.stat().st_mtime_ns]
            for path in sorted(Path(name_or_path).iterdir())
            if path.suffix == ".safetensors"
        ]
    else:
        weights = {"revision": _hub_revision(name_or_path) or getattr(config, "_commit_hash", None)}
    config_dict = {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}
    effective = model.resolve_settings(settings)
    return {
        "format": RESULTS_FORMAT_VERSION,
        "method": config.model_type,
        "model": name_or_path,
        "weights": weights,
        "dtype": str(model.dtype),
        "config": config_dict,
        "image_processor": detector.image_processor.to_dict(),
        "settings": effective,
        "fpr_limit": FPR_LIMIT,
    }


def _hub_revision(repo_id: str) -> str | None:
    """The commit of the cached Hub snapshot of `repo_id` (the folder name under `snapshots/`), if cached."""
    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def data_fingerprint(rows: datasets.Dataset) -> str:
    """Digest of the rows' paths, labels and image and mask contents (file size + mtime, or embedded bytes)."""
    entries = []
    for row in undecoded(rows).select_columns(["image_path", "label", "image", "mask"]):
        entries.append([row["image_path"], row["label"], _content_stamp(row["image"]), _content_stamp(row["mask"])])
    return json_digest(entries)


def _content_stamp(encoded: dict | None) -> Any:
    if encoded is None:
        return None
    if encoded.get("bytes") is not None:
        return hashlib.sha256(encoded["bytes"]).hexdigest()
    path = Path(encoded["path"]) if encoded.get("path") else None
    if path is None or not path.exists():
        return None
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class ClassStore:
    """The saved class records of one output folder under one run key."""

    def __init__(self, out_dir: Path, run_key: str):
        self.directory = out_dir / "classes"
        self.run_key = run_key
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, class_name: str) -> Path:
        return self.directory / f"{slug(class_name)}.{self.run_key}.json"

    def load(self, class_name: str, fingerprint: str) -> dict[str, Any] | None:
        """The saved record of `class_name` when it is complete and was made on the same data; else `None`."""
        path = self.path(class_name)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("%s: cannot read %s (%s); recomputing", class_name, path, error)
            return None
        if record.get("class_name") != class_name or record.get("data_fingerprint") != fingerprint:
            logger.warning("%s: the images or masks changed since %s was written; recomputing", class_name, path)
            return None
        return record

    def save(self, class_name: str, record: dict[str, Any]) -> Path:
        return atomic_write_json(self.path(class_name), record)

    def other_run_keys(self) -> list[str]:
        """Run keys of other records in the folder (other models, configs or settings)."""
        keys = {path.suffixes[-2][1:] for path in self.directory.glob("*.*.json") if len(path.suffixes) >= 2}
        return sorted(keys - {self.run_key})


__all__ = ["ClassStore", "data_fingerprint", "run_identity"]
