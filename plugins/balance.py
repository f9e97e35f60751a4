"""``balance``: real-time EQ balancing toward a target spectrum.

The stage measures its input's long-term spectrum in third-octave bands (40
Hz to 16 kHz), compares it with a target curve and corrects the difference
with a cascade of peaking filters: bounded (max boost, max cut), moving slowly
(the measurement averages over ``speed_s``), no zipper noise, no latency.
``freeze`` holds the current correction; ``mid_side`` measures and corrects
mid and side apart.  See kernels/c/rtk.h for the method.

Targets (option ``target``): a built-in curve (``pink``: equal power per
band, like pink noise; ``music``: the gentle high-frequency roll-off and
fuller bass typical of mixed popular music; ``warm``; ``bright``) or a curve
file written by ``rtengine balance learn REF.wav CURVE.toml``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kernels import layout
from rtengine import balancing
from rtengine.params import Param, toggle
from rtengine.processor import Option, Processor


class Balance(Processor):
    name = "balance"
    description = ("EQ balancing: long-term third-octave spectrum corrected toward a target "
                   "curve (bounded, slow, no latency); mid/side, freeze")
    kernel = "balance"
    params = (
        Param("amount", "Amount", 0.0, 1.0, 1.0, smoothing_ms=0.0),
        Param("max_boost_db", "Max boost", 0.0, 12.0, 6.0, "dB", smoothing_ms=0.0),
        Param("max_cut_db", "Max cut", 0.0, 12.0, 6.0, "dB", smoothing_ms=0.0),
        Param("speed_s", "Averaging time", 0.5, 60.0, 8.0, "s", scale="log", smoothing_ms=0.0),
        toggle("freeze", "Freeze", False, smoothing_ms=0.0),
        toggle("mid_side", "Mid/side", False, smoothing_ms=0.0),
    )
    options = (
        Option("target", "str", "pink", "a built-in curve (" + ", ".join(balancing.CURVES)
               + ") or a curve file (TOML, from rtengine balance learn)"),
    )

    def __init__(self, impl: str = "c", **options):
        super().__init__(impl, **options)
        self.curve = balancing.load_target(self.opts["target"])   # checks it now
        self._preset: np.ndarray | None = None

    @classmethod
    def check_options(cls, given, where="", base=None):
        opts = super().check_options(given, where, base)
        t = opts["target"]
        if t not in balancing.CURVES and base is not None:
            p = Path(t).expanduser()
            opts["target"] = str(p if p.is_absolute() else base / p)
        return opts

    def allocate(self, sample_rate, max_block, channels):
        bands = layout.balance_bands(sample_rate)
        return layout.balance_state(channels, sample_rate, self.curve.at(bands))

    def reset(self):
        layout.balance_reset(self.state)
        if self._preset is not None:
            self._apply_preset()

    def preset(self, measured_db) -> np.ndarray:
        """Start from a correction for a known long-term spectrum (dB per band,
        e.g. of a whole file, rtengine.balancing.band_spectrum) instead of from
        flat; kept across reset().  With ``freeze`` on it is what the stage
        applies from the first sample (how ``rtengine master`` balances a
        file).  Control thread, audio stopped.  Returns the correction (dB)."""
        self._preset = np.asarray(measured_db, dtype=np.float64)
        return self._apply_preset()

    def _apply_preset(self) -> np.ndarray:
        from kernels import design
        sr = self.spec[0]
        fc = layout.balance_bands(sr)
        v = self.values
        d = self.curve.at(fc) - self._preset
        d = np.clip(v["amount"] * (d - d.mean()), -v["max_cut_db"], v["max_boost_db"])
        binv = np.linalg.inv(layout.balance_interaction(sr))
        cmd = binv @ d
        for _ in range(2):
            secs = layout.balance_sections(sr, cmd)
            got = 20 * np.log10(np.abs(design.response(secs, fc, sr)))
            cmd = np.clip(cmd + binv @ (d - got), -30.0, 30.0)
        secs = layout.balance_sections(sr, cmd)
        st = self.state
        r = layout.balance_regions(st)
        r["measured"][0] = 10.0 ** (self._preset / 10.0)
        r["correction"][0] = d
        r["command"][0] = cmd
        st[9] = 1.0
        casc = st[int(st[12]):int(st[13])]
        layout.biquad_blob(casc)[:] = layout.biquad_pack(1, 0, secs)
        layout.biquad_reset(casc)
        st[11] = 1.0
        return d

    def meters(self):
        if self.state is None:
            return {}
        r = layout.balance_regions(self.state)
        bands = layout.balance_bands(self.spec[0])
        meas = 10 * np.log10(np.maximum(r["measured"][0], 1e-30))
        meas -= meas.mean()
        return {"bands_hz": [round(float(f), 1) for f in bands],
                "measured_db": [round(float(v), 2) for v in meas],
                "correction_db": [round(float(v), 2) for v in r["correction"][0]],
                "side_correction_db": [round(float(v), 2) for v in r["correction"][1]],
                "frames": int(self.state[5])}
