"""Worker stages (DESIGN.md): Python work behind lock-free rings, a declared
latency, the time-aligned dry signal on a missed deadline, never a wait; and
the ``pyo`` plugin built on them."""
import time

import numpy as np
import pytest

import rtengine
from rtengine import registry
from conftest import PATCHES, music_like
from rtengine.chain import Chain
from rtengine.errors import ChainError, PluginError
from rtengine.midi import Mapper
from rtengine.params import Param
from rtengine.worker import WorkerError, WorkerProcessor

SR = 48000

GAIN_PATCH = '''
import pyo

PARAMS = [{"id": "gain", "name": "Gain", "min": 0.0, "max": 2.0, "default": 0.5}]


def build(inp, p):
    return inp * p["gain"]
'''


class SlowHalf(WorkerProcessor):
    """Halves the signal on the worker; sleeps ``delay`` seconds per chunk and
    raises from chunk ``fail_at`` on when those are set."""
    name = "test_slow_half"
    params = (Param("unused", "Unused", 0.0, 1.0, 0.0),)
    delay = 0.0
    fail_at = None

    def work_reset(self):
        self.done = 0

    def work(self, block, params, out):
        if self.fail_at is not None and self.done >= self.fail_at:
            raise RuntimeError("the model fell over")
        if self.delay:
            time.sleep(self.delay)
        out[:] = 0.5 * block
        self.done += 1


@pytest.fixture(autouse=True, scope="module")
def slow_half():
    rtengine.register(SlowHalf)
    yield
    registry._extra.pop(SlowHalf.name, None)     # other modules list every plugin


@pytest.fixture
def gain_patch(tmp_path):
    p = tmp_path / "gain.py"
    p.write_text(GAIN_PATCH)
    return str(p)


def pyo_engine(patch, block=128, channels=2, name="g", **params):
    return rtengine.Engine([{"plugin": "pyo", "name": name, "options": {"patch": patch},
                             "params": params}], SR, block, channels)


def test_declared_latency_and_exact_time_aligned_output(gain_patch):
    e = pyo_engine(gain_patch, block=128, gain=0.5)
    # hop 64 + one block + 5 ms of headroom
    assert e.latency == 64 + 128 + 240
    x = music_like(2, 20000)
    y = e.process(x)
    L = e.latency
    assert np.abs(y[:, :L]).max() == 0.0
    np.testing.assert_allclose(y[:, L:], 0.5 * x[:, :-L], rtol=0, atol=1e-6)
    c = e.worker_counters["g"]
    assert c["miss_samples"] == 0 and c["chunks_skipped"] == 0 and c["chunks_done"] > 300
    # render() compensates the latency like any stage's
    np.testing.assert_allclose(e.render(x), 0.5 * x, rtol=0, atol=1e-6)


def test_patch_parameters_are_engine_parameters_and_midi_mappable(gain_patch, tmp_path):
    e = pyo_engine(gain_patch, block=64, gain=0.5)
    assert e.params == {"g.gain": 0.5, "g.bypass": 0.0}
    x = music_like(2, 4 * SR // 10)
    y1 = e.process(x[:, :SR // 10].copy())
    e.set("g.gain", 1.5)
    y2 = e.process(x[:, SR // 10:].copy())
    L = e.latency
    y = np.concatenate([y1, y2], axis=1)
    late = SR // 10 + L + SR // 20          # past the 20 ms ramp and pyo's own smoothing
    np.testing.assert_allclose(y[:, late:], 1.5 * x[:, late - L:-L], rtol=2e-6,
                               atol=1e-6)   # pyo scales by 1 - 4e-7
    # the gain moves smoothly from 0.5 to 1.5 (no step)
    seg = slice(SR // 10 + L - 500, late)
    d = x[0, seg.start - L:seg.stop - L]
    ok = np.abs(d) > 0.05
    g = y[0, seg][ok] / d[ok]
    assert g[0] == pytest.approx(0.5, abs=1e-5) and g[-1] == pytest.approx(1.5, abs=1e-5)
    assert np.all(np.diff(g) > -1e-5) and np.abs(np.diff(g)).max() < 0.02
    # a MIDI fader reaches the patch's parameter like any other
    m = tmp_path / "map.toml"
    m.write_text('[[map]]\ncc = 7\nchannel = 1\ntarget = "g.gain"\nmin = 0.0\nmax = 2.0\n')
    Mapper.from_file(m, e).handle(bytes([0xB0, 7, 127]))
    assert e.get("g.gain") == 2.0
    # and the preset keeps the patch and the value
    ch = e.to_chain()
    assert ch.stages[0].options == {"patch": gain_patch} and ch.stages[0].params["gain"] == 2.0


def test_shipped_patches_process_audio():
    x = np.zeros((2, SR), np.float32)
    x[:, 1000:1100] = 0.5                      # a click: the reverb rings on
    for patch, params in (("reverb.py", {"mix": 1.0}), ("chorus.py", {"mix": 0.5})):
        e = rtengine.Engine([{"plugin": "pyo", "options": {"patch": str(PATCHES / patch)},
                              "params": params}], SR, 256, 2)
        y = e.render(x)
        assert np.isfinite(y).all()
        assert np.abs(y - x).max() > 1e-3, patch
        if patch == "reverb.py":
            tail = y[:, 1100 + SR // 10:]
            assert np.sqrt(np.mean(tail ** 2)) > 1e-4, "no reverb tail"


def test_chain_file_paths_are_relative_to_the_chain(tmp_path, gain_patch):
    d = tmp_path / "set"
    d.mkdir()
    (d / "mine.py").write_text(GAIN_PATCH)
    chain = d / "stage.toml"
    chain.write_text('[[stage]]\nplugin = "pyo"\nname = "g"\n[stage.options]\n'
                     'patch = "mine.py"\nhop = 32\n[stage.params]\ngain = 0.25\n')
    e = rtengine.Engine(chain, SR, 64, 1)
    assert e.stages[0].processor.patch == str(d / "mine.py")
    assert e.latency == 32 + 64 + 240
    x = music_like(1, 8000)
    np.testing.assert_allclose(e.render(x), 0.25 * x, rtol=0, atol=1e-6)
    # a parameter the patch does not declare is named with the chain file
    chain.write_text('[[stage]]\nplugin = "pyo"\n[stage.options]\npatch = "mine.py"\n'
                     '[stage.params]\nvolume = 0.25\n')
    with pytest.raises(rtengine.ParameterError, match=r"stage.toml.*volume.*gain"):
        rtengine.Engine(chain, SR, 64, 1)


@pytest.mark.parametrize("text,message", [
    ("", "must define build"),
    ("import pyo\ndef build(inp):\n    return inp\n", "must define build"),
    ("def build(inp, p:\n", "failed to load: SyntaxError"),
    ("raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
    ("PARAMS = 3\ndef build(inp, p):\n    return inp\n", "PARAMS must be a list"),
    ("PARAMS = [{'id': 'x', 'min': 0, 'max': 1}]\ndef build(inp, p):\n    return inp\n",
     "missing default"),
    ("PARAMS = [{'id': 'x', 'min': 0, 'max': 1, 'default': 2}]\n"
     "def build(inp, p):\n    return inp\n", "outside"),
    ("PARAMS = [{'id': 'bypass', 'min': 0, 'max': 1, 'default': 0}]\n"
     "def build(inp, p):\n    return inp\n", "engine's own"),
    ("PARAMS = [{'id': 'x', 'min': 0, 'max': 1, 'default': 0, 'colour': 1}]\n"
     "def build(inp, p):\n    return inp\n", "unknown keys colour"),
    ("def build(inp, p):\n    return 42\n", "must return a pyo object"),
    ("def build(inp, p):\n    return inp * p['nope']\n", "build\\(\\) failed: KeyError"),
])
def test_bad_patches_are_explained(tmp_path, text, message):
    p = tmp_path / "bad_patch.py"
    p.write_text(text)
    with pytest.raises(PluginError, match=message) as info:
        pyo_engine(str(p))
    assert "bad_patch.py" in str(info.value)


def test_a_patch_runs_only_from_a_file(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        pyo_engine(str(tmp_path / "missing.py"))
    with pytest.raises(PluginError, match="needs a patch file"):
        rtengine.Engine([{"plugin": "pyo"}], SR, 64, 2)
    # no way to embed code in a chain: only the declared options exist
    text = '[[stage]]\nplugin = "pyo"\n[stage.options]\ncode = "import os"\n'
    with pytest.raises(ChainError, match="no option code"):
        Chain.from_toml(text)
    # code in place of a path is a path that does not exist: never executed
    text = ('[[stage]]\nplugin = "pyo"\n[stage.options]\n'
            'patch = "import os; os.system(\'touch PWNED\')"\n')
    with pytest.raises(PluginError, match="does not exist"):
        rtengine.Engine(Chain.from_toml(text, base=tmp_path), SR, 64, 2)
    assert not (tmp_path / "PWNED").exists()


def _convex_dry_wet(y, dry):
    """y must be d + g * (0.5 d - d) with g in [0, 1] at every sample: the
    worker's output, the time-aligned dry signal, or a fade between them."""
    big = np.abs(dry) > 1e-3
    ratio = y[big] / dry[big]
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 1.0 + 1e-5, (ratio.min(), ratio.max())
    assert np.all(np.abs(y[~big]) <= 1e-3 + 1e-6)
    return ratio


def test_a_late_worker_gives_time_aligned_dry_and_the_audio_thread_never_waits():
    # the worker gets its first 4 ms slot within the native run unless the VM
    # stalls its thread for all of it: then the run is repeated (at most 3 runs)
    for _attempt in range(3):
        SlowHalf.delay = 0.004                  # 4 ms per 64-frame chunk (1.3 ms of audio)
        try:
            e = rtengine.Engine([("test_slow_half", {})], SR, 64, 2)
            x = music_like(2, SR)
            y = e.render_on_native_thread(x, 64)    # blocks back to back, workers on threads
            native = e.last_native_seconds
            c = e.worker_counters["test_slow_half"]
        finally:
            SlowHalf.delay = 0.0
        # 750 blocks in far less time than the worker needs for even a tenth of them
        assert native < 0.075 * 750 * 0.004, f"the native thread took {native:.3f} s"
        assert np.isfinite(y).all()
        ratio = _convex_dry_wet(y, x)
        missed = np.isclose(ratio, 1.0, atol=1e-6).sum() / ratio.size
        assert missed > 0.5, "expected most samples to fall back to dry"
        assert c["miss_samples"] > SR // 2 and c["miss_blocks"] > 300
        if c["chunks_done"] >= 1:
            break
    # whatever the worker delivered in time came out (time-aligned, halved)
    assert c["chunks_done"] >= 1, "the worker did not run once in 3 native runs"


def test_a_worker_that_keeps_up_misses_nothing_live():
    e = rtengine.Engine([("test_slow_half", {})], SR, 64, 2)
    x = music_like(2, SR // 4)
    out = paced(e, x)
    c = e.worker_counters["test_slow_half"]
    L = e.latency
    if c["miss_samples"]:                          # a loaded CI machine may starve it once
        _convex_dry_wet(out[:, L:], x[:, :-L])
    else:
        np.testing.assert_allclose(out[:, L:], 0.5 * x[:, :-L], rtol=0, atol=1e-7)
    assert c["miss_samples"] <= 0.05 * x.shape[1]


def paced(e, x, block=64):
    """Blocks handed to the engine at the pace of an audio callback, with the
    worker stages on their own threads."""
    out = np.empty_like(x)
    e.start_workers()
    try:
        for a in range(0, x.shape[1], block):
            e.process(x[:, a:a + block], out=out[:, a:a + block])
            time.sleep(block / SR)
    finally:
        e.stop_workers()
    return out


def test_a_failing_worker_is_reported_and_the_stage_stays_dry():
    SlowHalf.fail_at = 10
    try:
        e = rtengine.Engine([{"plugin": "test_slow_half", "name": "model"}], SR, 64, 1)
        x = music_like(1, SR // 4)
        with pytest.raises(WorkerError, match="'model'.*the model fell over"):
            e.render(x)
        e.reset()
        y = paced(e, x)
        c = e.worker_counters["model"]
    finally:
        SlowHalf.fail_at = None
    assert c["failures"] == 1 and np.isfinite(y).all()
    L = e.latency
    _convex_dry_wet(y[:, L:], x[:, :-L])
    # after the failure: the dry signal, time-aligned, to the end
    half = x.shape[1] // 2
    np.testing.assert_array_equal(y[:, half:], x[:, half - L:-L])
