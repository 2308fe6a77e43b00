"""Benchmarks and users' folders as `datasets.Dataset`s of one schema, Parquet export, synthetic data.

Schema (see `schema.FEATURES`): `image` (RGB), `mask` ("L", 0 normal / 255 anomalous pixel, all-zero
for normal images), `label` (0 normal / 1 anomalous), `class_name`, `defect_type`, `image_path`.
`open_dataset` opens any source (benchmark, folder, Parquet, save_to_disk, meta.json). Rows decode lazily;
`undecoded` + `decode_row` decode one row at a time with errors naming its `image_path`.
"""

from .benchmarks import BENCHMARKS, load_benchmark
from .export import export_parquet, push_to_hub
from .folders import load_folder, load_meta_json
from .rows import RowDecodeError, decode_row, undecoded
from .schema import ANOMALOUS, FEATURES, NORMAL
from .sources import SOURCES, open_dataset
from .summary import format_summary, summarize
from .synthetic import write_synthetic_benchmark

__all__ = [
    "ANOMALOUS",
    "BENCHMARKS",
    "FEATURES",
    "NORMAL",
    "SOURCES",
    "RowDecodeError",
    "decode_row",
    "export_parquet",
    "format_summary",
    "load_benchmark",
    "load_folder",
    "load_meta_json",
    "open_dataset",
    "push_to_hub",
    "summarize",
    "undecoded",
    "write_synthetic_benchmark",
]
