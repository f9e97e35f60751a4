"""The ``vst3`` plugin: a real third-party VST3 (Debian's zam-plugins) hosted
through pedalboard on a worker stage."""
from pathlib import Path

import numpy as np
import pytest

import rtengine
from conftest import ZAMCOMP, music_like
from rtengine.errors import PluginError
from rtengine.midi import Mapper

pedalboard = pytest.importorskip("pedalboard")
pytestmark = pytest.mark.skipif(not Path(ZAMCOMP).exists(),
                                reason="zam-plugins is not installed (./run.sh setup as root)")
SR = 48000
SETTINGS = {"threshold_db": -32.0, "ratio": 5.0, "attack_ms": 3.0, "makeup_db": 4.0}


def chain(**params):
    return [("gain", {"gain_db": -3.0}),
            {"plugin": "vst3", "name": "comp", "options": {"bundle": ZAMCOMP},
             "params": params}]


def test_the_chain_equals_pedalboard_running_the_plugin_directly():
    x = music_like(2, SR)
    e = rtengine.Engine(chain(**SETTINGS), SR, 128, 2)
    assert e.latency == 256 + 128 + 240            # hop + block + headroom (+ plugin's 0)
    y = e.render(x)
    direct = pedalboard.load_plugin(ZAMCOMP)
    for k, v in SETTINGS.items():
        setattr(direct, k, v)
    gain = np.float32(10 ** (-3.0 / 20))
    ref = direct.process(x * gain, SR, buffer_size=256)
    err = np.abs(y - ref).max()
    assert err <= 1e-6, f"hosted in a chain vs direct: {err:.3g}"
    assert np.abs(ref - x * gain).max() > 1e-2          # it compressed
    c = e.worker_counters["comp"]
    assert c["miss_samples"] == 0 and c["failures"] == 0


def test_parameters_are_the_plugins_and_midi_mappable(tmp_path):
    e = rtengine.Engine(chain(), SR, 128, 2)
    direct = pedalboard.load_plugin(ZAMCOMP)
    stage = e.stages[1].processor
    ids = {p.id: p for p in stage.params}
    for name in ("threshold_db", "ratio", "attack_ms", "release_ms", "makeup_db", "knee_db"):
        rng = direct.parameters[name].range
        assert (ids[name].min, ids[name].max) == (rng[0], rng[1]), name
        assert e.get(f"comp.{name}") == pytest.approx(getattr(direct, name), rel=1e-6)
    assert ids["threshold_db"].unit == "dB"
    m = tmp_path / "map.toml"
    m.write_text('[[map]]\ncc = 20\ntarget = "comp.threshold_db"\n')
    Mapper.from_file(m, e).handle(bytes([0xB0, 20, 0]))
    assert e.get("comp.threshold_db") == -80.0


def test_state_is_stored_in_the_chain_file(tmp_path):
    e = rtengine.Engine(chain(**SETTINGS), SR, 128, 2)
    x = music_like(2, SR // 2)
    y = e.render(x)
    path = tmp_path / "saved.toml"
    e.to_chain().save(path)
    text = path.read_text()
    assert 'bundle = "/usr/lib/vst3/ZamCompX2.vst3"' in text and "state = " in text
    again = rtengine.Engine(path, SR, 128, 2)
    assert again.get("comp.ratio") == pytest.approx(5.0)
    np.testing.assert_allclose(again.render(x), y, atol=1e-6)


def test_plugins_that_cannot_load_are_explained(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        rtengine.Engine([{"plugin": "vst3", "options": {"bundle": str(tmp_path / "No.vst3")}}],
                        SR, 128, 2)
    fake = tmp_path / "Fake.vst3" / "Contents" / "x86_64-linux"
    fake.mkdir(parents=True)
    (fake / "Fake.so").write_bytes(b"not a shared object")
    with pytest.raises(PluginError, match="Fake.vst3 failed to load"):
        rtengine.Engine([{"plugin": "vst3", "options": {"bundle": str(fake.parent.parent)}}],
                        SR, 128, 2)
    with pytest.raises(PluginError, match=r"ZamEQ2.vst3 cannot process 2 channel"):
        rtengine.Engine([{"plugin": "vst3", "options": {"bundle": "/usr/lib/vst3/ZamEQ2.vst3"}}],
                        SR, 128, 2)
    mono = rtengine.Engine([{"plugin": "vst3", "options": {"bundle": "/usr/lib/vst3/ZamEQ2.vst3"}}],
                           SR, 128, 1)
    assert np.isfinite(mono.render(music_like(1, 4800))).all()
    with pytest.raises(PluginError, match="options.state is not a state"):
        rtengine.Engine([{"plugin": "vst3", "options": {"bundle": ZAMCOMP, "state": "%%%"}}],
                        SR, 128, 2)
