import csv
import json
import math

import pytest

from genclip_hf.metrics import reports

RESULTS = {
    "per_class": {
        "bottle": {"pixel_auroc": 0.94666, "aupro": 0.8858, "image_auroc": 0.96034, "image_ap": 1.0},
        "metal nut": {"pixel_auroc": 0.765, "aupro": 0.72744, "image_auroc": math.nan, "image_ap": 0.915},
    },
    "mean": {"pixel_auroc": 0.85583, "aupro": 0.80662, "image_auroc": 0.96034, "image_ap": 0.9575},
    "undefined": {"metal nut": {"image_auroc": "there are no normal (negative) samples"}},
    "aupro_mode": "anomalyclip",
    "fpr_limit": 0.3,
}


def test_per_class_markdown():
    assert reports.per_class_markdown(RESULTS) == (
        "| Class | Pixel AUROC (%) | PRO (%) | Image AUROC (%) | Image AP (%) |\n"
        "|---|---|---|---|---|\n"
        "| bottle | 94.67 | 88.58 | 96.03 | 100.00 |\n"
        "| metal nut | 76.50 | 72.74 | n/a | 91.50 |\n"
        "| Mean | 85.58 | 80.66 | 96.03 | 95.75 |\n"
    )


def test_dataset_row_markdown():
    assert reports.dataset_row_markdown(RESULTS, "mvtec_ad") == (
        "| Dataset | Pixel (AUROC, PRO) | Image (AUROC, AP) |\n|---|---|---|\n| MVTec | (85.6, 80.7) | (96.0, 95.8) |\n"
    )


def test_writers_produce_markdown_csv_and_json(tmp_path):
    md, csv_path, json_path = reports.write_per_class_table(RESULTS, tmp_path / "out" / "mvtec_per_class")
    assert md.name == "mvtec_per_class.md" and md.read_text() == reports.per_class_markdown(RESULTS)
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[1] == {
        "class": "metal nut",
        "pixel_auroc": "76.50",
        "aupro": "72.74",
        "image_auroc": "",
        "image_ap": "91.50",
    }
    assert rows[-1]["class"] == "Mean"
    payload = json.loads(json_path.read_text())
    assert payload["rows"][1]["image_auroc"] is None
    assert payload["aupro_mode"] == "anomalyclip"
    assert payload["undefined"] == RESULTS["undefined"]

    paths = reports.write_dataset_row(RESULTS, "VisA", tmp_path / "visa_row")
    assert [path.suffix for path in paths] == [".md", ".csv", ".json"]
    assert paths[1].read_text() == "dataset,pixel_auroc,aupro,image_auroc,image_ap\nVisA,85.6,80.7,96.0,95.8\n"
    assert json.loads(paths[2].read_text())["rows"] == [
        {"dataset": "VisA", "pixel_auroc": 85.6, "aupro": 80.7, "image_auroc": 96.0, "image_ap": 95.8}
    ]


def test_paper_results_loader():
    table_7 = reports.paper_results(table=7)
    assert [row["class_name"] for row in table_7] == ["01", "02", "03", "mean"]
    assert table_7[0] == {
        "dataset": "BTAD",
        "setting": "GenCLIP",
        "class_name": "01",
        "table": 7,
        "pixel_auroc": 93.97,
        "aupro": 76.63,
        "image_auroc": 94.17,
        "image_ap": 97.96,
    }
    coop = reports.paper_results(table=1, dataset="dtd", setting="CoOp")
    assert len(coop) == 1 and coop[0]["pixel_auroc"] is None
    assert len(reports.paper_results(table=1, dataset="MVTec-AD")) == 6


def test_compare_with_paper(tmp_path):
    rows = reports.compare_with_paper(RESULTS, "mvtec")
    by_class = {row["class"]: row for row in rows}
    assert by_class["bottle"]["pixel_auroc_ours"] == 94.67
    assert by_class["bottle"]["pixel_auroc_paper"] == 94.67
    assert by_class["bottle"]["pixel_auroc_diff"] == 0.0
    assert by_class["metal nut"]["aupro_diff"] == 0.0
    assert by_class["metal nut"]["image_auroc_ours"] is None and by_class["metal nut"]["image_auroc_diff"] is None
    assert by_class["cable"]["pixel_auroc_ours"] is None and by_class["cable"]["pixel_auroc_paper"] == 81.2
    # The Mean row averages both sides over the classes both have (bottle, metal nut), not the paper's 15.
    mean = rows[-1]
    assert mean["class"] == "Mean"
    assert mean["image_ap_ours"] == pytest.approx((100.0 + 91.5) / 2, abs=0.01)
    assert mean["image_ap_paper"] == pytest.approx((98.75 + 91.5) / 2, abs=0.01)
    assert mean["image_ap_diff"] == pytest.approx(((100.0 - 98.75) + (91.5 - 91.5)) / 2, abs=0.01)
    # metal nut has no image AUROC of ours: that metric's mean is over bottle alone, on both sides.
    assert (mean["image_auroc_ours"], mean["image_auroc_paper"], mean["image_auroc_diff"]) == (96.03, 96.03, 0.0)
    assert reports.compared_classes(RESULTS, "mvtec") == {
        "both": ["bottle", "metal nut"],
        "only_ours": [],
        "only_paper": [
            row["class_name"]
            for row in reports.paper_results(table=4)
            if row["class_name"] not in ("bottle", "metal_nut", "mean")
        ],
        "undefined": {"image_auroc": ["metal nut"]},
    }
    markdown = reports.comparison_markdown(RESULTS, "MVTec")
    assert "Mean: both sides averaged over the same 2 class(es): bottle, metal nut." in markdown
    assert "Not evaluated here (left out): cable, capsule" in markdown
    assert "Image AUROC (%) also leaves out metal nut (n/a)." in markdown
    assert "| bottle | 94.67 / 94.67 / +0.00 | 88.58 / 88.58 / +0.00 | 96.03 / 96.03 / +0.00 |" in markdown
    assert "exact" not in markdown
    assert "`exact`" in reports.comparison_markdown({**RESULTS, "aupro_mode": "exact"}, "MVTec")
    md, csv_path, json_path = reports.write_comparison(RESULTS, "MVTec", tmp_path / "compare")
    payload = json.loads(json_path.read_text())
    assert payload["paper_table"] == 4 and payload["compared_classes"]["both"] == ["bottle", "metal nut"]
    with pytest.raises(ValueError, match="no per-class table"):
        reports.compare_with_paper(RESULTS, "Average")


def test_class_names_cannot_break_markdown_tables():
    results = {**RESULTS, "per_class": {"a|b <img src=x>": RESULTS["per_class"]["bottle"]}}
    table = reports.per_class_markdown(results)
    assert "| a\\|b &lt;img src=x&gt; | 94.67 |" in table
    assert all(line.count(" | ") == 4 for line in table.splitlines() if line.startswith("| "))
    assert "<img" not in reports.comparison_markdown(results, "mvtec")


def test_dataset_names_come_from_the_registry():
    assert reports.PER_CLASS_TABLES == {"MVTec": 4, "VisA": 5, "MPDD": 6, "BTAD": 7, "SDD": 8, "DTD-Synthetic": 9}
    assert [reports.canonical_dataset_name(name) for name in ("mvtec_ad", "KolektorSDD", "dtd", "mine")] == [
        "MVTec",
        "SDD",
        "DTD-Synthetic",
        "mine",
    ]
