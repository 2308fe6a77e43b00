"""Everything that reads files, fed bad input: each test reproduces one problem and checks the clear error or report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf import images
from genclip_hf.data import (
    RowDecodeError,
    decode_row,
    export_parquet,
    load_benchmark,
    load_folder,
    load_meta_json,
    undecoded,
)
from genclip_hf.images import open_image, read_image_header, to_binary_mask, to_rgb_image

SIZE = (40, 30)  # (width, height)
BOX = (5, 4, 15, 12)  # (left, upper, right, lower) of every defect


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path


def box_mask(size: tuple[int, int] = SIZE) -> np.ndarray:
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    left, upper, right, lower = BOX
    pixels[upper:lower, left:right] = 255
    return pixels


def mvtec_tree(root: Path, mask_suffix: str = ".png") -> Path:
    """One class `bottle`: a normal test image and two `crack` images with box masks."""
    write_image(root / "bottle" / "train" / "good" / "000.png", 0)
    write_image(root / "bottle" / "test" / "good" / "000.png", 1)
    for i in range(2):
        write_image(root / "bottle" / "test" / "crack" / f"00{i}.png", 2 + i)
        mask = root / "bottle" / "ground_truth" / "crack" / f"00{i}_mask{mask_suffix}"
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(box_mask()).save(mask, **({"quality": 75} if mask_suffix == ".jpg" else {}))
    return root


def messages(record: list[pytest.WarningsRecorder]) -> str:
    return "\n".join(str(warning.message) for warning in record)


# 1. Ground truth read loosely ------------------------------------------------------------------------------------


def test_jpeg_mask_is_binarised_at_128_not_any_non_zero(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec", mask_suffix=".jpg")
    jpeg = root / "bottle" / "ground_truth" / "crack" / "000_mask.jpg"
    noisy = np.asarray(Image.open(jpeg))
    assert (noisy > 0).sum() > (box_mask() > 0).sum()  # the problem: "any non-zero" inflates the defect
    with pytest.warns(UserWarning, match=r"2 ground-truth mask\(s\) are JPEG files .*000_mask.jpg.*128"):
        dataset = load_benchmark("mvtec", root)
    anomalous = [row for row in dataset if row["label"] == 1]
    for row in anomalous:
        assert np.array_equal(np.asarray(row["mask"]), box_mask())
    with pytest.warns(UserWarning, match=r"Mask '.*000_mask.jpg' is a JPEG file \(lossy\)"):
        assert np.array_equal(to_binary_mask(jpeg), box_mask() > 0)


def test_palette_and_01_masks_keep_any_non_zero(tmp_path: Path) -> None:
    index = (box_mask() > 0).astype(np.uint8)
    palette = Image.fromarray(index).convert("P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    palette.save(tmp_path / "label.bmp")
    Image.fromarray(index).save(tmp_path / "ones.png")
    for name in ("label.bmp", "ones.png"):
        assert np.array_equal(to_binary_mask(tmp_path / name), box_mask() > 0)


def test_mask_named_file_in_image_folder_is_not_an_image(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    Image.fromarray(box_mask()).save(root / "bottle" / "test" / "crack" / "000_mask.png")
    with pytest.warns(UserWarning, match=r"Skipping 1 file\(s\) named like masks .*crack.*000_mask.png"):
        dataset = load_benchmark("mvtec", root)
    assert len(dataset) == 3 and sum(dataset["label"][:]) == 2
    user = tmp_path / "user"
    write_image(user / "good" / "a.png", 1)
    write_image(user / "bad" / "x.png", 2)
    Image.fromarray(box_mask()).save(user / "bad" / "x_mask.png")
    with pytest.warns(UserWarning, match=r"named like masks .*x_mask.png"):
        assert load_folder(user, strict=False)["image_path"][:] == [
            str((user / "bad" / "x.png").resolve()),
            str((user / "good" / "a.png").resolve()),
        ]


def test_images_in_nested_folders_are_reported(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    write_image(root / "bottle" / "test" / "crack" / "extra" / "deeper" / "009.png", 9)
    write_image(root / "bottle" / "test" / "crack" / "extra" / "010.png", 10)
    write_image(root / "samples" / "a.png", 11)
    with pytest.warns(UserWarning) as record:
        dataset = load_benchmark("mvtec", root)
    assert len(dataset) == 3
    text = messages(record)
    assert "Not reading 2 image(s) in nested folder(s) of" in text and "crack/extra (2)" in text
    assert "not mvtec class folders" in text and "samples (1)" in text
    write_image(root / "bottle" / "test" / "stray.png", 12)
    with pytest.warns(UserWarning, match=r"Not reading 1 image\(s\) directly in .*bottle/test.*stray.png"):
        load_benchmark("mvtec", root)


# 2. Symlinks -------------------------------------------------------------------------------------------------------


def test_symlink_loops_and_dangling_links_are_reported_not_followed(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    crack = root / "bottle" / "test" / "crack"
    (crack / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (crack / "self.png").symlink_to(crack / "self.png")
    (crack / "up").symlink_to(crack.parent, target_is_directory=True)
    (root / "bottle" / "test" / "again").symlink_to(root / "bottle", target_is_directory=True)
    with pytest.warns(UserWarning) as record:
        dataset = load_benchmark("mvtec", root)
    assert len(dataset) == 3
    text = messages(record)
    assert "gone.png (dangling symlink -> " in text
    assert "self.png (symlink loop -> " in text
    assert "symlink loop(s) in" in text and "crack/up ->" in text and "test/again ->" in text


# 3. Unreadable images: named per row ---------------------------------------------------------------------------------


def test_truncated_image_is_named_by_decode_row(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    broken = root / "bottle" / "test" / "crack" / "001.png"
    broken.write_bytes(broken.read_bytes()[:200])  # the header survives: the loader lists it, decoding fails
    dataset = load_benchmark("mvtec", root)
    rows = undecoded(dataset)
    decoded = []
    for row in rows:
        try:
            decoded.append(decode_row(row))
        except RowDecodeError as error:
            assert error.image_path == str(broken.resolve())
            assert str(broken.resolve()) in str(error) and "truncated" in str(error)
    assert len(decoded) == 2
    image, mask = decoded[0]
    assert image.mode == "RGB" and mask.dtype == bool and mask.shape == image.size[::-1]
    assert decode_row(dataset[0])[0].size == SIZE  # already-decoded rows work too


def test_decode_row_keeps_the_mask_at_the_reduced_jpeg_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "DRAFT_MIN_SIDE", 32)
    write_image(tmp_path / "big.jpg", 0, size=(128, 64), quality=95)
    mask = np.zeros((64, 128), dtype=np.uint8)
    mask[:, :64] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    row = {"image": {"path": str(tmp_path / "big.jpg"), "bytes": None}, "image_path": "big.jpg"}
    row["mask"] = {"path": str(tmp_path / "mask.png"), "bytes": None}
    image, decoded_mask = decode_row(row)
    assert image.size == (64, 32) and image.info["original_size"] == (128, 64)
    assert decoded_mask.shape == (32, 64) and decoded_mask[:, :32].all() and not decoded_mask[:, 32:].any()


# 4. Conversion errors: one clear exception naming the input -----------------------------------------------------------


def test_loader_option_and_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown benchmark 'mvtech'; expected one of \['btad'"):
        load_benchmark("mvtech", tmp_path)
    with pytest.raises(ValueError, match=r"'sdd' does not take option\(s\) \['classes'\]"):
        load_benchmark("sdd", tmp_path, classes=["x"])
    with pytest.raises(ValueError, match=r"classes must be a list of class names, got 'bottle'"):
        load_benchmark("mvtec", tmp_path, classes="bottle")
    visa_like = tmp_path / "VisA"
    write_image(visa_like / "pcb1" / "Data" / "Images" / "Normal" / "000.JPG", 0)
    with pytest.raises(FileNotFoundError, match=r"(?s)No mvtec class folders under .*VisA.*Expected layout"):
        load_benchmark("MVTec-AD", visa_like)
    with pytest.raises(FileNotFoundError, match=r"(?s)1cls.csv' does not exist.*split_csv"):
        load_benchmark("visa", visa_like)


def write_visa(root: Path, rows: list[list[str]]) -> Path:
    write_image(root / "pcb1" / "Data" / "Images" / "Normal" / "000.JPG", 0)
    write_image(root / "pcb1" / "Data" / "Images" / "Anomaly" / "001.JPG", 1)
    (root / "pcb1" / "Data" / "Masks" / "Anomaly").mkdir(parents=True)
    Image.fromarray(box_mask()).save(root / "pcb1" / "Data" / "Masks" / "Anomaly" / "001.png")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return root


GOOD_VISA_ROWS = [
    ["pcb1", "test", "normal", "pcb1/Data/Images/Normal/000.JPG", ""],
    ["pcb1", "test", "anomaly", "pcb1/Data/Images/Anomaly/001.JPG", "pcb1/Data/Masks/Anomaly/001.png"],
]


@pytest.mark.parametrize(
    ("bad_row", "error", "message"),
    [
        (["pcb1", "test"], ValueError, r"line 4 has no value for \['label', 'image'\]"),
        (["pcb1", "test", "normal", "a.JPG", "", "extra"], ValueError, r"line 4 has more fields than the 5 columns"),
        (["pcb1", "test", "normal", " ", ""], ValueError, r"line 4 has no value for \['image'\]"),
        (["pcb1", "test", "broken", "a.JPG", ""], ValueError, r"line 4: label 'broken' for 'a.JPG' is not one of"),
        (["pcb1", "test", "normal", "pcb1/none.JPG", ""], FileNotFoundError, r"line 4 lists image 'pcb1/none.JPG'"),
        (["pcb1", "test", "anomaly", GOOD_VISA_ROWS[1][3], "m.png"], FileNotFoundError, r"line 4 lists mask 'm.png'"),
    ],
)
def test_malformed_visa_rows_name_the_line(tmp_path: Path, bad_row: list[str], error: type, message: str) -> None:
    root = write_visa(tmp_path / "VisA", [*GOOD_VISA_ROWS, bad_row])
    with pytest.raises(error, match=message) as raised:
        load_benchmark("visa", root)
    assert "1cls.csv" in str(raised.value)


def test_well_formed_visa_csv_still_loads(tmp_path: Path) -> None:
    dataset = load_benchmark("visa", write_visa(tmp_path / "VisA", GOOD_VISA_ROWS))
    assert dataset["label"][:] == [1, 0]


def write_meta(root: Path, entry_changes: dict | None = None, test: object = None) -> Path:
    write_image(root / "c" / "test" / "good" / "000.png", 0)
    write_image(root / "c" / "test" / "crack" / "001.png", 1)
    (root / "c" / "ground_truth" / "crack").mkdir(parents=True)
    Image.fromarray(box_mask()).save(root / "c" / "ground_truth" / "crack" / "001_mask.png")
    entries = [
        {"img_path": "c/test/good/000.png", "mask_path": "", "cls_name": "c", "specie_name": "good", "anomaly": 0},
        {
            "img_path": "c/test/crack/001.png",
            "mask_path": "c/ground_truth/crack/001_mask.png",
            "cls_name": "c",
            "specie_name": "crack",
            "anomaly": 1,
        },
    ]
    entries[1].update(entry_changes or {})
    entries[1] = {key: value for key, value in entries[1].items() if value != "<drop>"}
    (root / "meta.json").write_text(json.dumps({"train": {}, "test": {"c": entries} if test is None else test}))
    return root / "meta.json"


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"anomaly": 2}, ValueError, r"entry test/c\[1\]: anomaly must be 0 \(normal\) or 1 \(anomalous\), got 2"),
        ({"anomaly": "yes"}, ValueError, r"anomaly must be 0 .* got 'yes'"),
        ({"anomaly": None}, ValueError, r"anomaly must be 0 .* got None"),
        ({"img_path": 5}, ValueError, r"img_path must be a non-empty string, got 5"),
        ({"img_path": ""}, ValueError, r"img_path must be a non-empty string, got ''"),
        ({"mask_path": ["a"]}, ValueError, r"mask_path must be a string \(may be empty\) or null, got \['a'\]"),
        ({"cls_name": None}, ValueError, r"cls_name must be a non-empty string"),
        ({"specie_name": "<drop>"}, ValueError, r"entry test/c\[1\] lacks key\(s\) \['specie_name'\]"),
        ({"img_path": "c/none.png"}, FileNotFoundError, r"entry test/c\[1\] lists 'c/none.png', but"),
        ({"mask_path": "c/none.png"}, FileNotFoundError, r"entry test/c\[1\] lists 'c/none.png', but"),
    ],
)
def test_malformed_meta_json_entries(tmp_path: Path, changes: dict, error: type, message: str) -> None:
    path = write_meta(tmp_path / "data", changes)
    with pytest.raises(error, match=message) as raised:
        load_meta_json(path)
    assert "meta.json" in str(raised.value)


def test_malformed_meta_json_structure(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split 'test' must map class names to lists of entries, got list"):
        load_meta_json(write_meta(tmp_path / "a", test=[1, 2]))
    with pytest.raises(ValueError, match=r"test/c must be a list of entries, got dict"):
        load_meta_json(write_meta(tmp_path / "b", test={"c": {"img_path": "x"}}))
    with pytest.raises(ValueError, match=r"entry test/c\[0\] must be an object with keys"):
        load_meta_json(write_meta(tmp_path / "c", test={"c": ["c/test/good/000.png"]}))
    with pytest.raises(ValueError, match=r"classes must be a list of class names, got 'c'"):
        load_meta_json(write_meta(tmp_path / "d"), classes="c")
    with pytest.raises(FileNotFoundError, match=r"meta.json file .*' is a folder, not a file"):
        load_meta_json(tmp_path / "d")
    assert load_meta_json(write_meta(tmp_path / "e", {"anomaly": True}))["label"][:] == [1, 0]


def test_export_output_folder_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = load_benchmark("mvtec", mvtec_tree(tmp_path / "mvtec"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"Output folder '.*file' is a file, not a folder"):
        export_parquet(dataset, tmp_path / "file")
    with pytest.raises(ValueError, match=r"Cannot create output folder '.*file/sub'"):
        export_parquet(dataset, tmp_path / "file" / "sub")
    with pytest.raises(ValueError, match=r"max_shard_size must be bytes or a string like '500MB', got 1.5"):
        export_parquet(dataset, tmp_path / "out", max_shard_size=1.5)
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got 0"):
        export_parquet(dataset, tmp_path / "out", batch_size=0)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=r"Output folder '.*locked' is not writable"):
        export_parquet(dataset, tmp_path / "locked")


def test_export_names_a_vanished_source_file(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    dataset = load_benchmark("mvtec", root)
    vanished = root / "bottle" / "test" / "good" / "000.png"
    vanished.unlink()
    with pytest.raises(FileNotFoundError, match=r"refers to '.*good/000.png', which cannot be read"):
        export_parquet(dataset, tmp_path / "out")


# 5. images.py: orientation, bounded memory, clear errors ----------------------------------------------------------


def rotated_jpeg(path: Path, size: tuple[int, int] = (40, 20), orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return write_image(path, 0, size=size, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    photo = rotated_jpeg(tmp_path / "photo.jpg")
    assert Image.open(photo).size == (40, 20)  # as stored; displayed 20 wide, 40 high
    assert to_rgb_image(photo).size == (20, 40)
    assert to_rgb_image(Image.open(photo)).size == (20, 40)
    assert read_image_header(photo) == ((20, 40), "JPEG")


def test_exif_rotated_normal_image_gets_a_mask_of_its_displayed_size(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    rotated_jpeg(root / "good" / "a.jpg")
    dataset = load_folder(root)
    row = dataset[0]
    assert row["image"].size == (20, 40) and row["mask"].size == (20, 40)


def test_over_the_pixel_limit_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "big.png", 0, size=(100, 80))
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ValueError, match=r"'.*big.png' is too large to decode: 100x80 = 8,000 pixels; at most 5,000"):
        to_rgb_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses at twice its limit, before our check
    with pytest.raises(ValueError, match=r"'.*big.png' is too large to decode: 8,000 pixels; at most 5,000"):
        to_rgb_image(path)


def test_large_jpeg_is_decoded_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "wide.jpg", 0, size=(256, 96), quality=90)
    monkeypatch.setattr(images, "DRAFT_MIN_SIDE", 24)
    image = to_rgb_image(path)
    assert image.size == (64, 24) and image.info["original_size"] == (256, 96)  # 1/4: shorter side stays >= 24
    assert open_image(path, draft=False).size == (256, 96)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 2000)  # the limit counts the pixels actually decoded
    assert to_rgb_image(path).size == (64, 24)


MEMORY_SCRIPT = """
import importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("images", sys.argv[2])  # the module alone: no torch in the process
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = module.to_rgb_image(sys.argv[1])
print(image.size[0], image.size[1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_large_jpeg_decodes_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    gradient = np.linspace(0, 255, 4096, dtype=np.float32).astype(np.uint8)
    Image.fromarray(np.broadcast_to(gradient[None, :, None], (4096, 4096, 3)).copy()).save(path, quality=85)
    command = [sys.executable, "-c", MEMORY_SCRIPT, str(path), images.__file__]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    width, height, grown_mib = map(int, result.stdout.split())
    assert (width, height) == (1024, 1024)  # 1/4 scale: the shorter side stays >= DRAFT_MIN_SIDE
    assert grown_mib < 40  # a full decode holds 48 MiB of pixels, twice over while converting


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", r"'.*bad.png' is empty \(0 bytes\)"), (b"hello, not a picture", r"'.*bad.png' is not an image file")],
)
def test_empty_and_non_image_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.png").write_bytes(content)
    for read in (to_rgb_image, to_binary_mask, open_image):
        with pytest.raises(ValueError, match=message):
            read(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match=r"'.*absent.png' does not exist"):
        to_rgb_image(tmp_path / "absent.png")
    with pytest.raises(ValueError, match=r"images\[0\] has zero size"):
        to_rgb_image(np.zeros((0, 5, 3), dtype=np.uint8), "images[0]")


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.full((4, 4), 5.0), r"range \[5.0, 5.0\]; expected finite values in \[0, 1\]"),
        (np.array([[0.0, np.nan]]), r"with NaN or infinite values"),
        (np.array([[0, -1]]), r"negative values \(min -1\)"),
        (np.zeros((2, 2, 3)), r"single-channel mask of shape \(H, W\), got shape \(2, 2, 3\)"),
    ],
)
def test_to_binary_mask_rejects_values_that_are_no_mask(mask: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=r"masks\[1\] .*" + message):
        to_binary_mask(mask, "masks[1]")


def test_to_binary_mask_accepts_masks() -> None:
    expected = np.array([[False, True]])
    for mask in (np.array([[0.0, 1.0]]), np.array([[0, 255]], dtype=np.uint8), np.array([[False, True]])):
        assert np.array_equal(to_binary_mask(mask), expected)
    assert np.array_equal(to_binary_mask(Image.fromarray(np.array([[0, 1]], dtype=np.uint8))), expected)
