"""One definition of every setting: its name, type, range and help, from which the config checks, the per-call checks
of `detect` and the pipeline, and the command-line flags are all derived.

A value is checked the same way wherever it comes from (a `config.json`, a keyword argument, a flag): NaN, inf, a
wrong type or an out-of-range value raises `SettingError` (a `ValueError`) whose message names the setting.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["bool", "int", "float", "str", "choice", "layers", "ints"]


class SettingError(ValueError):
    """A setting got a value it cannot take; the message names the setting and what it expects."""


@dataclass(frozen=True)
class Setting:
    """One setting.

    Args:
        name: the config field and keyword argument, e.g. `"alpha"`.
        kind: `bool`, `int`, `float`, `str` (non-empty), `choice` (one of `choices`), `layers` (a non-empty list of
            distinct 1-based layer indices) or `ints` (a non-empty list of distinct integers).
        help: one line for the command line and the docs.
        minimum, maximum: inclusive bounds of numbers (and of each integer of a list).
        exclusive_minimum: the minimum itself is not allowed (e.g. a positive temperature).
        optional: `None` is a valid value (meaning "the method's default").
        choices: the allowed strings of a `choice`.
        per_call: the setting may be given per call (pipeline, `detect`, command line), not only in the config.
    """

    name: str
    kind: Kind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    per_call: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag: `--alpha`, `--feature-layers`; booleans drop a leading `use_` (`--cnf/--no-cnf`)."""
        name = self.name.removeprefix("use_") if self.kind == "bool" else self.name
        return "--" + name.replace("_", "-")

    def expected(self) -> str:
        """What the setting takes, in words."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(choice) for choice in self.choices)
        elif self.kind == "str":
            text = "a non-empty string"
        elif self.kind in ("layers", "ints"):
            what = "1-based layer indices" if self.kind == "layers" else "integers"
            text = f"a non-empty list of distinct {what}{self._range_text()}"
        else:
            text = ("an integer" if self.kind == "int" else "a finite number") + self._range_text()
        return text + (" (or None)" if self.optional else "")

    def _range_text(self) -> str:
        low = self.minimum if self.kind != "layers" else max(self.minimum or 1, 1)
        if low is None and self.maximum is None:
            return ""
        if self.maximum is None:
            return f" {'>' if self.exclusive_minimum else '>='} {_number(low)}"
        if low is None:
            return f" <= {_number(self.maximum)}"
        opening = "(" if self.exclusive_minimum else "["
        return f" in {opening}{_number(low)}, {_number(self.maximum)}]"

    def validate(self, value: Any) -> Any:
        """Return `value` in its canonical type (a list for list kinds) or raise `SettingError`."""
        if value is None:
            if self.optional:
                return None
            raise self._error(value)
        if self.kind == "bool":
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return bool(value)
            raise self._error(value)
        if self.kind in ("str", "choice"):
            if not isinstance(value, str) or not value.strip():
                raise self._error(value)
            if self.kind == "choice" and value not in self.choices:
                raise self._error(value)
            return value.strip() if self.kind == "str" else value
        if self.kind in ("layers", "ints"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise self._error(value)
            items = list(value)
            if not items or len(set(map(repr, items))) != len(items):
                raise self._error(value)
            return [self._check_number(item, integer=True, whole=value) for item in items]
        return self._check_number(value, integer=self.kind == "int", whole=value)

    def _check_number(self, value: Any, integer: bool, whole: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self._error(whole)
        if integer:
            if not isinstance(value, numbers.Integral):
                raise self._error(whole)
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise self._error(whole)
        low = self.minimum if self.kind != "layers" else max(self.minimum or 1, 1)
        if low is not None and (value < low or (self.exclusive_minimum and value == low)):
            raise self._error(whole)
        if self.maximum is not None and value > self.maximum:
            raise self._error(whole)
        return value

    def _error(self, value: Any) -> SettingError:
        return SettingError(f"{self.name} must be {self.expected()}, got {value!r} ({type(value).__name__}).")

    def parse_text(self, text: str) -> Any:
        """Parse one command-line value (before `validate`); raises `SettingError` naming the flag."""
        try:
            if self.kind in ("int", "layers", "ints"):
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise SettingError(f"{self.flag} must be {self.expected()}, got {text!r}.") from None
        return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_SETTINGS = (
    # Inference switches (per call; defaults from the model's config).
    Setting("use_cnf", "bool", "class-name filtering (CNF)", per_call=True),
    Setting("use_query_branch", "bool", "fuse the query-only branch (GQP)", per_call=True),
    Setting("use_vision_prompts", "bool", "add the multi-layer vision prompts (MVP)", per_call=True),
    Setting("feature_layers", "layers", "a subset of the model's feature layers", per_call=True),
    Setting("generic_term", "str", 'CNF replacement term, e.g. "object"', per_call=True),
    Setting("alpha", "float", "weight of the vision-enhanced branch (Eq. 8)", 0.0, 1.0, per_call=True),
    Setting("sigma", "float", "Gaussian smoothing sigma in pixels at the model input size", 0.0, per_call=True),
    Setting("window_scales", "ints", "WinCLIP window sizes in patches", 1, per_call=True),
    Setting("few_shot_weight", "float", "weight of the few-shot nearest-neighbour map", 0.0, 1.0, per_call=True),
    # Decisions (per call).
    Setting(
        "threshold", "float", "pixel threshold on the anomaly map: adds a predicted mask", optional=True, per_call=True
    ),
    Setting("score_threshold", "float", "image score from which the label is anomalous", optional=True, per_call=True),
    # Config-only fields.
    Setting("image_size", "int", "side of the square model input in pixels", 1),
    Setting("n_state_tokens", "int", "learnable state tokens per state", 1),
    Setting("n_query_tokens", "int", "learnable query tokens", 1),
    Setting("text_prompt_length", "int", "deep text prompt slots per prompt", 1),
    Setting("text_prompt_depth", "int", "text layers that receive the deep prompt", 0, optional=True),
    Setting("text_prompt_position", "choice", "slot of the deep prompt", choices=("after_sot", "before_eot")),
    Setting("position_interpolation", "choice", "resize of the position grid", choices=("bicubic", "bilinear")),
    Setting("normal_state_word", "str", "state word of the normal prompt"),
    Setting("abnormal_state_word", "str", "state word of the abnormal prompt"),
    Setting("logit_scale", "float", "temperature of the cosine similarities", 0.0, exclusive_minimum=True),
    Setting("top_n1", "int", "N1 of the image score (Eqs. 9-10)", 1),
    Setting("top_n2", "int", "N2 of the image score (Eqs. 9-10)", 1),
    Setting("focal_gamma", "float", "focusing parameter of the focal loss", 0.0),
    Setting("dice_smooth", "float", "smoothing term of the dice loss", 0.0),
    Setting("prompt_init_std", "float", "std of the prompt-token initialisation", 0.0),
)
SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _SETTINGS}
"""Every setting by name."""


def validate_settings(values: Mapping[str, Any], allowed: Sequence[str] | None = None, owner: str = "") -> dict:
    """Validate `values` (name -> value); a name outside `allowed` (default: every per-call setting) is refused.

    Returns:
        The values in canonical types, `None` values dropped unless the setting is optional.
    """
    allowed = list(allowed) if allowed is not None else [name for name, item in SETTINGS.items() if item.per_call]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        where = f" of {owner}" if owner else ""
        raise SettingError(f"Unknown setting(s) {unknown}{where}; it takes {allowed}.")
    return {name: SETTINGS[name].validate(value) for name, value in values.items() if value is not None}


def validate_fields(config: Any, names: Sequence[str]) -> None:
    """Validate the fields `names` of a config in place (canonical types), raising `SettingError` naming the first bad
    one."""
    for name in names:
        setattr(config, name, SETTINGS[name].validate(getattr(config, name)))


def add_setting_arguments(parser: argparse.ArgumentParser, names: Sequence[str], title: str) -> None:
    """Add one flag per setting to `parser` (default `None`: the model's value). Values stay text (or `bool`) until
    [`settings_from_arguments`] parses and validates them, so a bad value gets the setting's own message."""
    group = parser.add_argument_group(title)
    for name in names:
        setting = SETTINGS[name]
        if setting.kind == "bool":
            group.add_argument(
                setting.flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=setting.help
            )
        elif setting.kind in ("layers", "ints"):
            group.add_argument(setting.flag, dest=name, nargs="+", metavar="N", help=setting.help)
        else:
            group.add_argument(setting.flag, dest=name, metavar="VALUE", help=setting.help)


def settings_from_arguments(namespace: argparse.Namespace, names: Sequence[str]) -> dict:
    """The settings given on the command line (flags added by [`add_setting_arguments`]), parsed and validated."""
    values = {}
    for name in names:
        raw = getattr(namespace, name, None)
        if raw is None:
            continue
        setting = SETTINGS[name]
        parsed = [setting.parse_text(item) for item in raw] if isinstance(raw, list) else raw
        if isinstance(raw, str):
            parsed = setting.parse_text(raw)
        try:
            values[name] = setting.validate(parsed)
        except SettingError as error:
            raise SettingError(str(error).replace(f"{name} must", f"{setting.flag} must", 1)) from None
    return values


PER_CALL_SETTINGS = tuple(name for name, setting in SETTINGS.items() if setting.per_call)

__all__ = [
    "PER_CALL_SETTINGS",
    "SETTINGS",
    "Setting",
    "SettingError",
    "add_setting_arguments",
    "settings_from_arguments",
    "validate_fields",
    "validate_settings",
]
