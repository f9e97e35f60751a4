"""A generated piece of music for the demo and the benchmarks: drums, bass and
chords synthesised from a seed, so no audio file has to ship."""
from __future__ import annotations

import numpy as np


def _env(n: int, sr: float, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def music(seconds: float = 10.0, sample_rate: int = 48000, seed: int = 7,
          bpm: float = 112.0) -> np.ndarray:
    """Stereo (2, frames) float32, peaks near -1 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    sr = float(sample_rate)
    out = np.zeros((2, n))
    beat = int(round(60.0 / bpm * sr))
    eighth = beat // 2
    # kick on every beat: a falling sine
    k = int(0.25 * sr)
    tk = np.arange(k) / sr
    sweep = 45 * tk + 90 * 0.04 * (1 - np.exp(-tk / 0.04))
    kick = np.sin(2 * np.pi * sweep) * _env(k, sr, 0.002, 0.12)
    # snare on 2 and 4: noise through a resonance plus a body tone
    s = int(0.2 * sr)
    ts = np.arange(s) / sr
    snare = (rng.standard_normal(s) * 0.6 + np.sin(2 * np.pi * 190 * ts)) * _env(s, sr, 0.001, 0.06)
    # closed hats on eighths: bright noise
    h = int(0.05 * sr)
    hat = np.diff(rng.standard_normal(h + 1)) * _env(h, sr, 0.0005, 0.012) * 0.25
    pos, i = 0, 0
    while pos < n:
        def add(sig, at, gain, pan):
            m = min(len(sig), n - at)
            if m > 0:
                out[0, at:at + m] += sig[:m] * gain * np.sqrt(1 - pan)
                out[1, at:at + m] += sig[:m] * gain * np.sqrt(1 + pan)
        if i % 2 == 0:
            add(kick, pos, 0.9, 0.0)
            if (i // 2) % 2 == 1:
                add(snare, pos, 0.45, 0.1)
        add(hat, pos, 0.8 + 0.2 * rng.random(), -0.3)
        pos += eighth
        i += 1
    # bass and chords over a four-chord loop (A minor, F, C, G)
    roots = [55.0, 43.65, 65.41, 49.0]
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (261.63, 329.63, 392.0),
              (196.0, 246.94, 293.66)]
    bar = 4 * beat
    t = np.arange(n) / sr
    for b in range(n // bar + 1):
        a, z = b * bar, min((b + 1) * bar, n)
        if a >= n:
            break
        tt = t[a:z] - t[a]
        root = roots[b % 4]
        saw = 2 * ((root * tt) % 1.0) - 1
        bass = (0.6 * np.sin(2 * np.pi * root * tt) + 0.25 * saw) * _env(z - a, sr, 0.005, 1.5)
        out[:, a:z] += 0.35 * bass
        for f in chords[b % 4]:
            for det, ch in ((0.997, 0), (1.003, 1)):
                ph = rng.random()
                out[ch, a:z] += 0.05 * (2 * ((f * det * tt + ph) % 1.0) - 1) * _env(
                    z - a, sr, 0.08, 2.5)
    out /= np.abs(out).max() / 0.89
    return out.astype(np.float32)
