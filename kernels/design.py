"""Coefficient design for the biquad cascade (RBJ Audio EQ Cookbook formulas).

Runs on control threads, never on the audio thread.  Every design returns one
section as ``(b0, b1, b2, a1, a2)`` with a0 normalised to 1, valid at any
sample rate: frequencies are pre-warped by the bilinear transform, so a
Butterworth high or low pass is exactly -3.01 dB at its cutoff.
"""
from __future__ import annotations

import math

import numpy as np

IDENTITY = (1.0, 0.0, 0.0, 0.0, 0.0)

TYPES = ("peak", "lowshelf", "highshelf", "lowpass", "highpass", "notch", "bandpass")


def _norm(b0, b1, b2, a0, a1, a2):
    return (b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0)


def section(kind: str, freq: float, sample_rate: float, q: float = 0.7071067811865476,
            gain_db: float = 0.0) -> tuple[float, float, float, float, float]:
    """One RBJ biquad.  ``freq`` is clamped just below Nyquist."""
    if kind not in TYPES:
        raise ValueError(f"unknown filter type {kind!r}; use one of {', '.join(TYPES)}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    nyq = 0.5 * sample_rate
    f = min(max(float(freq), 1e-3), nyq * 0.9999)
    q = max(float(q), 1e-3)
    w0 = 2.0 * math.pi * f / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2.0 * q)
    a = 10.0 ** (gain_db / 40.0)
    if kind == "lowpass":
        return _norm((1 - cw) / 2, 1 - cw, (1 - cw) / 2, 1 + alpha, -2 * cw, 1 - alpha)
    if kind == "highpass":
        return _norm((1 + cw) / 2, -(1 + cw), (1 + cw) / 2, 1 + alpha, -2 * cw, 1 - alpha)
    if kind == "bandpass":  # constant 0 dB peak gain
        return _norm(alpha, 0.0, -alpha, 1 + alpha, -2 * cw, 1 - alpha)
    if kind == "notch":
        return _norm(1.0, -2 * cw, 1.0, 1 + alpha, -2 * cw, 1 - alpha)
    if kind == "peak":
        return _norm(1 + alpha * a, -2 * cw, 1 - alpha * a, 1 + alpha / a, -2 * cw, 1 - alpha / a)
    # shelves: q is the cookbook's Q (0.7071 gives the steepest monotone shelf)
    sa = 2.0 * math.sqrt(a) * alpha
    if kind == "lowshelf":
        return _norm(a * ((a + 1) - (a - 1) * cw + sa),
                     2 * a * ((a - 1) - (a + 1) * cw),
                     a * ((a + 1) - (a - 1) * cw - sa),
                     (a + 1) + (a - 1) * cw + sa,
                     -2 * ((a - 1) + (a + 1) * cw),
                     (a + 1) + (a - 1) * cw - sa)
    return _norm(a * ((a + 1) + (a - 1) * cw + sa),          # highshelf
                 -2 * a * ((a - 1) + (a + 1) * cw),
                 a * ((a + 1) + (a - 1) * cw - sa),
                 (a + 1) - (a - 1) * cw + sa,
                 2 * ((a - 1) - (a + 1) * cw),
                 (a + 1) - (a - 1) * cw - sa)


def butterworth_qs(order: int) -> list[float]:
    """Q of each second-order section of an even-order Butterworth filter."""
    if order < 2 or order % 2:
        raise ValueError(f"Butterworth order must be even and >= 2, got {order}")
    n = order
    return [1.0 / (2.0 * math.cos(math.pi * (2 * k + 1) / (2 * n))) for k in range(n // 2)]


def butterworth(kind: str, freq: float, sample_rate: float, order: int) -> list[tuple]:
    """High or low pass Butterworth of an even order as a list of sections."""
    if kind not in ("lowpass", "highpass"):
        raise ValueError(f"Butterworth cut must be lowpass or highpass, got {kind!r}")
    return [section(kind, freq, sample_rate, q) for q in butterworth_qs(order)]


def response(sections, freqs, sample_rate: float) -> np.ndarray:
    """Complex frequency response of a cascade at ``freqs`` (Hz)."""
    z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs, dtype=float) / sample_rate)
    h = np.ones_like(z)
    for b0, b1, b2, a1, a2 in sections:
        h *= (b0 + b1 * z + b2 * z * z) / (1.0 + a1 * z + a2 * z * z)
    return h


def true_peak_fir(taps: int, phases: int = 4, beta: float = 8.0) -> np.ndarray:
    """Kaiser-windowed sinc interpolators for the fractional positions k/phases,
    k = 1 .. phases-1, between history samples taps/2 - 1 and taps/2.  Each row is
    normalised to unit DC gain.  Shape (phases - 1, taps)."""
    rows = []
    k = np.arange(taps, dtype=float)
    for p in range(1, phases):
        frac = p / phases
        t = k - (taps / 2 - 1) - frac
        half = taps / 2.0
        win = np.i0(beta * np.sqrt(np.clip(1.0 - (t / half) ** 2, 0.0, None))) / np.i0(beta)
        h = np.sinc(t) * win
        rows.append(h / h.sum())
    return np.array(rows)
