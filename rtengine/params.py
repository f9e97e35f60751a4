"""Parameters as data: what a processor declares about each of its controls."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ParameterError

SCALES = ("linear", "log")


@dataclass(frozen=True)
class Param:
    """One parameter of a processor.

    ``id`` is a stable string used by chain files, presets, MIDI maps and DAW
    projects; never rename one.  Values are floats; a ``choices`` parameter
    stores the index of the choice, a ``toggle`` stores 0 or 1.
    ``lane``: the runner hands the kernel a per-sample smoothed lane; when False
    the processor smooths on its own (the EQ ramps coefficients) and the value
    is designed into a control blob off the audio thread.
    ``realtime``: when False a change re-prepares the stage (it changes latency).
    """

    id: str
    name: str
    min: float
    max: float
    default: float
    unit: str = ""
    scale: str = "linear"
    smoothing_ms: float = 20.0
    choices: tuple[str, ...] = field(default=())
    toggle: bool = False
    lane: bool = True
    realtime: bool = True

    def __post_init__(self):
        if not self.id.isidentifier():
            raise ValueError(f"parameter id {self.id!r} must be an identifier")
        if self.scale not in SCALES:
            raise ValueError(f"parameter {self.id}: scale must be one of {SCALES}")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"parameter {self.id}: log scale needs min > 0")
        if not (self.min <= self.default <= self.max):
            raise ValueError(f"parameter {self.id}: default {self.default} outside "
                             f"[{self.min}, {self.max}]")

    @property
    def discrete(self) -> bool:
        return bool(self.choices) or self.toggle

    def coerce(self, value, where: str = "") -> float:
        """The float stored for ``value``: accepts numbers, booleans for a toggle
        and choice names; raises ParameterError naming the parameter otherwise."""
        label = f"{where}{self.id}"
        if self.choices and isinstance(value, str):
            if value not in self.choices:
                raise ParameterError(f"{label}: {value!r} is not one of "
                                     f"{', '.join(self.choices)}")
            return float(self.choices.index(value))
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{label}: expected a number, got {value!r}") from None
        if not math.isfinite(v):
            raise ParameterError(f"{label}: value must be finite, got {value!r}")
        if v < self.min or v > self.max:
            raise ParameterError(f"{label}: {v:g} is outside the range "
                                 f"[{self.min:g}, {self.max:g}] {self.unit}".rstrip())
        if self.discrete:
            v = float(round(v))
        return v

    def to_normalized(self, value: float) -> float:
        """Map a value to 0..1 (log parameters map logarithmically)."""
        if self.max == self.min:
            return 0.0
        if self.scale == "log":
            return math.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / (self.max - self.min)

    def from_normalized(self, x: float) -> float:
        x = min(max(float(x), 0.0), 1.0)
        if self.scale == "log":
            v = self.min * (self.max / self.min) ** x
        else:
            v = self.min + x * (self.max - self.min)
        return float(round(v)) if self.discrete else v

    def format(self, value: float) -> str:
        """A value as a person reads it: '-6.0 dB', 'peak', 'on'."""
        if self.choices:
            return self.choices[int(round(value))]
        if self.toggle:
            return "on" if value >= 0.5 else "off"
        return f"{value:.6g} {self.unit}".rstrip()

    def describe(self) -> str:
        """One line for ``rtengine plugins``."""
        if self.choices:
            rng = " | ".join(self.choices)
        elif self.toggle:
            rng = "off | on"
        else:
            rng = f"{self.min:g} .. {self.max:g}" + (" (log)" if self.scale == "log" else "")
        unit = f" {self.unit}" if self.unit else ""
        flags = "" if self.realtime else "  [changes latency: re-prepares]"
        return (f"{self.id:<18} {self.name:<24} {rng}{unit}, default "
                f"{self.format(self.default)}{flags}")


def toggle(id: str, name: str, default: bool = False, smoothing_ms: float = 10.0,
           lane: bool = True) -> Param:
    return Param(id, name, 0.0, 1.0, 1.0 if default else 0.0, toggle=True,
                 smoothing_ms=smoothing_ms, lane=lane)


def choice(id: str, name: str, choices, default: str, lane: bool = False) -> Param:
    choices = tuple(choices)
    return Param(id, name, 0.0, float(len(choices) - 1), float(choices.index(default)),
                 choices=choices, smoothing_ms=0.0, lane=lane)


BYPASS = toggle("bypass", "Bypass", False, smoothing_ms=10.0)
