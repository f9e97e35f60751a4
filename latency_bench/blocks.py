"""``python -m latency_bench blocks``: time per block of the reference chain.

The reference chain (latency_bench/chains/reference.toml: high-pass 100 Hz;
peak 1 kHz +6 dB Q 1; compressor -20 dB 4:1, attack 5 ms, release 100 ms;
limiter ceiling -1 dB) runs stereo at 48 kHz, one block per call, at 32, 64,
128, 256 and 512 frames, in rtengine and, in the same run, the equivalent
chain in pedalboard and in pyo.  Each single call is timed with
``time.perf_counter_ns``; the new input block is copied into a preallocated
buffer outside the timed region.  Results (median, p99 and max microseconds
per block, the ratio to pedalboard, the real-time budget) are printed and
saved as JSON and a PNG plot.

Two input signals: a synthesized music-like mix (drums, bass, chords, peaks
near 0 dBFS) and a worst case (white noise at -10 dBFS RMS, clipped at full
scale, so the limiter is always working).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

SAMPLE_RATE = 48000
CHANNELS = 2
BLOCK_SIZES = (32, 64, 128, 256, 512)
SYSTEMS = ("rtengine", "pedalboard", "pyo")
PACKAGE_DIR = Path(__file__).resolve().parent
CHAIN_PATH = PACKAGE_DIR / "chains" / "reference.toml"
DEFAULT_OUT = PACKAGE_DIR / "results"

SIGNAL_SECONDS = 10.0          # full run: length of each test signal (looped as needed)
QUICK_SECONDS = 0.5            # --quick: half a second of the same signals, from
QUICK_OFFSET = 0.5             # the second beat (kick and snare)
MIN_BLOCKS = 3000              # full run: at least this many timed blocks per block size
WARMUP_BLOCKS = 200            # untimed blocks before timing starts (both modes)

CEILING_DB = -1.0              # the reference chain's limiter ceiling
CEILING_TOLERANCE_DB = 0.1     # allowed overshoot of rtengine's sample peak

# What each peer runs (printed and saved with the results).
PEDALBOARD_CHAIN = ("Pedalboard([HighpassFilter(100), PeakFilter(1000, gain_db=6, q=1), "
                    "Compressor(threshold_db=-20, ratio=4, attack_ms=5, release_ms=100), "
                    "Limiter(threshold_db=-1, release_ms=100)]); timed: one "
                    "board(block, 48000, buffer_size=N, reset=False) call, which returns a new "
                    "array. Note: pedalboard's HighpassFilter is first order (6 dB/oct, "
                    "rtengine's is 12 dB/oct) and its Limiter (JUCE dsp::Limiter) applies "
                    "makeup gain and clips at 0 dBFS rather than holding a -1 dB ceiling.")
PYO_LIMITER_LOOKAHEAD_MS = 1.7
PYO_CHAIN = ("Input([0, 1]) -> ButHP(freq=100) (2nd-order Butterworth) -> "
             "EQ(freq=1000, q=1, boost=6, type=0) (peak) -> "
             "Compress(thresh=-20, ratio=4, risetime=0.005, falltime=0.1, knee=0) -> "
             "limiter = Compress(thresh=-1, ratio=100, risetime=0.001, falltime=0.1, "
             f"lookahead={PYO_LIMITER_LOOKAHEAD_MS}, knee=0) -> Clip(+-10^(-1/20)) (pyo has no "
             "limiter object) -> out(); channels processed independently (unlinked).")
PYO_METHOD = ("pyo.Server(audio='manual', duplex=1, buffersize=N): the server computes one "
              "buffer of N frames per Server.process() call. Real input: before each call "
              "(outside the timed region) the block is copied, interleaved, into the server's "
              "input buffer (a float32 NumPy view of Server.getInputAddr()), which "
              "pyo.Input reads; the output is read back from Server.getOutputAddr(). Timed: "
              "one Server.process() call (includes pyo's per-buffer server work: the stream "
              "loop and the mix into the interleaved output buffer).")


# ---- test signals ---------------------------------------------------------------

def _envelope(n: int, sr: int, attack_s: float, decay_s: float) -> np.ndarray:
    t = np.arange(n) / sr
    env = np.exp(-t / decay_s)
    na = max(1, int(attack_s * sr))
    env[:na] *= np.linspace(0.0, 1.0, na, endpoint=False)
    return env


def _add(dst: np.ndarray, start: int, sig: np.ndarray, pan: float) -> None:
    """Add mono ``sig`` at ``start`` into stereo ``dst`` with a constant-power pan
    (-1 left, +1 right)."""
    n = min(len(sig), dst.shape[1] - start)
    if n <= 0:
        return
    angle = (pan + 1.0) * math.pi / 4.0
    dst[0, start:start + n] += math.cos(angle) * sig[:n]
    dst[1, start:start + n] += math.sin(angle) * sig[:n]


def _saw(freq: float, n: int, sr: int, harmonics: int, rolloff: float = 1.0,
         phase: float = 0.0) -> np.ndarray:
    """A band-limited sawtooth-like tone: ``harmonics`` partials at 1/k**rolloff."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * freq >= 0.45 * sr:
            break
        out += np.sin(2 * np.pi * k * freq * t + k * phase) / k ** rolloff
    return out


def music_signal(seconds: float = SIGNAL_SECONDS, sr: int = SAMPLE_RATE,
                 seed: int = 20240611) -> np.ndarray:
    """A deterministic, music-like stereo mix at 120 BPM: kick on every beat,
    snare on 2 and 4, hi-hats on eighths, a bass line and sustained chords over
    Am-F-C-G, scaled so its sample peak is -0.2 dBFS.  (2, frames) float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    mix = np.zeros((2, n))
    beat = int(0.5 * sr)
    bar = 4 * beat
    # kick: a sine sweeping 160 -> 50 Hz with a fast decay
    kn = int(0.35 * sr)
    tk = np.arange(kn) / sr
    kfreq = 50.0 + 110.0 * np.exp(-tk / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kfreq) / sr) * _envelope(kn, sr, 0.001, 0.11)
    # snare: brightened noise burst plus a 190 Hz body
    sn = int(0.25 * sr)
    # hi-hat: differentiated noise, very short
    hn = int(0.06 * sr)
    for b, start in enumerate(range(0, n, beat)):
        _add(mix, start, 1.0 * kick, 0.0)
        if b % 2 == 1:
            noise = np.diff(rng.standard_normal(sn + 1))
            body = np.sin(2 * np.pi * 190.0 * np.arange(sn) / sr)
            snare = (0.12 * noise * _envelope(sn, sr, 0.0005, 0.05)
                     + 0.45 * body * _envelope(sn, sr, 0.0005, 0.07))
            _add(mix, start, snare, -0.15)
        for half in (0, beat // 2):
            hat = np.diff(np.diff(rng.standard_normal(hn + 2))) * _envelope(hn, sr, 0.0003, 0.012)
            _add(mix, start + half, 0.10 * hat, 0.45)
    # Am - F - C - G, one chord per bar: (bass root Hz, chord tone Hz)
    progression = [
        (55.00, (220.00, 261.63, 329.63)),
        (43.65, (174.61, 220.00, 261.63)),
        (65.41, (196.00, 261.63, 329.63)),
        (49.00, (196.00, 246.94, 293.66)),
    ]
    eighth = beat // 2
    bass_pattern = (1, 0, 1, 1, 0, 1, 2, 1)        # 1: root, 2: octave, 0: rest
    for i, start in enumerate(range(0, n, bar)):
        root, chord = progression[i % len(progression)]
        for j, step in enumerate(bass_pattern):
            if step:
                f = root * step
                note = _saw(f, eighth, sr, 12) * _envelope(eighth, sr, 0.004, 0.18)
                note[-64:] *= np.linspace(1.0, 0.0, 64)
                _add(mix, start + j * eighth, 0.32 * note, 0.0)
        for k, f in enumerate(chord):
            env = _envelope(bar, sr, 0.06, 1.6)
            env[-256:] *= np.linspace(1.0, 0.0, 256)
            left = _saw(f * 0.998, bar, sr, 8, 2.0, phase=0.3 * k)
            right = _saw(f * 1.002, bar, sr, 8, 2.0, phase=0.7 * k)
            mix[0, start:start + bar] += (0.07 * left * env)[:max(0, n - start)]
            mix[1, start:start + bar] += (0.07 * right * env)[:max(0, n - start)]
    mix *= 10 ** (-0.2 / 20) / np.max(np.abs(mix))
    return np.ascontiguousarray(mix, dtype=np.float32)


def noise_signal(seconds: float = SIGNAL_SECONDS, sr: int = SAMPLE_RATE,
                 seed: int = 20240612) -> np.ndarray:
    """Worst case: independent white noise per channel at -10 dBFS RMS, clipped
    at full scale (peaks reach 0 dBFS).  (2, frames) float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    x = rng.standard_normal((2, n)) * 10 ** (-10 / 20)
    return np.ascontiguousarray(np.clip(x, -1.0, 1.0), dtype=np.float32)


def _db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else float("-inf")


def signal_stats(x: np.ndarray) -> dict:
    return {"seconds": x.shape[1] / SAMPLE_RATE,
            "peak_dbfs": round(_db(float(np.max(np.abs(x)))), 2),
            "rms_dbfs": round(_db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))), 2)}


# ---- the systems ------------------------------------------------------------------
#
# Each runner is prepared for one block size and then driven by ``_time_interleaved``:
# ``load(block)`` puts the next input block in place (untimed), ``call()`` is the
# one timed call, ``store(dst)`` copies the produced block out (untimed).

class RtengineRunner:
    name = "rtengine"

    def __init__(self, n: int):
        import rtengine
        self.engine = rtengine.Engine(str(CHAIN_PATH), sample_rate=SAMPLE_RATE, block_size=n,
                                      channels=CHANNELS)
        self.inbuf = np.zeros((CHANNELS, n), dtype=np.float32)
        self.outbuf = np.zeros((CHANNELS, n), dtype=np.float32)
        self.latency = self.engine.latency

    def load(self, block: np.ndarray) -> None:
        np.copyto(self.inbuf, block)

    def make_call(self):
        process, inbuf, outbuf = self.engine.process, self.inbuf, self.outbuf

        def call():
            process(inbuf, out=outbuf)
        return call

    def store(self, dst: np.ndarray) -> None:
        np.copyto(dst, self.outbuf)

    def close(self) -> None:
        pass


class PedalboardRunner:
    name = "pedalboard"

    def __init__(self, n: int):
        import pedalboard as pb
        self.board = pb.Pedalboard([
            pb.HighpassFilter(cutoff_frequency_hz=100.0),
            pb.PeakFilter(cutoff_frequency_hz=1000.0, gain_db=6.0, q=1.0),
            pb.Compressor(threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=100.0),
            pb.Limiter(threshold_db=-1.0, release_ms=100.0),
        ])
        self.n = n
        self.inbuf = np.zeros((CHANNELS, n), dtype=np.float32)
        self.result = self.inbuf
        self.latency = 0

    def load(self, block: np.ndarray) -> None:
        np.copyto(self.inbuf, block)

    def make_call(self):
        board, inbuf, n, sr = self.board, self.inbuf, self.n, SAMPLE_RATE

        def call():
            self.result = board(inbuf, sr, buffer_size=n, reset=False)
        return call

    def store(self, dst: np.ndarray) -> None:
        r = self.result
        if r.shape != dst.shape:       # pedalboard may return fewer frames while buffering
            dst.fill(0.0)
            m = min(r.shape[-1], dst.shape[1])
            dst[:, dst.shape[1] - m:] = r[:, :m]
        else:
            np.copyto(dst, r)

    def close(self) -> None:
        pass


def _import_pyo():
    # Keep pyo from probing for wxPython (and printing a banner) on import.
    os.environ.setdefault("PYO_GUI_WX", "0")
    with contextlib.redirect_stdout(io.StringIO()):
        import pyo
    return pyo


class PyoRunner:
    """pyo in its 'manual' server mode: one Server.process() call computes one
    buffer; see PYO_METHOD."""
    name = "pyo"
    _server = None                  # one pyo Server per process, rebooted per block size

    def __init__(self, n: int):
        pyo = _import_pyo()
        cls = type(self)
        if cls._server is None:
            cls._server = pyo.Server(sr=SAMPLE_RATE, nchnls=CHANNELS, buffersize=n, duplex=1,
                                     audio="manual", verbosity=1)
            cls._server.deactivateMidi()
        s = self.server = cls._server
        s.setBufferSize(n)
        s.boot()
        if not s.getIsBooted():
            raise RuntimeError("pyo server (audio='manual') did not boot")
        s.start()
        # The server's interleaved float32 input and output buffers, as NumPy views.
        size = n * CHANNELS
        in_addr, out_addr = int(s.getInputAddr(), 16), int(s.getOutputAddr(), 16)
        self.inbuf = np.ctypeslib.as_array((ctypes.c_float * size).from_address(in_addr))
        self.outbuf = np.ctypeslib.as_array((ctypes.c_float * size).from_address(out_addr))
        self.inbuf = self.inbuf.reshape(n, CHANNELS)
        self.outbuf = self.outbuf.reshape(n, CHANNELS)
        ceiling = 10 ** (CEILING_DB / 20)
        src = pyo.Input([0, 1])
        hp = pyo.ButHP(src, freq=100.0)
        peak = pyo.EQ(hp, freq=1000.0, q=1.0, boost=6.0, type=0)
        comp = pyo.Compress(peak, thresh=-20.0, ratio=4.0, risetime=0.005, falltime=0.1,
                            knee=0.0)
        lim = pyo.Compress(comp, thresh=CEILING_DB, ratio=100.0, risetime=0.001, falltime=0.1,
                           lookahead=PYO_LIMITER_LOOKAHEAD_MS, knee=0.0)
        clip = pyo.Clip(lim, min=-ceiling, max=ceiling)
        clip.out()
        self.objects = [src, hp, peak, comp, lim, clip]
        self.latency = int(round(PYO_LIMITER_LOOKAHEAD_MS * 1e-3 * SAMPLE_RATE))

    def load(self, block: np.ndarray) -> None:
        np.copyto(self.inbuf, block.T)

    def make_call(self):
        return self.server.process

    def store(self, dst: np.ndarray) -> None:
        np.copyto(dst, self.outbuf.T)

    def close(self) -> None:
        self.server.stop()
        self.server.shutdown()
        self.objects.clear()


RUNNERS = {"rtengine": RtengineRunner, "pedalboard": PedalboardRunner, "pyo": PyoRunner}


# ---- timing -----------------------------------------------------------------------

ROUND_BLOCKS = 50              # blocks per system per round when interleaving


def _time_interleaved(runners, stream: np.ndarray, n: int, warmup: int):
    """Run ``stream`` block by block through every runner, interleaved in
    rounds of ROUND_BLOCKS blocks (the order rotating each round), so that a
    change in machine speed during the run affects every system alike.
    Returns per runner the timed per-block durations (ns) and the output."""
    nblocks = stream.shape[1] // n
    outs = [np.zeros_like(stream) for _ in runners]
    times = [np.zeros(nblocks - warmup, dtype=np.int64) for _ in runners]
    calls = [r.make_call() for r in runners]
    clock = time.perf_counter_ns
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rnd, start in enumerate(range(0, nblocks, ROUND_BLOCKS)):
            order = list(range(len(runners)))
            order = order[rnd % len(order):] + order[:rnd % len(order)]
            for j in order:
                load, store, call = runners[j].load, runners[j].store, calls[j]
                out, tj = outs[j], times[j]
                for k in range(start, min(start + ROUND_BLOCKS, nblocks)):
                    a = k * n
                    load(stream[:, a:a + n])
                    t0 = clock()
                    call()
                    t1 = clock()
                    store(out[:, a:a + n])
                    if k >= warmup:
                        tj[k - warmup] = t1 - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, outs


def _loop(signal: np.ndarray, frames: int) -> np.ndarray:
    idx = np.arange(frames) % signal.shape[1]
    return np.ascontiguousarray(signal[:, idx])


def _stats(times_ns: np.ndarray) -> dict:
    us = times_ns.astype(np.float64) / 1e3
    return {"median_us": round(float(np.median(us)), 3),
            "p99_us": round(float(np.percentile(us, 99)), 3),
            "max_us": round(float(np.max(us)), 3),
            "mean_us": round(float(np.mean(us)), 3),
            "blocks": int(len(us))}


def run_signal(signal: np.ndarray, block_sizes, systems, quick: bool, warmup: int,
               log=print) -> tuple[dict, list[str]]:
    """Time every system at every block size over ``signal``.  Returns the
    results keyed by block size (as a string) and a list of failed checks."""
    results: dict = {}
    failures: list[str] = []
    limit = 10 ** ((CEILING_DB + CEILING_TOLERANCE_DB) / 20)
    for n in block_sizes:
        cover = -(-signal.shape[1] // n)
        timed = cover if quick else max(MIN_BLOCKS, cover)
        stream = _loop(signal, (warmup + timed) * n)
        entry = {"budget_us": round(1e6 * n / SAMPLE_RATE, 3), "systems": {}}
        runners = []
        for name in systems:
            try:
                runners.append(RUNNERS[name](n))
            except Exception as exc:          # a peer that is missing or fails to start
                entry["systems"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  {name} at block {n}: not run ({type(exc).__name__}: {exc})")
        try:
            all_times, all_outs = _time_interleaved(runners, stream, n, warmup)
        finally:
            for runner in runners:
                runner.close()
        for runner, times, out in zip(runners, all_times, all_outs):
            name = runner.name
            res = _stats(times)
            finite = bool(np.all(np.isfinite(out)))
            peak = float(np.max(np.abs(out))) if finite else float("nan")
            res["latency_samples"] = int(runner.latency)
            res["output_finite"] = finite
            res["output_peak_dbfs"] = round(_db(peak), 3) if finite else None
            if name == "rtengine":
                ok = finite and peak <= limit
                res["output_check"] = "pass" if ok else "FAIL"
                if not ok:
                    failures.append(
                        f"rtengine output at block {n}: finite={finite}, sample peak "
                        f"{res['output_peak_dbfs']} dBFS (limit "
                        f"{CEILING_DB + CEILING_TOLERANCE_DB:+.1f} dBFS)")
            entry["systems"][name] = res
        ref = entry["systems"].get("pedalboard", {}).get("median_us")
        ref99 = entry["systems"].get("pedalboard", {}).get("p99_us")
        for res in entry["systems"].values():
            if "median_us" in res and ref:
                res["ratio_to_pedalboard"] = round(res["median_us"] / ref, 4)
                res["p99_ratio_to_pedalboard"] = round(res["p99_us"] / ref99, 4)
        results[str(n)] = entry
    return results, failures


# ---- reporting ----------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(packages=("rtengine", "numpy", "pedalboard", "pyo", "matplotlib"),
                 **extra) -> dict:
    """The machine and the versions of ``packages`` (every benchmark records it)."""
    u = platform.uname()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "cpu_model": _cpu_model(),
        "processor": platform.processor(),
        "uname": {"system": u.system, "node": u.node, "release": u.release,
                  "version": u.version, "machine": u.machine},
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable,
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in packages},
        **extra,
    }


def format_table(name: str, sig: dict) -> str:
    st = sig["stats"]
    lines = [f"signal '{name}': {sig['description']}",
             f"  ({st['seconds']:g} s, peak {st['peak_dbfs']:.1f} dBFS, "
             f"RMS {st['rms_dbfs']:.1f} dBFS)",
             f"  {'block':>5} {'budget':>8}  {'system':<10} {'median':>8} {'p99':>8} "
             f"{'max':>8} {'blocks':>6}  {'x pedalboard':>12} {'p99 x pb':>8}  "
             f"{'out peak':>8}",
             f"  {'':>5} {'us':>8}  {'':<10} {'us':>8} {'us':>8} {'us':>8} {'':>6}  "
             f"{'(median)':>12} {'':>8}  {'dBFS':>8}"]
    for n, entry in sig["results"].items():
        first = True
        for sysname, res in entry["systems"].items():
            head = f"  {n:>5} {entry['budget_us']:>8.1f}" if first else f"  {'':>5} {'':>8}"
            first = False
            if "error" in res:
                lines.append(f"{head}  {sysname:<10} not run: {res['error']}")
                continue
            ratio = res.get("ratio_to_pedalboard")
            r99 = res.get("p99_ratio_to_pedalboard")
            peak = res.get("output_peak_dbfs")
            check = "" if "output_check" not in res else f"  {res['output_check']}"
            lines.append(
                f"{head}  {sysname:<10} {res['median_us']:>8.2f} {res['p99_us']:>8.2f} "
                f"{res['max_us']:>8.1f} {res['blocks']:>6}  "
                f"{'-' if ratio is None else f'{ratio:.3f}':>12} "
                f"{'-' if r99 is None else f'{r99:.3f}':>8}  "
                f"{'-' if peak is None else f'{peak:.2f}':>8}{check}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = report["signals"]
    fig, axes = plt.subplots(1, len(signals), figsize=(6.5 * len(signals), 4.8),
                             squeeze=False, sharey=True)
    colors = {"rtengine": "tab:blue", "pedalboard": "tab:orange", "pyo": "tab:green"}
    for ax, (name, sig) in zip(axes[0], signals.items()):
        sizes = [int(n) for n in sig["results"]]
        budget = [sig["results"][str(n)]["budget_us"] for n in sizes]
        ax.plot(sizes, budget, color="black", linestyle=":", label="real-time budget")
        for sysname in report["settings"]["systems"]:
            pts = [(n, sig["results"][str(n)]["systems"].get(sysname, {})) for n in sizes]
            pts = [(n, r) for n, r in pts if "median_us" in r]
            if not pts:
                continue
            xs = [n for n, _ in pts]
            c = colors.get(sysname)
            ax.plot(xs, [r["median_us"] for _, r in pts], marker="o", color=c,
                    label=f"{sysname} median")
            ax.plot(xs, [r["p99_us"] for _, r in pts], marker="^", linestyle="--", color=c,
                    label=f"{sysname} p99")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("block size (frames, stereo, 48 kHz)")
        ax.set_title(f"{name}: {sig['description'].split(':')[0]}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("time per block (us)")
    axes[0][-1].legend(fontsize=8, loc="center right")
    mode = "quick" if report["settings"]["quick"] else "full"
    fig.suptitle(f"latency_bench blocks ({mode}): reference chain, "
                 f"{report['machine']['cpu_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command line -----------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK_SECONDS:g} s of each signal (from "
                        f"{QUICK_OFFSET:g} s), no looping "
                        "(all block sizes and systems; for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder for blocks.json and blocks.png (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = QUICK_SECONDS if quick else SIGNAL_SECONDS
    start = int(round(QUICK_OFFSET * SAMPLE_RATE)) if quick else 0
    span = slice(start, start + int(round(seconds * SAMPLE_RATE)))
    signals = {
        "music": ("synthesized mix at 120 BPM: kick, snare, hi-hats, bass line, chords "
                  "(Am-F-C-G); deterministic; normalized to -0.2 dBFS sample peak",
                  music_signal()[:, span]),
        "noise": ("worst case: white noise, -10 dBFS RMS per channel, clipped at 0 dBFS "
                  "(limiter always engaged)", noise_signal()[:, span]),
    }
    import rtengine
    probe = rtengine.Engine(str(CHAIN_PATH), sample_rate=SAMPLE_RATE, block_size=BLOCK_SIZES[0],
                            channels=CHANNELS)
    report = {
        "benchmark": "blocks",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "quick": quick, "sample_rate": SAMPLE_RATE, "channels": CHANNELS,
            "block_sizes": list(BLOCK_SIZES), "systems": list(SYSTEMS),
            "warmup_blocks": WARMUP_BLOCKS,
            "min_timed_blocks": None if quick else MIN_BLOCKS,
            "signal_seconds": seconds,
            "signal_offset_seconds": start / SAMPLE_RATE,
            "timer": "time.perf_counter_ns around each single call; input copied into a "
                     "preallocated buffer and output copied out outside the timed region; "
                     "garbage collector disabled while timing; all systems in one process "
                     "and thread, interleaved in rounds of 50 blocks (rotating order)",
            "ratio_to_pedalboard": "system median / pedalboard median at the same block size "
                                   "(p99_ratio_to_pedalboard likewise for p99)",
            "budget_us": "duration of one block at 48 kHz (the real-time deadline)",
        },
        "chain": {"file": str(CHAIN_PATH.relative_to(PACKAGE_DIR.parent)),
                  "description": "high-pass 100 Hz; peak 1 kHz +6 dB Q 1; compressor -20 dB "
                                 "4:1, attack 5 ms, release 100 ms; limiter ceiling -1 dB",
                  "rtengine": probe.describe(),
                  "rtengine_latency_samples": probe.latency},
        "peers": {"pedalboard": PEDALBOARD_CHAIN, "pyo": PYO_CHAIN, "pyo_method": PYO_METHOD},
        "signals": {},
        "checks": {},
    }
    del probe
    print(f"latency_bench blocks ({'quick' if quick else 'full'}): reference chain, "
          f"{SAMPLE_RATE} Hz stereo, block sizes {', '.join(map(str, BLOCK_SIZES))}")
    m = report["machine"]
    print(f"machine: {m['cpu_model']}, {m['cpu_count']} cores, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    print(f"pyo: {PYO_METHOD}")
    print(f"pyo chain: {PYO_CHAIN}")
    print(f"pedalboard chain: {PEDALBOARD_CHAIN}")
    failures: list[str] = []
    for name, (description, sig) in signals.items():
        print(f"\nrunning signal '{name}' ...", flush=True)
        results, fails = run_signal(sig, BLOCK_SIZES, SYSTEMS, quick, WARMUP_BLOCKS)
        failures += [f"{name}: {f}" for f in fails]
        report["signals"][name] = {"description": description, "stats": signal_stats(sig),
                                   "results": results}
        print(format_table(name, report["signals"][name]))
    report["checks"] = {
        "rtengine_output": "pass" if not failures else "FAIL",
        "rule": f"rtengine output finite and sample peak <= {CEILING_DB:g} dBFS + "
                f"{CEILING_TOLERANCE_DB:g} dB at every block size, both signals",
        "failures": failures,
    }
    json_path = out_dir / "blocks.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = out_dir / "blocks.png"
    plot(report, png_path)
    print(f"\ncheck: {report['checks']['rule']}: {report['checks']['rtengine_output']}")
    for f in failures:
        print(f"  {f}")
    print(f"saved {json_path} and {png_path}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m latency_bench blocks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
