"""The rtengine VST3 plugin in a real VST3 host (pedalboard, a JUCE host),
talking to a real bridge server process (`rtengine serve`)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rtengine
from conftest import music_like
from rtengine import vst3

pedalboard = pytest.importorskip("pedalboard")

ROOT = Path(__file__).resolve().parent.parent
CHAIN_FILE = ROOT / "latency_bench" / "chains" / "reference.toml"
CHAIN = rtengine.Chain.load(CHAIN_FILE)
SR = 48000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return str(vst3.build(tmp_path_factory.mktemp("vst3")))


def start_server(name):
    p = subprocess.Popen([sys.executable, "-m", "rtengine", "serve", "--chain", str(CHAIN_FILE),
                          "--name", name], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    path = Path(f"/dev/shm/rtengine-{os.getuid()}-{name}")
    end = time.monotonic() + 30
    while not path.exists():
        assert p.poll() is None, p.communicate()[1]
        assert time.monotonic() < end, "the bridge server did not start"
        time.sleep(0.05)
    time.sleep(0.2)
    return p


def stop_server(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


@pytest.fixture(scope="module")
def server():
    name = f"vst3t{os.getpid()}"
    os.environ["RTENGINE_BRIDGE"] = name            # read by the plugin when it initializes
    p = start_server(name)
    yield name, p
    stop_server(p)
    Path(f"/dev/shm/rtengine-{os.getuid()}-{name}").unlink(missing_ok=True)


def render(x, **values):
    e = rtengine.Engine(CHAIN, SR, 512, 2)
    for k, v in values.items():
        e.set(k, v)
    return e.render(x)


@pytest.mark.parametrize("block", [1, 64, 65, 512, 4096])
def test_pedalboard_output_equals_the_offline_render(bundle, server, block):
    p = pedalboard.load_plugin(bundle)
    x = music_like(2, SR // 4 if block == 1 else SR)
    y = p.process(x, SR, buffer_size=block)
    assert p.reported_latency_samples == 90
    err = np.abs(y - render(x)).max()          # pedalboard compensates the reported latency
    assert err <= 1e-6, f"through the plugin at block {block}: differs by {err:.3g}"


def test_parameters_carry_the_engine_ranges(bundle, server):
    p = pedalboard.load_plugin(bundle)
    e = rtengine.Engine(CHAIN, SR, 512, 2)
    assert len(p.parameters) == len(e.params)
    ratio = rtengine.plugins()["compressor"].param("ratio")
    assert p.parameters["compressor_ratio"].range[:2] == (ratio.min, ratio.max)
    assert p.parameters["compressor_ratio"].units == ":1"
    assert p.parameters["eq_band_1_type"].valid_values == list(
        rtengine.plugins()["eq"].param("band1_type").choices)
    thr = p.parameters["compressor_threshold_db"]
    assert thr.range[:2] == (-60.0, 0.0) and thr.units == "dB"


# Hosts send normalized values rounded to float32 (VST3.md): the tests pick
# values whose normalized form is exact (0, 1/4, 1/2, 1), so the engine gets
# exactly the value the reference render uses.

def test_a_host_parameter_change_reaches_the_engine(bundle, server):
    p = pedalboard.load_plugin(bundle)
    p.compressor_threshold_db = -45.0
    p.compressor_ratio = 20.0
    x = music_like(2, SR // 2)
    y = p.process(x, SR, buffer_size=256)
    ref = render(x, **{"compressor.threshold_db": -45.0, "compressor.ratio": 20.0})
    assert np.abs(y - ref).max() <= 1e-6
    assert np.abs(y - render(x)).max() > 1e-2          # and it is not the default chain


def test_state_and_preset_round_trips(bundle, server, tmp_path):
    p = pedalboard.load_plugin(bundle)
    p.compressor_threshold_db = -30.0
    p.process(np.zeros((2, 512), np.float32), SR, buffer_size=512)
    state = p.raw_state
    preset = p.preset_data
    p.compressor_threshold_db = -15.0
    p.process(np.zeros((2, 512), np.float32), SR, buffer_size=512)
    p.raw_state = state
    assert p.compressor_threshold_db == pytest.approx(-30.0)
    x = music_like(2, SR // 2)
    ref = render(x, **{"compressor.threshold_db": -30.0})
    assert np.abs(p.process(x, SR, buffer_size=512) - ref).max() <= 1e-6
    # a .vstpreset file into a fresh instance
    path = tmp_path / "six.vstpreset"
    path.write_bytes(preset)
    q = pedalboard.load_plugin(bundle)
    q.load_preset(str(path))
    assert q.compressor_threshold_db == pytest.approx(-30.0)
    assert np.abs(q.process(x, SR, buffer_size=512) - ref).max() <= 1e-6


def test_two_instances_are_two_lanes(bundle, server):
    a = pedalboard.load_plugin(bundle)
    b = pedalboard.load_plugin(bundle)
    a.compressor_threshold_db = -45.0
    x1, x2 = music_like(2, SR // 2, seed=1), music_like(2, SR // 2, seed=2)
    y1 = a.process(x1, SR, buffer_size=128)
    y2 = b.process(x2, SR, buffer_size=128)
    assert np.abs(y1 - render(x1, **{"compressor.threshold_db": -45.0})).max() <= 1e-6
    assert np.abs(y2 - render(x2)).max() <= 1e-6


def test_garbage_state_is_refused_and_the_chain_keeps_running(bundle, server):
    p = pedalboard.load_plugin(bundle)
    p.compressor_threshold_db = -30.0
    p.process(np.zeros((2, 512), np.float32), SR, buffer_size=512)
    try:
        p.raw_state = b"not a state at all" * 8
    except Exception:
        pass                                       # the host may refuse it first
    assert p.compressor_threshold_db == pytest.approx(-30.0)
    x = music_like(2, SR // 4)
    y = p.process(x, SR, buffer_size=512)
    assert np.abs(y - render(x, **{"compressor.threshold_db": -30.0})).max() <= 1e-6


def test_the_engine_dies_and_comes_back(bundle, tmp_path):
    name = f"vst3k{os.getpid()}"
    old = os.environ.get("RTENGINE_BRIDGE")
    os.environ["RTENGINE_BRIDGE"] = name
    srv = start_server(name)
    try:
        p = pedalboard.load_plugin(bundle)
        x = music_like(2, SR)
        assert np.abs(p.process(x, SR, buffer_size=512) - render(x)).max() <= 1e-6
        srv.send_signal(signal.SIGKILL)
        srv.wait(10)
        t0 = time.perf_counter()
        y = p.process(x, SR, buffer_size=512)
        took = time.perf_counter() - t0
        # the dry input delayed by the reported latency, which the host compensates
        assert np.isfinite(y).all()
        np.testing.assert_array_equal(y, x)
        # at most half a block of waiting per block while the engine is not answering
        assert took < 1.5 * x.shape[1] / SR
        srv = start_server(name)
        end = time.monotonic() + 30
        while True:
            y = p.process(x, SR, buffer_size=512)
            if np.abs(y - render(x)).max() <= 1e-6:
                break
            assert time.monotonic() < end, "the plugin did not reconnect"
            time.sleep(0.2)
    finally:
        stop_server(srv)
        Path(f"/dev/shm/rtengine-{os.getuid()}-{name}").unlink(missing_ok=True)
        if old is not None:
            os.environ["RTENGINE_BRIDGE"] = old


def test_cli_builds_and_installs_the_bundle(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rtengine", "vst3", "build", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    so = tmp_path / "rtengine.vst3" / "Contents" / f"{vst3.bundle_arch()}-linux" / "rtengine.so"
    assert so.exists()
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                          text=True).stdout
    exported = sorted(ln.split()[-1] for ln in syms.splitlines() if " T " in ln)
    assert exported == ["GetPluginFactory", "ModuleEntry", "ModuleExit"]
    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-m", "rtengine", "vst3", "install"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HOME=str(home)))
    assert r.returncode == 0, r.stderr
    assert (home / ".vst3" / "rtengine.vst3" / "Contents").is_dir()


def test_a_mono_track(bundle, server):
    p = pedalboard.load_plugin(bundle)
    x = music_like(1, SR // 2)
    y = p.process(x, SR, buffer_size=256)
    assert y.shape == x.shape
    ref = rtengine.Engine(CHAIN, SR, 512, 1).render(x)
    assert np.abs(y - ref).max() <= 1e-6


# JUCE keeps a VST3 plugin's state as "VC2!", a size, and XML holding the
# component state in JUCE's own base64 (size "." then 6-bit digits from this
# alphabet, least significant bits first).  The helpers below edit the rtengine
# blob inside it, as a damaged or hand-edited project file would.
JUCE64 = ".ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"


def _juce_decode(text: str) -> bytes:
    size, _, digits = text.partition(".")
    value = sum(JUCE64.index(ch) << (6 * i) for i, ch in enumerate(digits))
    return value.to_bytes(int(size), "little")


def _juce_encode(data: bytes) -> str:
    value = int.from_bytes(data, "little")
    n = (len(data) * 8 + 5) // 6
    return f"{len(data)}." + "".join(JUCE64[(value >> (6 * i)) & 63] for i in range(n))


def _component_blob(raw: bytes) -> bytes:
    import re
    return _juce_decode(re.search(r"<IComponent>([^<]*)</IComponent>", raw[8:].decode()).group(1))


def _with_component_state(raw: bytes, edit) -> bytes:
    import re
    xml = raw[8:].decode()
    m = re.search(r"<IComponent>([^<]*)</IComponent>", xml)
    blob = edit(_juce_decode(m.group(1)))
    xml = xml[:m.start(1)] + _juce_encode(blob) + xml[m.end(1):]
    body = xml.encode()
    return raw[:4] + len(body).to_bytes(4, "little") + body


def test_truncated_or_foreign_state_is_refused(bundle, server):
    import struct
    p = pedalboard.load_plugin(bundle)
    p.compressor_threshold_db = -30.0
    p.process(np.zeros((2, 512), np.float32), SR, buffer_size=512)
    good = p.raw_state
    assert _juce_decode(_juce_encode(b"\x01\x02\x03rtengine")) == b"\x01\x02\x03rtengine"
    assert _with_component_state(good, lambda b: b)[8:] == good[8:]
    magic, version, size = struct.unpack("<III", _component_blob(good)[:12])
    assert magic == 0x56455452 and version == 1          # "RTEV", then the chain text
    assert b"threshold_db = -30.0" in _component_blob(good)
    p.compressor_threshold_db = -45.0
    p.process(np.zeros((2, 512), np.float32), SR, buffer_size=512)
    bad_states = [
        _with_component_state(good, lambda b: b[:12 + size // 2]),           # truncated
        _with_component_state(good, lambda b: b[:4] + struct.pack("<I", 99) + b[8:]),  # version
        _with_component_state(good, lambda b: b"XXXX" + b[4:]),              # not ours
        _with_component_state(good, lambda b: b[:12] + b"[[stage]\nnot toml"),  # bad chain
    ]
    for bad in bad_states:
        try:
            p.raw_state = bad
        except Exception:
            pass
        # refused: the running chain and its values stay
        assert p.compressor_threshold_db == pytest.approx(-45.0)
    x = music_like(2, SR // 4)
    y = p.process(x, SR, buffer_size=512)
    assert np.abs(y - render(x, **{"compressor.threshold_db": -45.0})).max() <= 1e-6
    p.raw_state = good                                 # and a good one still restores
    assert p.compressor_threshold_db == pytest.approx(-30.0)


def test_many_instances_at_once(bundle, server):
    """Sixteen tracks loaded at once, each rtengine at its own threshold (its own
    lane and chain), processed in turn, twice."""
    plugins, xs, refs = [], [], []
    for k in range(16):
        p = pedalboard.load_plugin(bundle)
        p.compressor_threshold_db = -60.0 + 15.0 * (k % 4)        # exact normalized values
        plugins.append(p)
        xs.append(music_like(2, SR // 8, seed=10 + k))
        refs.append(render(xs[-1], **{"compressor.threshold_db": -60.0 + 15.0 * (k % 4)}))
    for _ in range(2):
        for k, p in enumerate(plugins):
            y = p.process(xs[k], SR, buffer_size=512)
            assert np.abs(y - refs[k]).max() <= 1e-6, f"instance {k}"


def build_harness(tmp_path):
    exe = tmp_path / "harness"
    r = subprocess.run(["gcc", "-O1", "-std=gnu11", "-Wall", "-o", str(exe),
                        str(ROOT / "tests" / "vst3_harness.c"), "-ldl", "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def test_notes_on_the_midi_bus_reach_the_engines_midi_map(bundle, tmp_path):
    """The plugin's MIDI input bus: a note event from the host goes over the
    bridge to `rtengine serve --midi-map`, toggles the mapped bypass, and the
    plugin reports the moved parameter back as an output parameter change.
    Controllers: the plugin maps exactly the map's controllers (CC 7 on channel
    1, pitch bend on channel 2) to hidden parameters through IMidiMapping, and
    their changes from the host (in a 0-sample block, in mid block) reach the
    map as MIDI and move the gain."""
    from rtengine.bridge import param_id
    midi_map = tmp_path / "map.toml"
    midi_map.write_text('[[map]]\nnote = 60\nchannel = 1\ntarget = "gain.bypass"\n'
                        '[[map]]\ncc = 7\nchannel = 1\ntarget = "gain.gain_db"\n'
                        'min = -60.0\nmax = 0.0\n'
                        '[[map]]\npitchbend = true\nchannel = 2\ntarget = "gain.pan"\n')
    name = f"vst3m{os.getpid()}"
    p = subprocess.Popen([sys.executable, "-m", "rtengine", "serve", "--name", name,
                          "--midi-map", str(midi_map)], cwd=ROOT, stderr=subprocess.PIPE,
                         text=True)
    try:
        path = Path(f"/dev/shm/rtengine-{os.getuid()}-{name}")
        end = time.monotonic() + 30
        while not path.exists():
            assert p.poll() is None and time.monotonic() < end, "no bridge server"
            time.sleep(0.05)
        exe = build_harness(tmp_path)
        so = next(Path(bundle).glob("Contents/*/rtengine.so"))
        r = subprocess.run([str(exe), str(so), "midi"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "RTENGINE_BRIDGE": name})
        assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout + r.stderr
        taken: set[int] = set()
        ids = {k: param_id(f"gain.{k}", taken) for k in ("gain_db", "pan", "width", "invert",
                                                          "bypass")}
        bypass = ids["bypass"]
        assert f"output change {bypass} at 0 = 1" in r.stdout, r.stdout
        for line in ("ok IMidiMapping", "ok unmapped controllers are not",
                     "ok 5 gain parameters and 2 controller parameters",
                     "ok CC 7 = 64 moved the gain to -29.8 dB",
                     "ok CC 7 = 127 in mid block moved the gain to 0 dB"):
            assert line in r.stdout, r.stdout
        gain = ids["gain_db"]
        assert f"output change {gain} at 0" in r.stdout, r.stdout     # the DAW's knob follows
    finally:
        stop_server(p)
        Path(f"/dev/shm/rtengine-{os.getuid()}-{name}").unlink(missing_ok=True)


def test_host_calls_pedalboard_does_not_make(bundle, server, tmp_path):
    """A small C host (tests/vst3_harness.c): a 0-sample flush with no buffers,
    64-bit requests, no input bus, and raw state blobs (truncated, other
    version, foreign, empty, good)."""
    exe = build_harness(tmp_path)
    so = next(Path(bundle).glob("Contents/*/rtengine.so"))
    r = subprocess.run([str(exe), str(so)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout + r.stderr
    assert "refusing a truncated state" in r.stderr
