"""``python -m latency_bench master``: mastering to -14 LUFS with a -1 dBTP ceiling.

Every input file is mastered, in the same run, by three systems:

1. rtengine: ``rtengine.mastering.master_file(IN, OUT, target=-14, ceiling=-1)``,
   the code path behind ``rtengine master`` (float WAV out);
2. matchering: ``matchering.process(target=IN, reference=REF,
   results=[matchering.pcm24(OUT)])`` where REF is rtengine's master of the
   same input ("matchering with our master as its reference"; 24-bit WAV out at
   matchering's internal 44.1 kHz);
3. pedalboard: the input gained so that its integrated loudness (our meter) is
   -14 LUFS, then ``pedalboard.Limiter(threshold_db=-1.0, release_ms=100)``
   over the whole file (float WAV out): what a pedalboard user would try first.

Inputs (written as float WAVs to a temporary folder that is removed): 8
FluidSynth pieces of 30 s from ``rtengine.data.music.render_piece`` (seeds
100..107, not the seeds the tests use; 44.1 kHz; varied styles and levels) and
2 generated pieces from ``rtengine.demo.music`` (one hot at 48 kHz, one 20 dB
quieter at 44.1 kHz).  ``--quick``: 2 FluidSynth pieces of 8 s and the first
generated piece, 8 s.

Every output is measured the same way whichever system made it:

* integrated loudness and loudness range with ``rtengine.loudness.measure``
  (BS.1770-4 / Tech 3342); the loudness error is the integrated loudness minus
  -14 LUFS;
* true peak by ideal band-limited 4x oversampling: the zero-padded signal is
  interpolated in the frequency domain (``scipy.fft`` rfft / irfft at a
  ``next_fast_len`` size), the first and last 10 ms are left out; a file is
  over the ceiling when this true peak is above -1.0 dBTP;
* also recorded: our meter's 4x true peak and the sample peak.

Wall time is measured per file per system with ``time.perf_counter`` around
the whole file-to-file job (reading, analysis, processing, writing; for
matchering not the rtengine master it uses as reference); the real-time factor
is wall time / input duration (below 1 is faster than real time).  One
untimed warm-up run of each system at each sample rate comes first.  Per
system the mean and max |loudness error|, the max true peak, the number of
files over the ceiling and the mean real-time factor are printed and saved,
with every per-file number, as master.json and master.png in ``--out``.
A system that fails on a file is recorded with its error for that file.
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
            "pedalboard", "soundfile", "pyfluidsynth", "matplotlib")
DEFAULT_OUT = PACKAGE_DIR / "results"

TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
SYSTEMS = ("rtengine", "matchering", "pedalboard")

MUSIC_SAMPLE_RATE = 44100
MUSIC_SEED0 = 100                 # the tests render seeds from 0; these are others
FULL_MUSIC_PIECES, FULL_SECONDS = 8, 30.0
QUICK_MUSIC_PIECES, QUICK_SECONDS = 2, 8.0
# Generated pieces (rtengine.demo.music): (name, seed, sample rate, level in dB applied to
# the piece as generated, which peaks near -1 dBFS).
GENERATED = (("gen-hot-48k", 7, 48000, 0.0),
             ("gen-quiet-44k", 11, 44100, -20.0))
QUICK_GENERATED = 1
WARMUP_SECONDS = 3.0

TP_OVERSAMPLING = 4
TP_EDGE_SECONDS = 0.010           # left out at each end of the ideal true peak measurement
TP_PAD_SECONDS = 0.050            # zeros after the signal before the FFT

RTENGINE_MAX_ERROR_LU = 0.5       # the checks on rtengine's outputs
PEDALBOARD_RELEASE_MS = 100.0

RTENGINE_METHOD = (f"rtengine.mastering.master_file(IN, OUT, target={TARGET_LUFS:g}, "
                   f"ceiling={CEILING_DBTP:g}): measure, set a constant gain, render through the "
                   "master stage (glue compressor + true-peak limiter), re-measure and correct "
                   "the gain (up to 8 passes); float WAV out")
MATCHERING_METHOD = ("matchering.process(target=IN, reference=REF, "
                     "results=[matchering.pcm24(OUT)]) with REF = rtengine's master of the same "
                     "input; default Config; its log handlers collect warnings (recorded), "
                     "stdout/stderr and Python warnings silenced; 24-bit WAV out at 44.1 kHz")
PEDALBOARD_METHOD = (f"x * 10**((-14 - LUFS(x)) / 20) (LUFS by rtengine.loudness.measure), "
                     f"then pedalboard.Limiter(threshold_db={CEILING_DBTP:g}, "
                     f"release_ms={PEDALBOARD_RELEASE_MS:g}) over the whole file; float WAV "
                     "out (read and written with soundfile). pedalboard documents this Limiter "
                     "(JUCE dsp::Limiter) as applying makeup gain and a hard clip at 0 dBFS")


# ---- measurement ------------------------------------------------------------------

def _db(lin: float) -> float:
    return 20.0 * math.log10(lin) if lin > 0.0 else -math.inf


def ideal_true_peak_db(x: np.ndarray, sample_rate: float, factor: int = TP_OVERSAMPLING,
                       edge_s: float = TP_EDGE_SECONDS, pad_s: float = TP_PAD_SECONDS) -> float:
    """True peak (dBTP) of (channels, frames) audio by ideal band-limited
    interpolation: each channel, followed by zeros, is transformed at a fast FFT
    size, its spectrum is zero-extended to ``factor`` times the length and
    transformed back; the interpolated samples within ``edge_s`` of either end
    are left out (the wrap-around between the end and the start rings there)."""
    import scipy.fft as sfft
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    frames = x.shape[1]
    edge = int(round(edge_s * sample_rate))
    if frames <= 2 * edge:
        return -math.inf
    size = sfft.next_fast_len(frames + int(round(pad_s * sample_rate)), real=True)
    half = size // 2
    peak = 0.0
    for ch in x:
        spec = sfft.rfft(ch, n=size)
        up = np.zeros(factor * size // 2 + 1, dtype=np.complex128)
        up[:half + 1] = spec
        if size % 2 == 0:
            up[half] *= 0.5          # the old Nyquist bin becomes an ordinary (two-sided) bin
        y = sfft.irfft(up, n=factor * size)
        y *= factor
        seg = y[factor * edge:factor * (frames - edge)]
        peak = max(peak, float(np.max(np.abs(seg))))
    return _db(peak)


def _finite(v: float, digits: int = 3) -> float | None:
    return round(float(v), digits) if v is not None and math.isfinite(v) else None


def analyse(x: np.ndarray, sample_rate: float) -> dict:
    """The one measurement applied to every input and output."""
    from rtengine.loudness import measure
    x = np.ascontiguousarray(x, dtype=np.float32)
    m = measure(x, sample_rate)
    return {"integrated_lufs": _finite(m.integrated),
            "lra_lu": _finite(m.lra),
            "true_peak_dbtp": _finite(ideal_true_peak_db(x, sample_rate)),
            "meter_true_peak_dbtp": _finite(m.true_peak_db),
            "sample_peak_dbfs": _finite(m.sample_peak_db)}


# ---- inputs -------------------------------------------------------------------------

def make_inputs(quick: bool, log=print) -> tuple[list[dict], list[dict]]:
    """[(name, description, audio, sample rate)] as dicts, and the inputs that
    could not be made (with their error)."""
    from rtengine.demo import music as demo_music
    n_music, seconds = ((QUICK_MUSIC_PIECES, QUICK_SECONDS) if quick
                        else (FULL_MUSIC_PIECES, FULL_SECONDS))
    n_gen = QUICK_GENERATED if quick else len(GENERATED)
    inputs, failed = [], []
    for seed in range(MUSIC_SEED0, MUSIC_SEED0 + n_music):
        name = f"music-{seed}"
        try:
            from rtengine.data.music import compose, render_piece
            piece = compose(seed, seconds)
            x = render_piece(seed, seconds, MUSIC_SAMPLE_RATE)["mix"]
        except Exception as exc:           # FluidSynth or the SoundFont missing
            failed.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
            log(f"  {name}: not rendered ({type(exc).__name__}: {exc})")
            continue
        inputs.append({"name": name, "audio": x, "sample_rate": MUSIC_SAMPLE_RATE,
                       "source": f"rtengine.data.music.render_piece({seed}, {seconds:g}, "
                                 f"{MUSIC_SAMPLE_RATE})['mix']",
                       "description": f"FluidSynth, {piece.style}, {piece.tempo:.0f} BPM, "
                                      f"{piece.key} {piece.mode}"})
    for name, seed, sr, level_db in GENERATED[:n_gen]:
        x = demo_music(seconds, sr, seed=seed) * np.float32(10 ** (level_db / 20))
        inputs.append({"name": name, "audio": x.astype(np.float32), "sample_rate": sr,
                       "source": f"rtengine.demo.music({seconds:g}, {sr}, seed={seed}) "
                                 f"* {level_db:+g} dB",
                       "description": f"generated drums/bass/chords, {sr / 1000:g} kHz, "
                                      f"{level_db:+g} dB"})
    return inputs, failed


# ---- the systems ----------------------------------------------------------------------

def run_rtengine(in_path: Path, out_path: Path, ref_path: Path | None = None) -> dict:
    from rtengine.mastering import master_file
    rep = master_file(in_path, out_path, target=TARGET_LUFS, ceiling=CEILING_DBTP)
    return {"passes": rep["passes"], "gain_db": rep["gain_db"]}


def run_matchering(in_path: Path, out_path: Path, ref_path: Path | None) -> dict:
    if ref_path is None or not ref_path.is_file():
        raise RuntimeError("no reference: rtengine's master of this input failed")
    import matchering as mg
    notes: list[str] = []
    quiet = (lambda *a, **k: None)     # noqa: E731
    mg.log(default_handler=quiet, warning_handler=lambda msg: notes.append(str(msg)),
           info_handler=quiet, debug_handler=quiet)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mg.process(target=str(in_path), reference=str(ref_path),
                   results=[mg.pcm24(str(out_path))])
    return {"warnings": notes} if notes else {}


def run_pedalboard(in_path: Path, out_path: Path, ref_path: Path | None = None) -> dict:
    import pedalboard
    from rtengine.loudness import measure
    x, sr = read_audio(in_path)
    gain_db = TARGET_LUFS - measure(x, sr).integrated
    limiter = pedalboard.Limiter(threshold_db=CEILING_DBTP, release_ms=PEDALBOARD_RELEASE_MS)
    y = limiter(x * np.float32(10 ** (gain_db / 20)), sr)
    write_audio(out_path, y, sr)
    return {"gain_db": round(gain_db, 3)}


RUNNERS = {"rtengine": run_rtengine, "matchering": run_matchering,
           "pedalboard": run_pedalboard}


def master_one(item: dict, work: Path, log=print) -> dict:
    """Master one input with every system and measure the outputs."""
    name, x, sr = item["name"], item["audio"], item["sample_rate"]
    in_path = work / f"{name}.wav"
    write_audio(in_path, x, sr)
    seconds = x.shape[1] / sr
    entry = {"source": item["source"], "description": item["description"],
             "sample_rate": sr, "seconds": round(seconds, 3),
             "input": analyse(x, sr), "systems": {}}
    paths = {s: work / f"{name}.{s}.wav" for s in SYSTEMS}
    for system in SYSTEMS:
        out_path = paths[system]
        try:
            t0 = time.perf_counter()
            extra = RUNNERS[system](in_path, out_path, paths["rtengine"])
            wall = time.perf_counter() - t0
            y, out_sr = read_audio(out_path)
            res = {"wall_s": round(wall, 4), "real_time_factor": round(wall / seconds, 5),
                   "output_sample_rate": out_sr, "output_seconds": round(y.shape[1] / out_sr, 3)}
            res.update(analyse(y, out_sr))
            lufs, tp = res["integrated_lufs"], res["true_peak_dbtp"]
            res["loudness_error_lu"] = None if lufs is None else round(lufs - TARGET_LUFS, 3)
            res["over_ceiling"] = tp is not None and tp > CEILING_DBTP
            li, lo = entry["input"]["lra_lu"], res["lra_lu"]
            res["lra_change_lu"] = None if li is None or lo is None else round(lo - li, 3)
            res.update(extra)
        except Exception as exc:
            res = {"error": error_text(exc)}
        entry["systems"][system] = res
    parts = []
    for system, res in entry["systems"].items():
        if "error" in res:
            parts.append(f"{system} ERROR {res['error'][:80]}")
        else:
            parts.append(f"{system} {res['loudness_error_lu']:+.2f} LU "
                         f"{res['true_peak_dbtp']:+.2f} dBTP {res['wall_s']:.2f} s")
    log(f"  {name:<14} " + " | ".join(parts), flush=True)
    return entry


def warm_up(sample_rates, work: Path) -> dict:
    """One untimed run of every system at each sample rate (imports, JIT, caches)."""
    from rtengine.demo import music as demo_music
    errors = {}
    for sr in sorted(set(sample_rates)):
        x = demo_music(WARMUP_SECONDS, sr, seed=3)
        in_path = work / f"warmup-{sr}.wav"
        write_audio(in_path, x, sr)
        ref = work / f"warmup-{sr}.rtengine.wav"
        for system in SYSTEMS:
            try:
                RUNNERS[system](in_path, work / f"warmup-{sr}.{system}.wav", ref)
            except Exception as exc:
                errors[f"{system}@{sr}"] = error_text(exc)
    return errors


# ---- summary and reporting -----------------------------------------------------------

def summarize(files: dict) -> dict:
    out = {}
    for system in SYSTEMS:
        ok = [f["systems"][system] for f in files.values() if "error" not in f["systems"][system]]
        errs = [abs(r["loudness_error_lu"]) for r in ok if r["loudness_error_lu"] is not None]
        tps = [r["true_peak_dbtp"] for r in ok if r["true_peak_dbtp"] is not None]
        rtf = [r["real_time_factor"] for r in ok]
        lra = [r["lra_change_lu"] for r in ok if r["lra_change_lu"] is not None]
        out[system] = {
            "files": len(files), "files_ok": len(ok), "files_failed": len(files) - len(ok),
            "mean_abs_loudness_error_lu": round(float(np.mean(errs)), 3) if errs else None,
            "max_abs_loudness_error_lu": round(float(np.max(errs)), 3) if errs else None,
            "max_true_peak_dbtp": round(float(np.max(tps)), 3) if tps else None,
            "files_over_ceiling": sum(bool(r["over_ceiling"]) for r in ok),
            "mean_real_time_factor": round(float(np.mean(rtf)), 5) if rtf else None,
            "mean_lra_change_lu": round(float(np.mean(lra)), 3) if lra else None,
        }
    return out


def format_files(files: dict) -> str:
    lines = [f"{'file':<14} {'in LUFS':>7} {'in dBTP':>7} {'in LRA':>6}  "
             + "  ".join(f"{s + ' err/TP/LRA':>22}" for s in SYSTEMS)]
    for name, f in files.items():
        i = f["input"]
        row = (f"{name:<14} {cell(i['integrated_lufs'], '.2f', 7)} "
               f"{cell(i['true_peak_dbtp'], '.2f', 7)} {cell(i['lra_lu'], '.1f', 6)}  ")
        cells = []
        for s in SYSTEMS:
            r = f["systems"][s]
            if "error" in r:
                cells.append(f"{'error':>22}")
            else:
                cells.append(f"{cell(r['loudness_error_lu'], '+.2f', 7)}"
                             f"{cell(r['true_peak_dbtp'], '+.2f', 8)}"
                             f"{cell(r['lra_lu'], '.1f', 7)}")
        lines.append(row + "  ".join(cells))
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    lines = [f"{'system':<11} {'files':>5} {'failed':>6} {'mean|err|':>9} {'max|err|':>9} "
             f"{'max TP':>7} {'over':>4} {'mean RTF':>9} {'dLRA':>6}",
             f"{'':<11} {'':>5} {'':>6} {'LU':>9} {'LU':>9} {'dBTP':>7} {'ceil':>4} "
             f"{'(wall/dur)':>9} {'LU':>6}"]
    for s, r in summary.items():
        lines.append(f"{s:<11} {r['files']:>5} {r['files_failed']:>6} "
                     f"{cell(r['mean_abs_loudness_error_lu'], '.3f', 9)} "
                     f"{cell(r['max_abs_loudness_error_lu'], '.3f', 9)} "
                     f"{cell(r['max_true_peak_dbtp'], '+.2f', 7)} {r['files_over_ceiling']:>4} "
                     f"{cell(r['mean_real_time_factor'], '.4f', 9)} "
                     f"{cell(r['mean_lra_change_lu'], '+.2f', 6)}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = report["files"]
    names = list(files)
    xs = np.arange(len(names))
    width = 0.8 / len(SYSTEMS)
    colors = {"rtengine": "tab:blue", "matchering": "tab:green", "pedalboard": "tab:orange"}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8.0, 1.1 * len(names) + 3), 7.5),
                                   sharex=True)
    for k, s in enumerate(SYSTEMS):
        pos = xs + (k - (len(SYSTEMS) - 1) / 2) * width
        err = [files[n]["systems"][s].get("loudness_error_lu") for n in names]
        tp = [files[n]["systems"][s].get("true_peak_dbtp") for n in names]
        ax1.bar(pos, [np.nan if v is None else v for v in err], width, color=colors[s],
                label=s)
        ax2.bar(pos, [np.nan if v is None else v - CEILING_DBTP for v in tp], width,
                bottom=CEILING_DBTP, color=colors[s], label=s)
        bad = [p for p, n in zip(pos, names) if "error" in files[n]["systems"][s]]
        if bad:
            ax1.plot(bad, [0.0] * len(bad), "x", color=colors[s], markersize=9)
            ax2.plot(bad, [CEILING_DBTP] * len(bad), "x", color=colors[s], markersize=9)
    ax1.axhline(0.0, color="black", lw=0.8)
    ax1.axhspan(-RTENGINE_MAX_ERROR_LU, RTENGINE_MAX_ERROR_LU, color="grey", alpha=0.15,
                label=f"+-{RTENGINE_MAX_ERROR_LU:g} LU")
    ax1.set_ylabel(f"integrated loudness - ({TARGET_LUFS:g} LUFS)  [LU]")
    ax1.legend(fontsize=8, ncol=4)
    ax1.grid(True, axis="y", alpha=0.3)
    ax2.axhline(CEILING_DBTP, color="red", ls="--", lw=1,
                label=f"ceiling {CEILING_DBTP:g} dBTP")
    ax2.set_ylabel("true peak (ideal 4x)  [dBTP]")
    ax2.legend(fontsize=8, ncol=4)
    ax2.grid(True, axis="y", alpha=0.3)
    ax2.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    mode = "quick" if report["settings"]["quick"] else "full"
    fig.suptitle(f"latency_bench master ({mode}): {TARGET_LUFS:g} LUFS, {CEILING_DBTP:g} dBTP "
                 f"ceiling; x = failed; {report['machine']['cpu_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command line --------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK_MUSIC_PIECES} FluidSynth pieces and "
                        f"{QUICK_GENERATED} generated piece of {QUICK_SECONDS:g} s (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder for master.json and master.png (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report = {
        "benchmark": "master",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(PACKAGES),
        "settings": {
            "quick": quick, "target_lufs": TARGET_LUFS, "ceiling_dbtp": CEILING_DBTP,
            "systems": list(SYSTEMS),
            "music_pieces": QUICK_MUSIC_PIECES if quick else FULL_MUSIC_PIECES,
            "music_seed0": MUSIC_SEED0, "music_sample_rate": MUSIC_SAMPLE_RATE,
            "seconds": QUICK_SECONDS if quick else FULL_SECONDS,
            "generated": [dict(zip(("name", "seed", "sample_rate", "level_db"), g))
                          for g in GENERATED[:QUICK_GENERATED if quick else len(GENERATED)]],
            "loudness": "rtengine.loudness.measure: BS.1770-4 integrated loudness, Tech 3342 "
                        "LRA; loudness_error_lu = integrated - target",
            "true_peak": f"ideal band-limited {TP_OVERSAMPLING}x oversampling: per channel, "
                         f"{TP_PAD_SECONDS * 1000:g} ms of zeros appended, rfft at "
                         "scipy.fft.next_fast_len, spectrum zero-extended, irfft; first and last "
                         f"{TP_EDGE_SECONDS * 1000:g} ms left out. meter_true_peak_dbtp: our "
                         "meter's 4x polyphase true peak; sample_peak_dbfs: max |sample|",
            "over_ceiling": f"true_peak_dbtp > {CEILING_DBTP:g}",
            "timing": "time.perf_counter around each whole file-to-file job; "
                      "real_time_factor = wall_s / input seconds; one untimed warm-up of "
                      f"each system on a {WARMUP_SECONDS:g} s piece per sample rate first",
        },
        "methods": {"rtengine": RTENGINE_METHOD, "matchering": MATCHERING_METHOD,
                    "pedalboard": PEDALBOARD_METHOD},
        "inputs_failed": [], "warmup_errors": {}, "files": {}, "summary": {}, "checks": {},
    }
    m = report["machine"]
    print(f"latency_bench master ({'quick' if quick else 'full'}): master to "
          f"{TARGET_LUFS:g} LUFS, {CEILING_DBTP:g} dBTP ceiling; systems {', '.join(SYSTEMS)}")
    print(f"machine: {m['cpu_model']}, {m['cpu_count']} cores, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    for s in SYSTEMS:
        print(f"{s}: {report['methods'][s]}")
    print("rendering inputs ...", flush=True)
    inputs, report["inputs_failed"] = make_inputs(quick)
    with tempfile.TemporaryDirectory(prefix="latency_bench_master_") as tmp:
        work = Path(tmp)
        print("warming up ...", flush=True)
        report["warmup_errors"] = warm_up([i["sample_rate"] for i in inputs], work)
        for k, v in report["warmup_errors"].items():
            print(f"  warm-up {k}: {v}")
        print("mastering (loudness error / ideal true peak / wall time):", flush=True)
        for item in inputs:
            report["files"][item["name"]] = master_one(item, work)
    report["summary"] = summarize(report["files"])
    failures = []
    for name, f in report["files"].items():
        r = f["systems"]["rtengine"]
        if "error" in r:
            failures.append(f"{name}: rtengine failed: {r['error']}")
            continue
        err, tp = r["loudness_error_lu"], r["true_peak_dbtp"]
        if err is None or abs(err) > RTENGINE_MAX_ERROR_LU:
            failures.append(f"{name}: rtengine loudness error {err} LU")
        if tp is None or tp > CEILING_DBTP:
            failures.append(f"{name}: rtengine true peak {tp} dBTP")
    if not report["files"]:
        failures.append("no input could be made")
    report["checks"] = {
        "rtengine": "pass" if not failures else "FAIL",
        "rule": f"rtengine on every file: |loudness error| <= {RTENGINE_MAX_ERROR_LU:g} LU and "
                f"ideal true peak <= {CEILING_DBTP:g} dBTP",
        "failures": failures,
    }
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    json_path = out_dir / "master.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = out_dir / "master.png"
    plot(report, png_path)
    print("\nper file: loudness error (LU) / ideal true peak (dBTP) / output LRA (LU)")
    print(format_files(report["files"]))
    print("\nper system (RTF: wall time / input duration, lower is faster; dLRA: mean output "
          "LRA - input LRA)")
    print(format_summary(report["summary"]))
    for item in report["inputs_failed"]:
        print(f"input {item['name']} not made: {item['error']}")
    for name, f in report["files"].items():
        for s, r in f["systems"].items():
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
    p = argparse.ArgumentParser(prog="python -m latency_bench master", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
