"""Loudness and true peak after ITU-R BS.1770-4 and EBU R 128 (Tech 3341 and
3342): the meter kernel (kernels/c/loudness.c) driven from Python, for offline
measurement and reports; live meters read the same state (``read``).

Loudness values are LUFS, the loudness range LU, peaks dBTP / dBFS; a value
that is not defined yet (less than 400 ms of signal, or only silence) is
``-inf``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from kernels import layout

from .errors import AudioFormatError


@dataclass(frozen=True)
class Loudness:
    momentary: float          # LUFS, the last 400 ms
    short_term: float         # LUFS, the last 3 s
    integrated: float         # LUFS, gated, since the start
    lra: float                # LU, loudness range (Tech 3342)
    true_peak_db: float       # dBTP, maximum since the start (4x oversampled)
    sample_peak_db: float     # dBFS, maximum since the start
    momentary_max: float
    short_term_max: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-friendly: undefined values become None."""
        return {k: (round(v, 3) if math.isfinite(v) else None) for k, v in asdict(self).items()}


def _db(lin: float) -> float:
    return 20.0 * math.log10(lin) if lin > 0.0 else -math.inf


def read(state: np.ndarray) -> Loudness:
    """The meter values held in a meter state.  Any thread: each value is one
    aligned 8-byte load (the audio thread may be writing the others)."""
    s = state
    return Loudness(float(s[layout.LM_MOMENTARY]), float(s[layout.LM_SHORT_TERM]),
                    float(s[layout.LM_INTEGRATED]), float(s[layout.LM_RANGE]),
                    _db(float(s[layout.LM_TRUE_PEAK])), _db(float(s[layout.LM_SAMPLE_PEAK])),
                    float(s[layout.LM_MOMENTARY_MAX]), float(s[layout.LM_SHORT_TERM_MAX]))


class Meter:
    """An offline meter fed (channels, frames) float32 audio piece by piece,
    with the C kernel (``impl="c"``) or its numba twin (``"numba"``)."""

    def __init__(self, sample_rate: float, channels: int, impl: str = "c"):
        if channels < 1:
            raise AudioFormatError(f"a loudness meter needs at least one channel, got {channels}")
        if impl not in ("c", "numba"):
            raise ValueError(f"unknown kernel implementation {impl!r}; use 'c' or 'numba'")
        from kernels._ck import ffi, lib
        self._ffi, self._lib = ffi, lib
        self.impl = impl
        self.channels = int(channels)
        self.sample_rate = float(sample_rate)
        self.state = layout.loudness_state(self.channels, self.sample_rate)
        self._sp = ffi.cast("double *", self.state.ctypes.data)

    def feed(self, x: np.ndarray) -> Loudness:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise AudioFormatError(f"meter: expected ({self.channels}, frames) audio, "
                                   f"got shape {x.shape}")
        if self.impl == "numba":
            from kernels import nb
            nb.loudness_feed(self.state, x.reshape(-1), 0, self.channels, x.shape[1],
                             x.shape[1])
        else:
            self._lib.rtk_lm_feed(self._sp, self._ffi.cast("float *", x.ctypes.data),
                                  self.channels, x.shape[1], x.shape[1])
        return self.value

    @property
    def value(self) -> Loudness:
        return read(self.state)

    def reset(self) -> None:
        layout.loudness_reset(self.state)


def measure(x: np.ndarray, sample_rate: float, impl: str = "c") -> Loudness:
    """Loudness of a whole (channels, frames) signal."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    return Meter(sample_rate, x.shape[0], impl).feed(x)


def measure_file(path) -> Loudness:
    """Loudness of an audio file, read in chunks."""
    from .audio import CHUNK, open_input
    with open_input(path) as f:
        m = Meter(f.samplerate, f.channels)
        while True:
            data = f.read(CHUNK, dtype="float32", always_2d=True)
            if not len(data):
                break
            m.feed(data.T)
    return m.value
