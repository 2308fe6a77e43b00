"""The "HF datasets version" of a benchmark: Parquet shards with the image bytes embedded."""

from __future__ import annotations

import os
import re
from pathlib import Path

import datasets
import pyarrow.parquet as pq
from datasets.table import embed_table_storage

_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_IMAGE_COLUMNS = ("image", "mask")


def export_parquet(
    dataset: datasets.Dataset,
    out_dir: str | Path,
    *,
    split: str = "test",
    max_shard_size: int | str = "500MB",
    batch_size: int = 64,
) -> list[Path]:
    """Write `dataset` as `<out_dir>/<split>-NNNNN-of-NNNNN.parquet` with every image's bytes embedded.

    Rows keep their order; a shard closes before it would pass `max_shard_size` (counted as the
    encoded image and mask bytes). Memory stays at about one batch. Read back with
    `datasets.load_dataset("parquet", data_files=[...], split="train")` (features come from the file).

    Args:
        dataset: a dataset whose image columns are `datasets.Image` (paths or bytes).
        out_dir: output folder (created).
        split: split name used in the shard file names.
        max_shard_size: bytes per shard, as an int or a string like "500MB" / "1GiB".
        batch_size: rows embedded and written at a time.

    Returns:
        The shard paths in row order.

    Raises:
        ValueError: a bad `split`, `max_shard_size` or `batch_size`, or `out_dir` is a file.
        PermissionError: `out_dir` cannot be created or written.
        FileNotFoundError: a row's image or mask file no longer exists.
    """
    limit = _parse_size(max_shard_size)
    if not re.fullmatch(r"\w+", split):
        raise ValueError(f"split must be a plain name like 'test', got {split!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    out_dir = _writable_folder(Path(out_dir))
    bounds = _shard_bounds(_row_sizes(dataset, batch_size), limit)
    schema = dataset.features.arrow_schema
    paths = []
    for index, (start, stop) in enumerate(bounds):
        path = out_dir / f"{split}-{index:05d}-of-{len(bounds):05d}.parquet"
        shard = dataset.select(range(start, stop)).with_format("arrow")
        with pq.ParquetWriter(path, schema=schema) as writer:
            for batch in shard.iter(batch_size):
                writer.write_table(embed_table_storage(batch).cast(schema))
        paths.append(path)
    return paths


def push_to_hub(
    dataset: datasets.Dataset,
    repo_id: str,
    *,
    split: str = "test",
    private: bool | None = None,
    token: str | None = None,
    max_shard_size: int | str = "500MB",
) -> None:
    """Upload `dataset` to the Hub dataset repo `repo_id` as Parquet with embedded images (needs network)."""
    dataset.push_to_hub(repo_id, split=split, private=private, token=token, max_shard_size=max_shard_size)


def _writable_folder(folder: Path) -> Path:
    """`folder`, created if absent; a `ValueError` if it is a file, a `PermissionError` if it cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"Output folder {str(folder)!r} is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise ValueError(f"Cannot create output folder {str(folder)!r}: {error.strerror} ({error.filename}).") from None
    except OSError as error:
        raise PermissionError(f"Cannot create output folder {str(folder)!r}: {error.strerror}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"Output folder {str(folder)!r} is not writable.")
    return folder


def _parse_size(size: int | str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise ValueError(f"max_shard_size must be bytes or a string like '500MB', got {size!r}.")
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?I?B)\s*", size.upper())
        if match is None:
            raise ValueError(f"max_shard_size must be bytes or a string like '500MB', got {size!r}.")
        value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if value <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}.")
    return value


def _row_sizes(dataset: datasets.Dataset, batch_size: int) -> list[int]:
    """Encoded bytes of each row's image columns: the stored bytes, or the size of the file they point to."""
    columns = [c for c in _IMAGE_COLUMNS if c in dataset.column_names]
    sizes = [0] * len(dataset)
    position = 0
    for batch in dataset.select_columns(columns).with_format("arrow").iter(batch_size):
        for column in columns:
            cells = batch.column(column).to_pylist()
            for offset, cell in enumerate(cells):
                sizes[position + offset] += _cell_size(cell)
        position += batch.num_rows
    return sizes


def _cell_size(cell: dict | None) -> int:
    if cell is None:
        return 0
    if cell.get("bytes") is not None:
        return len(cell["bytes"])
    if not cell.get("path"):
        return 0
    try:
        return os.path.getsize(cell["path"])
    except OSError as error:
        raise FileNotFoundError(
            f"Cannot export: the dataset refers to {cell['path']!r}, which cannot be read ({error.strerror}); "
            "load the dataset again from the existing files."
        ) from None


def _shard_bounds(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    bounds, start, total = [], 0, 0
    for row, size in enumerate(sizes):
        if row > start and total + size > limit:
            bounds.append((start, row))
            start, total = row, 0
        total += size
    bounds.append((start, len(sizes)))
    return bounds
