"""``python -m latency_bench balance``: EQ balancing toward a reference's spectrum.

What is measured: how far a TARGET's long-term spectrum is from a curve learnt
from a REFERENCE, before and after each system, on the same material in one
run, and how fast each system does it.

Material (44.1 kHz stereo, made in memory and written as float WAVs to a
temporary folder that is removed):

* 8 pairs of 30 s FluidSynth pieces from ``rtengine.data.music.render_piece``:
  seeds are taken in order from 200 (not the seeds the tests use); each pair is
  a target seed and the next seed whose style differs from the target's as
  the reference;
* pink noise (its own seed) tilted by 3 known EQs (RBJ shelves and peaks from
  ``kernels.design.section``, applied with ``scipy.signal.sosfilt``) as the
  targets, untilted pink noise of another seed as their reference; 30 s.

``--quick``: 2 music pairs of 10 s and the first tilted noise, 16 s (so that
a settled part exists in the quick run too).

For each pair the curve is ``rtengine.balancing.learn(REF.wav, CURVE.toml)``
(the reference's third-octave long-term spectrum, mean removed).  The systems:

1. ``rtengine``: the target rendered through the balance stage alone,
   ``rtengine.Engine([{"plugin": "balance", "params": {amount 1, max_boost_db
   12, max_cut_db 12, speed_s 4}, "options": {"target": CURVE}}], 44100, 512,
   2).render(x)``: the real-time stage, starting flat and adapting as it goes;
2. ``rtengine-file``: the same stage with ``freeze`` on and
   ``engine.stages[0].processor.preset(band_spectrum(x, sr)[1])`` before
   rendering: one fixed correction for the whole file's spectrum, how
   ``rtengine master`` balances a file;
3. ``matchering``: ``matchering.process(target=IN, reference=REF,
   results=[matchering.pcm24(OUT)])`` with the default Config: level matching,
   EQ matching (an FIR from the ratio of the loudest pieces' average spectra,
   mid and side apart, LOWESS-smoothed on a log grid), RMS correction, its
   limiter; 24-bit WAV out;
4. ``matchering-eq``: matchering's EQ matching isolated: the same call with
   ``results=[matchering.Result(OUT, "FLOAT", use_limiter=False,
   normalize=False)]``, which skips the limiter and the normalisation (the
   remaining level steps are plain gains, which the distance ignores); float
   WAV out so that nothing clips.

Distance: ``rtengine.balancing.distance_db(y, sr, curve)``: the RMS over the
third-octave bands 40 Hz - 16 kHz of the difference between the signal's
long-term spectrum and the curve, both with their mean removed (dB).  It is
measured over the whole file and over the part after 3 x speed_s = 12 s
("settled": the adaptive stage has converged there; items shorter than
12 s + 4 s have no settled number), for the input ("before") and for every
output, always against the same curve.  improvement = before - after (dB,
positive is closer to the target).

Wall time: ``time.perf_counter`` around each system's whole file-to-file job
(reading the target WAV, analysis, processing, writing the output WAV);
matchering also reads and analyses the reference inside that job, rtengine's
curve is learnt once per pair beforehand (timed apart, ``learn_s``).
real_time_factor = wall / target duration (below 1 is faster than real time);
real_time_factor_with_curve adds learn_s for the rtengine systems.  One
untimed warm-up of every system on 5 s of noise comes first.

Per system the mean and max distance before and after, the improvement (mean
and min), the number of items improved and the mean real-time factors are
printed and saved, with every per-item number, as balance.json and
balance.png in ``--out``.  A system that fails on an item is recorded with its
error.  Check (exit code 1 when it fails): both rtengine systems reduce the
whole-file distance on every item.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .blocks import machine_info
from .common import cell, error_text, read_audio, write_audio

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGES = ("rtengine", "numpy", "scipy", "matchering",
            "resampy", "soundfile", "pyfluidsynth", "matplotlib")
DEFAULT_OUT = PACKAGE_DIR / "results"

SYSTEMS = ("rtengine", "rtengine-file", "matchering", "matchering-eq")
RTENGINE_SYSTEMS = ("rtengine", "rtengine-file")

SAMPLE_RATE = 44100
CHANNELS = 2
BLOCK = 512
PARAMS = {"amount": 1.0, "max_boost_db": 12.0, "max_cut_db": 12.0, "speed_s": 4.0}
SETTLE_S = 3 * PARAMS["speed_s"]
MIN_SETTLED_S = 4.0               # shortest settled part worth measuring

MUSIC_SEED0 = 200                 # the tests render seeds from 0; these are others
FULL_PAIRS, FULL_SECONDS = 8, 30.0
QUICK_PAIRS, QUICK_SECONDS = 2, 10.0
FULL_NOISE_SECONDS, QUICK_NOISE_SECONDS = 30.0, 16.0
NOISE_LEVEL = 0.1                 # RMS of the pink noise before the EQ
NOISE_TARGET_SEED, NOISE_REFERENCE_SEED = 21, 22
WARMUP_SECONDS = 5.0

# The known EQs that tilt the noise targets: (name, [(kind, Hz, Q, dB), ...]).
TILTS = (
    ("noise-dark", (("lowshelf", 150.0, 0.7, 5.0), ("highshelf", 4000.0, 0.7, -5.0),
                    ("peak", 1000.0, 1.0, 3.0))),
    ("noise-thin", (("lowshelf", 250.0, 0.7, -6.0), ("highshelf", 2500.0, 0.7, 4.0),
                    ("peak", 5000.0, 1.5, 3.0))),
    ("noise-honky", (("peak", 400.0, 1.2, 6.0), ("peak", 2500.0, 1.5, -5.0),
                     ("highshelf", 10000.0, 0.7, -6.0))),
)
QUICK_TILTS = 1

_PARAM_TEXT = ", ".join(f"{k}={v:g}" for k, v in PARAMS.items())
METHODS = {
    "rtengine": f"rtengine.Engine([balance stage, params {{{_PARAM_TEXT}}}, options "
                f"{{target: CURVE}}], {SAMPLE_RATE}, {BLOCK}, {CHANNELS}).render(x): the "
                "real-time stage from a fresh (flat) state, adapting as it goes; read and "
                "written with soundfile (float WAV)",
    "rtengine-file": "as rtengine with freeze=True and engine.stages[0].processor.preset("
                     "rtengine.balancing.band_spectrum(x, sr)[1]) before render: one fixed "
                     "correction for the whole file (how rtengine master balances a file)",
    "matchering": "matchering.process(target=IN, reference=REF, results=[matchering.pcm24(OUT)]) "
                  "with the default Config: level + EQ matching + RMS correction + limiter; "
                  "its log handlers collect warnings (recorded), stdout/stderr and Python "
                  "warnings silenced; 24-bit WAV out",
    "matchering-eq": "matchering.process(target=IN, reference=REF, results=[matchering.Result("
                     "OUT, 'FLOAT', use_limiter=False, normalize=False)]) with the default "
                     "Config: its EQ matching with no limiter and no normalisation (the other "
                     "steps are gains, which the distance ignores); float WAV out",
}


# ---- material -----------------------------------------------------------------------

def pink_noise(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE,
               channels: int = CHANNELS, level: float = NOISE_LEVEL) -> np.ndarray:
    """(channels, frames) float64 pink noise: white Gaussian noise whose
    spectrum is divided by sqrt(f) (equal power per octave), DC removed,
    scaled to ``level`` RMS."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * sample_rate))
    spec = np.fft.rfft(rng.standard_normal((channels, frames)), axis=1)
    f = np.fft.rfftfreq(frames, 1.0 / sample_rate)
    spec[:, 0] = 0.0
    spec[:, 1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, frames, axis=1)
    return x * (level / np.sqrt(np.mean(x ** 2)))


def apply_eq(x: np.ndarray, bands, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` through the cascade of RBJ biquads ``bands`` = [(kind, Hz, Q, dB)]."""
    from scipy.signal import sosfilt

    from kernels import design
    sos = []
    for kind, freq, q, gain in bands:
        b0, b1, b2, a1, a2 = design.section(kind, freq, sample_rate, q, gain)
        sos.append((b0, b1, b2, 1.0, a1, a2))
    return sosfilt(np.asarray(sos), x, axis=-1)


def _music_pairs(n: int) -> list[tuple[int, int]]:
    """n (target seed, reference seed) pairs from MUSIC_SEED0 on, the
    reference being the next seed of another style."""
    from rtengine.data.music import compose
    pairs, seed = [], MUSIC_SEED0
    while len(pairs) < n:
        target_style = compose(seed, 10.0).style
        ref = seed + 1
        while compose(ref, 10.0).style == target_style:
            ref += 1
        pairs.append((seed, ref))
        seed = ref + 1
    return pairs


def _describe(piece) -> str:
    from rtengine.data.music import NOTE_NAMES
    return f"{piece.style}, {piece.tempo:.0f} BPM, {NOTE_NAMES[piece.key % 12]} {piece.mode}"


def make_material(quick: bool, log=print) -> tuple[list[dict], list[dict]]:
    """The items ({name, kind, target, reference, descriptions}) and those
    that could not be made (with their error)."""
    n_pairs, seconds = (QUICK_PAIRS, QUICK_SECONDS) if quick else (FULL_PAIRS, FULL_SECONDS)
    items, failed = [], []
    try:
        pairs = _music_pairs(n_pairs)
    except Exception as exc:
        pairs = []
        failed.append({"name": "music", "error": error_text(exc)})
        log(f"  music pairs: not composed ({error_text(exc)})")
    for t_seed, r_seed in pairs:
        name = f"music-{t_seed}-{r_seed}"
        try:
            from rtengine.data.music import compose, render_piece
            tgt = render_piece(t_seed, seconds, SAMPLE_RATE)["mix"]
            ref = render_piece(r_seed, seconds, SAMPLE_RATE)["mix"]
            t_desc, r_desc = _describe(compose(t_seed, seconds)), _describe(compose(r_seed,
                                                                                    seconds))
        except Exception as exc:           # FluidSynth or the SoundFont missing
            failed.append({"name": name, "error": error_text(exc)})
            log(f"  {name}: not rendered ({error_text(exc)})")
            continue
        items.append({
            "name": name, "kind": "music", "target": tgt, "reference": ref,
            "target_source": f"rtengine.data.music.render_piece({t_seed}, {seconds:g}, "
                             f"{SAMPLE_RATE})['mix']",
            "reference_source": f"rtengine.data.music.render_piece({r_seed}, {seconds:g}, "
                                f"{SAMPLE_RATE})['mix']",
            "target_description": f"FluidSynth, {t_desc}",
            "reference_description": f"FluidSynth, {r_desc}"})
    n_seconds = QUICK_NOISE_SECONDS if quick else FULL_NOISE_SECONDS
    ref = pink_noise(n_seconds, NOISE_REFERENCE_SEED).astype(np.float32)
    base = pink_noise(n_seconds, NOISE_TARGET_SEED)
    for name, bands in TILTS[:QUICK_TILTS if quick else len(TILTS)]:
        eq = "; ".join(f"{k} {f:g} Hz Q {q:g} {g:+g} dB" for k, f, q, g in bands)
        items.append({
            "name": name, "kind": "noise", "target": apply_eq(base, bands).astype(np.float32),
            "reference": ref, "eq": [list(b) for b in bands],
            "target_source": f"pink noise (seed {NOISE_TARGET_SEED}, {n_seconds:g} s, "
                             f"{NOISE_LEVEL:g} RMS) through {eq}",
            "reference_source": f"pink noise (seed {NOISE_REFERENCE_SEED}, {n_seconds:g} s, "
                                f"{NOISE_LEVEL:g} RMS), no EQ",
            "target_description": f"tilted pink noise: {eq}",
            "reference_description": "untilted pink noise"})
    return items, failed


# ---- files and measurement --------------------------------------------------------------


def _round(v, digits: int = 3):
    return round(float(v), digits) if v is not None and math.isfinite(v) else None


def distances(x: np.ndarray, sample_rate: int, curve) -> dict:
    """The distance (dB RMS) to ``curve`` over the whole signal and over the
    settled part (after SETTLE_S; None when that part is too short)."""
    from rtengine.balancing import distance_db
    settle = int(round(SETTLE_S * sample_rate))
    whole = distance_db(x, sample_rate, curve)
    settled = None
    if x.shape[1] - settle >= MIN_SETTLED_S * sample_rate:
        settled = distance_db(x[:, settle:], sample_rate, curve)
    return {"distance_db": _round(whole), "distance_settled_db": _round(settled)}


# ---- the systems ----------------------------------------------------------------------

def _engine(curve_path: Path, freeze: bool):
    import rtengine
    return rtengine.Engine([{"plugin": "balance", "params": dict(PARAMS, freeze=freeze),
                             "options": {"target": str(curve_path)}}],
                           SAMPLE_RATE, BLOCK, CHANNELS)


def run_rtengine(in_path: Path, ref_path: Path, curve_path: Path, out_path: Path) -> dict:
    x, sr = read_audio(in_path)
    engine = _engine(curve_path, freeze=False)
    y = engine.render(x)
    write_audio(out_path, y, sr)
    corr = engine.meters()["balance"]["correction_db"]
    return {"final_correction_db": {"max_boost": max(corr), "max_cut": min(corr)}}


def run_rtengine_file(in_path: Path, ref_path: Path, curve_path: Path, out_path: Path) -> dict:
    from rtengine.balancing import band_spectrum
    x, sr = read_audio(in_path)
    engine = _engine(curve_path, freeze=True)
    corr = engine.stages[0].processor.preset(band_spectrum(x, sr)[1])
    y = engine.render(x)
    write_audio(out_path, y, sr)
    return {"correction_db": {"max_boost": _round(np.max(corr), 2),
                              "max_cut": _round(np.min(corr), 2)}}


def _matchering(in_path: Path, ref_path: Path, result) -> dict:
    import matchering as mg
    notes: list[str] = []
    quiet = (lambda *a, **k: None)     # noqa: E731
    mg.log(default_handler=quiet, warning_handler=lambda msg: notes.append(str(msg)),
           info_handler=quiet, debug_handler=quiet)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mg.process(target=str(in_path), reference=str(ref_path), results=[result])
    return {"warnings": notes} if notes else {}


def run_matchering(in_path: Path, ref_path: Path, curve_path: Path, out_path: Path) -> dict:
    import matchering as mg
    return _matchering(in_path, ref_path, mg.pcm24(str(out_path)))


def run_matchering_eq(in_path: Path, ref_path: Path, curve_path: Path, out_path: Path) -> dict:
    import matchering as mg
    return _matchering(in_path, ref_path,
                       mg.Result(str(out_path), "FLOAT", use_limiter=False, normalize=False))


RUNNERS = {"rtengine": run_rtengine, "rtengine-file": run_rtengine_file,
           "matchering": run_matchering, "matchering-eq": run_matchering_eq}


def balance_one(item: dict, work: Path, log=print) -> dict:
    """Learn the curve, run every system on the item, measure every output."""
    from rtengine.balancing import distance_db, learn
    name = item["name"]
    tgt_path, ref_path = work / f"{name}.target.wav", work / f"{name}.reference.wav"
    curve_path = work / f"{name}.curve.toml"
    write_audio(tgt_path, item["target"], SAMPLE_RATE)
    write_audio(ref_path, item["reference"], SAMPLE_RATE)
    seconds = item["target"].shape[1] / SAMPLE_RATE
    t0 = time.perf_counter()
    curve = learn(ref_path, curve_path)
    learn_s = time.perf_counter() - t0
    entry = {"kind": item["kind"], "target": item["target_source"],
             "reference": item["reference_source"],
             "target_description": item["target_description"],
             "reference_description": item["reference_description"],
             "seconds": round(seconds, 3), "learn_s": round(learn_s, 4),
             "curve": {"bands_hz": list(curve.freqs), "level_db": list(curve.levels_db)},
             "reference_distance_db": _round(distance_db(item["reference"], SAMPLE_RATE, curve)),
             "before": distances(item["target"], SAMPLE_RATE, curve), "systems": {}}
    if "eq" in item:
        entry["eq"] = item["eq"]
    before = entry["before"]
    for system in SYSTEMS:
        out_path = work / f"{name}.{system}.wav"
        try:
            t0 = time.perf_counter()
            extra = RUNNERS[system](tgt_path, ref_path, curve_path, out_path)
            wall = time.perf_counter() - t0
            y, out_sr = read_audio(out_path)
            res = distances(y, out_sr, curve)
            for key, imp in (("distance_db", "improvement_db"),
                             ("distance_settled_db", "improvement_settled_db")):
                b, a = before[key], res[key]
                res[imp] = None if b is None or a is None else round(b - a, 3)
            with_curve = wall + (learn_s if system in RTENGINE_SYSTEMS else 0.0)
            res.update({"wall_s": round(wall, 4), "real_time_factor": round(wall / seconds, 5),
                        "real_time_factor_with_curve": round(with_curve / seconds, 5),
                        "output_sample_rate": out_sr,
                        "output_seconds": round(y.shape[1] / out_sr, 3)})
            res.update(extra)
        except Exception as exc:
            res = {"error": error_text(exc)}
        entry["systems"][system] = res
    parts = [f"before {before['distance_db']:.2f}"]
    for system, res in entry["systems"].items():
        if "error" in res:
            parts.append(f"{system} ERROR {res['error'][:60]}")
        else:
            parts.append(f"{system} {res['distance_db']:.2f}")
    log(f"  {name:<18} " + " | ".join(parts) + " dB", flush=True)
    return entry


def warm_up(work: Path) -> dict:
    """One untimed run of every system (imports, caches)."""
    from rtengine.balancing import learn
    tgt, ref = work / "warmup.target.wav", work / "warmup.reference.wav"
    write_audio(tgt, apply_eq(pink_noise(WARMUP_SECONDS, 1), TILTS[0][1]), SAMPLE_RATE)
    write_audio(ref, pink_noise(WARMUP_SECONDS, 2), SAMPLE_RATE)
    curve = work / "warmup.curve.toml"
    errors = {}
    try:
        learn(ref, curve)
    except Exception as exc:
        return {"learn": error_text(exc)}
    for system in SYSTEMS:
        try:
            RUNNERS[system](tgt, ref, curve, work / f"warmup.{system}.wav")
        except Exception as exc:
            errors[system] = error_text(exc)
    return errors


# ---- summary and reporting -----------------------------------------------------------

def _stat(values, fn, digits: int = 3):
    vals = [v for v in values if v is not None]
    return round(float(fn(vals)), digits) if vals else None


def summarize(items: dict) -> dict:
    out = {}
    for system in SYSTEMS:
        ok = {n: it for n, it in items.items() if "error" not in it["systems"][system]}
        res = [it["systems"][system] for it in ok.values()]
        bef = [it["before"] for it in ok.values()]
        imp = [r["improvement_db"] for r in res]
        out[system] = {
            "items": len(items), "items_ok": len(ok), "items_failed": len(items) - len(ok),
            "mean_before_db": _stat([b["distance_db"] for b in bef], np.mean),
            "max_before_db": _stat([b["distance_db"] for b in bef], np.max),
            "mean_after_db": _stat([r["distance_db"] for r in res], np.mean),
            "max_after_db": _stat([r["distance_db"] for r in res], np.max),
            "mean_improvement_db": _stat(imp, np.mean),
            "min_improvement_db": _stat(imp, np.min),
            "items_improved": sum(1 for v in imp if v is not None and v > 0),
            "settled_items": sum(1 for r in res if r["distance_settled_db"] is not None),
            "mean_before_settled_db": _stat([b["distance_settled_db"] for b in bef], np.mean),
            "mean_after_settled_db": _stat([r["distance_settled_db"] for r in res], np.mean),
            "max_after_settled_db": _stat([r["distance_settled_db"] for r in res], np.max),
            "mean_improvement_settled_db": _stat([r["improvement_settled_db"] for r in res],
                                                 np.mean),
            "mean_real_time_factor": _stat([r["real_time_factor"] for r in res], np.mean, 5),
            "mean_real_time_factor_with_curve": _stat(
                [r["real_time_factor_with_curve"] for r in res], np.mean, 5),
        }
    return out


def format_items(items: dict) -> str:
    lines = [f"{'item':<18} {'before':>6}  " + " ".join(f"{s:>13}" for s in SYSTEMS)
             + f"   {'settled: before':>15}  " + " ".join(f"{s:>13}" for s in SYSTEMS)]
    for name, it in items.items():
        row = f"{name:<18} {cell(it['before']['distance_db'], '.2f', 6)}  "
        cells, settled = [], []
        for s in SYSTEMS:
            r = it["systems"][s]
            cells.append(f"{'error':>13}" if "error" in r else cell(r["distance_db"], ".2f", 13))
            settled.append(f"{'error':>13}" if "error" in r
                           else cell(r["distance_settled_db"], ".2f", 13))
        lines.append(row + " ".join(cells) + "   "
                     + cell(it["before"]["distance_settled_db"], ".2f", 15) + "  "
                     + " ".join(settled))
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    lines = [f"{'system':<14} {'items':>5} {'failed':>6} {'before':>13} {'after':>13} "
             f"{'improvement':>13} {'improved':>8} {'settled':>13} {'RTF':>8} {'RTF+curve':>9}",
             f"{'':<14} {'':>5} {'':>6} {'mean/max dB':>13} {'mean/max dB':>13} "
             f"{'mean/min dB':>13} {'':>8} {'before/after':>13} {'':>8} {'':>9}"]
    for s, r in summary.items():
        lines.append(
            f"{s:<14} {r['items']:>5} {r['items_failed']:>6} "
            f"{cell(r['mean_before_db'], '.2f', 6)}/{cell(r['max_before_db'], '.2f', 6)} "
            f"{cell(r['mean_after_db'], '.2f', 6)}/{cell(r['max_after_db'], '.2f', 6)} "
            f"{cell(r['mean_improvement_db'], '+.2f', 6)}/"
            f"{cell(r['min_improvement_db'], '+.2f', 6)} "
            f"{r['items_improved']:>4}/{r['items_ok']:<3} "
            f"{cell(r['mean_before_settled_db'], '.2f', 6)}/"
            f"{cell(r['mean_after_settled_db'], '.2f', 6)} "
            f"{cell(r['mean_real_time_factor'], '.4f', 8)} "
            f"{cell(r['mean_real_time_factor_with_curve'], '.4f', 9)}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = report["items"]
    names = list(items)
    xs = np.arange(len(names))
    series = ("before",) + SYSTEMS
    width = 0.8 / len(series)
    colors = {"before": "0.6", "rtengine": "tab:blue", "rtengine-file": "tab:cyan",
              "matchering": "tab:green", "matchering-eq": "tab:olive"}
    fig, axes = plt.subplots(2, 1, figsize=(max(9.0, 1.0 * len(names) + 4), 8), sharex=True)
    for ax, key, label in ((axes[0], "distance_db", "whole file"),
                           (axes[1], "distance_settled_db",
                            f"settled (after {SETTLE_S:g} s)")):
        for k, s in enumerate(series):
            pos = xs + (k - (len(series) - 1) / 2) * width
            vals = []
            for n in names:
                r = items[n]["before"] if s == "before" else items[n]["systems"][s]
                vals.append(np.nan if r.get(key) is None else r[key])
            ax.bar(pos, vals, width, color=colors[s], label=s)
            if s != "before":
                bad = [p for p, n in zip(pos, names) if "error" in items[n]["systems"][s]]
                if bad:
                    ax.plot(bad, [0.0] * len(bad), "x", color=colors[s], markersize=9)
        ax.set_ylabel(f"distance to target, {label}\n[dB RMS, 40 Hz-16 kHz]")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_ylim(0.0, ax.get_ylim()[1] * 1.2)      # room for the legend
        ax.legend(fontsize=8, ncol=5, loc="upper right")
    axes[1].set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    mode = "quick" if report["settings"]["quick"] else "full"
    fig.suptitle(f"latency_bench balance ({mode}): third-octave distance to the reference's "
                 f"curve; x = failed, no bar = too short to settle\n"
                 f"{report['machine']['cpu_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command line --------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK_PAIRS} music pairs of {QUICK_SECONDS:g} s and "
                        f"{QUICK_TILTS} tilted noise of {QUICK_NOISE_SECONDS:g} s (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder for balance.json and balance.png (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report = {
        "benchmark": "balance",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(PACKAGES),
        "settings": {
            "quick": quick, "systems": list(SYSTEMS), "sample_rate": SAMPLE_RATE,
            "channels": CHANNELS, "block_size": BLOCK, "balance_params": PARAMS,
            "music_pairs": QUICK_PAIRS if quick else FULL_PAIRS, "music_seed0": MUSIC_SEED0,
            "music_seconds": QUICK_SECONDS if quick else FULL_SECONDS,
            "noise_seconds": QUICK_NOISE_SECONDS if quick else FULL_NOISE_SECONDS,
            "tilts": [{"name": n, "eq": [list(b) for b in bands]}
                      for n, bands in TILTS[:QUICK_TILTS if quick else len(TILTS)]],
            "curve": "rtengine.balancing.learn(REF.wav, CURVE.toml): the reference's long-term "
                     "third-octave spectrum, mean removed",
            "distance": "rtengine.balancing.distance_db: RMS over the third-octave bands "
                        "40 Hz-16 kHz of (spectrum - mean) - (curve - mean), dB; "
                        "improvement = before - after",
            "settled": f"the part after {SETTLE_S:g} s (3 x speed_s); None when it is shorter "
                       f"than {MIN_SETTLED_S:g} s",
            "timing": "time.perf_counter around each system's file-to-file job; "
                      "real_time_factor = wall_s / target seconds; real_time_factor_with_curve "
                      "adds learn_s for the rtengine systems; one untimed warm-up of each "
                      f"system on {WARMUP_SECONDS:g} s of noise first",
        },
        "methods": METHODS,
        "inputs_failed": [], "warmup_errors": {}, "items": {}, "summary": {}, "checks": {},
    }
    m = report["machine"]
    print(f"latency_bench balance ({'quick' if quick else 'full'}): distance to a reference's "
          f"third-octave curve before and after; systems {', '.join(SYSTEMS)}")
    print(f"machine: {m['cpu_model']}, {m['cpu_count']} cores, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    for s in SYSTEMS:
        print(f"{s}: {METHODS[s]}")
    print("making the material ...", flush=True)
    items, report["inputs_failed"] = make_material(quick)
    with tempfile.TemporaryDirectory(prefix="latency_bench_balance_") as tmp:
        work = Path(tmp)
        print("warming up ...", flush=True)
        report["warmup_errors"] = warm_up(work)
        for k, v in report["warmup_errors"].items():
            print(f"  warm-up {k}: {v}")
        print("balancing (whole-file distance to the curve, dB RMS):", flush=True)
        for item in items:
            report["items"][item["name"]] = balance_one(item, work)
    report["summary"] = summarize(report["items"])
    failures = []
    for name, it in report["items"].items():
        for s in RTENGINE_SYSTEMS:
            r = it["systems"][s]
            if "error" in r:
                failures.append(f"{name}: {s} failed: {r['error']}")
            elif r["improvement_db"] is None or r["improvement_db"] <= 0:
                failures.append(f"{name}: {s} did not reduce the distance "
                                f"({it['before']['distance_db']} -> {r['distance_db']} dB)")
    if not report["items"]:
        failures.append("no material could be made")
    report["checks"] = {
        "rtengine": "pass" if not failures else "FAIL",
        "rule": "both rtengine systems reduce the whole-file distance on every item",
        "failures": failures,
    }
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    json_path = out_dir / "balance.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = out_dir / "balance.png"
    plot(report, png_path)
    print("\nper item: distance to the curve (dB RMS), whole file and settled "
          f"(after {SETTLE_S:g} s)")
    print(format_items(report["items"]))
    print("\nper system (distances in dB RMS; improvement = before - after; RTF: wall time / "
          "duration, +curve: with learning the curve for rtengine)")
    print(format_summary(report["summary"]))
    for item in report["inputs_failed"]:
        print(f"input {item['name']} not made: {item['error']}")
    for name, it in report["items"].items():
        for s, r in it["systems"].items():
            if "error" in r:
                print(f"{name}: {s} failed: {r['error']}")
            elif r.get("warnings"):
                print(f"{name}: {s} warnings: {'; '.join(r['warnings'])}")
    print(f"\ncheck: {report['checks']['rule']}: {report['checks']['rtengine']}")
    for f in failures:
        print(f"  {f}")
    print(f"saved {json_path} and {png_path} ({report['total_seconds']:g} s)")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m latency_bench balance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
