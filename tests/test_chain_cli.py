"""Chain files, the Python API's parameter access, and the command line."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import rtengine
from rtengine.chain import Chain

CHAIN = """
[[stage]]
plugin = "eq"
name = "tone"
[stage.params]
lowcut_on = true
lowcut_freq = 70.0
band1_on = true
band1_type = "highshelf"
band1_freq = 6000.0
band1_gain_db = 3.0

[[stage]]
plugin = "compressor"
params = { threshold_db = -24.0, ratio = 3.0 }

[[stage]]
plugin = "limiter"
impl = "numba"
[stage.params]
ceiling_db = -1.0
"""


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rtengine", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_chain_file_round_trip(tmp_path):
    c = Chain.from_toml(CHAIN, source="test.toml")
    assert [s.name for s in c.stages] == ["tone", "compressor", "limiter"]
    assert c.stages[2].impl == "numba"
    again = Chain.from_toml(c.to_toml())
    assert again.to_dict() == c.to_dict()
    e = rtengine.Engine(c, sample_rate=44100, block_size=256, channels=2)
    assert e.get("tone.lowcut_freq") == 70.0
    assert e.get("tone.band1_type") == 2.0               # highshelf is choice 2
    assert e.get("compressor.ratio") == 3.0
    e.set("compressor.ratio", 5.5)
    e.set("tone.band1_type", "peak")
    preset = e.to_chain()
    p = tmp_path / "preset.toml"
    preset.save(p)
    e2 = rtengine.Engine(p, sample_rate=44100, block_size=256, channels=2)
    assert e2.get("compressor.ratio") == 5.5
    assert e2.get("tone.band1_type") == 0.0
    assert e2.params == e.params


@pytest.mark.parametrize("text,message", [
    ("[[stage]\nplugin='eq'", "not valid TOML"),
    ("x = 1", "no [[stage]] tables"),
    ("[[stage]]\nname = 'a'", "missing plugin"),
    ("[[stage]]\nplugin = 'reverbb'", "no plugin named 'reverbb'; available: balance, compressor"),
    ("[[stage]]\nplugin = 'eq'\n[stage.params]\nband9_on = true", "no parameter 'band9_on'"),
    ("[[stage]]\nplugin = 'gain'\n[stage.params]\ngain_db = 99", "99 is outside the range"),
    ("[[stage]]\nplugin = 'gain'\n[stage.params]\ngain_db = 'loud'", "expected a number"),
    ("[[stage]]\nplugin = 'eq'\n[stage.params]\nband1_type = 'tilt'", "'tilt' is not one of"),
    ("[[stage]]\nplugin = 'gain'\n[[stage]]\nplugin = 'gain'", "duplicate stage name 'gain'"),
    ("[[stage]]\nplugin = 'gain'\ngain_db = 3", "unknown keys gain_db"),
    ("[[stage]]\nplugin = 'gain'\nimpl = 'rust'", "impl 'rust' is not offered"),
])
def test_bad_chain_files_name_the_file_stage_and_problem(text, message):
    with pytest.raises(rtengine.ChainError) as err:
        Chain.from_toml(text, source="live.toml")
    assert "live.toml" in str(err.value)
    assert message in str(err.value)


def test_missing_chain_file(tmp_path):
    with pytest.raises(rtengine.ChainError, match="does not exist"):
        rtengine.Engine(tmp_path / "nope.toml")


def test_parameter_errors_name_stage_and_parameter():
    e = rtengine.Engine(["gain", ("limiter", {})], sample_rate=48000, channels=2)
    with pytest.raises(rtengine.ParameterError, match="no stage named 'comp'.*gain, limiter"):
        e.set("comp.ratio", 2)
    with pytest.raises(rtengine.ParameterError, match="'gain' .* has no parameter 'ratio'"):
        e.set("gain.ratio", 2)
    with pytest.raises(rtengine.ParameterError, match="limiter.ceiling_db"):
        e.set("limiter.ceiling_db", 3.0)
    with pytest.raises(rtengine.ParameterError, match="finite"):
        e.set("gain.gain_db", float("nan"))


def test_latency_parameter_re_prepares():
    e = rtengine.Engine([("limiter", {"lookahead_ms": 1.0})], sample_rate=48000, channels=1)
    assert e.latency == 48 + 18
    e.set("limiter.lookahead_ms", 4.0)
    assert e.latency == 192 + 18
    x = (0.1 * np.random.default_rng(2).standard_normal((1, 3000))).astype(np.float32)
    np.testing.assert_allclose(e.render(x), x, atol=1e-6)


def test_bad_audio_shapes_are_explained():
    e = rtengine.Engine(["gain"], sample_rate=48000, channels=2)
    with pytest.raises(rtengine.AudioFormatError, match=r"\(2, frames\)"):
        e.process(np.zeros((512, 2), np.float32))
    with pytest.raises(rtengine.AudioFormatError, match="outside what rtengine supports"):
        rtengine.Engine(["gain"], sample_rate=4000)
    out = e.process(np.zeros((2, 10), np.float64))          # other dtypes are converted
    assert out.dtype == np.float32


def test_cli_plugins_lists_every_plugin_and_parameter():
    r = run_cli("plugins")
    assert r.returncode == 0, r.stderr
    for name, cls in rtengine.plugins().items():
        assert f"{name}: " in r.stdout
        for p in cls.params:
            assert p.id in r.stdout
    assert "threshold_db       Threshold                -60 .. 0 dB, default -20 dB" in r.stdout
    assert "band1_type" in r.stdout and "peak | lowshelf | highshelf" in r.stdout


@pytest.mark.parametrize("sr,channels,subtype", [(44100, 2, "PCM_16"), (48000, 1, "FLOAT"),
                                                 (96000, 2, "PCM_24"), (22050, 6, "FLOAT")])
def test_cli_render_keeps_length_channels_and_equals_the_api(tmp_path, sr, channels, subtype):
    rng = np.random.default_rng(sr)
    frames = int(sr * 1.3) + 17
    x = (0.3 * rng.standard_normal((frames, channels))).astype(np.float32)
    src, dst, chain = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "c.toml"
    sf.write(src, x, sr, subtype=subtype)
    chain.write_text(CHAIN)
    r = run_cli("render", src, dst, "--chain", chain, "--block-size", 100)
    assert r.returncode == 0, r.stderr
    assert "latency" in r.stderr and "compensated" in r.stderr
    assert "frames/s" in r.stderr or "100%" in r.stderr              # the progress bar
    y, sr2 = sf.read(dst, dtype="float32", always_2d=True)
    info = sf.info(dst)
    assert sr2 == sr and y.shape == x.shape and info.subtype == subtype
    x_read, _ = sf.read(src, dtype="float32", always_2d=True)
    ref = rtengine.Engine(chain, sample_rate=sr, block_size=100, channels=channels).render(
        np.ascontiguousarray(x_read.T))
    tol = {"PCM_16": 2 ** -15, "PCM_24": 2 ** -23, "FLOAT": 1e-7}[subtype]
    np.testing.assert_allclose(y.T, ref, atol=tol)


def test_cli_render_errors(tmp_path):
    chain = tmp_path / "c.toml"
    chain.write_text(CHAIN)
    r = run_cli("render", tmp_path / "missing.wav", tmp_path / "o.wav", "--chain", chain)
    assert r.returncode == 1 and "missing.wav does not exist" in r.stderr
    odd = tmp_path / "odd.wav"
    sf.write(odd, np.zeros((1000, 1)), 12345)
    r = run_cli("render", odd, tmp_path / "o.wav", "--chain", chain)
    assert r.returncode == 1 and "12345 Hz is not supported" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stage]]\nplugin = 'nope'\n")
    sf.write(tmp_path / "ok.wav", np.zeros((1000, 2)), 48000)
    r = run_cli("render", tmp_path / "ok.wav", tmp_path / "o.wav", "--chain", bad)
    assert r.returncode == 1 and "bad.toml: stage 1" in r.stderr and "no plugin named" in r.stderr
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....not really a wav file" * 10)
    r = run_cli("render", garbage, tmp_path / "o.wav", "--chain", chain)
    assert r.returncode == 1 and "cannot read audio" in r.stderr


def test_cli_render_edge_cases(tmp_path):
    chain = tmp_path / "c.toml"
    chain.write_text(CHAIN)
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((0, 2), np.float32), 48000, subtype="FLOAT")
    r = run_cli("render", src, tmp_path / "empty.wav", "--chain", chain)
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / "empty.wav").frames == 0
    x = np.full((3000, 2), 0.25, np.float32)
    x[100, 0] = np.nan
    x[200, 1] = np.inf
    sf.write(src, x, 48000, subtype="FLOAT")
    r = run_cli("render", src, tmp_path / "out.wav", "--chain", chain)
    assert r.returncode == 0 and "2 NaN or infinite samples" in r.stderr
    y, _ = sf.read(tmp_path / "out.wav")
    assert np.isfinite(y).all() and y.shape == x.shape
    r = run_cli("render", src, src, "--chain", chain)
    assert r.returncode == 1 and "would overwrite the input" in r.stderr
    assert sf.info(src).frames == 3000                       # nothing lost


def test_cli_demo_renders(tmp_path):
    r = run_cli("demo", tmp_path, "--seconds", 2)
    assert r.returncode == 0, r.stderr
    y, sr = sf.read(tmp_path / "demo_out.wav", always_2d=True)
    x, _ = sf.read(tmp_path / "demo_in.wav", always_2d=True)
    assert sr == 48000 and y.shape == x.shape == (96000, 2)
    assert "true peak" in r.stdout
    from rtengine.audio import true_peak_db
    assert true_peak_db(y.T) <= -1.0 + 0.1
