"""One-step mastering of a file: ``rtengine master IN OUT``.

The chain is a ``balance`` stage then the ``master`` stage (glue compressor
and true-peak limiter) with its auto gain off.  The input's long-term
third-octave spectrum is measured first and the balance stage applies one
fixed, bounded correction toward the target curve over the whole file (the
reference's own spectrum with ``--reference``; otherwise the built-in "music"
curve at half strength, at most 4 dB either way; the curve learnt from a
reference is written next to the output as ``OUT.curve.toml``).  Its
integrated loudness is
measured next, the gain
that reaches the target is set, the file is rendered and measured again, and
the gain corrected (secant steps, at most ``MAX_PASSES`` renders) until the
output is within ``TOLERANCE_LU`` of the target.  The gain is constant over
the file (no riding); the glue compressor and the limiter narrow the loudness
range somewhat (about 0.8 LU on average at -14 LUFS in ``latency_bench
master``), the more the louder the target.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

from kernels import layout

from . import balancing, provenance
from .audio import open_input, render_file
from .chain import Chain
from .engine import Engine
from .errors import AudioFormatError
from .loudness import Loudness, Meter, measure_file

MAX_PASSES = 8
TOLERANCE_LU = 0.05
BLOCK = 4096
GAIN_RANGE = 48.0                  # the master stage's gain_db range


def master_chain(gain_db: float, target: float, ceiling: float, balance: dict | None,
                 curve_file: str | None) -> Chain:
    stages = []
    if balance is not None:
        stages.append({"plugin": "balance", "params": dict(balance, freeze=True),
                       "options": {"target": curve_file or "music"}})
    stages.append({"plugin": "master", "params": {
        "auto": False, "gain_db": max(-GAIN_RANGE, min(GAIN_RANGE, gain_db)),
        "target_lufs": target, "ceiling_db": ceiling}})
    return Chain.from_list(stages, source="<rtengine master>")


def master_file(in_path, out_path, target: float | None = None, ceiling: float = -1.0,
                reference=None, subtype: str | None = None, balance: bool = True,
                progress: Callable[[str], None] | None = None) -> dict:
    """Master ``in_path`` into ``out_path``; returns the report (also written,
    with the chain and the input hashes, to the provenance sidecar).

    ``target`` (LUFS) defaults to the reference's integrated loudness when a
    ``reference`` file is given, else -14."""
    say = progress or (lambda msg: None)
    before = measure_file(in_path)
    if not math.isfinite(before.integrated):
        raise AudioFormatError(f"{in_path}: the input is silent (no 400 ms block above "
                               "-70 LUFS); there is nothing to master")
    ref = None
    if reference is not None:
        ref = measure_file(reference)
        if not math.isfinite(ref.integrated):
            raise AudioFormatError(f"{reference}: the reference is silent; choose another "
                                   "reference or give --target")
        if target is None:
            target = ref.integrated
    target = -14.0 if target is None else float(target)
    with open_input(in_path) as f:
        sr, ch = f.samplerate, f.channels
    out_path = Path(out_path)
    bal_params, curve_file, spectrum = None, None, None
    if balance:
        spectrum = balancing.file_spectrum(in_path)[1]
        if reference is not None:
            # kept next to the output: the chain in the provenance names it, and the
            # balance stage can use it live (options.target)
            curve_file = str(out_path.with_name(out_path.name + ".curve.toml"))
            balancing.learn(reference, curve_file)
            bal_params = {"amount": 1.0, "max_boost_db": 6.0, "max_cut_db": 6.0}
        else:
            bal_params = {"amount": 0.5, "max_boost_db": 4.0, "max_cut_db": 4.0}
    tmp = out_path.with_name(f".{out_path.stem}.pass{out_path.suffix or '.wav'}")
    gains, louds = [], []
    gain = target - before.integrated
    after: Loudness | None = None
    engine = None
    try:
        for k in range(MAX_PASSES):
            engine = Engine(master_chain(gain, target, ceiling, bal_params, curve_file),
                            sample_rate=sr, block_size=BLOCK, channels=ch)
            if spectrum is not None:
                correction = engine.stages[0].processor.preset(spectrum)
            render_file(engine, in_path, tmp, subtype=subtype)
            after = measure_file(tmp)
            gains.append(gain)
            louds.append(after.integrated)
            err = target - after.integrated
            say(f"pass {k + 1}: gain {gain:+.2f} dB -> {after.integrated:.2f} LUFS")
            if abs(err) <= TOLERANCE_LU or not math.isfinite(err):
                break
            if len(gains) >= 2 and gains[-1] != gains[-2]:
                slope = (louds[-1] - louds[-2]) / (gains[-1] - gains[-2])
            else:
                slope = 1.0
            gain += err / min(max(slope, 0.05), 1.0)
            if not -GAIN_RANGE <= gain <= GAIN_RANGE:
                gain = max(-GAIN_RANGE, min(GAIN_RANGE, gain))
                if gain == gains[-1]:
                    break                     # at the end of the gain range
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    report = {
        "input": str(in_path), "output": str(out_path), "target_lufs": target,
        "ceiling_dbtp": ceiling, "gain_db": round(gains[-1], 3), "passes": len(gains),
        "before": before.as_dict(), "after": after.as_dict(),
    }
    if ref is not None:
        report["reference"] = {"path": str(reference), **ref.as_dict()}
    if spectrum is not None:
        report["balance"] = {
            "target": (f"reference (curve {curve_file})" if reference is not None
                       else "music (half strength)"),
            "bands_hz": [round(float(f), 1) for f in layout.balance_bands(sr)],
            "correction_db": [round(float(c), 2) for c in correction],
            "target_db": [round(float(v), 2) for v in
                          engine.stages[0].processor.curve.at(layout.balance_bands(sr))]}
    inputs = [("input", in_path)] + ([("reference", reference)] if reference is not None else [])
    report["provenance"] = str(provenance.write(
        out_path, command="rtengine master", inputs=inputs, chains={"master": engine},
        report={k: v for k, v in report.items() if k not in ("input", "output")}))
    return report


def format_report(r: dict) -> str:
    b, a = r["before"], r["after"]

    def f(v, unit):
        return "undefined" if v is None else f"{v:7.2f} {unit}"
    lines = [f"{'':18}{'before':>14}{'after':>14}",
             f"{'integrated':18}{f(b['integrated'], 'LUFS'):>14}{f(a['integrated'], 'LUFS'):>14}",
             f"{'loudness range':18}{f(b['lra'], 'LU'):>14}{f(a['lra'], 'LU'):>14}",
             f"{'true peak':18}{f(b['true_peak_db'], 'dBTP'):>14}"
             f"{f(a['true_peak_db'], 'dBTP'):>14}",
             f"{'short-term max':18}{f(b['short_term_max'], 'LUFS'):>14}"
             f"{f(a['short_term_max'], 'LUFS'):>14}",
             f"gain applied {r['gain_db']:+.2f} dB (target {r['target_lufs']:.1f} LUFS, ceiling "
             f"{r['ceiling_dbtp']:.1f} dBTP, {r['passes']} pass{'es' if r['passes'] > 1 else ''})"]
    if "reference" in r:
        lines.append(f"reference {r['reference']['path']}: "
                     f"{r['reference']['integrated']:.2f} LUFS")
    if "balance" in r:
        c = r["balance"]["correction_db"]
        lines.append(f"balance toward {r['balance']['target']}: {max(c):+.1f} dB most boost, "
                     f"{min(c):+.1f} dB most cut over {len(c)} third-octave bands")
    return "\n".join(lines)


def short_term_curve(path, step_s: float = 0.1):
    """(times in s, short-term LUFS) of a file, one value per ``step_s``."""
    import numpy as np
    from .audio import CHUNK
    with open_input(path) as f:
        m = Meter(f.samplerate, f.channels)
        hop = max(1, int(round(step_s * f.samplerate)))
        times, values, done = [], [], 0
        while True:
            data = f.read(min(CHUNK, hop), dtype="float32", always_2d=True)
            if not len(data):
                break
            m.feed(data.T)
            done += len(data)
            times.append(done / f.samplerate)
            values.append(m.value.short_term)
    return np.array(times), np.array(values)


def plot(report: dict, png) -> Path:
    """Short-term loudness before and after against the target and, when the
    file was balanced, the long-term spectrum before and after against the
    balance target (PNG)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AudioFormatError("--plot needs matplotlib: pip install matplotlib") from None
    import numpy as np
    panels = 2 if "balance" in report else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4), dpi=100, squeeze=False)
    ax = axes[0][0]
    for label, path in (("before", report["input"]), ("after", report["output"])):
        t, s = short_term_curve(path)
        ax.plot(t, np.where(np.isfinite(s), s, np.nan), label=f"{label} (short-term)")
    ax.axhline(report["target_lufs"], color="k", ls="--", lw=1,
               label=f"target {report['target_lufs']:.1f} LUFS")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("loudness (LUFS)")
    ax.set_title(f"gain {report['gain_db']:+.2f} dB, true peak "
                 f"{report['after']['true_peak_db']:.2f} dBTP")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if panels == 2:
        ax = axes[0][1]
        bal = report["balance"]
        for label, path in (("before", report["input"]), ("after", report["output"])):
            fc, s = balancing.file_spectrum(path)
            ax.semilogx(fc, s - s.mean(), "o-", ms=3, label=label)
        tgt = np.array(bal["target_db"])
        ax.semilogx(bal["bands_hz"], tgt - tgt.mean(), "k--", label=f"target ({bal['target']})")
        ax.set_xlabel("frequency (Hz), third-octave bands")
        ax.set_ylabel("level (dB, mean removed)")
        ax.set_title("long-term spectrum")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)
