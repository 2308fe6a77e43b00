"""The six benchmark loaders on miniature trees written here in each dataset's native layout."""

from __future__ import annotations

import csv
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf.benchmark_registry import BENCHMARK_REGISTRY, get_benchmark, paper_dataset_name
from genclip_hf.data import BENCHMARKS, FEATURES, load_benchmark
from genclip_hf.data.sdd import adaclip_normal_split

SIZE = (40, 30)  # (width, height): non-square, so a swapped axis shows
DEFECT_BOX = (5, 4, 15, 12)  # (left, upper, right, lower) of every drawn defect


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE, mode: str = "RGB") -> np.ndarray:
    """Random image at `path` (format from the suffix); returns its pixels as written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = np.random.default_rng(seed).integers(0, 256, channels, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return np.asarray(Image.open(path))


def write_mask(path: Path, size: tuple[int, int] = SIZE, value: int = 255, palette: bool = False) -> None:
    """Mask with `DEFECT_BOX` set to `value` ("L"), or to palette index 1 (white; 0 for `value=0`) when `palette`
    (the palette written in full, as KolektorSDD's labels have it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    left, upper, right, lower = DEFECT_BOX
    pixels[upper:lower, left:right] = int(value > 0) if palette else value
    mask = Image.fromarray(pixels)
    if palette:
        mask = mask.convert("P")
        mask.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    mask.save(path)


def expected_mask(size: tuple[int, int] = SIZE) -> np.ndarray:
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    left, upper, right, lower = DEFECT_BOX
    pixels[upper:lower, left:right] = 255
    return pixels


def write_category_tree(
    root: Path, classes: tuple[str, ...], normal: str, defects: tuple[str, ...], image_ext: str, mask_ext: str
) -> Path:
    """MVTec-style tree: 2 train normals, 1 test normal and 2 images per defect type for each class."""
    for c, name in enumerate(classes):
        for i in range(2):
            write_image(root / name / "train" / normal / f"{i:03d}{image_ext}", seed=100 * c + i)
        write_image(root / name / "test" / normal / f"000{image_ext}", seed=100 * c + 10)
        for d, defect in enumerate(defects):
            for i in range(2):
                write_image(root / name / "test" / defect / f"{i:03d}{image_ext}", seed=100 * c + 20 + 2 * d + i)
                stem = f"{i:03d}_mask" if mask_ext == "_mask.png" else f"{i:03d}"
                suffix = ".png" if mask_ext == "_mask.png" else mask_ext
                write_mask(root / name / "ground_truth" / defect / f"{stem}{suffix}")
    (root / "license.txt").write_text("not an image")
    return root


def check_schema(dataset: datasets.Dataset) -> None:
    assert dataset.features == FEATURES
    for row in dataset:
        mask = np.asarray(row["mask"])
        assert row["mask"].mode == "L" and row["image"].mode == "RGB"
        assert row["mask"].size == row["image"].size
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.any() == bool(row["label"])


@pytest.mark.parametrize(
    ("benchmark", "classes", "defects"),
    [
        ("mvtec", ("bottle", "screw"), ("broken_large", "scratch")),
        ("mpdd", ("metal_plate", "tubes"), ("major_rust",)),
        ("dtd_synthetic", ("Blotchy_099", "Woven_127"), ("bad",)),
    ],
)
def test_mvtec_style_layouts(tmp_path: Path, benchmark: str, classes: tuple, defects: tuple) -> None:
    root = write_category_tree(tmp_path / benchmark, classes, "good", defects, ".png", "_mask.png")
    test = load_benchmark(benchmark, root)
    assert len(test) == len(classes) * (1 + 2 * len(defects))
    assert test["class_name"][:] == sorted(test["class_name"][:])
    first = classes[0]
    rows = [r for r in test.select_columns(["class_name", "defect_type", "image_path"]) if r["class_name"] == first]
    expected_types = sorted([*defects, "good"])
    assert [r["defect_type"] for r in rows] == [t for t in expected_types for _ in range(1 if t == "good" else 2)]
    assert rows[0]["image_path"] == str((root / first / "test" / expected_types[0] / "000.png").resolve())
    check_schema(test)
    anomalous = test.filter(lambda label: label == 1, input_columns="label")
    assert np.array_equal(np.asarray(anomalous[0]["mask"]), expected_mask())

    train = load_benchmark(benchmark, root, split="train")
    assert len(train) == 2 * len(classes) and set(train["label"][:]) == {0}
    assert load_benchmark(benchmark, root, classes=[classes[1]])["class_name"][:] == [classes[1]] * (
        1 + 2 * len(defects)
    )


def test_btad_bmp_and_png_masks(tmp_path: Path) -> None:
    root = tmp_path / "BTech_Dataset_transformed"
    write_category_tree(root, ("01",), "ok", ("ko",), ".bmp", ".png")
    write_category_tree(root, ("02",), "ok", ("ko",), ".png", ".png")
    write_category_tree(root, ("03",), "ok", ("ko",), ".bmp", ".bmp")
    dataset = load_benchmark("btad", root)
    assert dataset["class_name"][:] == ["01"] * 3 + ["02"] * 3 + ["03"] * 3
    assert dataset["defect_type"][:3] == ["ko", "ko", "ok"]
    assert dataset["label"][:3] == [1, 1, 0]
    check_schema(dataset)
    source = np.asarray(Image.open(root / "01" / "test" / "ko" / "000.bmp"))
    assert np.array_equal(np.asarray(dataset[0]["image"]), source)


def write_visa(root: Path) -> Path:
    rows = []
    for c, name in enumerate(("pcb1", "pipe_fryum")):
        for split, state, count in (("train", "normal", 2), ("test", "normal", 1), ("test", "anomaly", 2)):
            for i in range(count):
                folder = "Normal" if state == "normal" else "Anomaly"
                image = f"{name}/Data/Images/{folder}/{split}{i:03d}.JPG"
                write_image(root / image, seed=50 * c + 3 * i + len(rows))
                mask = ""
                if state == "anomaly":
                    mask = f"{name}/Data/Masks/Anomaly/{split}{i:03d}.png"
                    write_mask(root / mask, value=1)  # {0, 1} masks must come out as {0, 255}
                rows.append({"object": name, "split": split, "label": state, "image": image, "mask": mask})
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["object", "split", "label", "image", "mask"])
        writer.writeheader()
        writer.writerows(reversed(rows))  # the loader sorts
    return root


def test_visa_csv(tmp_path: Path) -> None:
    root = write_visa(tmp_path / "VisA")
    test = load_benchmark("visa", root)
    assert test["class_name"][:] == ["pcb1"] * 3 + ["pipe_fryum"] * 3
    assert test["defect_type"][:3] == ["anomaly", "anomaly", "normal"]
    check_schema(test)
    assert np.array_equal(np.asarray(test[0]["mask"]), expected_mask())
    assert len(load_benchmark("visa", root, split="train")) == 4
    assert len(load_benchmark("visa", root, classes=["pipe_fryum"])) == 3


def write_kolektor(root: Path, size: tuple[int, int] = (20, 31)) -> Path:
    """kos01..kos02 with 3 parts each; kos02/Part1 has a defect in rows 4..12 (the first and second band)."""
    for k, item in enumerate(("kos01", "kos02")):
        for part in range(3):
            write_image(root / item / f"Part{part}.jpg", seed=10 * k + part, size=size, mode="L")
            defective = item == "kos02" and part == 1
            label = root / item / f"Part{part}_label.bmp"
            write_mask(label, size=size, value=255 if defective else 0, palette=True)
    return root


def test_sdd_whole_images(tmp_path: Path) -> None:
    root = write_kolektor(tmp_path / "KolektorSDD")
    dataset = load_benchmark("sdd", root)
    assert len(dataset) == 6
    assert set(dataset["class_name"][:]) == {"electrical commutators"}
    assert dataset["label"][:] == [0, 0, 0, 0, 1, 0]
    assert dataset["image_path"][4].endswith("kos02/Part1.jpg")
    check_schema(dataset)
    assert np.array_equal(np.asarray(dataset[4]["mask"]), expected_mask((20, 31)))


def test_sdd_adaclip_crops(tmp_path: Path) -> None:
    root = write_kolektor(tmp_path / "KolektorSDD")
    test = load_benchmark("sdd", root, variant="adaclip_crops")
    train = load_benchmark("sdd", root, split="train", variant="adaclip_crops")
    # 6 images x 3 bands (rows [0, 10), [10, 20), [20, 31)); the defect (rows 4..11) touches bands 0 and 1.
    assert len(test) + len(train) == 18
    assert test["label"][:].count(1) == 2 and set(train["label"][:]) == {0}
    assert set(test["class_name"][:]) == {"SDD"}
    n_normal = 16
    assert len(train) == n_normal - int(np.ceil(0.25 * n_normal))
    assert not set(test["image_path"][:]) & set(train["image_path"][:])
    check_schema(test)
    defect_rows = [row for row in test if row["label"] == 1]
    assert [row["image_path"].split("#")[1] for row in defect_rows] == ["crop=0,0,20,10", "crop=0,10,20,20"]
    full_mask = expected_mask((20, 31))
    full_image = np.asarray(Image.open(root / "kos02" / "Part1.jpg").convert("RGB"))
    for row, (upper, lower) in zip(defect_rows, ((0, 10), (10, 20)), strict=True):
        assert np.array_equal(np.asarray(row["mask"]), full_mask[upper:lower])
        assert np.array_equal(np.asarray(row["image"]), full_image[upper:lower])


def test_adaclip_split_matches_scikit_learn() -> None:
    model_selection = pytest.importorskip("sklearn.model_selection")
    for n in (4, 17, 301):
        train, test = model_selection.train_test_split(list(range(n)), test_size=0.25, random_state=42)
        assert adaclip_normal_split(n) == (train, test)


def test_unknown_benchmark_and_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown benchmark 'mvtech'.*'btad'"):
        load_benchmark("mvtech", tmp_path)
    with pytest.raises(ValueError, match="'mvtec' does not take option\\(s\\) \\['variant'\\]"):
        load_benchmark("mvtec", tmp_path, variant="adaclip_crops")


def test_missing_root_names_path_and_layout(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    for name in ("mvtec", "btad", "visa", "sdd", "dtd_synthetic"):
        with pytest.raises(FileNotFoundError, match="no-such-folder") as error:
            load_benchmark(name, missing)
        assert "Expected layout" in str(error.value)
    with pytest.raises(FileNotFoundError, match="ground_truth/<defect>/<name>_mask.png"):
        load_benchmark("mvtec", missing)


def test_missing_split_folder(tmp_path: Path) -> None:
    root = write_category_tree(tmp_path / "mvtec", ("bottle",), "good", ("crack",), ".png", "_mask.png")
    (root / "cable" / "test" / "good").mkdir(parents=True)
    write_image(root / "cable" / "test" / "good" / "000.png", seed=1)
    with pytest.raises(FileNotFoundError, match=r"cable/train'.*\n.*Expected layout") as error:
        load_benchmark("mvtec", root, split="train")
    assert "<root>/<class>/train/good/" in str(error.value)
    with pytest.raises(FileNotFoundError, match="No mvtec class folders"):
        load_benchmark("mvtec", tmp_path / "mvtec" / "bottle" / "test")


def test_anomalous_image_without_mask(tmp_path: Path) -> None:
    root = write_category_tree(tmp_path / "mvtec", ("bottle",), "good", ("crack",), ".png", "_mask.png")
    (root / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    lost = str(root / "bottle" / "test" / "crack" / "001.png")
    with pytest.raises(ValueError, match="1 anomalous image\\(s\\) have no ground-truth mask") as error:
        load_benchmark("mvtec", root)
    assert lost in str(error.value) and "strict=False" in str(error.value)
    with pytest.warns(UserWarning, match="all-zero mask"):
        dataset = load_benchmark("mvtec", root, strict=False)
    row = dataset[dataset["image_path"][:].index(lost)]
    assert row["label"] == 1 and not np.asarray(row["mask"]).any()


def test_mask_size_mismatch_names_both_files(tmp_path: Path) -> None:
    root = write_category_tree(tmp_path / "mvtec", ("bottle",), "good", ("crack",), ".png", "_mask.png")
    mask = root / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    write_mask(mask, size=(30, 40))
    with pytest.raises(ValueError, match="must match") as error:
        load_benchmark("mvtec", root)
    assert str(mask) in str(error.value) and str(root / "bottle" / "test" / "crack" / "000.png") in str(error.value)
    assert "30x40" in str(error.value) and "40x30" in str(error.value)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = write_category_tree(tmp_path / "mvtec", ("bottle",), "good", ("crack",), ".png", "_mask.png")
    broken = root / "bottle" / "test" / "good" / "000.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot read image file") as error:
        load_benchmark("mvtec", root)
    assert str(broken) in str(error.value)


def test_visa_errors(tmp_path: Path) -> None:
    root = write_visa(tmp_path / "VisA")
    with pytest.raises(ValueError, match="no rows for split='val'.*splits \\['test', 'train'\\]"):
        load_benchmark("visa", root, split="val")
    csv_path = root / "split_csv" / "1cls.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0], *lines[1:]]).replace("object,", "category,", 1))
    with pytest.raises(ValueError, match="lacks column\\(s\\) \\['object'\\]"):
        load_benchmark("visa", root)
    csv_path.unlink()
    with pytest.raises(FileNotFoundError, match="1cls.csv' does not exist"):
        load_benchmark("visa", root)


def test_sdd_errors(tmp_path: Path) -> None:
    root = write_kolektor(tmp_path / "KolektorSDD")
    with pytest.raises(ValueError, match="has splits \\('test',\\), not 'train'"):
        load_benchmark("sdd", root, split="train")
    with pytest.raises(ValueError, match="Unknown SDD variant 'crops'"):
        load_benchmark("sdd", root, variant="crops")
    label = root / "kos01" / "Part2_label.bmp"
    label.unlink()
    with pytest.raises(FileNotFoundError, match="Part2.jpg' has no label file .*Part2_label.bmp"):
        load_benchmark("sdd", root)


def test_registry_is_the_one_list_of_benchmarks() -> None:
    assert list(BENCHMARKS) == list(BENCHMARK_REGISTRY) == ["mvtec", "visa", "mpdd", "btad", "sdd", "dtd_synthetic"]
    for name, benchmark in BENCHMARK_REGISTRY.items():
        assert BENCHMARKS[name] is benchmark.loader and benchmark.name == name
        assert benchmark.training_benchmark in BENCHMARK_REGISTRY and benchmark.training_benchmark != name
        assert {"cache_dir"} <= set(benchmark.options)
        assert get_benchmark(benchmark.display_name) is get_benchmark(benchmark.paper_name) is benchmark
        assert paper_dataset_name(benchmark.display_name) == benchmark.paper_name
    assert get_benchmark("MVTec_AD").name == "mvtec" and get_benchmark("KolektorSDD").name == "sdd"
    assert BENCHMARK_REGISTRY["sdd"].options == ["variant", "cache_dir"]
    assert BENCHMARK_REGISTRY["dtd_synthetic"].root_flag == "--dtd-synthetic"
    assert paper_dataset_name("my own parts") == "my own parts"
    with pytest.raises(ValueError, match=r"Unknown benchmark 'kolektor'; expected one of \['btad', 'dtd_synthetic'"):
        get_benchmark("kolektor")


def test_registry_layout_is_the_one_in_errors(tmp_path: Path) -> None:
    for name, benchmark in BENCHMARK_REGISTRY.items():
        with pytest.raises(FileNotFoundError) as error:
            load_benchmark(name, tmp_path / "absent")
        assert benchmark.layout in str(error.value)
