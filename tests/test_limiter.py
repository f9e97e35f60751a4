"""The true-peak limiter on adversarial signals, measured independently by 8x
oversampling (rtengine.audio.true_peak_db: scipy firwin/upfirdn, 48 taps per
phase), at 44.1, 48 and 96 kHz, for both kernel implementations."""
import numpy as np
import pytest

import rtengine
from rtengine.audio import true_peak_db

TOLERANCE_DB = 0.1


def adversarial(sr, seconds=0.5):
    n = int(sr * seconds)
    t = np.arange(n) / sr
    sig = {
        "fs/4 sine at 45 degrees (+3 dB between samples)": np.sin(2 * np.pi * sr / 4 * t
                                                                  + np.pi / 4),
        "fs/6 sine, inter-sample peak": np.sin(2 * np.pi * sr / 6 * t + np.pi / 6),
        "0.4 fs sine": np.sin(2 * np.pi * 0.4 * sr * t + 0.3),
    }
    for f in (50.0, 441.0, 3000.0, 7001.0, sr / 4):
        sig[f"full-scale square {f:g} Hz"] = np.sign(np.sin(2 * np.pi * f * t + 0.1))
    imp = np.zeros(n)
    imp[::int(0.05 * sr)] = 1.0
    sig["impulses"] = imp
    dbl = np.zeros(n)
    dbl[100::int(0.03 * sr)] = 1.0
    dbl[101::int(0.03 * sr)] = -1.0
    sig["+1/-1 doublets"] = dbl
    pair = np.zeros(n)
    pair[100::int(0.03 * sr)] = 1.0
    pair[101::int(0.03 * sr)] = 1.0
    sig["+1/+1 pairs"] = pair
    step = 0.1 * np.sin(2 * np.pi * 997 * t)
    step[n // 2:] *= 10.0
    sig["+20 dB step"] = step
    burst = 0.1 * np.sign(np.sin(2 * np.pi * 1500 * t))
    burst[n // 3:n // 3 + 200] *= 10.0
    sig["+20 dB square burst"] = burst
    return sig


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
@pytest.mark.parametrize("ceiling", [-1.0, -0.1, -6.0])
def test_true_peak_never_exceeds_ceiling(sr, ceiling, impl):
    e = rtengine.Engine([{"plugin": "limiter", "impl": impl,
                          "params": {"ceiling_db": ceiling, "release_ms": 20.0}}],
                        sample_rate=sr, block_size=64, channels=1)
    fails = []
    for name, x in adversarial(sr).items():
        y = e.render(x.astype(np.float32)[None])
        tp = true_peak_db(y)
        if tp > ceiling + TOLERANCE_DB:
            fails.append(f"{name}: {tp:+.3f} dBTP")
    assert not fails, f"ceiling {ceiling} dBTP at {sr} Hz ({impl}): " + "; ".join(fails)


def test_stereo_is_linked_and_quiet_signal_is_untouched(impl):
    sr = 48000
    e = rtengine.Engine([{"plugin": "limiter", "impl": impl, "params": {"ceiling_db": -1.0}}],
                        sample_rate=sr, block_size=128, channels=2)
    t = np.arange(sr) / sr
    quiet = np.vstack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)])
    y = e.render(quiet.astype(np.float32))
    np.testing.assert_allclose(y, quiet, atol=1e-6)     # latency compensated, unity gain
    loud = quiet.copy()
    loud[0] *= 4.0                                       # only the left channel is hot
    y = e.render(loud.astype(np.float32))
    g_left = np.abs(y[0, sr // 2:]).max() / np.abs(loud[0, sr // 2:]).max()
    g_right = np.abs(y[1, sr // 2:]).max() / np.abs(loud[1, sr // 2:]).max()
    assert g_left == pytest.approx(g_right, rel=1e-3), "gain is not linked across channels"
    assert true_peak_db(y) <= -1.0 + TOLERANCE_DB


def test_latency_is_lookahead_plus_detector():
    sr = 48000
    for ms in (0.5, 1.5, 5.0):
        e = rtengine.Engine([("limiter", {"lookahead_ms": ms})], sample_rate=sr, channels=1)
        assert e.latency == round(ms * 1e-3 * sr) + 18
        x = np.zeros((1, 2000), dtype=np.float32)
        x[0, 500] = 0.5
        y = e.process(np.pad(x, ((0, 0), (0, e.latency))))
        assert np.argmax(np.abs(y[0])) == 500 + e.latency


def test_release_lets_gain_recover(impl):
    sr = 48000
    x = np.full(sr, 0.1)
    x[1000:1400] += 0.9 * np.hanning(400)                # a smooth +20 dB bump
    e = rtengine.Engine([{"plugin": "limiter", "impl": impl,
                          "params": {"ceiling_db": -6.0, "release_ms": 50.0}}],
                        sample_rate=sr, block_size=256, channels=1)
    y = e.render(x.astype(np.float32)[None])[0]
    g = y / x
    assert g[1200] * x[1200] == pytest.approx(10 ** (-6 / 20), rel=0.01)   # at the ceiling
    assert true_peak_db(y[None]) <= -6.0 + TOLERANCE_DB
    low = int(np.argmin(g))
    after = 1400 + int(0.05 * sr)                        # one release time constant on
    recovered = (g[after] - g[1400]) / (1 - g[1400])
    assert 0.45 < recovered < 0.8, f"recovered {recovered:.2f} of the reduction after 50 ms"
    assert 1150 < low < 1250
    assert g[-1] == pytest.approx(1.0, abs=1e-3)          # fully recovered
