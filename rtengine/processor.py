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

from typing import ClassVar, Mapping

import numpy as np

import kernels

from .errors import AudioFormatError, ParameterError, PluginError
from .params import Param

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 384000


class Processor:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    channels: ClassVar[tuple[int, ...] | None] = None
    impls: ClassVar[tuple[str, ...]] = kernels.IMPLS
    kernel: ClassVar[str] = ""

    def __init__(self, impl: str = "c"):
        if impl not in self.impls:
            raise PluginError(f"plugin {self.name!r} has no {impl!r} kernels; "
                              f"choose one of {', '.join(self.impls)}")
        self.impl = impl
        self.spec: tuple[float, int, int] | None = None
        self.state: np.ndarray | None = None
        self.values = {p.id: p.default for p in self.params}

    # ---- declared data -------------------------------------------------------
    @classmethod
    def param(cls, pid: str) -> Param:
        for p in cls.params:
            if p.id == pid:
                return p
        raise ParameterError(f"plugin {cls.name!r} has no parameter {pid!r}; its parameters "
                             f"are: {', '.join(p.id for p in cls.params)}")

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
