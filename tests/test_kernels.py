"""Kernel physics against scipy.signal, at several sample rates, for both the C
and the numba kernels; and C == numba on the same input."""
import numpy as np
import pytest
from scipy import signal

import rtengine
from kernels import design, layout

RATES = [44100, 48000, 96000]


def impulse_response(stages, sr, impl, n=1 << 16):
    e = rtengine.Engine([dict(s, impl=impl) for s in stages], sample_rate=sr,
                        block_size=256, channels=1)
    x = np.zeros((1, n), dtype=np.float32)
    x[0, 0] = 1.0
    return e.render(x)[0].astype(np.float64)


def response_db(h, freqs, sr):
    w = 2 * np.pi * np.asarray(freqs) / sr
    _, H = signal.freqz(h, 1, worN=w)
    return 20 * np.log10(np.abs(H))


def eq(**params):
    return {"plugin": "eq", "params": params}


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("kind,fc,slope", [("lowcut", 120.0, "12"), ("lowcut", 80.0, "24"),
                                           ("lowcut", 500.0, "48"), ("highcut", 8000.0, "12"),
                                           ("highcut", 15000.0, "36")])
def test_cuts_match_scipy_butterworth(sr, kind, fc, slope, impl):
    h = impulse_response([eq(**{f"{kind}_on": True, f"{kind}_freq": fc,
                                f"{kind}_slope": slope})], sr, impl)
    order = int(slope) // 6
    at_fc = response_db(h, [fc], sr)[0]
    assert at_fc == pytest.approx(-3.0103, abs=0.05), f"{kind} {fc} Hz at {sr}: {at_fc:.3f} dB"
    sos = signal.butter(order, fc, "highpass" if kind == "lowcut" else "lowpass", fs=sr,
                        output="sos")
    freqs = np.geomspace(20, 0.45 * sr, 200)
    ref = 20 * np.log10(np.abs(signal.sosfreqz(sos, worN=2 * np.pi * freqs / sr)[1]))
    ours = response_db(h, freqs, sr)
    sel = ref > -60
    err = np.abs(ours[sel] - ref[sel]).max()
    assert err < 0.05, f"{kind} order {order} at {sr} Hz deviates from scipy by {err:.3f} dB"
    # roll-off: 6 dB per octave per order, well below the cutoff (and above the
    # float32 noise floor of the measured impulse response)
    if kind == "lowcut":
        far = fc * 2.0 ** -max(1, round(60 / (6 * order)))
        drop = response_db(h, [far], sr)[0] - response_db(h, [far / 2], sr)[0]
        assert drop == pytest.approx(6.02 * order, abs=0.2 * order)


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("gain", [-12.0, -3.0, 6.0, 15.0])
def test_peak_gain_at_centre(sr, gain, impl):
    f0, q = 1000.0, 1.4
    h = impulse_response([eq(band1_on=True, band1_type="peak", band1_freq=f0,
                             band1_gain_db=gain, band1_q=q)], sr, impl)
    assert response_db(h, [f0], sr)[0] == pytest.approx(gain, abs=0.05)
    # far from the centre the band does nothing
    assert abs(response_db(h, [20.0], sr)[0]) < 0.1
    # and the whole curve is the designed biquad's (kernel == design)
    sec = design.section("peak", f0, sr, q, gain)
    freqs = np.geomspace(20, 0.45 * sr, 100)
    ref = 20 * np.log10(np.abs(design.response([sec], freqs, sr)))
    assert np.abs(response_db(h, freqs, sr) - ref).max() < 0.01


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("kind", ["lowshelf", "highshelf"])
@pytest.mark.parametrize("gain", [-9.0, 6.0])
def test_shelf_gains(sr, kind, gain, impl):
    f0 = 1000.0 if kind == "lowshelf" else 3000.0
    h = impulse_response([eq(band2_on=True, band2_type=kind, band2_freq=f0,
                             band2_gain_db=gain, band2_q=0.7071)], sr, impl)
    shelf_f = 15.0 if kind == "lowshelf" else 0.49 * sr
    flat_f = 0.4 * sr if kind == "lowshelf" else 20.0
    assert response_db(h, [shelf_f], sr)[0] == pytest.approx(gain, abs=0.05)
    assert response_db(h, [flat_f], sr)[0] == pytest.approx(0.0, abs=0.05)
    # half the gain at the shelf frequency (RBJ definition)
    assert response_db(h, [f0], sr)[0] == pytest.approx(gain / 2, abs=0.05)


@pytest.mark.parametrize("sr", RATES)
def test_notch_against_scipy_iirnotch(sr, impl):
    f0, q = 1000.0, 8.0
    h = impulse_response([eq(band4_on=True, band4_type="notch", band4_freq=f0, band4_q=q)],
                         sr, impl)
    assert response_db(h, [f0], sr)[0] < -60
    b, a = signal.iirnotch(f0, q, fs=sr)
    freqs = np.geomspace(30, 0.45 * sr, 100)
    freqs = freqs[np.abs(freqs - f0) > 20]
    ref = 20 * np.log10(np.abs(signal.freqz(b, a, worN=2 * np.pi * freqs / sr)[1]))
    assert np.abs(response_db(h, freqs, sr) - ref).max() < 0.05


def test_design_matches_scipy_butter_coefficients():
    for sr in RATES:
        for kind in ("lowpass", "highpass"):
            sec = design.section(kind, 1234.0, sr)
            b, a = signal.butter(2, 1234.0, kind, fs=sr)
            np.testing.assert_allclose(sec, [b[0], b[1], b[2], a[1], a[2]], rtol=1e-9, atol=1e-12)


# ---- gain ------------------------------------------------------------------------
def render(plugin, params, x, impl, sr=48000, block=64):
    e = rtengine.Engine([{"plugin": plugin, "params": params, "impl": impl}], sample_rate=sr,
                        block_size=block, channels=x.shape[0])
    return e.render(x.astype(np.float32))


def test_gain_pan_width_invert(impl):
    x = np.vstack([np.full(4800, 0.5), np.full(4800, 0.25)]).astype(np.float32)
    y = render("gain", {"gain_db": -6.0206}, x, impl)
    np.testing.assert_allclose(y[:, 1000:], x[:, 1000:] * 0.5, rtol=1e-5)
    y = render("gain", {"pan": -1.0}, x, impl)       # hard left: +3.01 dB left, right silent
    np.testing.assert_allclose(y[0, 1000:], 0.5 * np.sqrt(2), rtol=1e-5)
    np.testing.assert_allclose(y[1, 1000:], 0.0, atol=1e-6)
    y = render("gain", {"width": 0.0}, x, impl)      # mono
    np.testing.assert_allclose(y[:, 1000:], 0.375, rtol=1e-5)
    y = render("gain", {"invert": True}, x, impl)
    np.testing.assert_allclose(y[:, 1000:], -x[:, 1000:], rtol=1e-6)
    mono = render("gain", {"gain_db": 6.0206, "pan": 1.0}, x[:1], impl)   # pan ignores mono
    np.testing.assert_allclose(mono[0, 1000:], 1.0, rtol=1e-5)


# ---- compressor ------------------------------------------------------------------
def static_out_db(level_db, thr, ratio, knee):
    over = level_db - thr
    if 2 * over < -knee:
        return level_db
    if knee > 0 and 2 * abs(over) <= knee:
        return level_db + (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)
    return thr + over / ratio


@pytest.mark.parametrize("knee", [0.0, 6.0])
def test_compressor_static_curve(knee, impl):
    sr, thr, ratio = 48000, -20.0, 4.0
    for level_db in (-40.0, -23.0, -20.0, -17.0, -10.0, -3.0):
        amp = 10 ** (level_db / 20)
        x = (amp * np.sign(np.sin(2 * np.pi * 50 * np.arange(sr) / sr + 0.01)))[None]
        y = render("compressor", {"threshold_db": thr, "ratio": ratio, "knee_db": knee,
                                  "attack_ms": 1.0, "release_ms": 50.0}, x, impl, sr)
        got = 20 * np.log10(np.abs(y[0, sr // 2:]).max())
        want = static_out_db(level_db, thr, ratio, knee)
        assert got == pytest.approx(want, abs=0.05), f"{level_db} dB in, knee {knee}"


def test_compressor_attack_release_times(impl):
    sr, att, rel = 48000, 10.0, 100.0
    x = np.full(sr * 2, 0.01)
    x[sr // 2:sr] = 1.0                  # +40 dB step for 0.5 s, then back
    y = render("compressor", {"threshold_db": -20.0, "ratio": 10.0, "knee_db": 0.0,
                              "attack_ms": att, "release_ms": rel}, x[None], impl, sr)
    g = 20 * np.log10(np.abs(y[0]) / x)
    final = g[sr - 10]
    i63 = np.argmax(g[sr // 2:] <= final * (1 - np.exp(-1)))
    assert i63 / sr * 1e3 == pytest.approx(att, rel=0.1)
    j63 = np.argmax(g[sr:] >= final * np.exp(-1))
    assert j63 / sr * 1e3 == pytest.approx(rel, rel=0.1)


def test_compressor_makeup_and_mix(impl):
    x = np.full((1, 9600), 0.001)
    y = render("compressor", {"makeup_db": 6.0}, x, impl)
    np.testing.assert_allclose(y[0, 4800:], 0.001 * 10 ** (6 / 20), rtol=1e-4)
    y = render("compressor", {"makeup_db": 6.0, "mix": 0.0}, x, impl)
    np.testing.assert_allclose(y[0, 4800:], 0.001, rtol=1e-5)


# ---- delay -----------------------------------------------------------------------
def test_delay_kernel_both_impls():
    import kernels
    from rtengine._runner import ffi
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    for impl in kernels.IMPLS:
        st = layout.delay_state(2, 37)
        fn = ffi.cast("rt_kernel_fn", kernels.address("delay", impl))
        y = x.copy()
        for a in range(0, 1000, 64):
            seg = np.ascontiguousarray(y[:, a:a + 64])
            fn(ffi.cast("double *", st.ctypes.data), ffi.cast("float *", seg.ctypes.data),
               2, seg.shape[1], seg.shape[1], ffi.NULL, 0)
            y[:, a:a + 64] = seg
        np.testing.assert_array_equal(y[:, 37:], x[:, :-37])
        np.testing.assert_array_equal(y[:, :37], 0)


# ---- C == numba ------------------------------------------------------------------
@pytest.mark.parametrize("plugin,params", [
    ("gain", {"gain_db": -7.0, "pan": -0.4, "width": 1.7}),
    ("eq", {"lowcut_on": True, "band1_on": True, "band1_gain_db": 9.0, "band5_on": True,
            "band5_type": "highshelf", "band5_gain_db": -6.0, "highcut_on": True}),
    ("compressor", {"threshold_db": -35.0, "ratio": 8.0, "attack_ms": 0.5, "mix": 0.7}),
    ("limiter", {"ceiling_db": -3.0, "input_gain_db": 6.0, "release_ms": 5.0}),
    ("master", {"gain_db": 12.0, "glue_threshold_db": -25.0, "ceiling_db": -2.0,
                "auto": False}),
    ("balance", {"speed_s": 0.5, "max_boost_db": 9.0, "mid_side": True}),
    ("denoise", {"adapt_s": 0.5, "floor_db": -30.0}),
    ("loudness", {}),
])
@pytest.mark.parametrize("sr", RATES)
def test_c_and_numba_agree(plugin, params, sr):
    rng = np.random.default_rng(sr)
    x = (rng.standard_normal((2, sr)) * np.linspace(0.01, 1.5, sr)).astype(np.float32)
    outs = []
    for impl in ("c", "numba"):
        e = rtengine.Engine([{"plugin": plugin, "params": params, "impl": impl}],
                            sample_rate=sr, block_size=100, channels=2)
        y = np.empty_like(x)
        for a in range(0, sr, 700):        # with parameter ramps in flight
            if a == 7000 and params:
                k = next(iter(params))
                e.set(f"{plugin}.{k}", rtengine.plugins()[plugin].param(k).default)
            e.process(x[:, a:a + 700], out=y[:, a:a + 700])
        outs.append(y)
    err = np.abs(outs[0] - outs[1]).max()
    assert err <= 1e-6, f"{plugin} at {sr} Hz: C and numba differ by {err:.3g}"
