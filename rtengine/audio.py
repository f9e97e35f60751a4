"""Audio files in and out (soundfile), streamed in chunks, and measurements."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .engine import Engine
from .errors import AudioFormatError

COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000,
                176400, 192000, 352800, 384000)
CHUNK = 65536


def open_input(path) -> sf.SoundFile:
    path = Path(path)
    if not path.exists():
        raise AudioFormatError(f"input file {path} does not exist")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFormatError(f"{path}: cannot read audio ({exc}); use WAV, FLAC, OGG, "
                               "AIFF or another format libsndfile reads") from None
    if f.samplerate not in COMMON_RATES:
        f.close()
        raise AudioFormatError(f"{path}: sample rate {f.samplerate} Hz is not supported; "
                               f"resample to one of {', '.join(map(str, COMMON_RATES))} Hz")
    return f


SFC_SET_ADD_PEAK_CHUNK = 0x1050


def reproducible(out: sf.SoundFile) -> sf.SoundFile:
    """Leave out the PEAK chunk libsndfile adds to float WAV/AIFF files: it holds the time
    of writing, so the same audio written twice would differ.  Call right after opening."""
    try:
        sf._snd.sf_command(out._file, SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
    except AttributeError:                       # a soundfile without these internals
        pass
    return out


def write_audio(path, data: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write (channels, frames) audio reproducibly (see :func:`reproducible`)."""
    x = np.asarray(data)
    with reproducible(sf.SoundFile(str(path), "w", samplerate=int(sample_rate),
                                   channels=x.shape[0] if x.ndim == 2 else 1,
                                   subtype=subtype)) as out:
        out.write(x.T)


def render_file(engine: Engine, in_path, out_path, subtype: str | None = None,
                progress: Callable[[int], None] | None = None) -> dict:
    """Stream ``in_path`` through ``engine`` into ``out_path``.

    The output has the input's length, channel count and sample rate, and is
    latency-compensated: the first ``engine.latency`` frames are dropped and
    the chain is flushed with silence at the end.  Returns a small report.
    """
    src, dst = Path(in_path), Path(out_path)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise AudioFormatError(f"{out_path}: the output would overwrite the input it is read "
                               "from; choose another output file")
    with open_input(in_path) as f:
        if f.channels != engine.channels or f.samplerate != engine.sample_rate:
            raise AudioFormatError(f"{in_path}: {f.channels} ch at {f.samplerate} Hz, but the "
                                   f"engine is {engine.channels} ch at "
                                   f"{engine.sample_rate:g} Hz")
        out_path = Path(out_path)
        if subtype is None and sf.check_format(_format_for(out_path), f.subtype):
            subtype = f.subtype                  # keep the input's sample format
        total = f.frames
        lat = engine.latency
        engine.reset()
        bad_before = engine.counters["nonfinite_in"]
        buf = np.zeros((engine.channels, CHUNK), dtype=np.float32)
        try:
            out = reproducible(sf.SoundFile(str(out_path), "w", samplerate=f.samplerate,
                                            channels=f.channels, subtype=subtype))
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioFormatError(f"{out_path}: cannot write audio ({exc}); choose an output "
                                   "extension such as .wav or .flac") from None
        skip = lat
        written = 0
        read = 0
        peak_in = peak_out = 0.0
        with out:
            while written < total:
                data = f.read(CHUNK, dtype="float32", always_2d=True)
                n = data.shape[0]
                read += n
                if n == 0:                       # flush the latency with silence
                    n = min(CHUNK, skip + total - written)
                    buf[:, :n] = 0.0
                else:
                    peak_in = max(peak_in, float(np.nanmax(np.abs(data), initial=0.0)))
                    buf[:, :n] = data.T
                engine.process(buf[:, :n], out=buf[:, :n])
                block = buf[:, :n]
                if skip:
                    drop = min(skip, n)
                    block = block[:, drop:]
                    skip -= drop
                keep = min(block.shape[1], total - written)
                if keep > 0:
                    chunk = block[:, :keep]
                    peak_out = max(peak_out, float(np.abs(chunk).max(initial=0.0)))
                    out.write(chunk.T)
                    written += keep
                if progress is not None:
                    progress(min(read, total))
    return {"frames": total, "sample_rate": engine.sample_rate, "channels": engine.channels,
            "latency": lat, "peak_in": peak_in, "peak_out": peak_out,
            "nonfinite_in": engine.counters["nonfinite_in"] - bad_before}


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF",
            "w64": "W64", "caf": "CAF"}.get(ext, "WAV")


def true_peak_db(x: np.ndarray, oversample: int = 8, taps_per_phase: int = 48) -> float:
    """True peak (dBTP) of a (channels, frames) signal, measured by polyphase
    oversampling with a long Kaiser-windowed sinc (scipy.signal), independently
    of the limiter's own detector; for tests and reports."""
    from scipy.signal import firwin, upfirdn
    x = np.asarray(x, dtype=np.float64)
    h = firwin(oversample * taps_per_phase + 1, 1.0 / oversample, window=("kaiser", 9.0))
    up = upfirdn(h * oversample, x, up=oversample, axis=-1)
    peak = max(float(np.abs(up).max(initial=0.0)), float(np.abs(x).max(initial=0.0)))
    return 20.0 * np.log10(max(peak, 1e-12))
