"""The calibration record: decision thresholds (per image and per pixel, a default and per class) with how they were
made, as strict JSON (`calibration.json` in a model folder, written by `genclip calibrate`). The thresholds are
computed by `genclip_hf.metrics.thresholds`.

A value is anomalous when it is `>= threshold`, the rule of the pipeline.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from .storage import atomic_write_text

CALIBRATION_METHODS = ("normal_quantile", "f1_adaptive")
CALIBRATION_FORMAT = "genclip-calibration"
CALIBRATION_VERSION = 1


def check_target_fpr(target_fpr: Any) -> Fraction:
    """`target_fpr` as the exact fraction of the decimal it prints as; it must lie in (0, 1)."""
    if isinstance(target_fpr, bool) or not isinstance(target_fpr, numbers.Real) or not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be a number in (0, 1), both excluded, got {target_fpr!r}")
    return Fraction(repr(float(target_fpr)))


def _check_threshold(value: Any, where: str) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
    ):
        raise ValueError(f"{where} must be a finite number or null, got {value!r}")


def _check_count(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{where} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of one class (or the default) and how many values they come from.

    Attributes:
        image_threshold: image score from which an image is anomalous (`>=`), or None if not calibrated.
        pixel_threshold: anomaly-map value from which a pixel is anomalous (`>=`), or None.
        n_normal_images, n_anomalous_images: image scores used.
        n_normal_pixels, n_anomalous_pixels: pixels used. `normal_quantile` uses normal values only.
    """

    image_threshold: float | None = None
    pixel_threshold: float | None = None
    n_normal_images: int = 0
    n_anomalous_images: int = 0
    n_normal_pixels: int = 0
    n_anomalous_pixels: int = 0

    def __post_init__(self) -> None:
        _check_entry(self, "Thresholds")
        for name in _ENTRY_FIELDS:  # numpy scalars become Python numbers, so that the record serialises
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value) if name in _THRESHOLD_FIELDS else int(value))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return {name: getattr(self, name) for name in _ENTRY_FIELDS}


_THRESHOLD_FIELDS = ("image_threshold", "pixel_threshold")
_ENTRY_FIELDS = tuple(item.name for item in fields(Thresholds))


def _check_entry(entry: Any, where: str) -> None:
    """Checks the fields of a `Thresholds` or of its JSON object, naming the bad field."""
    for name in _ENTRY_FIELDS:
        value = entry[name] if isinstance(entry, Mapping) else getattr(entry, name)
        (_check_threshold if name in _THRESHOLD_FIELDS else _check_count)(value, f"{where}.{name}")


def _check_keys(data: Any, expected: Sequence[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(expected))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; expected {list(expected)}")
    missing = [key for key in expected if key not in data]
    if missing:
        raise ValueError(f"{where} is missing the keys {missing}")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"calibration JSON repeats the keys {repeated}")
    return dict(pairs)


@dataclass(frozen=True)
class Calibration:
    """Calibrated thresholds: a default and, optionally, one entry per class.

    Attributes:
        method: `"normal_quantile"` or `"f1_adaptive"`.
        target_fpr: the accepted false positive rate of `normal_quantile`; None for `f1_adaptive`.
        default: thresholds over all classes, used for classes without an entry.
        per_class: class name -> thresholds of that class.
        settings: the detection settings the scores and maps were made with (the pipeline applies the thresholds
            only to calls with the same effective settings).
    """

    method: Literal["normal_quantile", "f1_adaptive"]
    default: Thresholds
    target_fpr: float | None = None
    per_class: dict[str, Thresholds] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"Calibration.method must be one of {CALIBRATION_METHODS}, got {self.method!r}")
        if self.method == "normal_quantile":
            check_target_fpr(self.target_fpr)
            object.__setattr__(self, "target_fpr", float(self.target_fpr))
        elif self.target_fpr is not None:
            raise ValueError(f"Calibration.target_fpr must be null for method 'f1_adaptive', got {self.target_fpr!r}")
        if not isinstance(self.default, Thresholds):
            raise ValueError(f"Calibration.default must be Thresholds, got {type(self.default).__name__}")
        if not isinstance(self.per_class, dict):
            raise ValueError(f"Calibration.per_class must be a dict, got {type(self.per_class).__name__}")
        for name, entry in self.per_class.items():
            if not isinstance(name, str) or not isinstance(entry, Thresholds):
                raise ValueError(f"Calibration.per_class must map class names (str) to Thresholds, got {name!r}")
        if not isinstance(self.settings, dict) or not all(isinstance(name, str) for name in self.settings):
            raise ValueError(f"Calibration.settings must map setting names to values, got {self.settings!r}")

    @property
    def image_threshold(self) -> float | None:
        """The default image threshold."""
        return self.default.image_threshold

    @property
    def pixel_threshold(self) -> float | None:
        """The default pixel threshold."""
        return self.default.pixel_threshold

    def for_class(self, class_name: str | None) -> Thresholds:
        """The thresholds of `class_name`, or the default when it has no entry (or is None)."""
        return self.per_class.get(class_name, self.default) if class_name is not None else self.default

    def to_json(self, indent: int | None = 2) -> str:
        """The record as JSON text (`from_json` reads it back)."""
        payload = {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "method": self.method,
            "target_fpr": self.target_fpr,
            "default": self.default.to_dict(),
            "per_class": {name: entry.to_dict() for name, entry in self.per_class.items()},
            "settings": self.settings,
        }
        return json.dumps(payload, indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Reads `to_json` output strictly: unknown or missing keys, repeated keys, NaN/Infinity and values of the
        wrong type raise a `ValueError` naming the field."""
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=float)
        _check_keys(
            data, ("format", "version", "method", "target_fpr", "default", "per_class", "settings"), "calibration"
        )
        if data["format"] != CALIBRATION_FORMAT:
            raise ValueError(f"calibration.format must be {CALIBRATION_FORMAT!r}, got {data['format']!r}")
        if data["version"] != CALIBRATION_VERSION or isinstance(data["version"], bool):
            raise ValueError(f"calibration.version must be {CALIBRATION_VERSION}, got {data['version']!r}")
        if data["method"] not in CALIBRATION_METHODS:
            raise ValueError(f"calibration.method must be one of {CALIBRATION_METHODS}, got {data['method']!r}")
        if data["target_fpr"] is not None:
            try:
                check_target_fpr(data["target_fpr"])
            except ValueError:
                raise ValueError(
                    f"calibration.target_fpr must be a number in (0, 1) or null, got {data['target_fpr']!r}"
                ) from None
        entries = {"default": data["default"]}
        if not isinstance(data["per_class"], dict):
            raise ValueError(f"calibration.per_class must be a JSON object, got {type(data['per_class']).__name__}")
        entries.update({f"per_class[{name!r}]": entry for name, entry in data["per_class"].items()})
        for where, entry in entries.items():
            _check_keys(entry, _ENTRY_FIELDS, f"calibration.{where}")
            _check_entry(entry, f"calibration.{where}")
        return cls(
            method=data["method"],
            target_fpr=data["target_fpr"],
            default=Thresholds(**data["default"]),
            per_class={name: Thresholds(**entry) for name, entry in data["per_class"].items()},
            settings=data["settings"],
        )

    def describe(self, class_name: str | None = None) -> str:
        """Where a threshold came from, for people: "calibration (normal_quantile, FPR 0.01, class 'pcb')"."""
        detail = f", FPR {self.target_fpr:g}" if self.target_fpr is not None else ""
        scope = f", class {class_name!r}" if class_name in self.per_class else ", all classes"
        return f"calibration ({self.method}{detail}{scope})"


CALIBRATION_FILE = "calibration.json"
"""The file name of a model folder's calibration."""


def load_calibration(path: str | Path) -> Calibration:
    """Read a `calibration.json` (strict); errors name the file."""
    path = Path(path)
    try:
        return Calibration.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from error


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write `calibration` atomically."""
    return atomic_write_text(path, calibration.to_json() + "\n")


__all__ = [
    "CALIBRATION_FILE",
    "CALIBRATION_METHODS",
    "Calibration",
    "Thresholds",
    "check_target_fpr",
    "load_calibration",
    "save_calibration",
]
