"""Every fact about a benchmark in one entry: names, paper tables, folder layout, protocol pairing and loader.

Adding a benchmark means one `Benchmark` in `BENCHMARK_REGISTRY` plus its loader in `genclip_hf.data.benchmarks`;
the loaders (`genclip_hf.data`), the paper comparisons (`metrics.reports`), the model card and the reproduction
scripts read everything else from here. The module imports nothing heavy: the loader is resolved on first use.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LOADER_MODULE = "genclip_hf.data.benchmarks"

_MVTEC_STYLE_LAYOUT = """  <root>/<class>/train/good/<name>.png
  <root>/<class>/test/good/<name>.png
  <root>/<class>/test/<defect>/<name>.png
  <root>/<class>/ground_truth/<defect>/<name>_mask.png"""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the zero-shot protocol.

    Attributes:
        name: the name of `load_benchmark`, `genclip evaluate --benchmark` and the reproduction scripts ("mvtec").
        display_name: the name shown to people ("MVTec-AD").
        paper_name: the spelling of the paper's tables and of `paper_results.csv` ("MVTec").
        per_class_table: number of the paper's per-class table (Tables 4–9).
        generic_term_table: number of the paper's generic-term table (Tables 10–15).
        aliases: other accepted spellings; matching ignores case and punctuation ("mvtec_ad" = "MVTec-AD").
        layout: the native folder layout, shown in loader errors.
        card_dataset_id: the dataset id written in a model card's metadata ("mvtec_ad").
        training_benchmark: `name` of the benchmark the protocol trains on before evaluating this one.
        default_root: the folder the reproduction scripts' examples use ("data/mvtec_anomaly_detection").
        loader_name: the loader function's name in `genclip_hf.data.benchmarks`.
    """

    name: str
    display_name: str
    paper_name: str
    per_class_table: int
    generic_term_table: int
    aliases: tuple[str, ...]
    layout: str
    card_dataset_id: str
    training_benchmark: str
    default_root: str
    loader_name: str

    @property
    def root_flag(self) -> str:
        """The reproduction scripts' option for this benchmark's root ("--dtd-synthetic")."""
        return "--" + self.name.replace("_", "-")

    @property
    def loader(self) -> Callable[..., Any]:
        """The loader, `(root, split="test", **options) -> datasets.Dataset` (imports `genclip_hf.data`)."""
        return getattr(importlib.import_module(_LOADER_MODULE), self.loader_name)

    @property
    def options(self) -> list[str]:
        """The keyword options the loader takes ("classes", "strict", "cache_dir", ...)."""
        parameters = inspect.signature(self.loader).parameters.values()
        return [parameter.name for parameter in parameters if parameter.kind is parameter.KEYWORD_ONLY]


BENCHMARK_REGISTRY: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            name="mvtec",
            display_name="MVTec-AD",
            paper_name="MVTec",
            per_class_table=4,
            generic_term_table=10,
            aliases=("mvtec_ad",),
            layout=_MVTEC_STYLE_LAYOUT,
            card_dataset_id="mvtec_ad",
            training_benchmark="visa",
            default_root="data/mvtec_anomaly_detection",
            loader_name="load_mvtec",
        ),
        Benchmark(
            name="visa",
            display_name="VisA",
            paper_name="VisA",
            per_class_table=5,
            generic_term_table=11,
            aliases=(),
            layout="""  <root>/split_csv/1cls.csv   (object,split,label,image,mask; paths from <root>)
  <root>/<class, e.g. pcb1>/Data/Images/{Normal,Anomaly}/<name>.JPG
  <root>/<class>/Data/Masks/Anomaly/<name>.png""",
            card_dataset_id="visa",
            training_benchmark="mvtec",
            default_root="data/VisA_20220922",
            loader_name="load_visa",
        ),
        Benchmark(
            name="mpdd",
            display_name="MPDD",
            paper_name="MPDD",
            per_class_table=6,
            generic_term_table=13,
            aliases=(),
            layout=_MVTEC_STYLE_LAYOUT,
            card_dataset_id="mpdd",
            training_benchmark="mvtec",
            default_root="data/MPDD",
            loader_name="load_mpdd",
        ),
        Benchmark(
            name="btad",
            display_name="BTAD",
            paper_name="BTAD",
            per_class_table=7,
            generic_term_table=12,
            aliases=(),
            layout="""  <root>/01|02|03/train/ok/<name>.bmp|.png
  <root>/01|02|03/test/ok/<name>.bmp|.png
  <root>/01|02|03/test/ko/<name>.bmp|.png
  <root>/01|02|03/ground_truth/ko/<name>.png|.bmp""",
            card_dataset_id="btad",
            training_benchmark="mvtec",
            default_root="data/BTAD",
            loader_name="load_btad",
        ),
        Benchmark(
            name="sdd",
            display_name="KolektorSDD (SDD)",
            paper_name="SDD",
            per_class_table=8,
            generic_term_table=14,
            aliases=("kolektorsdd",),
            layout="""  <root>/kos01/Part0.jpg
  <root>/kos01/Part0_label.bmp   (palette or grey BMP, same size; any non-zero pixel is a defect)
  ...
  <root>/kos50/Part7.jpg""",
            card_dataset_id="kolektorsdd",
            training_benchmark="mvtec",
            default_root="data/KolektorSDD",
            loader_name="load_sdd",
        ),
        Benchmark(
            name="dtd_synthetic",
            display_name="DTD-Synthetic",
            paper_name="DTD-Synthetic",
            per_class_table=9,
            generic_term_table=15,
            aliases=("dtd",),
            layout="""  <root>/<texture, e.g. Blotchy_099>/train/good/<name>.png
  <root>/<texture>/test/good/<name>.png
  <root>/<texture>/test/bad/<name>.png
  <root>/<texture>/ground_truth/bad/<name>_mask.png""",
            card_dataset_id="dtd_synthetic",
            training_benchmark="mvtec",
            default_root="data/DTD-Synthetic",
            loader_name="load_dtd_synthetic",
        ),
    )
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY: dict[str, Benchmark] = {
    _key(spelling): benchmark
    for benchmark in BENCHMARK_REGISTRY.values()
    for spelling in (benchmark.name, benchmark.display_name, benchmark.paper_name, *benchmark.aliases)
}


def find_benchmark(name_or_alias: str) -> Benchmark | None:
    """The benchmark spelled `name_or_alias` (its name, display or paper name, or an alias; any case and
    punctuation), or `None`."""
    return _BY_KEY.get(_key(name_or_alias))


def get_benchmark(name_or_alias: str) -> Benchmark:
    """Like `find_benchmark`, but an unknown name is a `ValueError` listing the known ones."""
    benchmark = find_benchmark(name_or_alias)
    if benchmark is None:
        raise ValueError(
            f"Unknown benchmark {name_or_alias!r}; expected one of {sorted(BENCHMARK_REGISTRY)} "
            f"(or a display name, paper name or alias such as 'MVTec-AD', 'mvtec_ad', 'KolektorSDD')."
        )
    return benchmark


def paper_dataset_name(name: str) -> str:
    """The paper's spelling of a benchmark's name (`"mvtec_ad"` → `"MVTec"`); other names are returned unchanged."""
    benchmark = find_benchmark(name)
    return name if benchmark is None else benchmark.paper_name


__all__ = ["BENCHMARK_REGISTRY", "Benchmark", "find_benchmark", "get_benchmark", "paper_dataset_name"]
