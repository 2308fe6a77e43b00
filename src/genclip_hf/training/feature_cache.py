"""On-disk cache of the frozen backbone features used for training.

The CLIP backbone of every trainable method is frozen, so each training image's `model.frozen_features` (GenCLIP:
the feature layers' outputs `(L, 1 + H*W, vision_width)`) are computed once and stored as float16 safetensors files.
A cache folder is keyed by everything that decides the features: the backbone (vision config and a hash of the vision
weights), the image preprocessing (size, mean/std, resampling), the method's `frozen_features_key` (layers, input
size, ...) and the storage dtype. Inside it, one file per image is named by the hash of the image's decoded RGB
pixels, so renamed or re-exported images are found again.

Files are written to a temporary name and moved into place with `os.replace`, so an interrupted run leaves only
complete files behind. Processes of a distributed run fill disjoint shards of the rows, so each file is written by one
process (an image repeated in two shards is written twice, atomically, with identical content).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from huggingface_hub import constants
from safetensors.torch import load_file, save
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..images import image_content_hash, to_rgb_image
from ..processing_anomaly_detection import AnomalyDetectionProcessor
from ..storage import atomic_write_bytes

# Bump when the stored tensors change meaning, so that old caches are not reused.
CACHE_FORMAT_VERSION = 2
STORAGE_DTYPE = torch.float16
_HEADER_BYTES = 256


def default_feature_cache_dir() -> Path:
    """`$GENCLIP_FEATURE_CACHE`, or `<HF_HOME>/genclip_hf/features`."""
    override = os.environ.get("GENCLIP_FEATURE_CACHE")
    return Path(override) if override else Path(constants.HF_HOME) / "genclip_hf" / "features"


def backbone_fingerprint(model: PreTrainedModel) -> str:
    """SHA-256 of the frozen vision tower: its config and every weight that produces the cached tensors.

    Hashes the vision transformer (embeddings, layer norms, blocks) and the visual projection; reads each weight once
    (about 1.2 GB, a few seconds, for ViT-L/14).
    """
    digest = hashlib.sha256()
    digest.update(model.config.clip_config.vision_config.to_json_string(use_diff=False).encode())
    modules = {"vision_model": model.clip.vision_model, "visual_projection": model.clip.visual_projection}
    for prefix, module in modules.items():
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Frozen features of one backbone, method and preprocessing: one safetensors file per image.

    Args:
        root: top folder holding one sub-folder per cache key.
        key_fields: everything that decides the features (see [`FeatureCache.for_model`]); hashed into the key.
        features_shape: the shape of one image's features.
    """

    def __init__(self, root: str | Path, key_fields: dict, features_shape: tuple[int, ...]):
        self.key_fields = key_fields
        self.key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:32]
        self.directory = Path(root) / self.key
        self.features_shape = tuple(features_shape)

    @classmethod
    def for_model(
        cls,
        root: str | Path,
        model: PreTrainedModel,
        processor: AnomalyDetectionProcessor,
        backbone_id: str | None = None,
    ) -> FeatureCache:
        """The cache of `model.frozen_features` under `processor`'s image preprocessing.

        Args:
            root: top cache folder (e.g. [`default_feature_cache_dir`]).
            model: a trainable detector (training contract of `genclip_hf.detection.AnomalyDetectorMixin`).
            processor: its processor; image size, mean/std and resampling are part of the key.
            backbone_id: a precomputed [`backbone_fingerprint`] of `model`; computed when `None`.
        """
        image_processor = processor.image_processor
        key_fields = {
            "format_version": CACHE_FORMAT_VERSION,
            "storage_dtype": str(STORAGE_DTYPE),
            "backbone": backbone_id or backbone_fingerprint(model),
            "features": model.frozen_features_key(),
            "image_size": processor.image_size,
            "image_mean": [float(value) for value in image_processor.image_mean],
            "image_std": [float(value) for value in image_processor.image_std],
            "resample": int(image_processor.resample),
        }
        return cls(root, key_fields, model.frozen_features_shape())

    @property
    def bytes_per_image(self) -> int:
        """Disk bytes of one cached image (tensor data plus the safetensors header)."""
        return torch.Size(self.features_shape).numel() * STORAGE_DTYPE.itemsize + _HEADER_BYTES

    def path(self, image_hash: str) -> Path:
        """File of the image with content hash `image_hash`."""
        return self.directory / image_hash[:2] / f"{image_hash}.safetensors"

    def contains(self, image_hash: str) -> bool:
        return self.path(image_hash).is_file()

    def prepare(self) -> None:
        """Create the cache folder and describe its key in `key.json` (for people; never read back)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        description = self.directory / "key.json"
        if not description.exists():
            atomic_write_bytes(description, json.dumps(self.key_fields, indent=2, sort_keys=True).encode())

    def save(self, image_hash: str, features: torch.Tensor) -> None:
        """Store one image's `features` (of `features_shape`) atomically (temporary file, then `os.replace`)."""
        self._check_shape(features, f"features of image {image_hash}")
        tensors = {"features": features.detach().to("cpu", STORAGE_DTYPE).contiguous()}
        atomic_write_bytes(self.path(image_hash), save(tensors, metadata={"cache_key": self.key}))

    def load(self, image_hash: str) -> torch.Tensor:
        """One image's float16 features.

        Raises:
            FileNotFoundError: the image is not cached.
            ValueError: naming the file, when it is corrupt or holds other tensors (delete it to recompute).
        """
        path = self.path(image_hash)
        if not path.is_file():
            raise FileNotFoundError(f"Image {image_hash} is not in the feature cache {self.directory}.")
        try:
            tensors = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for truncated or foreign files
            raise ValueError(f"Feature cache file {path} is unreadable ({error}); delete it to recompute.") from error
        if set(tensors) != {"features"}:
            raise ValueError(f"Feature cache file {path} holds {sorted(tensors)}; delete it to recompute.")
        self._check_shape(tensors["features"], f"feature cache file {path}")
        return tensors["features"]

    def _check_shape(self, features: torch.Tensor, what: str) -> None:
        if tuple(features.shape) != self.features_shape:
            raise ValueError(f"{what} must have shape {self.features_shape}, got {tuple(features.shape)}.")


class _ImageRows(Dataset):
    """Rows `indices` of a dataset as `(row index, content hash, pixel values or None)`."""

    def __init__(
        self, dataset: datasets.Dataset, indices: list[int], processor: AnomalyDetectionProcessor, with_pixels: bool
    ):
        self.images = dataset.select_columns(["image"])
        self.indices = indices
        self.processor = processor
        self.with_pixels = with_pixels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, str, torch.Tensor | None]:
        index = self.indices[position]
        image = to_rgb_image(self.images[index]["image"], f"image of row {index}")
        pixels = None
        if self.with_pixels:
            pixels = self.processor.image_processor([image], return_tensors="pt")["pixel_values"][0]
        return index, image_content_hash(image), pixels


def _collate_rows(rows: list[tuple[int, str, torch.Tensor | None]]) -> tuple[list[int], list[str], torch.Tensor | None]:
    indices, hashes, pixels = zip(*rows, strict=True)
    return list(indices), list(hashes), None if pixels[0] is None else torch.stack(pixels)


def fill_feature_cache(
    cache: FeatureCache,
    model: PreTrainedModel,
    processor: AnomalyDetectionProcessor,
    dataset: datasets.Dataset,
    accelerator: Accelerator,
    batch_size: int = 8,
    num_workers: int = 0,
) -> list[str]:
    """Compute and store the features of every image of `dataset` that `cache` lacks.

    Process `r` of `n` handles rows `r, r + n, ...`: it hashes them, encodes the missing ones in batches of
    `batch_size` with `model.frozen_features` (float32, outside autocast) and writes them. Features already cached by an
    earlier or interrupted run are reused.

    Args:
        cache: the target cache; its folder is created.
        model: the trainable detector, on `accelerator.device`.
        processor: its processor (image preprocessing).
        dataset: rows with an `image` column.
        accelerator: gives the process index/count and gathers the hashes.
        batch_size: images per vision forward.
        num_workers: DataLoader workers decoding and hashing images.
    Returns:
        The content hash of every row of `dataset`, in row order, on every process.
    """
    cache.prepare()
    shard = list(range(accelerator.process_index, len(dataset), accelerator.num_processes))
    show_progress = accelerator.is_local_main_process
    hashing = DataLoader(
        _ImageRows(dataset, shard, processor, with_pixels=False),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate_rows,
    )
    known: list[tuple[int, str]] = []
    for indices, hashes, _ in tqdm(hashing, desc="hashing images", disable=not show_progress):
        known.extend(zip(indices, hashes, strict=True))
    missing = [index for index, image_hash in known if not cache.contains(image_hash)]
    encoding = DataLoader(
        _ImageRows(dataset, missing, processor, with_pixels=True),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate_rows,
    )
    for _, hashes, pixels in tqdm(encoding, desc="caching features", disable=not show_progress):
        features = model.frozen_features(pixels.to(accelerator.device))
        for row, image_hash in enumerate(hashes):
            cache.save(image_hash, features[row])
    all_known = gather_object(known)
    computed = sum(gather_object([len(missing)]))
    if accelerator.is_main_process:
        print(f"Feature cache: {computed} image(s) encoded, {len(dataset) - computed} reused from {cache.directory}")
    hashes_by_row = dict(all_known)
    return [hashes_by_row[index] for index in range(len(dataset))]


def format_bytes(size: float) -> str:
    """`1234567` -> `"1.2 MB"` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


__all__ = [
    "CACHE_FORMAT_VERSION",
    "FeatureCache",
    "backbone_fingerprint",
    "default_feature_cache_dir",
    "fill_feature_cache",
    "format_bytes",
]
