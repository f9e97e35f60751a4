"""Running a contract model: frame by frame (the live processor) and whole files (offline).

Both share the STFT framing of :mod:`rtengine.stems.contract`.  A stream's output hop ``k``
holds the input samples ``[k*hop - (n_fft - hop), (k+1)*hop - (n_fft - hop))``: the frame
delays by ``n_fft - hop`` samples, and a caller that collects whole hops adds up to ``hop - 1``
more, so the algorithmic latency is one frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contract import ModelSpec, analysis_window, check_model, load_session, ola_gain

DEFAULT_THREADS = 1


def normalise(masks: np.ndarray) -> np.ndarray:
    """Masks (..., stems, bins) made to sum to one per bin (equal split where they vanish)."""
    total = masks.sum(axis=-2, keepdims=True)
    flat = total < 1e-6
    out = masks / np.where(flat, 1.0, total)
    if np.any(flat):
        out = np.where(flat, np.float32(1.0 / masks.shape[-2]), out)
    return out.astype(np.float32)


class Model:
    """A checked model and its onnxruntime session (threads set explicitly)."""

    def __init__(self, path=None, threads: int = DEFAULT_THREADS):
        from .contract import default_model
        self.path = Path(path) if path is not None else default_model()
        self.threads = int(threads)
        self.session = load_session(self.path, self.threads)
        self.spec: ModelSpec = check_model(self.path, session=self.session)
        self.out_names = [o.name for o in self.session.get_outputs()]
        self._mi = self.out_names.index("masks")

    def run(self, mag: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        """mag (frames, bins) -> (masks (frames, stems, bins) normalised, next state)."""
        res = self.session.run(None, {"mag": mag[None].astype(np.float32, copy=False),
                                      **state})
        named = dict(zip(self.out_names, res))
        nxt = {i: named[o] for i, o, _ in self.spec.states}
        return normalise(named["masks"][0]), nxt


class Stream:
    """Frame-by-frame separation of a (channels, n) stream in hops of ``spec.hop`` samples."""

    def __init__(self, model: Model, channels: int):
        self.model = model
        s = model.spec
        self.channels = int(channels)
        self.win = analysis_window(s.n_fft).astype(np.float32)
        self.syn = (analysis_window(s.n_fft) / ola_gain(s.n_fft, s.hop)).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        s = self.model.spec
        self.buf = np.zeros((self.channels, s.n_fft), dtype=np.float32)
        self.ola = np.zeros((len(s.stems), self.channels, s.n_fft), dtype=np.float32)
        self.state = s.zero_states()

    def push(self, hop: np.ndarray) -> np.ndarray:
        """One hop in (channels, hop) -> that hop's stems out (stems, channels, hop), delayed
        by ``n_fft - hop`` samples."""
        s = self.model.spec
        h = s.hop
        self.buf[:, :-h] = self.buf[:, h:]
        self.buf[:, -h:] = hop
        X = np.fft.rfft(self.buf * self.win, axis=-1)              # (C, F)
        mag = np.abs(X.mean(axis=0)).astype(np.float32)
        masks, self.state = self.model.run(mag[None], self.state)
        Y = masks[0][:, None, :] * X[None]                          # (S, C, F)
        frames = np.fft.irfft(Y, n=s.n_fft, axis=-1).astype(np.float32) * self.syn
        self.ola += frames
        out = self.ola[..., :h].copy()
        self.ola[..., :-h] = self.ola[..., h:]
        self.ola[..., -h:] = 0.0
        return out


def separate(model: Model, audio: np.ndarray, chunk_frames: int = 2048,
             progress=None) -> np.ndarray:
    """Whole-signal separation of (channels, n) audio: (stems, channels, n), time-aligned with
    the input (the frame delay removed).  The model runs on many frames per call (state carried
    between chunks of ``chunk_frames``); ``progress(frames_done, frames_total)`` is called."""
    s = model.spec
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    C, n = x.shape
    N, H = s.n_fft, s.hop
    pad = N - H
    total = n + 2 * pad
    T = (total - N) // H + 1
    if (T - 1) * H + N < total:
        T += 1
    xp = np.zeros((C, (T - 1) * H + N), dtype=np.float32)
    xp[:, pad:pad + n] = x
    win = analysis_window(N).astype(np.float32)
    syn = (analysis_window(N) / ola_gain(N, H)).astype(np.float32)
    out = np.zeros((len(s.stems), C, xp.shape[1]), dtype=np.float32)
    state = s.zero_states()
    idx = np.arange(N)[None, :]
    for t0 in range(0, T, chunk_frames):
        t1 = min(T, t0 + chunk_frames)
        starts = np.arange(t0, t1) * H
        frames = xp[:, starts[:, None] + idx] * win                 # (C, t, N)
        X = np.fft.rfft(frames, axis=-1)                            # (C, t, F)
        mag = np.abs(X.mean(axis=0)).astype(np.float32)
        masks, state = model.run(mag, state)                        # (t, S, F)
        Y = masks.transpose(1, 0, 2)[:, None] * X[None]             # (S, C, t, F)
        y = np.fft.irfft(Y, n=N, axis=-1).astype(np.float32) * syn  # (S, C, t, N)
        for j in range(t1 - t0):
            st = starts[j]
            out[:, :, st:st + N] += y[:, :, j]
        if progress is not None:
            progress(t1, T)
    return out[:, :, pad:pad + n]


def default_threads() -> int:
    """onnxruntime threads for offline work: all cores unless RTENGINE_ORT_THREADS says."""
    env = os.environ.get("RTENGINE_ORT_THREADS")
    return int(env) if env else max(1, os.cpu_count() or 1)
