"""A browser demo of any detector (Gradio): upload images, pick the class name, the detection settings and the
thresholds, and see each image beside its anomaly-map overlay with its score and label.

The settings controls are derived from `genclip_hf.settings.SETTINGS` for the model's `detection_settings`, so a new
setting or method needs no UI code. `genclip demo` and `examples/app.py` (a Hugging Face Space) launch it; gradio
comes with the `demo` extra and is imported only when the app is built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .images import to_rgb_image
from .scoring import resize_map
from .settings import SETTINGS, Setting, SettingError
from .visualization import overlay_heatmap

if TYPE_CHECKING:
    import gradio

DEMO_EXTRA_HINT = "pip install 'genclip-hf[demo]'"
DEMO_ERRORS = (ValueError, OSError, Image.DecompressionBombError)
"""Errors a user can cause (a bad setting, an unreadable file); the app shows them as a message."""
WIDGETS = {"bool": "checkbox", "layers": "checkbox_group", "choice": "dropdown"}
"""The control of the setting kinds whose control does not depend on the bounds."""
RESULT_COLUMNS = ("image", "score", "label", "image threshold", "image threshold from", "class name", "mask from")
CACHE_LIFETIME = (3600, 3600)
"""Gradio's `delete_cache`: every hour, uploads and overlays older than an hour are deleted (a long-running Space)."""
YOURS = "your threshold"
"""Where a threshold set in the app comes from, as the results table says."""


class GradioMissingError(ImportError):
    """gradio (the `demo` extra) is not installed; the message says how to install it."""


def import_gradio() -> ModuleType:
    """`gradio`, or [`GradioMissingError`] saying how to install it."""
    try:
        import gradio
    except ImportError as error:
        raise GradioMissingError(f"gradio is not installed ({error}); {DEMO_EXTRA_HINT}.") from None
    return gradio


@dataclass(frozen=True)
class Control:
    """The UI control of one detection setting, derived from its [`Setting`].

    Attributes:
        setting: the setting.
        default: the model's value (its config's), where the control starts.
        choices: the values a `layers` setting offers (the model's feature layers).
    """

    setting: Setting
    default: Any
    choices: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        """The setting's name."""
        return self.setting.name

    @property
    def widget(self) -> str:
        """`checkbox` (bool), `checkbox_group` (layers), `dropdown` (choice), `slider` (a number with both bounds),
        `number` (other numbers) or `text` (strings; integer lists as comma-separated text)."""
        kind, setting = self.setting.kind, self.setting
        if kind in WIDGETS:
            return WIDGETS[kind]
        if kind == "float" and setting.minimum is not None and setting.maximum is not None:
            return "slider"
        return "number" if kind in ("int", "float") else "text"

    def ui_value(self) -> Any:
        """The default as the control shows it."""
        if self.setting.kind == "ints":
            return ", ".join(str(value) for value in self.default)
        return list(self.default) if self.setting.kind == "layers" else self.default

    def component(self, gr: Any) -> gradio.components.Component:
        """The gradio component of this control (`elem_id` `setting-<name>`)."""
        setting, widget = self.setting, self.widget
        common = {"label": self.name, "info": setting.help, "value": self.ui_value(), "elem_id": f"setting-{self.name}"}
        if widget == "checkbox":
            return gr.Checkbox(**common)
        if widget == "checkbox_group":
            return gr.CheckboxGroup(choices=list(self.choices), **common)
        if widget == "dropdown":
            return gr.Dropdown(choices=list(setting.choices), **common)
        if widget == "slider":
            step = (setting.maximum - setting.minimum) / 100
            return gr.Slider(minimum=setting.minimum, maximum=setting.maximum, step=step, **common)
        if widget == "number":
            precision = 0 if setting.kind == "int" else None
            return gr.Number(minimum=setting.minimum, maximum=setting.maximum, precision=precision, **common)
        return gr.Textbox(**common)

    def parse(self, value: Any) -> Any:
        """A value of the control as the setting's value, validated; `SettingError` names the setting."""
        kind = self.setting.kind
        if kind == "ints" and isinstance(value, str):
            value = [self._integer(item) for item in value.replace(",", " ").split()]
        elif kind == "layers" and isinstance(value, list):
            value = sorted(value)
        elif kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.setting.validate(value)

    def _integer(self, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise SettingError(f"{self.name} must be {self.setting.expected()}, got {text!r}.") from None


def setting_controls(model: Any) -> list[Control]:
    """One [`Control`] per setting of `model.detection_settings`, starting at the model's values."""
    defaults = model.resolve_settings({})
    controls = []
    for name in model.detection_settings:
        setting = SETTINGS[name]
        choices = tuple(defaults[name]) if setting.kind == "layers" else ()
        controls.append(Control(setting, defaults[name], choices))
    return controls


def settings_from_controls(controls: Sequence[Control], values: Sequence[Any]) -> dict[str, Any]:
    """The settings the controls' `values` change from the model's values, validated."""
    settings = {}
    for control, value in zip(controls, values, strict=True):
        parsed = control.parse(value)
        if parsed != control.default:
            settings[control.name] = parsed
    return settings


@dataclass(frozen=True)
class ThresholdDefaults:
    """Where the threshold sliders start and end, and which thresholds apply when the user sets none.

    Attributes:
        image, pixel: the calibrated thresholds where the model folder has a `calibration.json`, else the middle of
            the anomaly-map range (the neutral score of the methods).
        minimum, maximum: the anomaly-map range of the model (image scores share its scale), widened to include the
            calibrated thresholds.
        source: `calibration (...)` or `method default`.
    """

    image: float
    pixel: float
    minimum: float
    maximum: float
    source: str


def threshold_defaults(detector: Any) -> ThresholdDefaults:
    """The [`ThresholdDefaults`] of a pipeline (its `calibration` and its model's `anomaly_map_range`)."""
    low, high = detector.model.anomaly_map_range()
    middle = (low + high) / 2
    calibration = detector.calibration
    if calibration is None:
        return ThresholdDefaults(middle, middle, low, high, "method default")
    image = middle if calibration.image_threshold is None else calibration.image_threshold
    pixel = middle if calibration.pixel_threshold is None else calibration.pixel_threshold
    return ThresholdDefaults(image, pixel, min(low, image, pixel), max(high, image, pixel), calibration.describe())


def threshold_note(defaults: ThresholdDefaults) -> str:
    """What the UI says about the thresholds in use when no box is ticked."""
    if defaults.source == "method default":
        return (
            "**Thresholds in use:** the method default image threshold and no pixel threshold (no mask): the model "
            "folder has no `calibration.json` (`genclip calibrate` writes one). Tick a box to use your own."
        )
    return (
        f"**Thresholds in use:** {defaults.source}, per class where it has the class, with the settings it was "
        "calibrated with (else the method default). Tick a box to use your own."
    )


@dataclass
class ImageResult:
    """What the demo shows of one image; `threshold_source` and `mask_source` say where the image and the pixel
    threshold came from ([`YOURS`], the calibration or the method default; no mask: `None`)."""

    name: str
    overlay: Image.Image
    score: float
    label: str
    score_threshold: float
    threshold_source: str
    class_name: str | None
    mask_source: str | None

    def row(self) -> list[Any]:
        """The row of the results table ([`RESULT_COLUMNS`])."""
        mask = self.mask_source or "none (no pixel threshold)"
        threshold = round(self.score_threshold, 4)
        return [self.name, round(self.score, 4), self.label, threshold, self.threshold_source, self.class_name, mask]


@dataclass
class DemoRun:
    """The results of the images that were read, and one line per image that was not."""

    results: list[ImageResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def detect_images(
    detector: Any,
    images: Sequence[str | Path | Image.Image],
    class_name: str | None = None,
    reference_images: Sequence[Any] | None = None,
    **options: Any,
) -> DemoRun:
    """Score `images` with a pipeline and draw each overlay (the image beside its colour-mapped anomaly map, with
    the predicted mask's contour where a pixel threshold applies).

    Args:
        detector: an [`AnomalyDetectionPipeline`].
        images: image files or PIL images; a file that cannot be read is reported in `failures`.
        class_name: class name of the images (default: the method's generic prompt).
        reference_images: normal images for the few-shot mode.
        options: `threshold`, `score_threshold` and the model's detection settings.
    Raises:
        ValueError: a bad setting, threshold, class name or reference image.
    """
    run, loaded = DemoRun(), []
    for index, image in enumerate(images):
        name = Path(image).name if isinstance(image, (str, Path)) else f"image {index + 1}"
        try:
            loaded.append((name, to_rgb_image(image, name)))
        except DEMO_ERRORS as error:
            run.failures.append(f"{name}: {error}")
    if not loaded:
        return run
    extra = {"reference_images": list(reference_images)} if reference_images else {}
    outputs = detector([image for _, image in loaded], class_name=class_name, **options, **extra)
    settings = {name: value for name, value in options.items() if name in detector.model.detection_settings}
    vmin, vmax = detector.model.anomaly_map_range(**settings)
    for (name, image), output in zip(loaded, outputs, strict=True):
        source = output["threshold_source"]
        mask_source = output.get("pixel_threshold_source")
        run.results.append(
            ImageResult(
                name=name,
                overlay=_overlay(image, output, vmin, vmax),
                score=output["score"],
                label=output["label"],
                score_threshold=output["score_threshold"],
                threshold_source=YOURS if source == "argument" else source,
                class_name=output["class_name"],
                mask_source=YOURS if mask_source == "argument" else mask_source,
            )
        )
    return run


def _overlay(image: Image.Image, output: dict, vmin: float, vmax: float) -> Image.Image:
    """The overlay at the picture's size (a large JPEG is decoded reduced while its map has the file's size)."""
    anomaly_map, mask = output["anomaly_map"], output.get("mask")
    if anomaly_map.shape != (image.height, image.width):
        anomaly_map = resize_map(torch.from_numpy(anomaly_map), (image.height, image.width)).numpy()
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask).resize(image.size, Image.Resampling.NEAREST))
    return overlay_heatmap(image, anomaly_map, vmin, vmax, mask)


def run_from_ui(
    detector: Any,
    controls: Sequence[Control],
    images: Sequence[str] | None,
    class_name: str | None,
    own_image_threshold: bool,
    image_threshold: float,
    own_pixel_threshold: bool,
    pixel_threshold: float,
    reference_images: Sequence[str] | None,
    *setting_values: Any,
) -> tuple[list[tuple[Image.Image, str]], list[list[Any]], str]:
    """The app's run button: the values of its inputs in, the gallery, the results table and a status message out;
    an error a user can cause becomes the message."""
    if not images:
        return [], [], "Upload one or more images, then press **Detect anomalies**."
    try:
        options = settings_from_controls(controls, setting_values)
        if own_image_threshold:
            options["score_threshold"] = image_threshold
        if own_pixel_threshold:
            options["threshold"] = pixel_threshold
        run = detect_images(detector, images, (class_name or "").strip() or None, reference_images, **options)
    except DEMO_ERRORS as error:
        return [], [], f"**Error:** {_plain(str(error))}"
    gallery = [(result.overlay, f"{result.name}: {result.score:.4f} {result.label}") for result in run.results]
    lines = [f"**{len(run.results)} of {len(images)} images scored.**"]
    lines += [f"- could not read {_plain(failure)}" for failure in run.failures]
    return gallery, [result.row() for result in run.results], "\n".join(lines)


def _plain(text: str) -> str:
    """`text` escaped for Markdown (file names and reprs in messages show as written)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def build_demo(detector: Any, title: str = "GenCLIP zero-shot anomaly detection") -> gradio.Blocks:
    """The Gradio app of a pipeline (`load_detector(...)` or `pipeline("anomaly-detection", ...)`); `.launch()` it.

    Elements a test can find: `#images` (upload), `#class-name`, `#references` (few-shot models only),
    `#own-image-threshold`, `#image-threshold`, `#own-pixel-threshold`, `#pixel-threshold`, `#setting-<name>`,
    `#run`, `#status`, `#heatmaps` (gallery) and `#results` (table).
    """
    gr = import_gradio()
    model = detector.model
    controls = setting_controls(model)
    thresholds = threshold_defaults(detector)
    name = getattr(model, "name_or_path", "") or type(model).__name__
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=CACHE_LIFETIME) as demo:
        gr.Markdown(
            f"# {title}\nModel `{name}` ({type(model).__name__}). Each result is the image beside its anomaly map "
            "over it (blue: normal, red: anomalous; a white contour marks the predicted mask)."
        )
        with gr.Row():
            with gr.Column():
                images = gr.File(
                    label="Images", file_count="multiple", file_types=["image"], type="filepath", elem_id="images"
                )
                class_name = gr.Textbox(
                    label="Class name",
                    placeholder="e.g. metal plate (empty: the method's generic prompt)",
                    elem_id="class-name",
                )
                references = gr.File(
                    label="Reference images (few-shot: a few normal images of the same class)",
                    file_count="multiple",
                    file_types=["image"],
                    type="filepath",
                    visible=model.supports_few_shot,
                    elem_id="references",
                )
                run_button = gr.Button("Detect anomalies", variant="primary", elem_id="run")
                with gr.Accordion("Thresholds"):
                    gr.Markdown(threshold_note(thresholds), elem_id="threshold-note")
                    own_image, image_threshold = _threshold_inputs(gr, thresholds, "image", thresholds.image)
                    own_pixel, pixel_threshold = _threshold_inputs(gr, thresholds, "pixel", thresholds.pixel)
                with gr.Accordion("Detection settings (default: the model's)"):
                    setting_inputs = [control.component(gr) for control in controls]
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                gallery = gr.Gallery(label="Image | overlay", columns=1, format="png", elem_id="heatmaps")
                table = gr.Dataframe(headers=list(RESULT_COLUMNS), interactive=False, elem_id="results")
        run_button.click(
            partial(run_from_ui, detector, controls),
            inputs=[images, class_name, own_image, image_threshold, own_pixel, pixel_threshold, references]
            + setting_inputs,
            outputs=[gallery, table, status],
        )
    return demo


def _threshold_inputs(gr: Any, defaults: ThresholdDefaults, level: str, value: float) -> tuple[Any, Any]:
    """A "use my own" checkbox and its slider (enabled by the checkbox) for the `image` or `pixel` threshold."""
    setting = SETTINGS["score_threshold" if level == "image" else "threshold"]
    own = gr.Checkbox(label=f"Use my own {level} threshold", value=False, elem_id=f"own-{level}-threshold")
    slider = gr.Slider(
        minimum=defaults.minimum,
        maximum=defaults.maximum,
        value=value,
        step=(defaults.maximum - defaults.minimum) / 1000,
        label=f"{level.capitalize()} threshold",
        info=setting.help,
        interactive=False,
        elem_id=f"{level}-threshold",
    )
    own.change(lambda checked: gr.Slider(interactive=checked), own, slider)
    return own, slider


__all__ = [
    "RESULT_COLUMNS",
    "YOURS",
    "Control",
    "DemoRun",
    "GradioMissingError",
    "ImageResult",
    "build_demo",
    "detect_images",
    "import_gradio",
    "run_from_ui",
    "setting_controls",
    "settings_from_controls",
    "threshold_defaults",
    "threshold_note",
]
