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


# ---- K-weighting (ITU-R BS.1770-4) ---------------------------------------------
# The analog prototypes behind the recommendation's 48 kHz coefficients: a high
# shelf (+4 dB, the head's acoustic effect) and the RLB high pass.
K_SHELF_F0 = 1681.974450955533
K_SHELF_GAIN_DB = 3.999843853973347
K_SHELF_Q = 0.7071752369554196
K_HP_F0 = 38.13547087602444
K_HP_Q = 0.5003270373238773


def k_weighting(sample_rate: float) -> tuple[tuple, tuple]:
    """The two K-weighting sections (b0 b1 b2 a1 a2) at ``sample_rate``, by the
    bilinear transform of the prototypes; at 48 kHz they reproduce the
    coefficients printed in BS.1770-4."""
    k = math.tan(math.pi * K_SHELF_F0 / sample_rate)
    vh = 10.0 ** (K_SHELF_GAIN_DB / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / K_SHELF_Q + k * k
    shelf = ((vh + vb * k / K_SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / K_SHELF_Q + k * k) / a0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / K_SHELF_Q + k * k) / a0)
    k = math.tan(math.pi * K_HP_F0 / sample_rate)
    a0 = 1.0 + k / K_HP_Q + k * k
    hp = (1.0, -2.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / K_HP_Q + k * k) / a0)
    return shelf, hp


def channel_weights(nch: int) -> list[float]:
    """BS.1770 channel weights: 1.0 for front channels, 1.41 for the surrounds of
    5.0 (L R C Ls Rs) and 5.1 (L R C LFE Ls Rs, the LFE left out)."""
    if nch == 5:
        return [1.0, 1.0, 1.0, 1.41, 1.41]
    if nch == 6:
        return [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]
    return [1.0] * nch


def hf_guard(sample_rate: float) -> list[tuple]:
    """The master's guard low pass before its true-peak limiter: elliptic, 8th
    order, 0.05 dB ripple up to 19.5 kHz (0.44 fs above 50 kHz), 70 dB down
    from about 20.5 kHz.  Content right under Nyquist is where a 4x true-peak
    detector reads low; without it none is left to miss."""
    from scipy.signal import ellip
    fp = 0.44 * sample_rate if sample_rate > 50000 else min(19500.0, 0.44 * sample_rate)
    sos = ellip(8, 0.05, 70, fp, fs=sample_rate, output="sos")
    return [(s[0], s[1], s[2], s[4], s[5]) for s in sos]
