"""Balance targets and measurements: the curves the ``balance`` stage aims at,
learning a curve from a reference file, third-octave spectra and the plot of
``rtengine balance plot``.

A curve is a level in dB per frequency (only its shape matters: the stage
leaves the overall level alone), interpolated linearly over log frequency and
held flat beyond its ends.  Curve files are TOML::

    # rtengine balance curve
    name = "reference.wav"
    bands_hz = [39.8, 50.1, ...]
    level_db = [2.1, 1.7, ...]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels import layout

from .errors import AudioFormatError, PluginError


@dataclass(frozen=True)
class Curve:
    name: str
    freqs: tuple[float, ...]
    levels_db: tuple[float, ...]

    def at(self, freqs) -> np.ndarray:
        f = np.log10(np.asarray(freqs, dtype=float))
        return np.interp(f, np.log10(self.freqs), self.levels_db)


def _builtin(name: str, fn) -> Curve:
    f = np.geomspace(20.0, 20000.0, 61)
    return Curve(name, tuple(f), tuple(float(fn(x)) for x in f))


def _music(f: float) -> float:
    bass = 3.0 * min(1.0, max(0.0, math.log2(200.0 / f) / math.log2(200.0 / 50.0))) \
        if f < 200.0 else 0.0
    top = -2.0 * math.log2(f / 2000.0) if f > 2000.0 else 0.0
    return bass + top


CURVES = {
    "pink": _builtin("pink", lambda f: 0.0),
    "music": _builtin("music", _music),
    "warm": _builtin("warm", lambda f: -1.5 * math.log2(f / 1000.0)),
    "bright": _builtin("bright", lambda f: 1.5 * math.log2(f / 1000.0)),
}


def load_target(target: str) -> Curve:
    """A built-in curve by name, or a curve file."""
    if target in CURVES:
        return CURVES[target]
    path = Path(target)
    if not path.exists():
        raise PluginError(f"balance target {target!r} is neither a built-in curve "
                          f"({', '.join(CURVES)}) nor an existing curve file; make one with "
                          "rtengine balance learn REF.wav CURVE.toml")
    import tomllib
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        freqs = [float(x) for x in doc["bands_hz"]]
        levels = [float(x) for x in doc["level_db"]]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise PluginError(f"{path}: not a balance curve ({type(exc).__name__}: {exc}); it needs "
                          "bands_hz and level_db lists of numbers") from None
    if len(freqs) != len(levels) or len(freqs) < 2:
        raise PluginError(f"{path}: bands_hz and level_db must be lists of the same length "
                          f"(at least 2), got {len(freqs)} and {len(levels)}")
    if any(not math.isfinite(v) for v in freqs + levels) or any(f <= 0 for f in freqs) \
            or any(b <= a for a, b in zip(freqs, freqs[1:])):
        raise PluginError(f"{path}: bands_hz must be positive and increasing and every value "
                          "finite")
    return Curve(str(doc.get("name", path.stem)), tuple(freqs), tuple(levels))


class SpectrumMeter:
    """The long-term third-octave spectrum of a signal fed in pieces of any
    length, with the stage's analysis (Hann frames, quarter hops, frames under
    -70 dBFS left out; channels summed).  Memory: one frame per channel."""

    def __init__(self, sample_rate: float, channels: int):
        self.sample_rate = float(sample_rate)
        self.fc = layout.balance_bands(sample_rate)
        self.n = layout.balance_fft(sample_rate)
        self.h = self.n // 4
        self.edges = layout.balance_edges(sample_rate)
        self.win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n) / self.n)
        self.buf = np.zeros((channels, 0))
        self.acc = np.zeros(self.fc.size)
        self.frames = 0

    def feed(self, x: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, np.atleast_2d(np.asarray(x, np.float64))], axis=1)
        while self.buf.shape[1] >= self.n:
            seg = self.buf[:, :self.n]
            if np.mean(seg ** 2) >= 1e-7:
                p = (np.abs(np.fft.rfft(seg * self.win, axis=1)) ** 2).sum(axis=0)
                self.acc += np.array([p[self.edges[b]:self.edges[b + 1]].sum()
                                      for b in range(self.fc.size)])
                self.frames += 1
            self.buf = self.buf[:, self.h:]

    def level_db(self) -> np.ndarray:
        """Power per band in dB; AudioFormatError when every frame was silent."""
        if self.frames == 0:
            if self.buf.shape[1]:                 # shorter than one frame: pad it once
                short, self.buf = self.buf, np.zeros((self.buf.shape[0], 0))
                self.feed(np.pad(short, ((0, 0), (0, self.n - short.shape[1]))))
            if self.frames == 0:
                raise AudioFormatError("the signal is silent (every frame under -70 dBFS); "
                                       "there is no spectrum to measure")
        return 10 * np.log10(self.acc / self.frames + 1e-30)


def band_spectrum(x: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(band centres, long-term power per third-octave band in dB) of a
    (channels, frames) or mono signal (see SpectrumMeter)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = SpectrumMeter(sample_rate, x.shape[0])
    m.feed(x)
    return m.fc, m.level_db()


def file_spectrum(path) -> tuple[np.ndarray, np.ndarray]:
    """band_spectrum of an audio file, read in chunks."""
    from .audio import CHUNK, open_input
    with open_input(path) as f:
        m = SpectrumMeter(f.samplerate, f.channels)
        while True:
            data = f.read(CHUNK, dtype="float32", always_2d=True)
            if not len(data):
                break
            m.feed(data.T)
    return m.fc, m.level_db()


def learn(ref_path, curve_path) -> Curve:
    """Measure a reference file's long-term spectrum and write it as a curve."""
    from .provenance import sha256
    fc, level = file_spectrum(ref_path)
    level = level - level.mean()
    lines = ["# rtengine balance curve: long-term third-octave spectrum (dB, mean removed)",
             f"# learnt from {Path(ref_path).name} (sha256 {sha256(ref_path)})",
             f'name = "{Path(ref_path).name}"',
             "bands_hz = [" + ", ".join(f"{v:.1f}" for v in fc) + "]",
             "level_db = [" + ", ".join(f"{v:.2f}" for v in level) + "]", ""]
    Path(curve_path).write_text("\n".join(lines), encoding="utf-8")
    return load_target(str(curve_path))


def plot(before: np.ndarray, after: np.ndarray, sample_rate: float, curve: Curve, png,
         title: str = "") -> Path:
    """Third-octave spectra before and after against the target (each shifted
    to the same mean), as a PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AudioFormatError("plotting needs matplotlib: pip install matplotlib") from None
    fc, b = band_spectrum(before, sample_rate)
    _, a = band_spectrum(after, sample_rate)
    t = curve.at(fc)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.semilogx(fc, b - b.mean(), "o-", label="before")
    ax.semilogx(fc, a - a.mean(), "o-", label="after")
    ax.semilogx(fc, t - t.mean(), "k--", label=f"target ({curve.name})")
    rms_b = float(np.sqrt(np.mean((b - b.mean() - t + t.mean()) ** 2)))
    rms_a = float(np.sqrt(np.mean((a - a.mean() - t + t.mean()) ** 2)))
    ax.set_title(title or f"distance to target: {rms_b:.2f} dB RMS before, {rms_a:.2f} after")
    ax.set_xlabel("frequency (Hz), third-octave bands")
    ax.set_ylabel("level (dB, mean removed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def distance_db(x: np.ndarray, sample_rate: float, curve: Curve) -> float:
    """RMS distance (dB) between a signal's third-octave spectrum and a curve,
    both with their mean removed."""
    fc, s = band_spectrum(x, sample_rate)
    t = curve.at(fc)
    return float(np.sqrt(np.mean(((s - s.mean()) - (t - t.mean())) ** 2)))
