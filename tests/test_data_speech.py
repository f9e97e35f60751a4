"""rtengine.data.speech: development speech, synthetic noise and noisy sets."""
import numpy as np
import pytest
from scipy import signal

from rtengine.data import speech as S
from rtengine.errors import ParameterError

LOCAL_NOISES = tuple(n for n in S.SYNTH_NOISES if n != "babble")   # need no speech


@pytest.fixture(scope="module")
def english():
    try:
        S.speech_files("dev", "en")
        S._decoded_dir("en")
    except S.DataUnavailableError as exc:
        pytest.skip(str(exc))


def tilt_db_per_octave(x, sr):
    f, p = signal.welch(x, sr, nperseg=8192)
    band = (f >= 100) & (f <= 10000)
    return np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0]


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("name", LOCAL_NOISES)
def test_noise_deterministic_and_not_silent(name, sr):
    n = sr * 2
    a = S.make_noise(name, n, sr, seed=3)
    assert a.dtype == np.float32 and a.shape == (n,)
    assert np.all(np.isfinite(a))
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(S.NOISE_RMS, rel=1e-3)
    assert np.array_equal(a, S.make_noise(name, n, sr, seed=3))
    assert not np.array_equal(a, S.make_noise(name, n, sr, seed=4))
    # Not silent over any half second (nonstationary noise dips by at most 25 dB).
    blocks = a[: n // (sr // 2) * (sr // 2)].reshape(-1, sr // 2).astype(np.float64)
    assert np.sqrt(np.mean(blocks ** 2, axis=1)).min() > S.NOISE_RMS * 10 ** (-40 / 20)


@pytest.mark.parametrize("name,slope", [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_noise_spectral_tilt(name, slope):
    sr = 48000
    x = S.make_noise(name, sr * 10, sr, seed=1)
    assert tilt_db_per_octave(x, sr) == pytest.approx(slope, abs=0.4)


def test_hum_is_mains_and_hvac_is_low():
    sr = 16000
    f, p = signal.welch(S.make_noise("hum", sr * 8, sr, seed=0), sr, nperseg=sr)
    assert f[np.argmax(p)] in (50, 60, 100, 120, 150, 180)
    x = S.make_noise("hvac", sr * 8, sr, seed=0)
    f, p = signal.welch(x, sr, nperseg=4096)
    assert p[f < 500].sum() > 3 * p[f >= 500].sum()


def test_reserved_and_unknown_noises_refused():
    with pytest.raises(ParameterError, match="reserved"):
        S.make_noise("vinyl_hiss", 1000)
    with pytest.raises(ParameterError, match="unknown noise"):
        S.make_noise("rain", 1000)
    assert "vinyl_hiss" not in S.available_noises()


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 15.0, 30.0])
@pytest.mark.parametrize("noise_len", [3000, 16000, 50000])
def test_mix_at_snr_exact(snr, noise_len):
    rng = np.random.default_rng(0)
    speech = (0.3 * rng.standard_normal(16000) * np.hanning(16000)).astype(np.float32)
    noise = S.make_noise("pink", noise_len, 16000, seed=2)
    noisy = S.mix_at_snr(speech, noise, snr)
    assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    assert S.snr_db(speech, noisy) == pytest.approx(snr, abs=0.01)
    # The noise is looped / cut to length.
    diff = noisy.astype(np.float64) - speech
    expected = S.fit_length(noise.astype(np.float64), speech.size)
    assert np.corrcoef(diff, expected)[0, 1] > 0.9999


def test_mix_at_snr_rejects_silence():
    with pytest.raises(ParameterError):
        S.mix_at_snr(np.zeros(100, np.float32), np.ones(100, np.float32), 0)
    with pytest.raises(ParameterError):
        S.mix_at_snr(np.ones(100, np.float32), np.zeros(100, np.float32), 0)


def test_split_is_disjoint_and_fixed(english):
    dev, test = S.speech_files("dev"), S.speech_files("test")
    assert dev and test and not set(dev) & set(test)
    assert sorted(dev + test) == S.speech_files("all")
    assert 0.1 < len(test) / (len(dev) + len(test)) < 0.3
    assert all(S.split_of(k) == "test" for k in test)
    # Utterances only use files of their split.
    for split, keys in (("dev", set(dev)), ("test", set(test))):
        for u in S.utterances(split, n=5, seed=1):
            assert u.split == split and set(u.files) <= keys


def test_second_speaker_shares_the_split():
    try:
        fr_test = S.speech_files("test", "fr")
    except S.DataUnavailableError as exc:
        pytest.skip(str(exc))
    assert fr_test and all(S.split_of(k) == "test" for k in fr_test)
    assert not set(fr_test) & set(S.speech_files("dev", "fr"))


def test_utterances_deterministic_and_resampled(english):
    a = S.utterances("dev", n=3, seconds=3.0, seed=5)
    b = S.utterances("dev", n=3, seconds=3.0, seed=5)
    assert [u.files for u in a] == [u.files for u in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert [u.files for u in S.utterances("dev", n=3, seconds=3.0, seed=6)] != [u.files for u in a]
    for u in a:
        assert u.audio.dtype == np.float32 and u.audio.ndim == 1 and u.sample_rate == 16000
        assert 3.0 <= u.audio.size / 16000 < 12.0
        assert np.max(np.abs(u.audio)) <= 1.0
    c = S.utterances("dev", n=3, seconds=3.0, seed=5, sample_rate=48000)
    assert [u.audio.size for u in c] == [3 * u.audio.size for u in a]


def test_noisy_set(english):
    snrs, noises = (-5, 0, 15), ("white", "crackle", "babble")
    items = S.noisy_set(snrs=snrs, noises=noises, n_utts=2, sample_rate=44100, seed=1)
    assert len(items) == 2 * len(snrs) * len(noises)
    assert items.sample_rate == 44100
    assert [(it.noise, it.snr) for it in items[:9]] == [(n, s) for n in noises for s in snrs]
    ref = S.utterances("dev", n=2, seed=1)
    for i, (clean, noisy, name, snr) in enumerate(items):
        assert name in noises
        assert clean.dtype == noisy.dtype == np.float32
        assert clean.ndim == noisy.ndim == 1 and clean.shape == noisy.shape
        n16 = ref[i // 9].audio.size
        assert clean.size == -(-n16 * 44100 // 16000)
        assert S.snr_db(clean, noisy) == pytest.approx(snr, abs=0.01)
        assert np.max(np.abs(noisy)) <= 1.0
        assert np.std(noisy - clean) > 1e-4
    again = S.noisy_set(snrs=snrs, noises=noises, n_utts=2, sample_rate=44100, seed=1)
    assert all(np.array_equal(x.noisy, y.noisy) for x, y in zip(items, again))
    other = S.noisy_set(snrs=snrs, noises=noises, n_utts=2, sample_rate=44100, seed=2)
    assert not np.array_equal(items[0].noisy, other[0].noisy)


def test_test_split_noisy_set(english):
    items = S.noisy_set(snrs=(5,), noises=("hum",), n_utts=2, sample_rate=48000, split="test")
    assert len(items) == 2
    for it in items:
        assert S.snr_db(it.clean, it.noisy) == pytest.approx(5, abs=0.01)


def test_real_noise_when_installed():
    if "loop_3d_printer" not in S.available_noises():
        pytest.skip("sonic-pi-samples is not installed")
    x = S.make_noise("loop_3d_printer", 48000 * 10, 48000, seed=0)
    assert x.dtype == np.float32 and np.std(x) > 0.05
    assert np.array_equal(x, S.make_noise("loop_3d_printer", 48000 * 10, 48000, seed=0))


def test_missing_packages_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(S, "SOUNDS_ROOT", tmp_path)
    monkeypatch.setattr(S, "SONIC_PI_ROOT", tmp_path)
    S._all_keys.cache_clear()
    S._real_noise.cache_clear()
    try:
        with pytest.raises(S.DataUnavailableError, match="asterisk-core-sounds-en-g722"):
            S.speech_files("dev")
        with pytest.raises(S.DataUnavailableError, match="asterisk-core-sounds-fr-wav"):
            S.utterances("dev", n=1, speakers=("fr",))
        with pytest.raises(S.DataUnavailableError, match="sonic-pi-samples"):
            S.make_noise("ambi_drone", 1000)
        monkeypatch.setattr(S.shutil, "which", lambda name: None)
        with pytest.raises(S.DataUnavailableError, match="apt-get install .*ffmpeg"):
            S._ffmpeg()
    finally:
        S._all_keys.cache_clear()
        S._real_noise.cache_clear()
