"""The browser demo's functions (`genclip_hf.demo`) on tiny random checkpoints: settings controls derived from
`SETTINGS`, image in -> overlay, score and label out, calibrated default thresholds, errors as messages, the built
Gradio app, `genclip demo` and the Space app (`examples/app.py`). The real-browser test is `test_demo_browser.py`."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genclip_hf.calibration import Calibration, Thresholds, save_calibration
from genclip_hf.cli import main
from genclip_hf.demo import (
    Control,
    GradioMissingError,
    detect_images,
    run_from_ui,
    setting_controls,
    settings_from_controls,
    threshold_defaults,
    threshold_note,
)
from genclip_hf.predict import load_detector
from genclip_hf.settings import SETTINGS, SettingError
from genclip_hf.visualization import overlay_heatmap

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "examples" / "sample_images"


@pytest.fixture(scope="module")
def detector(tiny_checkpoint_dir):
    return load_detector(str(tiny_checkpoint_dir), device="cpu")


@pytest.fixture(scope="module")
def winclip_detector(tiny_clip_dir):
    return load_detector(str(tiny_clip_dir), device="cpu")


def ui_values(controls: list[Control], **changes) -> list:
    """The controls' values as the app starts, with `changes` by setting name."""
    return [changes.get(control.name, control.ui_value()) for control in controls]


def test_controls_are_derived_from_the_settings(detector, winclip_detector):
    controls = setting_controls(detector.model)
    assert [control.name for control in controls] == list(detector.model.detection_settings)
    assert all(control.setting is SETTINGS[control.name] for control in controls)
    widgets = {control.name: control.widget for control in controls}
    assert widgets == {
        "use_cnf": "checkbox",
        "use_query_branch": "checkbox",
        "use_vision_prompts": "checkbox",
        "feature_layers": "checkbox_group",
        "generic_term": "text",
        "alpha": "slider",
        "sigma": "number",
        "few_shot_weight": "slider",
    }
    layers = controls[3]
    assert layers.choices == (1, 2, 4) == tuple(detector.model.config.feature_layers)
    assert {control.name: control.default for control in controls} == detector.model.resolve_settings({})
    windows = setting_controls(winclip_detector.model)
    assert [(control.name, control.widget, control.ui_value()) for control in windows] == [
        ("window_scales", "text", "2, 3"),
        ("few_shot_weight", "slider", 0.5),
    ]
    assert Control(SETTINGS["top_n1"], 5).widget == "number"
    assert Control(SETTINGS["text_prompt_position"], "after_sot").widget == "dropdown"


def test_control_values_parse_to_validated_settings(detector, winclip_detector):
    controls = setting_controls(detector.model)
    assert settings_from_controls(controls, ui_values(controls)) == {}
    changed = settings_from_controls(controls, ui_values(controls, feature_layers=[4, 1], use_cnf=False, alpha=0.25))
    assert changed == {"feature_layers": [1, 4], "use_cnf": False, "alpha": 0.25}
    windows = setting_controls(winclip_detector.model)
    assert settings_from_controls(windows, ["1, 3", 0.5]) == {"window_scales": [1, 3]}
    assert Control(SETTINGS["top_n1"], 5).parse(7.0) == 7
    for control, value, message in [
        (windows[0], "2, x", "window_scales must be"),
        (controls[3], [], "feature_layers must be"),
        (controls[6], None, "sigma must be"),
        (controls[4], "  ", "generic_term must be"),
    ]:
        with pytest.raises(SettingError, match=message):
            control.parse(value)


def test_an_image_gives_its_overlay_score_and_label(detector):
    path = SAMPLES / "disc_hole.png"
    run = detect_images(detector, [path], class_name="disc", threshold=1.5)
    assert run.failures == [] and len(run.results) == 1
    result = run.results[0]
    expected = detector(str(path), class_name="disc", threshold=1.5)
    assert result.name == "disc_hole.png"
    assert result.score == pytest.approx(expected["score"])
    assert result.label == expected["label"] and result.label in ("normal", "anomalous")
    assert result.threshold_source == "method default" and result.mask_source == "your threshold"
    with Image.open(path) as image:
        vmin, vmax = detector.model.anomaly_map_range()
        picture = overlay_heatmap(image, expected["anomaly_map"], vmin, vmax, expected["mask"])
    assert result.overlay.size == (2 * 224, 224) == picture.size
    assert np.array_equal(np.asarray(result.overlay), np.asarray(picture))
    row = result.row()
    assert row[:4] == ["disc_hole.png", round(result.score, 4), result.label, 1.5]
    assert row[-1] == "your threshold"


def test_a_large_jpeg_is_drawn_at_its_decoded_size(detector, tmp_path):
    path = tmp_path / "large.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (2100, 2200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)
    result = detect_images(detector, [path], threshold=1.5).results[0]
    assert result.overlay.size == (2 * 1100, 1050)  # decoded at 1/2 (genclip_hf.images), the map resized to it
    assert result.mask_source == "your threshold"


def test_the_run_button_shows_results_and_errors_as_messages(detector, tmp_path):
    controls = setting_controls(detector.model)
    unreadable = tmp_path / "notes.png"
    unreadable.write_text("not an image")
    images = [str(SAMPLES / "stripes_scratch.png"), str(unreadable)]
    gallery, rows, status = run_from_ui(
        detector, controls, images, " stripes ", True, 0.25, False, 1.0, None, *ui_values(controls)
    )
    assert len(gallery) == 1 and isinstance(gallery[0][0], Image.Image)
    score = rows[0][1]
    assert gallery[0][1] == f"stripes_scratch.png: {score:.4f} {rows[0][2]}"
    assert rows[0][2:5] == ["anomalous" if score >= 0.25 else "normal", 0.25, "your threshold"]
    assert rows[0][-1] == "none (no pixel threshold)"
    assert status.startswith("**1 of 2 images scored.**") and "could not read notes.png" in status

    bad = ui_values(controls, sigma=-1.0)
    gallery, rows, status = run_from_ui(detector, controls, images, "", False, 0.0, False, 0.0, None, *bad)
    assert (gallery, rows) == (
        [],
        [],
    ) and status == r"**Error:** sigma must be a finite number \>= 0, got -1.0 (float)."
    no_images = run_from_ui(detector, controls, None, "", False, 0.0, False, 0.0, None, *ui_values(controls))
    assert no_images[:2] == ([], []) and "Upload one or more images" in no_images[2]
    bad_reference = run_from_ui(
        detector, controls, images[:1], "", False, 0.0, False, 0.0, [str(unreadable)], *ui_values(controls)
    )
    assert bad_reference[2].startswith("**Error:**") and "notes.png" in bad_reference[2]


def test_calibrated_thresholds_are_the_defaults(detector, tiny_checkpoint_dir, tmp_path):
    assert threshold_defaults(detector).source == "method default"
    assert "no `calibration.json`" in threshold_note(threshold_defaults(detector))
    model_dir = tmp_path / "calibrated"
    shutil.copytree(tiny_checkpoint_dir, model_dir)
    calibration = Calibration(
        method="normal_quantile",
        target_fpr=0.05,
        default=Thresholds(image_threshold=1.75, pixel_threshold=1.25),
        settings=detector.model.resolve_settings({}),
    )
    save_calibration(calibration, model_dir / "calibration.json")
    calibrated = load_detector(str(model_dir), device="cpu")
    defaults = threshold_defaults(calibrated)
    assert (defaults.image, defaults.pixel, defaults.minimum, defaults.maximum) == (1.75, 1.25, 0.0, 3.0)
    assert defaults.source == "calibration (normal_quantile, FPR 0.05, all classes)"
    assert defaults.source in threshold_note(defaults)

    controls = setting_controls(calibrated.model)
    image = [str(SAMPLES / "ring_missing.png")]
    _, rows, _ = run_from_ui(calibrated, controls, image, "", False, 0.0, False, 0.0, None, *ui_values(controls))
    assert rows[0][3:5] == [1.75, defaults.source] and rows[0][-1] == defaults.source
    _, rows, _ = run_from_ui(calibrated, controls, image, "", True, 0.5, False, 0.0, None, *ui_values(controls))
    assert rows[0][3:5] == [0.5, "your threshold"] and rows[0][-1] == defaults.source
    _, rows, _ = run_from_ui(calibrated, controls, image, "", False, 0.0, True, 0.5, None, *ui_values(controls))
    assert rows[0][3:5] == [1.75, defaults.source] and rows[0][-1] == "your threshold"
    changed = ui_values(controls, alpha=0.5)  # not the calibrated settings: the method default applies
    _, rows, _ = run_from_ui(calibrated, controls, image, "", False, 0.0, False, 0.0, None, *changed)
    assert rows[0][4] == "method default" and rows[0][-1] == "none (no pixel threshold)"


def test_the_app_has_a_control_per_setting(detector, winclip_detector, monkeypatch):
    gr = pytest.importorskip("gradio")
    from genclip_hf.demo import build_demo

    demo = build_demo(detector)
    assert isinstance(demo, gr.Blocks)
    blocks = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    for name in detector.model.detection_settings:
        assert blocks[f"setting-{name}"].label == name
    assert isinstance(blocks["setting-feature_layers"], gr.CheckboxGroup)
    assert isinstance(blocks["setting-alpha"], gr.Slider) and isinstance(blocks["setting-use_cnf"], gr.Checkbox)
    assert blocks["references"].visible
    assert blocks["image-threshold"].value == blocks["pixel-threshold"].value == 1.5
    assert not blocks["image-threshold"].interactive
    assert {"run", "status", "heatmaps", "results", "images", "class-name"} <= set(blocks)

    winclip = {block.elem_id: block for block in build_demo(winclip_detector).blocks.values()}
    assert isinstance(winclip["setting-window_scales"], gr.Textbox) and "setting-alpha" not in winclip
    monkeypatch.setattr(type(winclip_detector.model), "supports_few_shot", property(lambda self: False))
    zero_shot_only = {block.elem_id: block for block in build_demo(winclip_detector).blocks.values()}
    assert not zero_shot_only["references"].visible


def test_genclip_demo_launches_the_app(tiny_checkpoint_dir, monkeypatch):
    gr = pytest.importorskip("gradio")
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.append((self, options)))
    assert main(["demo", "--model", str(tiny_checkpoint_dir), "--host", "127.0.0.1", "--port", "7999"]) == 0
    blocks, options = launched[0]
    assert isinstance(blocks, gr.Blocks)
    assert options == {"server_name": "127.0.0.1", "server_port": 7999, "share": False}


def test_genclip_demo_without_gradio_says_how_to_install_it(tiny_checkpoint_dir, monkeypatch, capsys):
    def missing():
        raise GradioMissingError("gradio is not installed (test); pip install 'genclip-hf[demo]'.")

    monkeypatch.setattr("genclip_hf.demo.import_gradio", missing)
    assert main(["demo", "--model", str(tiny_checkpoint_dir)]) == 2
    assert "genclip demo: gradio is not installed" in capsys.readouterr().err


def test_space_app_builds_the_demo_from_genclip_model(tiny_clip_dir, monkeypatch):
    gr = pytest.importorskip("gradio")
    monkeypatch.setenv("GENCLIP_MODEL", str(tiny_clip_dir))
    app = runpy.run_path(str(REPO_ROOT / "examples" / "app.py"), run_name="space_app")
    assert app["MODEL"] == str(tiny_clip_dir)
    assert isinstance(app["demo"], gr.Blocks)
