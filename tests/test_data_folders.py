"""A user's own folders (with and without masks) and the AnomalyCLIP / AdaCLIP meta.json format."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genclip_hf.data import FEATURES, load_folder, load_meta_json, summarize


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _image(path: Path, value: int, size: tuple[int, int] = (24, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)


def _mask(path: Path, size: tuple[int, int] = (24, 16)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    pixels[2:6, 3:9] = 255
    Image.fromarray(pixels).save(path)
    return pixels


def _user_folder(root: Path, with_masks: bool) -> Path:
    _image(root / "good" / "a.png", 10)
    _image(root / "OK" / "b.jpg", 20)
    _image(root / "dent" / "c.png", 30)
    _image(root / "dent" / "d.png", 40)
    _image(root / "scratch" / "e.png", 50)
    if with_masks:
        _mask(root / "ground_truth" / "dent" / "c_mask.png")
        _mask(root / "ground_truth" / "dent" / "d.png")
        _mask(root / "ground_truth" / "scratch" / "e_mask.png")
    return root


def test_folder_with_masks(tmp_path: Path) -> None:
    root = _user_folder(tmp_path / "my_part", with_masks=True)
    dataset = load_folder(root)
    assert dataset.features == FEATURES
    assert dataset["defect_type"][:] == ["OK", "dent", "dent", "good", "scratch"]
    assert dataset["label"][:] == [0, 1, 1, 0, 1]
    assert set(dataset["class_name"][:]) == {"my_part"}
    for row in dataset:
        assert np.asarray(row["mask"]).any() == bool(row["label"])
    assert summarize(dataset)["my_part"]["dent"] == {"images": 2, "anomalous": 2}


def test_folder_without_masks_warns_once(tmp_path: Path) -> None:
    root = _user_folder(tmp_path / "parts", with_masks=False)
    with pytest.warns(UserWarning, match="no ground_truth folder: its 3 anomalous image"):
        dataset = load_folder(root, class_name="bracket")
    assert dataset["label"][:] == [0, 1, 1, 0, 1]
    assert set(dataset["class_name"][:]) == {"bracket"}
    assert not any(np.asarray(row["mask"]).any() for row in dataset)


def test_folder_errors(tmp_path: Path) -> None:
    root = _user_folder(tmp_path / "parts", with_masks=True)
    (root / "ground_truth" / "scratch" / "e_mask.png").unlink()
    with pytest.raises(ValueError, match="no ground-truth mask") as error:
        load_folder(root)
    assert str(root / "scratch" / "e.png") in str(error.value)
    with pytest.warns(UserWarning, match="1 anomalous image"):
        load_folder(root, strict=False)
    _image(root / "loose.png", 1)
    with pytest.raises(ValueError, match="lie directly in .*loose.png.*good/ or <defect>/"):
        load_folder(root)
    with pytest.raises(FileNotFoundError, match="(?s)image folder .*absent.*Expected layout"):
        load_folder(tmp_path / "absent")


def _meta_tree(root: Path) -> Path:
    entries = {"train": {}, "test": {}}
    for cls in ("pcb2", "candle"):
        test = []
        for i, anomaly in enumerate((0, 1, 1)):
            kind = "crack" if anomaly else "good"
            image = f"{cls}/test/{kind}/{i:03d}.png"
            _image(root / image, 10 * i)
            mask = f"{cls}/ground_truth/{kind}/{i:03d}_mask.png" if anomaly else ""
            if mask:
                _mask(root / mask)
            specie = "" if cls == "candle" else kind
            test.append(
                {"img_path": image, "mask_path": mask, "cls_name": cls, "specie_name": specie, "anomaly": anomaly}
            )
        entries["test"][cls] = test
        entries["train"][cls] = test[:1]
    (root / "meta.json").write_text(json.dumps(entries))
    return root / "meta.json"


def test_meta_json(tmp_path: Path) -> None:
    meta = _meta_tree(tmp_path / "data")
    dataset = load_meta_json(meta)
    assert dataset["class_name"][:] == ["candle"] * 3 + ["pcb2"] * 3
    assert dataset["defect_type"][:] == ["defect", "defect", "good", "crack", "crack", "good"]
    assert dataset["label"][:] == [1, 1, 0, 1, 1, 0]
    assert dataset["image_path"][0] == str((tmp_path / "data" / "candle/test/crack/001.png").resolve())
    assert np.asarray(dataset[0]["mask"]).any() and not np.asarray(dataset[2]["mask"]).any()
    assert len(load_meta_json(meta, split="train", classes=["pcb2"])) == 1


def test_meta_json_errors(tmp_path: Path) -> None:
    meta = _meta_tree(tmp_path / "data")
    with pytest.raises(ValueError, match="no split 'val' \\(found \\['test', 'train'\\]\\)"):
        load_meta_json(meta, split="val")
    with pytest.raises(ValueError, match="no class 'bottle'"):
        load_meta_json(meta, classes=["bottle"])
    content = json.loads(meta.read_text())
    content["test"]["pcb2"][1]["mask_path"] = ""
    meta.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="empty mask_path"):
        load_meta_json(meta)
    content["test"]["pcb2"][1]["img_path"] = "pcb2/test/crack/404.png"
    meta.write_text(json.dumps(content))
    with pytest.raises(FileNotFoundError, match="lists 'pcb2/test/crack/404.png', but .*404.png' does not exist"):
        load_meta_json(meta)
    with pytest.raises(FileNotFoundError, match="meta.json file .*nothing.json' does not exist"):
        load_meta_json(tmp_path / "nothing.json")
