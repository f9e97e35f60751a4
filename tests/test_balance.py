"""``balance``: pink noise tilted by a known EQ comes back to the target within
1 dB RMS (40 Hz - 16 kHz) after settling; corrections stay within their bounds
at every moment; no latency; mid/side and freeze; learnt curves; bad curve
files give clear errors; the CLI."""
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import lfilter

import rtengine
from kernels import design, layout
from rtengine.balancing import CURVES, band_spectrum, distance_db, load_target

SR = 48000


def pink(seconds, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[:, 1:] /= np.sqrt(f[1:])
    spec[:, 0] = 0.0
    x = np.fft.irfft(spec, n, axis=1)
    return x * (0.1 / x.std())


def tilt(x, sections):
    for s in sections:
        x = lfilter(s[:3], (1.0, s[3], s[4]), x, axis=-1)
    return x.astype(np.float32)


KNOWN_EQ = [design.section("lowshelf", 150, SR, 0.7, 5.0),
            design.section("highshelf", 4000, SR, 0.7, -5.0),
            design.section("peak", 1000, SR, 1.0, 3.0)]


def run(x, block=256, **params):
    e = rtengine.Engine([{"plugin": "balance", "params": params,
                          "options": {"target": params.pop("target", "pink")}}],
                        sample_rate=SR, block_size=block, channels=x.shape[0])
    return e, e.render(x)


def test_tilted_pink_noise_comes_back_within_1_db_rms():
    x = tilt(pink(40), KNOWN_EQ)
    e, y = run(x, max_boost_db=8.0, max_cut_db=8.0, speed_s=3.0)
    settle = 20 * SR                      # several averaging times
    before = distance_db(x[:, settle:], SR, CURVES["pink"])
    after = distance_db(y[:, settle:], SR, CURVES["pink"])
    assert before > 2.5, f"the test EQ should be audible ({before:.2f} dB RMS)"
    assert after <= 1.0, f"corrected spectrum {after:.2f} dB RMS from the target (was {before:.2f})"


def test_corrections_never_exceed_bounds():
    """A tilt much larger than the bounds: at every moment the correction the
    stage asks for stays within them, and so does the cascade's actual
    response at every band centre."""
    steep = [design.section("lowshelf", 200, SR, 0.7, 15.0),
             design.section("highshelf", 3000, SR, 0.7, -15.0)]
    x = tilt(pink(24), steep)
    e = rtengine.Engine([("balance", {"max_boost_db": 4.0, "max_cut_db": 3.0, "speed_s": 2.0})],
                        sample_rate=SR, block_size=512, channels=2)
    st = e.stages[0].processor.state
    fc = layout.balance_bands(SR)
    casc = st[int(st[12]):int(st[13])]
    nsec = int(casc[1])
    cur0 = layout.BQ_HDR + layout.biquad_blob_size(nsec)
    worst_asked, worst_real = (0.0, 0.0), (0.0, 0.0)
    for a in range(0, x.shape[1], 512 * 8):
        e.process(x[:, a:a + 512 * 8])
        corr = layout.balance_regions(st)["correction"][0]
        worst_asked = (max(worst_asked[0], corr.max()), min(worst_asked[1], corr.min()))
        secs = casc[cur0:cur0 + 5 * nsec].reshape(nsec, 5)
        resp = 20 * np.log10(np.abs(design.response(secs, fc, SR)))
        worst_real = (max(worst_real[0], resp.max()), min(worst_real[1], resp.min()))
    assert worst_asked[0] <= 4.0 and worst_asked[1] >= -3.0, worst_asked
    assert worst_asked[0] >= 3.9 and worst_asked[1] <= -2.9, "the bounds were never reached"
    assert worst_real[0] <= 4.0 + 0.05 and worst_real[1] >= -3.0 - 0.05, (
        f"the cascade's response reached {worst_real[0]:+.2f} / {worst_real[1]:+.2f} dB")


def test_no_latency_and_amount_zero_is_transparent():
    x = tilt(pink(6, seed=1), KNOWN_EQ)
    e, y = run(x, amount=0.0)
    assert e.latency == 0
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_moves_slowly_and_without_zipper_noise():
    """A steady 1 kHz tone over tilted noise while the correction converges:
    the tone's level in the output moves smoothly (every new correction is
    ramped in over a hop), never by a step."""
    n = 12 * SR
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    x = (tilt(pink(12, seed=2), KNOWN_EQ) * 0.1 + tone).astype(np.float32)
    e, y = run(x, speed_s=2.0)
    per = 480                                   # 10 ms: ten periods of the tone
    ref = np.exp(-2j * np.pi * 1000 * t)
    env = np.abs((y[0] * ref)[: n // per * per].reshape(-1, per).mean(axis=1)) * 2
    steps = np.abs(np.diff(20 * np.log10(env[10:])))
    assert steps.max() < 0.3, f"the tone's level jumped by {steps.max():.2f} dB in 10 ms"
    change = 20 * np.log10(env[-100:].mean() / env[10:20].mean())
    assert abs(change) > 1.0, f"the correction at 1 kHz never moved ({change:+.2f} dB)"
    casc = e.stages[0].processor.state
    blob = casc[int(casc[12]) + layout.BQ_HDR:]
    assert blob[1] == layout.balance_fft(SR) // 4       # ramp over one hop
    m = e.meters()["balance"]
    assert m["frames"] > 100 and len(m["correction_db"]) == 27


def test_freeze_holds_the_correction():
    x = tilt(pink(16, seed=3), KNOWN_EQ)
    e = rtengine.Engine([("balance", {"speed_s": 2.0})], sample_rate=SR, block_size=256,
                        channels=2)
    e.process(x[:, :8 * SR])
    held = list(e.meters()["balance"]["correction_db"])
    e.set("balance.freeze", 1.0)
    e.process(tilt(pink(8, seed=4), [design.section("highshelf", 2000, SR, 0.7, 10.0)]))
    assert e.meters()["balance"]["correction_db"] == held


def test_mid_side_corrects_mid_and_side_apart():
    """Mid tilted one way, side the other: with mid_side on, each comes back
    to the target."""
    mid = tilt(pink(30, 1, seed=5)[0], KNOWN_EQ)
    side = tilt(pink(30, 1, seed=6)[0] * 0.5, [design.section("highshelf", 3000, SR, 0.7, 6.0)])
    x = np.stack([mid + side, mid - side]).astype(np.float32)
    e, y = run(x, mid_side=True, speed_s=3.0, max_boost_db=8.0, max_cut_db=8.0)
    settle = 15 * SR
    ym, ys = (y[0] + y[1]) / 2, (y[0] - y[1]) / 2
    for name, before, after in (("mid", mid, ym), ("side", side, ys)):
        d0 = distance_db(before[settle:], SR, CURVES["pink"])
        d1 = distance_db(after[settle:], SR, CURVES["pink"])
        assert d1 <= 1.0 < d0, f"{name}: {d0:.2f} -> {d1:.2f} dB RMS"


def test_learnt_curve_is_a_target(tmp_path):
    """Learn a curve from a reference, balance another signal toward it."""
    import soundfile as sf
    ref = tilt(pink(20, seed=7), [design.section("highshelf", 5000, SR, 0.7, 6.0)])
    sf.write(tmp_path / "ref.wav", ref.T, SR)
    r = subprocess.run([sys.executable, "-m", "rtengine", "balance", "learn",
                        str(tmp_path / "ref.wav"), str(tmp_path / "curve.toml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    curve = load_target(str(tmp_path / "curve.toml"))
    x = tilt(pink(40, seed=8), KNOWN_EQ)
    _, y = run(x, target=str(tmp_path / "curve.toml"), max_boost_db=12.0, max_cut_db=12.0,
               speed_s=3.0)
    before = distance_db(x[:, 20 * SR:], SR, curve)
    after = distance_db(y[:, 20 * SR:], SR, curve)
    assert after <= 1.0 < before, (before, after)
    # the curve is the reference's own spectrum
    fc, s = band_spectrum(ref, SR)
    np.testing.assert_allclose(curve.at(fc), s - s.mean(), atol=0.01)


@pytest.mark.parametrize("text,what", [
    ("bands_hz = [100, 1000]\n", "level_db"),
    ("bands_hz = [100, 1000]\nlevel_db = [1.0]\n", "same length"),
    ("bands_hz = [1000, 100]\nlevel_db = [1.0, 2.0]\n", "increasing"),
    ("this is not toml = [\n", "not a balance curve"),
])
def test_bad_curve_file_is_a_clear_error(tmp_path, text, what):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(rtengine.PluginError, match=what) as info:
        rtengine.Engine([{"plugin": "balance", "options": {"target": str(path)}}])
    assert "bad.toml" in str(info.value)


def test_unknown_target_names_the_choices():
    with pytest.raises(rtengine.PluginError, match="pink.*music"):
        rtengine.Engine([{"plugin": "balance", "options": {"target": "nonsense"}}])


def test_plot_command(tmp_path):
    import soundfile as sf
    x = tilt(pink(12, seed=9), KNOWN_EQ)
    sf.write(tmp_path / "in.wav", x.T, SR)
    r = subprocess.run([sys.executable, "-m", "rtengine", "balance", "plot",
                        str(tmp_path / "in.wav"), str(tmp_path / "b.png"), "--speed", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "dB RMS before" in r.stderr
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_spectrum_of_a_stream_equals_the_whole():
    """The long-term spectrum fed in odd pieces (how files are read) equals the
    one of the whole signal; a silent signal is a clear error."""
    from rtengine.balancing import SpectrumMeter
    from rtengine.errors import AudioFormatError
    x = pink(6, seed=11)
    fc, whole = band_spectrum(x, SR)
    m = SpectrumMeter(SR, 2)
    for a in range(0, x.shape[1], 4321):
        m.feed(x[:, a:a + 4321])
    np.testing.assert_allclose(m.level_db(), whole, atol=1e-9)
    with pytest.raises(AudioFormatError, match="silent"):
        band_spectrum(np.zeros((2, SR)), SR)
