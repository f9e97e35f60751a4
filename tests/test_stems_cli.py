"""``rtengine stems``: checking a model against the contract, separating one file with a
progress bar, a batch of files, and the errors a bad model gives."""
import json

import numpy as np
import pytest
import soundfile as sf

from rtengine.cli import main
from rtengine.stems.contract import CONTRACT, check_model, default_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The shipped model, or (until it is trained) a randomly initialised small one exported
    by the training code: the contract and the plumbing are the same."""
    if default_model().exists():
        return default_model()
    pytest.importorskip("torch", reason="no shipped model yet, and PyTorch (the train extra) "
                                        "is not installed to export a small one")
    import torch

    from rtengine.stems import train
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = train.StemNet(hidden=32)
    torch.save({"model": net.state_dict(), "state": {"hidden": 32}}, d / "small.pt")
    train.export(d / "small.pt", d / "small.onnx")
    return d / "small.onnx"


def music(path, seconds: float, rate: int, channels: int, seed: int,
          subtype: str = "FLOAT") -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], 1)
    x = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    sf.write(path, x, rate, subtype=subtype)
    return x


def test_stems_check_prints_what_the_model_declares(model, capsys):
    spec = check_model(model)
    assert main(["stems", "check", str(model)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"OK: follows {CONTRACT}"), out
    assert f"n_fft {spec.n_fft}, hop {spec.hop}" in out
    assert "stems: " + ", ".join(spec.stems) in out
    assert f"sha256: {spec.sha256}" in out
    for rate in spec.sample_rates:
        assert f"{1e3 * spec.n_fft / rate:.2f} ms at {rate} Hz" in out, out
    assert "states: " in out and "state_in" in out


@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1)])
def test_stems_one_file_writes_every_stem_that_adds_up(model, tmp_path, capsys, rate,
                                                       channels):
    spec = check_model(model, run=False)
    src = tmp_path / "song.wav"
    x = music(src, 1.0, rate, channels, seed=rate)
    out = tmp_path / "stems"
    assert main(["stems", str(src), str(out), "--model", str(model), "--threads", "1"]) == 0
    r = capsys.readouterr()
    assert "sum residual" in r.err and "STFT frames" in r.err, r.err      # the progress bar
    written = r.out.split()
    assert written == [str(out / f"{s}.wav") for s in spec.stems], r.out
    total = np.zeros_like(x)
    for s in spec.stems:
        y, sr = sf.read(out / f"{s}.wav", dtype="float32", always_2d=True)
        assert sr == rate and y.shape == x.shape, f"{s}: {y.shape} at {sr} Hz"
        total += y
    err = float(np.abs(total - x).max())
    assert err < 1e-3, f"stems add up to the input within {err:.2e}, not 1e-3"
    side = json.loads((out / "stems.provenance.json").read_text())
    assert side["models"][0]["sha256"] == spec.sha256


def test_stems_batch_writes_a_folder_per_input_and_reruns_skip(model, tmp_path, capsys):
    spec = check_model(model, run=False)
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    music(a, 1.0, 44100, 2, seed=1)
    music(b, 0.5, 48000, 2, seed=2, subtype="PCM_24")
    out = tmp_path / "stems"
    args = ["stems", str(a), str(b), str(out), "--model", str(model), "--jobs", "2"]
    assert main(args) == 0
    r = capsys.readouterr()
    assert "2 files: 2 done, 0 skipped (already done), 0 failed" in r.out, r.out + r.err
    for name, rate in (("a", 44100), ("b", 48000)):
        for s in spec.stems:
            info = sf.info(out / name / f"{s}.wav")
            assert info.samplerate == rate and info.channels == 2, f"{name}/{s}"
    assert main(args) == 0
    assert "0 done, 2 skipped (already done)" in capsys.readouterr().out


def test_a_corrupt_model_is_named(model, tmp_path, capsys):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(np.random.default_rng(3).bytes(3000))
    assert main(["stems", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtengine: error: ") and str(bad) in err, err
    src = tmp_path / "song.wav"
    music(src, 0.3, 44100, 2, seed=4)
    assert main(["stems", str(src), str(tmp_path / "one"), "--model", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "rtengine: error: " in err and str(bad) in err, err
    assert main(["stems", str(src), str(src), str(tmp_path / "many"), "--model",
                 str(bad)]) == 1                              # a batch: refused before any job
    err = capsys.readouterr().err
    assert str(bad) in err and not (tmp_path / "many").exists(), err
