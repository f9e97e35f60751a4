"""State layouts of the kernels (the Python mirror of kernels/c/rtk.h).

Each ``*_state`` function allocates a kernel's float64 state array (control
thread, may allocate); each ``*_reset`` clears it in place (no allocation).
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from .design import IDENTITY, channel_weights, hf_guard, k_weighting, true_peak_fir

BQ_HDR = 8
LIM_TAPS = 32
LIM_HDR = 20
DELAY_HDR = 4
LM_HDR = 32
LM_RING = 300
LM_TP_TAPS = 48
LM_BINS = 10000
MS_HDR = 24
MS_LANES = 10
DN_HDR = 16
BAL_HDR = 20
BAL_Q = 4.32
BAL_SHELF_Q = 0.7071067811865476
DN_FRAME_HOPS = 4


# ---- biquad cascade -------------------------------------------------------
def biquad_blob_size(nsec: int) -> int:
    return 2 + 5 * nsec


def biquad_state(nch: int, nsec: int, sample_rate: float) -> np.ndarray:
    n = BQ_HDR + biquad_blob_size(nsec) + 10 * nsec + 2 * nch * nsec
    st = np.zeros(n, dtype=np.float64)
    st[0] = sample_rate
    st[1] = nsec
    biquad_reset(st)
    return st


def biquad_blob(st: np.ndarray) -> np.ndarray:
    """View of the blob region the runner writes published coefficients into."""
    nsec = int(st[1])
    return st[BQ_HDR:BQ_HDR + biquad_blob_size(nsec)]


def biquad_pack(gen: float, ramp_len: int, sections) -> np.ndarray:
    """A blob: generation, ramp length in samples, then b0 b1 b2 a1 a2 per section."""
    flat = np.asarray(sections, dtype=np.float64).reshape(-1)
    return np.concatenate(([float(gen), float(ramp_len)], flat))


def biquad_reset(st: np.ndarray) -> None:
    """Coefficients jump to the published target; filter memory is cleared."""
    nsec = int(st[1])
    blob = biquad_blob(st)
    cur0 = BQ_HDR + biquad_blob_size(nsec)
    if blob[0] == 0.0:                       # nothing published yet: identity
        blob[2:] = np.tile(IDENTITY, nsec)
    st[cur0:cur0 + 5 * nsec] = blob[2:]
    st[cur0 + 5 * nsec:] = 0.0               # step and z
    st[2] = blob[0]
    st[3] = 0.0


def biquad_z(st: np.ndarray, nch: int) -> np.ndarray:
    nsec = int(st[1])
    z0 = BQ_HDR + biquad_blob_size(nsec) + 10 * nsec
    return st[z0:z0 + 2 * nch * nsec]


# ---- gain -------------------------------------------------------------------
def gain_state(sample_rate: float) -> np.ndarray:
    st = np.zeros(8, dtype=np.float64)
    st[0] = sample_rate
    gain_reset(st)
    return st


def gain_reset(st: np.ndarray) -> None:
    st[1:] = 0.0
    st[1] = np.nan                           # force coefficient computation
    st[2] = np.nan


# ---- compressor -------------------------------------------------------------
COMP_STATE = 8


def compressor_state(sample_rate: float, max_block: int) -> np.ndarray:
    st = np.zeros(COMP_STATE + int(max_block), dtype=np.float64)
    st[0] = sample_rate
    st[6] = max_block
    compressor_reset(st)
    return st


def compressor_reset(st: np.ndarray) -> None:
    st[1:6] = 0.0
    st[2] = np.nan               # force the time constants to be computed
    st[4] = np.nan
    st[COMP_STATE:] = 0.0


# ---- limiter ----------------------------------------------------------------
def lookahead_frames(lookahead_ms: float, sample_rate: float) -> int:
    """A limiter lookahead in frames (at least one)."""
    return max(1, int(round(lookahead_ms * 1e-3 * sample_rate)))


def limiter_latency(lookahead: int) -> int:
    return lookahead + LIM_TAPS // 2 + 2


def limiter_state_size(nch: int, lookahead: int, max_block: int) -> int:
    """Sizes in doubles (see rtk.h); float32 regions use as many doubles as they
    have floats (half used), so every region starts on a double."""
    L = int(lookahead)
    D, W, B = limiter_latency(L), L + 5, L + 1
    return LIM_HDR + 4 * LIM_TAPS + nch * (LIM_TAPS + max_block) + nch * D + B + 2 * W \
        + 4 * max_block


def limiter_state(nch: int, sample_rate: float, lookahead: int, max_block: int) -> np.ndarray:
    L = int(lookahead)
    if L < 1:
        raise ValueError(f"limiter lookahead must be at least 1 sample, got {L}")
    st = np.zeros(limiter_state_size(nch, L, max_block), dtype=np.float64)
    st[0] = sample_rate
    st[1] = L
    st[9] = nch
    st[12] = max_block
    # phases 1..3 as float32 rows of taps, stored in the (double) fir region
    fir = true_peak_fir(LIM_TAPS, 4, beta=4.0).astype(np.float32)
    st[LIM_HDR:LIM_HDR + 4 * LIM_TAPS].view(np.float32)[:3 * LIM_TAPS] = fir.reshape(-1)
    # bound on |interpolated| / max|x| (float sums: a little margin for rounding)
    st[17] = float(np.abs(fir.astype(np.float64)).sum(axis=1).max()) * (1 + 1e-5)
    limiter_reset(st)
    return st


def limiter_reset(st: np.ndarray) -> None:
    L, nch = int(st[1]), int(st[9])
    D, W, B = limiter_latency(L), L + 5, L + 1
    st[2] = 0.0                  # frame counter
    st[3] = 1.0                  # env
    st[4] = float(B)             # box sum (box full of ones)
    st[5] = 1.0                  # running prefix minimum of r
    st[6] = 1.0                  # last window minimum
    st[7] = np.nan               # last release ms
    st[8] = 0.0
    st[10] = 0.0
    st[11] = 0.0
    st[13] = np.nan              # last ceiling (dB)
    st[14] = 1.0                 # input gain (linear)
    st[15] = 0.0                 # input gain (dB)
    st[16] = 0.0                 # frames of unity gain in a row
    mb = int(st[12])
    off = LIM_HDR + 4 * LIM_TAPS
    st[off:off + nch * (LIM_TAPS + mb + D)] = 0.0
    off += nch * (LIM_TAPS + mb + D)
    st[off:off + B + 2 * W] = 1.0    # box, current-run r, suffix minima: no reduction


# ---- delay ------------------------------------------------------------------
def delay_state(nch: int, delay: int, sample_rate: float = 0.0) -> np.ndarray:
    d = max(int(delay), 0)
    st = np.zeros(DELAY_HDR + nch * d, dtype=np.float64)
    st[0] = sample_rate
    st[1] = d
    return st


def delay_reset(st: np.ndarray) -> None:
    st[2:] = 0.0


# ---- loudness meter -----------------------------------------------------------
# header slots of the meter's results (rtk.h)
LM_MOMENTARY, LM_SHORT_TERM, LM_INTEGRATED, LM_RANGE = 8, 9, 10, 11
LM_TRUE_PEAK, LM_SAMPLE_PEAK, LM_MOMENTARY_MAX, LM_SHORT_TERM_MAX = 12, 13, 14, 15


def loudness_sub(sample_rate: float) -> int:
    """Samples per 10 ms sub-block."""
    return max(1, int(round(sample_rate / 100.0)))


def loudness_state_size(nch: int, sample_rate: float) -> int:
    sub = loudness_sub(sample_rate)
    return (LM_HDR + nch + 4 * nch + LM_RING + 3 * LM_TP_TAPS
            + nch * (LM_TP_TAPS - 1 + sub) + 4 * LM_BINS)


def loudness_init(st: np.ndarray, nch: int, sample_rate: float) -> None:
    """Fill a meter state (a float64 array of ``loudness_state_size``)."""
    st[:] = 0.0
    st[0] = sample_rate
    st[1] = nch
    st[2] = loudness_sub(sample_rate)
    shelf, hp = k_weighting(sample_rate)
    st[18:28] = shelf + hp
    st[LM_HDR:LM_HDR + nch] = channel_weights(nch)
    taps0 = LM_HDR + 5 * nch + LM_RING
    st[taps0:taps0 + 3 * LM_TP_TAPS] = true_peak_fir(LM_TP_TAPS, 4, beta=10.0).reshape(-1)
    loudness_reset(st)


def loudness_state(nch: int, sample_rate: float) -> np.ndarray:
    st = np.zeros(loudness_state_size(nch, sample_rate), dtype=np.float64)
    loudness_init(st, nch, sample_rate)
    return st


def loudness_reset(st: np.ndarray) -> None:
    """Forget all audio: meters undefined (-inf), peaks 0, histograms empty."""
    nch = int(st[1])
    st[3:18] = 0.0
    st[[LM_MOMENTARY, LM_SHORT_TERM, LM_INTEGRATED, LM_MOMENTARY_MAX,
        LM_SHORT_TERM_MAX]] = -np.inf
    st[LM_HDR + nch:LM_HDR + 5 * nch + LM_RING] = 0.0           # filter memory, ring
    st[LM_HDR + 5 * nch + LM_RING + 3 * LM_TP_TAPS:] = 0.0     # history, histograms


# ---- master -------------------------------------------------------------------
def master_state(nch: int, sample_rate: float, lookahead: int, max_block: int) -> np.ndarray:
    """The master's state: header, normalised ring, then the compressor, the
    limiter, the two meters and the scratch lanes (offsets in the header)."""
    comp = compressor_state(sample_rate, max_block)
    guard = hf_guard(sample_rate)
    lp = biquad_state(nch, len(guard), sample_rate)
    biquad_blob(lp)[:] = biquad_pack(1, 0, guard)
    lim = limiter_state(nch, sample_rate, lookahead, max_block)
    msize = loudness_state_size(nch, sample_rate)
    off_ring = MS_HDR
    off_comp = off_ring + LM_RING
    off_lp = off_comp + comp.size
    off_lim = off_lp + lp.size
    off_in = off_lim + lim.size
    off_out = off_in + msize
    off_lanes = off_out + msize
    size = off_lanes + (MS_LANES * int(max_block) + 1) // 2
    st = np.zeros(size, dtype=np.float64)
    st[0] = sample_rate
    st[1] = nch
    st[2] = max_block
    st[3], st[4], st[5], st[6], st[7] = off_comp, off_lim, off_in, off_out, off_lanes
    st[15] = off_ring
    st[16] = off_lp
    st[off_comp:off_lp] = comp
    st[off_lp:off_lim] = lp
    st[off_lim:off_in] = lim
    loudness_init(st[off_in:off_out], nch, sample_rate)
    loudness_init(st[off_out:off_lanes], nch, sample_rate)
    master_reset(st, 0.0)
    return st


def master_part(st: np.ndarray, part: str) -> np.ndarray:
    """A view of one part of a master state: "compressor", "guard" (the low
    pass), "limiter", "meter_in" or "meter_out"."""
    idx = {"compressor": 3, "limiter": 4, "meter_in": 5, "meter_out": 6, "guard": 16}[part]
    ends = sorted(int(st[k]) for k in (3, 4, 5, 6, 7, 16))
    a = int(st[idx])
    return st[a:ends[ends.index(a) + 1]]


def master_reset(st: np.ndarray, gain_db: float) -> None:
    """Forget all audio; the gain starts at ``gain_db``."""
    compressor_reset(master_part(st, "compressor"))
    biquad_reset(master_part(st, "guard"))
    limiter_reset(master_part(st, "limiter"))
    loudness_reset(master_part(st, "meter_in"))
    loudness_reset(master_part(st, "meter_out"))
    st[8] = gain_db
    st[9:15] = 0.0
    st[int(st[15]):int(st[15]) + LM_RING] = 0.0


# ---- denoiser -------------------------------------------------------------------
_PLANNER = threading.Lock()          # the FFTW planner is not thread-safe


def denoise_hop(sample_rate: float) -> int:
    """Samples per STFT hop (5 ms); the latency is two hops."""
    return max(8, int(round(0.005 * sample_rate)))


def denoise_latency(sample_rate: float) -> int:
    return 2 * denoise_hop(sample_rate)


def denoise_windows(h: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric analysis window (n) and synthesis window (2h) whose product
    over the frame's last 2h samples is a periodic Hann window of 2h, so
    frames overlap-add to unity at hop h (Mauler and Martin 2007)."""
    m = 2 * h
    long = n - h                                   # rising part of the analysis window
    wa = np.empty(n)
    i = np.arange(long)
    wa[:long] = np.sqrt(0.5 - 0.5 * np.cos(np.pi * i / long))
    j = np.arange(h, m)
    wa[long:] = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * j / m))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)
    ws = np.zeros(m)
    nz = wa[n - m:] > 0
    ws[nz] = hann[nz] / wa[n - m:][nz]
    return wa, ws


# the learned band gains (kernels/c/denoise.c): a region after the rest
DNL_HDR = 8
DNL_MIN_RATE = 16000            # below, the bands up to 8 kHz do not fit: statistical gains
DNL_FEATURE_FLOOR_DB = -25.0    # the floor of the statistical log gain the network sees
DNL_MIX = ("mix_learned", "mix_statistical")
DNL_WEIGHTS = ("mu", "sd", "w1", "b1", "wih", "bih", "whh", "bhh", "w2", "b2")


def denoise_band_edges(sample_rate: float, edges_hz) -> np.ndarray:
    """The learned gains' band edges in bins of the denoiser's STFT at this rate."""
    h = denoise_hop(sample_rate)
    n = DN_FRAME_HOPS * h
    edges = np.round(np.asarray(edges_hz, dtype=np.float64) * n / sample_rate).astype(np.int64)
    return np.minimum(edges, n // 2 + 1)


def _dnl_size(k: int, nb: int, nf: int, hid: int) -> int:
    return (DNL_HDR + nb + 1 + 2 * k + 2 * nf + hid * nf + hid + 2 * (3 * hid * hid + 3 * hid)
            + nb * hid + nb + hid + hid + 6 * hid + nf + nb + k)


def denoise_state(nch: int, sample_rate: float, model=None) -> np.ndarray:
    """A denoiser state with its FFTW plans (destroyed with the array).
    ``model``: the learned band gains' weights (a mapping of arrays: band
    edges in Hz and the network's layers, see rtengine/models/denoise-gru.md)
    or None for the statistical gains alone; below 16 kHz the model is not
    used (its bands reach 8 kHz)."""
    from ._ck import ffi, lib
    h = denoise_hop(sample_rate)
    n = DN_FRAME_HOPS * h
    k = n // 2 + 1
    base = DN_HDR + n + 2 * h + nch * (n + 3 * h) + 7 * k + n + nch * 2 * k + k
    extra = 0
    if model is not None and sample_rate >= DNL_MIN_RATE:
        nb, hid = len(model["b2"]), len(model["b1"])
        nf = len(model["mu"])
        extra = _dnl_size(k, nb, nf, hid)
    st = np.zeros(base + extra, dtype=np.float64)
    st[0] = sample_rate
    st[1] = nch
    st[2] = n
    st[3] = h
    st[8] = k
    wa, ws = denoise_windows(h, n)
    st[DN_HDR:DN_HDR + n] = wa
    st[DN_HDR + n:DN_HDR + n + 2 * h] = ws
    if extra:
        st[11] = base
        _dnl_fill(st[base:], model, sample_rate, k, nb, nf, hid)
    ptr = ffi.cast("double *", st.ctypes.data)
    with _PLANNER:
        if lib.rtk_dn_plan(ptr) != 0:
            raise MemoryError("FFTW could not plan the denoiser's transforms")
    # FFTW's execute functions, for the numba kernel (which calls them by address)
    st[13:15].view(np.int64)[:] = _fftw_execute_addresses()
    weakref.finalize(st, _unplan, int(ffi.cast("uintptr_t", ptr)))
    denoise_reset(st)
    return st


def _dnl_fill(r: np.ndarray, model, sample_rate: float, k: int, nb: int, nf: int,
              hid: int) -> None:
    """Header, band edges, interpolation and weights of the learned region."""
    edges = denoise_band_edges(sample_rate, model["edges_hz"])
    if len(edges) != nb + 1 or np.any(np.diff(edges) <= 0) or nf != 4 * nb or nf > 3 * hid:
        raise ValueError(f"denoise model: {nb} bands need {nb + 1} increasing edges and "
                         f"{4 * nb} features at {sample_rate:g} Hz")
    top = int(edges[-1])
    mix = [float(np.asarray(model[k])) for k in DNL_MIX]
    if not all(0.0 <= m <= 2.0 for m in mix):
        raise ValueError(f"denoise model: mix_learned and mix_statistical must be within "
                         f"0..2, got {mix}")
    r[:DNL_HDR] = 0.0
    r[0], r[1], r[2], r[3], r[4] = nb, nf, hid, top, 1.0
    r[5], r[6] = mix
    gmax = float(np.asarray(model.get("gain_max", 1.0)))
    if not 1.0 <= gmax <= 100.0:
        raise ValueError(f"denoise model: gain_max must be within 1..100, got {gmax}")
    r[7] = gmax
    at = DNL_HDR
    r[at:at + nb + 1] = edges
    at += nb + 1
    # each bin below the top edge: the band centre at or below it and the weight
    # of the next one (linear interpolation between centres, flat at the ends)
    centre = 0.5 * (edges[:-1] + edges[1:] - 1)
    i = np.arange(k, dtype=np.float64)
    lo = np.clip(np.searchsorted(centre, i, side="right") - 1, 0, nb - 2)
    w = np.clip((i - centre[lo]) / (centre[lo + 1] - centre[lo]), 0.0, 1.0)
    r[at:at + k] = lo
    r[at + k:at + 2 * k] = w
    at += 2 * k
    shapes = {"mu": (nf,), "sd": (nf,), "w1": (hid, nf), "b1": (hid,), "wih": (3 * hid, hid),
              "bih": (3 * hid,), "whh": (3 * hid, hid), "bhh": (3 * hid,), "w2": (nb, hid),
              "b2": (nb,)}
    for name in DNL_WEIGHTS:
        a = np.asarray(model[name], dtype=np.float64)
        if a.shape != shapes[name] or not np.all(np.isfinite(a)):
            raise ValueError(f"denoise model: {name} has shape {a.shape}, expected "
                             f"{shapes[name]} and finite values")
        if name == "sd" and np.any(a <= 0):
            raise ValueError("denoise model: sd must be positive")
        r[at:at + a.size] = a.ravel()
        at += a.size
    assert at + 8 * hid + nf + nb + k == len(r)


def denoise_features(st: np.ndarray) -> np.ndarray:
    """The learned gains' input features of the last frame (a view), for training."""
    r = int(st[11])
    if not r:
        raise ValueError("this denoiser state has no learned region")
    nb, nf = int(st[r]), int(st[r + 1])
    at = len(st) - int(st[8]) - nb - nf
    return st[at:at + nf]


def denoise_band_gains(st: np.ndarray) -> np.ndarray:
    """The network's band gains of the last frame (a view), for checks."""
    r = int(st[11])
    if not r:
        raise ValueError("this denoiser state has no learned region")
    end = len(st) - int(st[8])
    return st[end - int(st[r]):end]


def _fftw_execute_addresses() -> tuple[int, int]:
    """Addresses of fftw_execute_dft_r2c and fftw_execute_dft_c2r in the FFTW
    library the C kernels are linked with."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("fftw3") or "libfftw3.so.3")
    return (ctypes.cast(lib.fftw_execute_dft_r2c, ctypes.c_void_p).value,
            ctypes.cast(lib.fftw_execute_dft_c2r, ctypes.c_void_p).value)


def _unplan(address: int) -> None:
    from ._ck import ffi, lib
    with _PLANNER:
        lib.rtk_dn_unplan(ffi.cast("double *", address))


def denoise_reset(st: np.ndarray) -> None:
    """Forget all audio (the plans and the window stay)."""
    n, h = int(st[2]), int(st[3])
    st[4:6] = 0.0
    st[9:11] = 0.0                         # [11]: the learned region stays
    st[12] = 0.0
    st[15] = 0.0
    r = int(st[11])
    st[DN_HDR + n + 2 * h:r if r else len(st)] = 0.0
    if r:                                  # the network's memory and scratch
        nb, nf, hid = int(st[r]), int(st[r + 1]), int(st[r + 2])
        st[len(st) - int(st[8]) - nb - nf - 8 * hid:] = 0.0


# ---- balance ----------------------------------------------------------------------
def balance_bands(sample_rate: float) -> np.ndarray:
    """Third-octave band centres (base 10) from 40 Hz to 16 kHz, those whose
    upper edge stays under 0.45 fs."""
    fc = 1000.0 * 10.0 ** (np.arange(-14, 13) / 10.0)
    return fc[fc * 10 ** 0.05 < 0.45 * sample_rate]


def balance_fft(sample_rate: float) -> int:
    """Analysis frame: a power of two near 0.34 s (16384 at 48 kHz)."""
    return int(min(16384, max(1024, 2 ** round(np.log2(0.34 * sample_rate)))))


def balance_sections(sample_rate: float, gains_db) -> list[tuple]:
    """The balance cascade for command gains (dB per band): a low shelf, peaks,
    a high shelf (as kernels/c/balance.c builds it)."""
    from .design import section
    fc = balance_bands(sample_rate)
    out = []
    for j, (f, g) in enumerate(zip(fc, gains_db)):
        kind = "lowshelf" if j == 0 else ("highshelf" if j == fc.size - 1 else "peak")
        q = BAL_SHELF_Q if kind != "peak" else BAL_Q
        out.append(section(kind, f, sample_rate, q, float(g)))
    return out


def balance_edges(sample_rate: float) -> np.ndarray:
    """FFT bin edges of the bands (bands + 1 integers): band b sums bins
    edges[b] .. edges[b + 1] - 1, at least one each."""
    fc = balance_bands(sample_rate)
    n = balance_fft(sample_rate)
    edges = np.round(np.append(fc * 10 ** -0.05, fc[-1] * 10 ** 0.05) * n / sample_rate)
    edges = edges.astype(np.int64)
    for b in range(1, edges.size):
        edges[b] = max(edges[b], edges[b - 1] + 1)
    return edges


def balance_interaction(sample_rate: float, g0: float = 6.0) -> np.ndarray:
    """Interaction matrix: response (dB, per dB of command) of each band's
    filter at every band centre."""
    from .design import response
    fc = balance_bands(sample_rate)
    b = np.empty((fc.size, fc.size))
    for j in range(fc.size):
        g = np.zeros(fc.size)
        g[j] = g0
        sec = [balance_sections(sample_rate, g)[j]]
        b[:, j] = 20 * np.log10(np.abs(response(sec, fc, sample_rate))) / g0
    return b


def balance_state(nch: int, sample_rate: float, target_db) -> np.ndarray:
    """A balance state with its FFTW plan (destroyed with the array);
    ``target_db`` holds the target level of every band of ``balance_bands``."""
    from ._ck import ffi, lib
    fc = balance_bands(sample_rate)
    nb = fc.size
    n = balance_fft(sample_rate)
    h = n // 4
    k = n // 2 + 1
    casc_a = biquad_state(nch, nb, sample_rate)
    casc_b = biquad_state(1, nb, sample_rate)
    body = (n + nch * (n + h) + 2 * k + n + (nb + 1) + nb + 4 * nb + nb * nb + 6 * nb + 5 * nb
            + 2 * k + 5 * nb)
    off_a = BAL_HDR + body
    off_b = off_a + casc_a.size
    st = np.zeros(off_b + casc_b.size, dtype=np.float64)
    st[0], st[1], st[2], st[3] = sample_rate, nch, n, h
    st[7], st[8] = nb, BAL_Q
    st[12], st[13] = off_a, off_b
    o = BAL_HDR
    st[o:o + n] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)        # Hann
    o += n + nch * (n + h) + 2 * k + n
    st[o:o + nb + 1] = balance_edges(sample_rate)
    o += nb + 1
    st[o:o + nb] = np.asarray(target_db, dtype=np.float64)
    o += nb
    w = 2 * np.pi * fc / sample_rate
    st[o:o + 4 * nb] = np.stack([np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w)],
                                axis=1).reshape(-1)
    o += 4 * nb
    st[o:o + nb * nb] = np.linalg.inv(balance_interaction(sample_rate)).reshape(-1)
    st[off_a:off_b] = casc_a
    st[off_b:] = casc_b
    _balance_flat(st)[:] = np.asarray(balance_sections(sample_rate, np.zeros(nb))).reshape(-1)
    ptr = ffi.cast("double *", st.ctypes.data)
    with _PLANNER:
        if lib.rtk_bal_plan(ptr) != 0:
            raise MemoryError("FFTW could not plan the balance analysis")
    st[15:16].view(np.int64)[0] = _fftw_execute_addresses()[0]   # for the numba twin
    weakref.finalize(st, _bal_unplan, int(ffi.cast("uintptr_t", ptr)))
    balance_reset(st)
    return st


def _bal_unplan(address: int) -> None:
    from ._ck import ffi, lib
    with _PLANNER:
        lib.rtk_bal_unplan(ffi.cast("double *", address))


def balance_regions(st: np.ndarray) -> dict[str, np.ndarray]:
    """Views of a balance state: target, measured power, correction and
    command gains (each (2, bands): linked or mid, then side)."""
    nch, n, h, nb = int(st[1]), int(st[2]), int(st[3]), int(st[7])
    k = n // 2 + 1
    o = BAL_HDR + n + nch * (n + h) + 2 * k + n + nb + 1
    target = st[o:o + nb]
    o += nb + 4 * nb + nb * nb
    meas = st[o:o + 2 * nb].reshape(2, nb)
    corr = st[o + 2 * nb:o + 4 * nb].reshape(2, nb)
    cmd = st[o + 4 * nb:o + 6 * nb].reshape(2, nb)
    return {"target": target, "measured": meas, "correction": corr, "command": cmd}


def _balance_flat(st: np.ndarray) -> np.ndarray:
    """The cascade at 0 dB (5 coefficients per band), kept for reset()."""
    nb = int(st[7])
    return st[int(st[12]) - 5 * nb:int(st[12])]


def balance_reset(st: np.ndarray) -> None:
    """Forget all audio: flat cascades, nothing measured."""
    nch, n, h = int(st[1]), int(st[2]), int(st[3])
    st[4:6] = 0.0
    st[9:12] = 0.0
    st[14] = 0.0
    st[16:20] = 0.0                              # no analysis under way
    st[BAL_HDR + n:BAL_HDR + n + nch * (n + h)] = 0.0
    nb, k = int(st[7]), n // 2 + 1
    o = BAL_HDR + n + nch * (n + h) + 2 * k + n + nb + 1 + nb + 4 * nb + nb * nb
    st[o:o + 6 * nb] = 0.0                       # measured, correction, command
    off_a, off_b = int(st[12]), int(st[13])
    flat = _balance_flat(st)
    for casc in (st[off_a:off_b], st[off_b:]):
        # the sections at 0 dB (not the identity coefficients): a ramp to a new
        # gain then moves smoothly in level, not all at its very end
        blob = biquad_blob(casc)
        blob[0] = -1.0
        blob[1] = 0.0
        blob[2:] = flat
        biquad_reset(casc)
