"""The processor API: what a plugin implements to run in a chain.

A processor is data plus three methods (STYLE.md):

* class data: ``name``, ``description``, ``params`` (a tuple of Param),
  ``channels`` (allowed channel counts, or None for any), ``impls`` (kernel
  implementations it offers: "c", "numba");
* ``prepare(sample_rate, max_block, channels)``: control thread, may allocate,
  does nothing when the spec is unchanged;
* ``reset()``: clears state in place (control thread, audio stopped): no
  buffer is allocated, only transient numpy views;
* processing is the native kernel at ``kernel_address`` over ``state``; the
  runner calls it with the parameter lanes (see kernels/c/rtk.h).

A processor whose parameters are not all per-sample lanes designs a *control
blob* off the audio thread (``design``): the engine publishes it to the runner,
which copies it into ``state[blob_offset:]`` between blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

import kernels

from .errors import AudioFormatError, ParameterError, PluginError
from .params import Param

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 384000


@dataclass(frozen=True)
class Option:
    """A construction setting of a processor, given in a chain file under
    ``[stage.options]``: fixed while the stage runs (a patch file, a hop size).
    ``kind`` is "path" (relative paths are resolved against the chain file's
    folder), "float", "int" or "str"."""
    id: str
    kind: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None

    def coerce(self, value, where: str = "", base: Path | None = None):
        label = f"{where}options.{self.id}"
        if self.kind == "path":
            if not isinstance(value, (str, Path)) or not str(value):
                raise PluginError(f"{label}: expected a file path, got {value!r}")
            path = Path(value).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            return str(path)
        if self.kind == "str":
            if not isinstance(value, str):
                raise PluginError(f"{label}: expected a string, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"{label}: expected a number, got {value!r}")
        if self.kind == "int":
            if int(value) != value:
                raise PluginError(f"{label}: expected a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
            raise PluginError(f"{label}: {value:g} is outside [{self.min:g}, {self.max:g}]")
        return value

    def describe(self) -> str:
        rng = f" ({self.min:g} .. {self.max:g})" if self.min is not None else ""
        return f"option {self.id:<11} {self.kind}{rng}, default {self.default!r}: {self.help}"


class _ClassOrInstance:
    """A method that works on the class (declared data) and on an instance
    (whose data may differ, e.g. parameters declared by a patch file)."""

    def __init__(self, fn):
        self.fn = fn

    def __get__(self, obj, owner):
        target = owner if obj is None else obj
        return lambda *a, **k: self.fn(target, *a, **k)


class Processor:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    channels: ClassVar[tuple[int, ...] | None] = None
    impls: ClassVar[tuple[str, ...]] = kernels.IMPLS
    kernel: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    # True when the parameters are only known per instance (declared by a file
    # named in the options); chains then check parameter values when built
    dynamic_params: ClassVar[bool] = False

    def __init__(self, impl: str = "c", **options):
        if impl not in self.impls:
            raise PluginError(f"plugin {self.name!r} has no {impl!r} kernels; "
                              f"choose one of {', '.join(self.impls)}")
        self.impl = impl
        self.opts = self.check_options(options)
        self.spec: tuple[float, int, int] | None = None
        self.state: np.ndarray | None = None
        self.values = {p.id: p.default for p in self.params}

    # ---- declared data -------------------------------------------------------
    @_ClassOrInstance
    def param(self, pid: str) -> Param:
        for p in self.params:
            if p.id == pid:
                return p
        raise ParameterError(f"plugin {self.name!r} has no parameter {pid!r}; its parameters "
                             f"are: {', '.join(p.id for p in self.params) or 'none'}")

    def current_options(self) -> dict[str, Any]:
        """The options as a chain file should save them now (a hosted plugin's
        state may have changed since construction)."""
        return dict(self.opts)

    @classmethod
    def check_options(cls, given: Mapping[str, Any], where: str = "",
                      base: Path | None = None) -> dict[str, Any]:
        """Every option's value (defaults filled in); PluginError for unknown
        or bad ones."""
        known = {o.id: o for o in cls.options}
        unknown = set(given) - set(known)
        if unknown:
            raise PluginError(f"{where}plugin {cls.name!r} has no option "
                              f"{', '.join(sorted(unknown))}; its options are: "
                              f"{', '.join(known) or 'none'}")
        return {oid: (o.coerce(given[oid], where, base) if oid in given else o.default)
                for oid, o in known.items()}

    @property
    def latency(self) -> int:
        """Samples of delay the stage adds (valid after prepare)."""
        return 0

    @property
    def kernel_address(self) -> int:
        return kernels.address(self.kernel, self.impl)

    # ---- lifecycle ------------------------------------------------------------
    def prepare(self, sample_rate: float, max_block: int, channels: int) -> None:
        """Allocate state for this spec.  Control thread; may allocate."""
        spec = (float(sample_rate), int(max_block), int(channels))
        if spec == self.spec:
            return
        if not MIN_SAMPLE_RATE <= spec[0] <= MAX_SAMPLE_RATE:
            raise AudioFormatError(f"sample rate {sample_rate:g} Hz is outside what rtengine "
                                   f"supports ({MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz); "
                                   "resample the audio first")
        if self.channels is not None and spec[2] not in self.channels:
            raise AudioFormatError(f"plugin {self.name!r} takes "
                                   f"{' or '.join(map(str, self.channels))} channels, "
                                   f"not {spec[2]}")
        if spec[1] < 1:
            raise AudioFormatError(f"block size must be at least 1, got {max_block}")
        self.spec = spec
        self.state = self.allocate(*spec)
        self.reset()

    def allocate(self, sample_rate: float, max_block: int, channels: int) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear the state in place.  Control thread; allocates no buffer."""
        raise NotImplementedError

    # ---- control blob (processors with non-lane parameters) -------------------
    blob_offset: ClassVar[int] = 0

    @property
    def blob_size(self) -> int:
        return 0

    def design(self, values: Mapping[str, float], generation: int) -> np.ndarray | None:
        """Design the control blob for ``values``.  Control thread; may allocate."""
        return None

    def set_value(self, pid: str, value: float) -> None:
        self.values[pid] = value

    def model_files(self) -> list[str]:
        """Model files the stage runs (for provenance records)."""
        return []

    # ---- meters -----------------------------------------------------------------
    def meters(self) -> dict[str, Any]:
        """What the stage measures, readable while it runs (any thread; values
        may be one block apart from each other).  Empty for most processors."""
        return {}
