"""Loudness meter conformance: EBU Tech 3341 (loudness, true peak) and Tech 3342
(loudness range) test signals synthesised from their published definitions,
agreement with pyloudnorm and with a direct BS.1770 computation, and the live
path (the ``loudness`` stage in an engine, any block size)."""
import math

import numpy as np
import pytest
from scipy.signal import lfilter

import rtengine
from kernels.design import k_weighting
from rtengine.loudness import Meter, measure

SR = 48000
TOL_LU = 0.1                     # Tech 3341: M, S, I within +-0.1 LU
TOL_LRA = 1.0                    # Tech 3342: LRA within +-1 LU
TP_PLUS, TP_MINUS = 0.2, 0.4     # Tech 3341: true peak within +0.2 / -0.4 dB


def tone(dbfs, seconds, sr=SR, f=1000.0, channels=2, phase_deg=0.0, fade=False):
    """A sine of peak level ``dbfs`` in every channel (Tech 3341 levels are the
    sine's peak: -23 dBFS reads -23 LUFS in stereo)."""
    t = np.arange(int(round(seconds * sr))) / sr
    s = 10.0 ** (dbfs / 20.0) * np.sin(2 * np.pi * f * t + np.deg2rad(phase_deg))
    if fade:      # a 50 ms raised-cosine fade each end: no onset transient between samples
        r = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.05)
        s *= 0.5 - 0.5 * np.cos(np.pi * r)
    return np.tile(s, (channels, 1)).astype(np.float32)


def seq(*parts):
    return np.concatenate([tone(db, secs) for db, secs in parts], axis=1)


def near(got, want, tol, what):
    assert abs(got - want) <= tol, f"{what}: {got:.3f}, expected {want:.1f} +-{tol}"


# ---- Tech 3341 cases 1-6: momentary, short-term, integrated -------------------------
@pytest.mark.parametrize("level", [-23.0, -33.0])
def test_3341_cases_1_2_steady_tone(level, impl):
    r = measure(tone(level, 20.0), SR, impl)
    for name in ("momentary", "short_term", "integrated"):
        near(getattr(r, name), level, TOL_LU, f"case {1 if level == -23 else 2} {name}")


@pytest.mark.parametrize("case,parts", [
    (3, [(-36, 10), (-23, 60), (-36, 10)]),
    (4, [(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)]),
    (5, [(-26, 20), (-20, 20.1), (-26, 20)]),
])
def test_3341_cases_3_5_gating(case, parts, impl):
    near(measure(seq(*parts), SR, impl).integrated, -23.0, TOL_LU, f"case {case} integrated")


@pytest.mark.parametrize("channels,levels", [
    (5, [-28, -28, -24, -30, -30]),                 # L R C Ls Rs
    (6, [-28, -28, -24, None, -30, -30]),           # 5.1: the LFE is silent and unweighted
])
def test_3341_case_6_multichannel(channels, levels, impl):
    x = np.zeros((channels, 20 * SR), dtype=np.float32)
    for c, db in enumerate(levels):
        if db is not None:
            x[c] = tone(db, 20.0, channels=1)[0]
    near(measure(x, SR, impl).integrated, -23.0, TOL_LU, f"case 6 ({channels} channels)")


def _track(x, hop, attr, impl):
    """The meter value ``attr`` after every ``hop`` frames."""
    m, out = Meter(SR, x.shape[0], impl), []
    for a in range(0, x.shape[1], hop):
        out.append(getattr(m.feed(x[:, a:a + hop]), attr))
    return np.array(out)


def test_3341_case_9_short_term_constant_after_3s(impl):
    x = np.concatenate([seq((-20, 1.34), (-30, 1.66)) for _ in range(20)], axis=1)
    s = _track(x, SR // 100, "short_term", impl)[300:]            # from 3 s on, every 10 ms
    err = np.abs(s + 23.0).max()
    assert err <= TOL_LU, f"case 9: short-term strays {err:.3f} LU from -23.0"


def test_3341_case_12_momentary_constant_after_1s(impl):
    x = np.concatenate([seq((-20, 0.18), (-30, 0.22)) for _ in range(5)], axis=1)
    m = _track(x, SR // 100, "momentary", impl)[100:]             # from 1 s on
    err = np.abs(m + 23.0).max()
    assert err <= TOL_LU, f"case 12: momentary strays {err:.3f} LU from -23.0"


@pytest.mark.parametrize("case,window,attr", [(10, 3.0, "short_term_max"),
                                              (13, 0.4, "momentary_max")])
def test_3341_cases_10_13_burst_maximum_at_any_offset(case, window, attr, impl):
    """A burst exactly one window long at -23 dBFS, starting at 20 offsets
    that do not fall on any block grid: the maximum reads -23.0 each time."""
    for k in range(20):
        lead = 0.5 + k * 0.0173
        x = np.concatenate([np.zeros((2, int(lead * SR)), np.float32), tone(-23, window),
                            np.zeros((2, SR), np.float32)], axis=1)
        near(getattr(measure(x, SR, impl), attr), -23.0, TOL_LU,
             f"case {case}, offset {lead:.4f} s")


@pytest.mark.parametrize("case,window,attr", [(11, 3.0, "short_term_max"),
                                              (14, 0.4, "momentary_max")])
def test_3341_cases_11_14_successive_maxima(case, window, attr, impl):
    """Bursts of one window at -38, -37 ... -19 dBFS in a row, with gaps: after
    each burst the maximum reads that burst's level."""
    m = Meter(SR, 2, impl)
    gap = np.zeros((2, int(1.3 * SR)), np.float32)
    for level in range(-38, -18):
        m.feed(gap)
        m.feed(tone(level, window))
        m.feed(gap)
        near(getattr(m.value, attr), float(level), TOL_LU, f"case {case}, burst {level} dBFS")


# ---- Tech 3341 cases 15-19: true peak ------------------------------------------------
@pytest.mark.parametrize("case,freq_div,amp,phase,want", [
    (15, 4, 0.50, 0.0, -6.0),
    (16, 4, 0.50, 45.0, -6.0),
    (17, 6, 0.50, 60.0, -6.0),
    (18, 8, 0.50, 67.5, -6.0),
    (19, 4, 1.41, 45.0, 3.0),
])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_3341_cases_15_19_true_peak(case, freq_div, amp, phase, want, sr, impl):
    x = tone(20 * math.log10(amp), 3.0, sr=sr, f=sr / freq_div, phase_deg=phase, fade=True)
    r = measure(x, sr, impl)
    assert want - TP_MINUS <= r.true_peak_db <= want + TP_PLUS, (
        f"case {case} at {sr} Hz: true peak {r.true_peak_db:.3f} dBTP, expected {want} "
        f"+{TP_PLUS}/-{TP_MINUS} (sample peak {r.sample_peak_db:.2f} dBFS)")
    if case != 15:       # the samples miss the peak: sample peak reads lower
        assert r.sample_peak_db < want - 0.5


def case_20_23(sr, offset, seconds=1.0):
    """Tech 3341 cases 20-23: a tone at fs/6 of amplitude 0.5 that holds, between
    two of its rising zero crossings, one period of fs/4 at amplitude 1.0 (phase
    continuous on both sides), synthesised at 4 fs, low-pass (anti-alias)
    filtered and taken down to fs starting ``offset`` samples (at 4 fs) in, with
    10 ms fades.  Returns the stereo signal at fs and the filtered one at 4 fs."""
    from scipy.signal import firwin
    up, n = 4 * sr, int(seconds * 4 * sr)
    p6, p4 = 24, 16                      # the two periods, in samples at 4 fs
    at = (n // 2) // p6 * p6             # a rising zero crossing of the fs/6 tone
    x = 0.5 * np.sin(2 * np.pi * np.arange(n) / p6)
    x[at:at + p4] = np.sin(2 * np.pi * np.arange(p4) / p4)
    x[at + p4:] = 0.5 * np.sin(2 * np.pi * np.arange(n - at - p4) / p6)
    fade = int(0.01 * up)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    lowpass = firwin(1023, 0.49 * sr, fs=up, window=("kaiser", 12.0))
    y = np.convolve(x, lowpass, mode="same")          # linear phase, centred
    return np.tile(y[offset::4], (2, 1)).astype(np.float32), y


@pytest.mark.parametrize("case", [20, 21, 22, 23])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_3341_cases_20_23_peak_between_samples(case, sr, impl):
    """The same peak read through four sample phases: 0.0 +0.2/-0.4 dBTP each
    time (the low pass leaves the 4 fs signal's peak at -0.13 dB), while the
    sample peak ranges from -0.13 (case 20 keeps the peak sample) to -2.5 dBFS."""
    x, at_4fs = case_20_23(sr, case - 20)
    r = measure(x, sr, impl)
    assert 0.0 - TP_MINUS <= r.true_peak_db <= 0.0 + TP_PLUS, (
        f"case {case} at {sr} Hz: true peak {r.true_peak_db:.3f} dBTP, expected 0.0 "
        f"+{TP_PLUS}/-{TP_MINUS} (sample peak {r.sample_peak_db:.2f} dBFS)")
    near(r.true_peak_db, 20 * math.log10(np.abs(at_4fs).max()), 0.05,
         f"case {case}: true peak against the 4 fs signal's peak")
    if case in (21, 22, 23):             # the samples straddle the peak
        assert r.sample_peak_db < r.true_peak_db - 0.3


# ---- Tech 3342: loudness range ---------------------------------------------------------
@pytest.mark.parametrize("case,levels,want", [
    (1, [-20, -30], 10.0),
    (2, [-20, -15], 5.0),
    (3, [-40, -20], 20.0),
    (4, [-50, -35, -20, -35, -50], 15.0),
])
def test_3342_loudness_range(case, levels, want, impl):
    r = measure(seq(*[(db, 20.0) for db in levels]), SR, impl)
    near(r.lra, want, TOL_LRA, f"Tech 3342 case {case} LRA")


# ---- agreement with a direct computation and with pyloudnorm ---------------------------
def _signals(sr):
    from rtengine.demo import music
    rng = np.random.default_rng(4)
    noise = (rng.standard_normal((2, 12 * sr)) * 0.05).astype(np.float32)
    quiet_loud = np.concatenate([music(8, sr, seed=2) * 0.05, music(8, sr, seed=3)], axis=1)
    return {"music": music(15, sr, seed=5), "noise": noise, "quiet-loud": quiet_loud}


@pytest.mark.parametrize("sr", [44100, 48000])
def test_agrees_with_direct_bs1770_on_steady_noise(sr):
    """Without gating effects (steady noise) the integrated loudness is the
    K-weighted mean square of the whole signal: BS.1770 eq. 2 with scipy."""
    x = _signals(sr)["noise"].astype(np.float64)
    shelf, hp = k_weighting(sr)
    y = lfilter(shelf[:3], (1.0, *shelf[3:]), x, axis=1)
    y = lfilter(hp[:3], (1.0, *hp[3:]), y, axis=1)
    direct = -0.691 + 10 * np.log10((y ** 2).mean(axis=1).sum())
    near(measure(x, sr).integrated, direct, 0.01, "steady noise vs direct BS.1770")


@pytest.mark.parametrize("sr", [44100, 48000])
def test_agrees_with_pyloudnorm(sr):
    """pyloudnorm's high pass carries the a0 normalisation in its b
    coefficients (BS.1770 prints b = 1, -2, 1), about 0.04 dB lower at every
    frequency, so agreement is within 0.1 LU, not 0.01."""
    pyln = pytest.importorskip("pyloudnorm")
    for name, x in _signals(sr).items():
        ours = measure(x, sr).integrated
        theirs = pyln.Meter(sr).integrated_loudness(x.T.astype(np.float64))
        near(ours, theirs, 0.1, f"{name} at {sr} Hz vs pyloudnorm")


def test_silence_is_undefined_and_peaks_zero():
    r = measure(np.zeros((2, 5 * SR), np.float32), SR)
    assert r.integrated == -math.inf and r.momentary == -math.inf
    assert r.true_peak_db == -math.inf
    assert r.as_dict()["integrated"] is None


# ---- the live path -----------------------------------------------------------------------
@pytest.mark.parametrize("block", [1, 64, 65, 4096])
def test_loudness_stage_reads_live_and_passes_audio(block, impl):
    """The meter as a chain stage: audio unchanged, meters readable from the
    engine at any block size and equal to the offline measurement."""
    x = seq((-36, 2), (-23, 6), (-36, 2))
    e = rtengine.Engine([{"plugin": "loudness", "impl": impl}], sample_rate=SR,
                        block_size=block, channels=2)
    y = np.empty_like(x)
    step = 997 if block == 1 else block
    for a in range(0, x.shape[1], step):
        e.process(x[:, a:a + step], out=y[:, a:a + step])
    np.testing.assert_array_equal(y, x)
    live = e.meters()["loudness"]
    ref = measure(x, SR).as_dict()
    assert live == ref, f"block {block}: live {live} != offline {ref}"
    assert live["integrated"] is not None and live["true_peak_db"] is not None
    e.reset()
    assert e.meters()["loudness"]["integrated"] is None


def test_meter_stage_costs_little():
    """Two meters (a master stage has two) must be cheap next to a 128-frame
    period: the stereo meter runs at least 50x real time (95-165x measured on
    the 2-core VM, whose speed varies with its host's load)."""
    import time
    x = tone(-20, 10.0)
    times = []
    for _ in range(3):                   # the best of three: other work on a shared machine
        m = Meter(SR, 2)
        t0 = time.perf_counter()
        m.feed(x)
        times.append(time.perf_counter() - t0)
    dt = min(times)
    assert dt < 10.0 / 50, f"meter took {dt:.3f} s for 10 s of stereo audio"
