"""The master stage and ``rtengine master``: loudness on target, true peak under
the ceiling (measured by an independent 4x oversampling, not the limiter's own
detector), live auto gain, the report and the provenance sidecar."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import rtengine
from rtengine.demo import music
from rtengine.errors import AudioFormatError
from rtengine.loudness import measure
from rtengine.mastering import master_file
from rtengine.provenance import sha256, sidecar_path

SR = 44100


def true_peak_db(x, oversample=4):
    """True peak by ideal band-limited 4x reconstruction, independent of the
    limiter's and the meter's FIR detectors (the benchmark's measurement)."""
    from latency_bench.master import ideal_true_peak_db
    return ideal_true_peak_db(x, SR, oversample)


def renders():
    """Varied material: FluidSynth renders of different styles and levels
    (rtengine.data.music), and generated music (saw waves and hi-hats that are
    not band-limited: content right under Nyquist) from very quiet to
    clipping-hot, dense and sparse, steady and dynamic, at 44.1 and 48 kHz."""
    from rtengine.data.music import render_piece
    quiet_then_loud = np.concatenate([music(6, SR, seed=1) * 0.03, music(6, SR, seed=2)],
                                     axis=1)
    t = np.arange(12 * SR) / SR
    pad = 0.2 * np.sin(2 * np.pi * 110 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.25 * t))
    pad = np.stack([pad, np.roll(pad, 300)])
    out = {f"fluidsynth-{seed}": (render_piece(seed, 12.0, SR)["mix"], SR)
           for seed in (1, 2, 3, 4, 5)}
    out["fluidsynth-48k"] = (render_piece(6, 12.0, 48000)["mix"], 48000)
    out.update({
        "quiet": (music(12, SR, seed=3) * 0.2, SR),
        "hot": (np.clip(music(12, SR, seed=4) * 1.6, -1, 1), SR),
        "dynamic": (quiet_then_loud, SR),
        "pad": (pad, SR),
    })
    return {k: (np.asarray(x, np.float32), sr) for k, (x, sr) in out.items()}


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    d = tmp_path_factory.mktemp("master")
    files = {}
    for name, (x, sr) in renders().items():
        path = d / f"{name}.wav"
        sf.write(path, x.T, sr, subtype="FLOAT")
        files[name] = path
    return files


@pytest.mark.parametrize("target,ceiling", [(-14.0, -1.0), (-9.0, -1.0), (-23.0, -2.0)])
def test_master_reaches_target_under_ceiling(material, tmp_path, target, ceiling):
    fails = []
    for name, path in material.items():
        out = tmp_path / f"{name}.wav"
        r = master_file(path, out, target=target, ceiling=ceiling)
        y, sr = sf.read(out, dtype="float32", always_2d=True)
        got = measure(y.T, sr).integrated
        tp = true_peak_db(y.T, oversample=4)
        if abs(got - target) > 0.5 or tp > ceiling:
            fails.append(f"{name}: {got:.2f} LUFS (target {target}), true peak {tp:.2f} dBTP "
                         f"(ceiling {ceiling}), gain {r['gain_db']:+.1f} dB")
    assert not fails, "; ".join(fails)


def test_master_cli_report_and_provenance(material, tmp_path):
    src = material["quiet"]
    out = tmp_path / "quiet_master.wav"
    png = tmp_path / "plot.png"
    r = subprocess.run([sys.executable, "-m", "rtengine", "master", str(src), str(out),
                        "--target", "-14", "--plot", str(png)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for word in ("integrated", "loudness range", "true peak", "gain applied", "balance toward"):
        assert word in r.stdout, f"report lacks {word!r}:\n{r.stdout}"
    assert png.stat().st_size > 10_000
    side = json.loads(sidecar_path(out).read_text())
    assert side["inputs"][0]["sha256"] == sha256(src)
    assert side["output"]["sha256"] == sha256(out)
    balance, stage = side["chains"]["master"]["stages"]
    assert balance["plugin"] == "balance" and balance["params"]["freeze"] is True
    assert stage["plugin"] == "master"
    assert set(stage["params"]) == {p.id for p in rtengine.plugins()["master"].params}
    assert side["report"]["after"]["integrated"] == pytest.approx(-14.0, abs=0.5)
    assert side["plugins"]["master"].startswith("rtengine ")
    assert side["date"].startswith("20")


def test_master_with_reference_matches_its_loudness(material, tmp_path):
    ref = material["hot"]
    want = measure(sf.read(ref, dtype="float32")[0].T, SR).integrated
    out = tmp_path / "matched.wav"
    r = master_file(material["quiet"], out, reference=ref)
    assert r["target_lufs"] == pytest.approx(want)
    got = measure(sf.read(out, dtype="float32")[0].T, SR).integrated
    assert abs(got - want) <= 0.5, f"{got:.2f} LUFS, reference {want:.2f}"
    side = json.loads(sidecar_path(out).read_text())
    assert side["inputs"][1]["role"] == "reference"
    curve = out.with_name(out.name + ".curve.toml")          # the learnt target, kept
    assert side["chains"]["master"]["stages"][0]["options"]["target"] == str(curve)
    assert curve.exists() and "bands_hz" in curve.read_text()


def test_master_refuses_silence_with_a_clear_message(tmp_path):
    src = tmp_path / "silence.wav"
    sf.write(src, np.zeros((SR * 2, 2), np.float32), SR)
    with pytest.raises(AudioFormatError, match="silence.wav.*silent"):
        master_file(src, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_render_writes_provenance(material, tmp_path):
    chain = tmp_path / "c.toml"
    chain.write_text('[[stage]]\nplugin = "gain"\nparams = { gain_db = -3.0 }\n')
    out = tmp_path / "r.wav"
    r = subprocess.run([sys.executable, "-m", "rtengine", "render", str(material["pad"]),
                        str(out), "--chain", str(chain)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    side = json.loads(sidecar_path(out).read_text())
    roles = {e["role"]: e for e in side["inputs"]}
    assert roles["input"]["sha256"] == sha256(material["pad"])
    assert roles["chain"]["sha256"] == sha256(chain)
    params = side["chains"]["render"]["stages"][0]["params"]
    assert params["gain_db"] == -3.0 and set(params) >= {"pan", "width", "invert"}


@pytest.mark.parametrize("level", [0.15, 0.9])
def test_live_auto_gain_settles_on_target(level):
    """Auto gain as it runs live (block by block, no look at the whole file):
    once it has settled (the last 30 s of 60) the output's loudness is within
    1 LU of the target; the gain stays in its range and the true peak under the
    ceiling.  (Short-term values keep moving with the music: a slow gain does
    not flatten them, a compressor would.)"""
    x = np.concatenate([music(20, SR, seed=s) for s in (6, 7, 8)], axis=1) * level
    e = rtengine.Engine([("master", {"target_lufs": -14.0, "max_gain_db": 30.0,
                                     "speed_db_s": 3.0, "adapt_s": 5.0})],
                        sample_rate=SR, block_size=128, channels=2)
    y = np.empty_like(x)
    gains = []
    for a in range(0, x.shape[1], 128 * 40):
        e.process(x[:, a:a + 128 * 40], out=y[:, a:a + 128 * 40])
        gains.append(e.meters()["master"]["gain_db"])
    settled = measure(y[:, 30 * SR:], SR).integrated
    assert abs(settled + 14.0) <= 1.0, f"input x{level}: {settled:.2f} LUFS over the last 30 s"
    assert max(abs(g) for g in gains) <= 30.0
    tp = true_peak_db(y[:, e.latency:], oversample=4)
    assert tp <= -1.0, f"true peak {tp:.2f} dBTP over the -1 dBTP ceiling"
    m = e.meters()["master"]
    assert math.isfinite(m["input"]["integrated"]) and m["limiter_reduction_db"] >= 0.0
