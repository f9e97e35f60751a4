"""``stems``: streaming stem separation (vocals, drums, bass, other) on ONNX Runtime.

A worker stage: the audio thread only moves blocks through the worker's rings; on the
worker thread the model (a contract model, :mod:`rtengine.stems.contract`; by default the
shipped causal GRU) runs frame by frame with its state carried, in hops of 256 samples.

Parameters per stem (ids ``<stem>_gain_db``, ``<stem>_mute``, ``<stem>_solo``) are
MIDI-mappable; gains, mutes and solos are smoothed over ``smooth_ms`` so a mute never clicks.
When any stem is soloed only soloed stems sound.

``options.output``: ``remix`` (the default; the chain's channels, mono or stereo, carry the
remixed stems) or ``separated`` (the chain is 2 x stems channels wide, 8 for the shipped model;
the stage reads the stereo mix from channels 1-2 and writes stem *k* to channels 2k+1, 2k+2, so
each stem is its own pair of JACK ports).  Latency: the frame (1024 samples) plus the worker's
ring, declared and compensated.  On a missed deadline the stage outputs the dry input,
time-aligned (in separated mode that is the mix on channels 1-2).
"""
from __future__ import annotations

import math

import numpy as np

from rtengine.errors import AudioFormatError, PluginError
from rtengine.params import Param, toggle
from rtengine.processor import Option
from rtengine.worker import WorkerProcessor

OUTPUTS = ("remix", "separated")


def _stem_params(stems) -> tuple:
    out = []
    for s in stems:
        label = s.capitalize()
        out += [Param(f"{s}_gain_db", f"{label} gain", -60.0, 12.0, 0.0, "dB",
                      smoothing_ms=0.0),
                toggle(f"{s}_mute", f"{label} mute", False, smoothing_ms=0.0),
                toggle(f"{s}_solo", f"{label} solo", False, smoothing_ms=0.0)]
    return tuple(out)


class Stems(WorkerProcessor):
    name = "stems"
    description = ("Streaming stem separation (vocals, drums, bass, other) on ONNX Runtime; "
                   "per-stem gain, mute, solo; remix or separated outputs")
    dynamic_params = True
    params = _stem_params(("vocals", "drums", "bass", "other"))
    # the worker runs one ONNX frame per hop from Python: more headroom than the
    # base 5 ms, so a scheduling hiccup on a busy machine is absorbed, not a miss
    options = tuple(o if o.id != "headroom_ms" else
                    Option("headroom_ms", "float", 12.0, o.help, o.min, o.max)
                    for o in WorkerProcessor.options) + (
        Option("model", "path", None, "a contract ONNX model (default: the shipped one; check "
               "your own with rtengine stems check)"),
        Option("output", "str", "remix", "remix (chain channels) or separated (2 x stems "
               "channels, one pair per stem)"),
        Option("threads", "int", 1, "onnxruntime threads", 1, 64),
        Option("smooth_ms", "float", 20.0, "gain, mute and solo smoothing", 0.0, 1000.0),
    )

    def __init__(self, impl: str = "c", **options):
        from rtengine.stems.separate import Model
        opts = self.check_options(options)
        if opts["output"] not in OUTPUTS:
            raise PluginError(f"stems: options.output must be one of {', '.join(OUTPUTS)}, "
                              f"got {opts['output']!r}")
        self.model = Model(opts["model"], threads=opts["threads"])
        self.stem_names = self.model.spec.stems
        self.params = _stem_params(self.stem_names)
        super().__init__(impl, **options)
        self._stream = None

    def model_files(self):
        return [str(self.model.path)]

    @property
    def out_channels(self) -> int:
        return 2 * len(self.stem_names)

    # ---- worker stage -------------------------------------------------------------
    def choose_hop(self, sample_rate, max_block):
        spec = self.model.spec
        if int(round(sample_rate)) not in spec.sample_rates:
            raise AudioFormatError(
                f"stems: model {self.model.path.name} was trained for "
                f"{', '.join(str(r) for r in spec.sample_rates)} Hz, not {sample_rate:g} Hz; "
                "run the engine at one of those rates")
        return spec.hop

    def inner_latency(self, sample_rate):
        return self.model.spec.n_fft - self.model.spec.hop

    def allocate(self, sample_rate, max_block, channels):
        if self.opts["output"] == "separated" and channels != self.out_channels:
            raise AudioFormatError(
                f"stems: output = \"separated\" needs a chain of {self.out_channels} channels "
                f"(two per stem: {', '.join(self.stem_names)}), not {channels}; the stereo mix "
                "goes in on channels 1-2")
        if self.opts["output"] == "remix" and channels > 2:
            raise AudioFormatError(f"stems: output = \"remix\" takes mono or stereo, not "
                                   f"{channels} channels (use output = \"separated\")")
        return super().allocate(sample_rate, max_block, channels)

    def work_prepare(self, sample_rate, hop, channels):
        from rtengine.stems.separate import Stream
        ch = 2 if self.opts["output"] == "separated" else channels
        self._stream = Stream(self.model, ch)
        self._cur = self._targets(np.array([self.values[p.id] for p in self.params],
                                           dtype=np.float32))
        tau = self.opts["smooth_ms"] * 1e-3 * sample_rate
        self._alpha = 1.0 if tau <= 0 else 1.0 - math.exp(-hop / tau)
        self._ramp = (np.arange(1, hop + 1, dtype=np.float32) / hop)[None, None, :]

    def work_reset(self):
        if self._stream is not None:
            self._stream.reset()
            self._cur = self._targets(np.array([self.values[p.id] for p in self.params],
                                               dtype=np.float32))

    def _targets(self, params: np.ndarray) -> np.ndarray:
        """Per-stem linear gains from (gain_db, mute, solo) triples."""
        p = params.reshape(len(self.stem_names), 3)
        gain = np.power(10.0, p[:, 0] / 20.0)
        gain[p[:, 1] >= 0.5] = 0.0
        solo = p[:, 2] >= 0.5
        if solo.any():
            gain[~solo] = 0.0
        return gain.astype(np.float32)

    def work(self, block, params, out):
        separated = self.opts["output"] == "separated"
        x = block[:2] if separated else block
        stems = self._stream.push(x)                             # (S, C, hop)
        target = self._targets(params[:3 * len(self.stem_names)])
        prev = self._cur
        nxt = prev + self._alpha * (target - prev)
        self._cur = nxt
        g = (prev[:, None, None] + (nxt - prev)[:, None, None] * self._ramp)  # (S, 1, hop)
        weighted = stems * g
        if separated:
            out[:] = weighted.reshape(out.shape)
        else:
            np.sum(weighted, axis=0, out=out)
