"""The DAW bridge without a DAW: the plugin's end (client.c, driven through
cffi) against the bridge server, over the real shared-memory segment and
futexes.  The VST3 plugin builds on the same client code."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rtengine
from conftest import PATCHES, music_like
from rtengine._runner import ffi, lib
from rtengine.bridge import BridgeError, BridgeServer, Client

ROOT = Path(__file__).resolve().parent.parent
CHAIN = (ROOT / "latency_bench" / "chains" / "reference.toml").read_text()
SR = 48000


@pytest.fixture
def name(request):
    n = f"t{os.getpid()}-{request.node.name[:20]}".replace("[", "-").replace("]", "")
    n = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in n)
    yield n
    try:
        os.unlink(f"/dev/shm/rtengine-{os.getuid()}-{n}")
    except FileNotFoundError:
        pass


@pytest.fixture
def server(name):
    with BridgeServer(name=name) as srv:
        yield srv


def through(client, x, block, changes_at=None):
    """Blocks through the lane as a DAW's offline render sends them: with the
    plugin's offline deadline (2 s), so a busy test machine cannot turn a slow
    answer into a dry block; the real-time deadline has tests of its own."""
    out = np.empty_like(x)
    done = 0
    for a in range(0, x.shape[1], block):
        y, got = client.process(x[:, a:a + block], (changes_at or {}).get(a, ()),
                                timeout_us=2_000_000)
        out[:, a:a + block] = y
        done += got
    return out, done


@pytest.mark.parametrize("block", [1, 64, 65, 512, 4096, 5000])
def test_a_lane_equals_the_offline_render(server, name, block):
    x = music_like(2, 3 * SR // 2 if block > 1 else SR // 8)
    with Client(name) as c:
        c.claim(SR, 512, 2)
        c.configure(CHAIN)
        assert c.ready and c.lane.latency == 90
        y, done = through(c, x, block)
        late = c.lane.counters.late
    assert done == x.shape[1], (f"every frame went through the engine: {done} of "
                                f"{x.shape[1]}, {late} late answers")
    ref = rtengine.Engine(rtengine.Chain.from_toml(CHAIN), SR, 512, 2).render(x)
    L = 90
    err = np.abs(y[:, L:] - ref[:, :-L]).max()
    assert err <= 1e-6, f"bridge output differs from the offline render by {err:.3g}"


def test_lanes_wait_awake_for_a_paced_daw_only_as_asked(name):
    """A DAW calls once per period: a lane thread waits for the next block
    awake from --spin-us before it is due (no wake-up cost), costing CPU;
    spin_us=0 always sleeps.  Output is the same either way."""
    x = music_like(2, 512 * 60)
    ref = rtengine.Engine(rtengine.Chain.from_toml(CHAIN), SR, 512, 2).render(x)
    cpu = {}
    for spin in (0, 2000):
        with BridgeServer(name=name, spin_us=spin), Client(name) as c:
            c.claim(SR, 512, 2)
            c.configure(CHAIN)
            y = np.empty_like(x)
            period = 512 / SR
            t0, c0 = time.monotonic(), time.process_time()
            for b, a in enumerate(range(0, x.shape[1], 512)):
                time.sleep(max(0.0, t0 + b * period - time.monotonic()))
                y[:, a:a + 512], got = c.process(x[:, a:a + 512], (), timeout_us=2_000_000)
                assert got == 512
            cpu[spin] = (time.process_time() - c0) / (time.monotonic() - t0)
        assert np.abs(y[:, 90:] - ref[:, :-90]).max() <= 1e-6
    print(f"CPU per second of paced 512-frame blocks: spin 0 {cpu[0]:.2f}, 2000 us {cpu[2000]:.2f}")
    # awake 2 ms before each block of 10.7 ms is due: about 0.19 of a core more
    # (0.04 -> 0.23 measured)
    assert cpu[2000] > cpu[0] + 0.1
    with pytest.raises(BridgeError, match="spin_us=-1"):
        BridgeServer(name=name, spin_us=-1)



def test_a_late_block_does_not_put_the_lane_to_sleep_for_the_next(name):
    """A DAW's audio thread sometimes wakes late; the block after a late one
    comes on time.  The lane keeps the blocks' cadence and waits awake from
    ``spin`` before a block is due to 4 x ``spin`` after, so a late block
    (2.5 ms here, within the 4 ms) finds its thread awake, and so does the
    one after it: few of them pay a wake-up, counted as ``woken``.  (Timing
    the next block from the late one, as before, put the lane to sleep for
    it: 96 and more of 240; with the window after the due time only ``spin``
    long, every late block paid one too: 58-61.)"""
    x = music_like(2, 512 * 240)
    period = 512 / SR
    late = set(range(2, 240, 5))                 # 48 blocks sent 2.5 ms late
    with BridgeServer(name=name, spin_us=1000), Client(name) as c:
        c.claim(SR, 512, 2)
        c.configure(CHAIN)
        for a in range(0, 512 * 20, 512):        # warm up, then count from here
            c.process(x[:, a:a + 512], (), timeout_us=2_000_000)
        before = c.lane.counters.woken
        t0 = time.monotonic()
        for b, a in enumerate(range(0, x.shape[1], 512)):
            due = t0 + (b + 1) * period + (0.0025 if b in late else 0.0)
            while time.monotonic() < due:         # no sleep's slack: to the microsecond
                pass
            _, got = c.process(x[:, a:a + 512], (), timeout_us=2_000_000)
            assert got == 512
        woken = c.lane.counters.woken - before
    print(f"woken {woken} of 240 blocks, {len(late)} of them late")
    # the margin is for a test machine's own stalls (10 of 240 seen on a
    # 2-core VM)
    assert woken <= len(late) // 2, woken


def test_parameters_are_published_and_automation_is_sample_accurate(server, name):
    text = '[[stage]]\nplugin = "gain"\n[[stage]]\nplugin = "eq"\n[stage.params]\nband1_on = true\n'
    with Client(name) as c:
        c.claim(SR, 256, 1)
        c.configure(text)
        params = {p["key"]: p for p in c.params()}
        gain = rtengine.plugins()["gain"].param("gain_db")
        assert params["gain.gain_db"]["min"] == gain.min == -60.0
        assert params["gain.gain_db"]["max"] == gain.max and params["gain.gain_db"]["default"] == 0
        assert params["eq.band1_type"]["steps"] == 6 and params["eq.lowcut_on"]["steps"] == 1
        assert params["eq.band1_freq"]["flags"] & lib.RTB_PARAM_LOG
        assert params["gain.bypass"]["flags"] & lib.RTB_PARAM_BYPASS
        ids = [p["id"] for p in params.values()]
        assert len(set(ids)) == len(ids) and all(0 <= i < 2 ** 31 for i in ids)
        keys = list(params)
        g = keys.index("gain.gain_db")
        x = np.full((1, 1024), 0.5, np.float32)
        y, _ = c.process(x, [(g, 300, -20.0)])         # a change at sample 300
        # the runner ramps from exactly that sample (20 ms smoothing)
        assert np.all(y[0, :300] == 0.5) and y[0, 301] < 0.5
        ref = rtengine.Engine(rtengine.Chain.from_toml(text), SR, 256, 1)
        r1 = ref.process(x[:, :300].copy())
        ref.set("gain.gain_db", -20.0)
        r2 = ref.process(x[:, 300:].copy())
        np.testing.assert_allclose(y, np.concatenate([r1, r2], axis=1), atol=1e-7)
        # the server publishes the value; a designed (EQ) parameter is applied too
        b = keys.index("eq.band1_gain_db")
        c.process(x, [(b, 0, 9.0)])
        end = time.monotonic() + 2
        while server.lanes[c.index].engine.get("eq.band1_gain_db") != 9.0:
            assert time.monotonic() < end
            time.sleep(0.01)
        time.sleep(0.05)
        assert {p["key"]: p["value"] for p in c.params()}["eq.band1_gain_db"] == 9.0


def test_state_round_trip_restores_chain_and_values(server, name):
    with Client(name) as a, Client(name) as b:
        a.claim(SR, 128, 2)
        a.configure(CHAIN)
        keys = [p["key"] for p in a.params()]
        a.process(np.zeros((2, 128), np.float32), [(keys.index("compressor.ratio"), 0, 6.5)])
        state = a.state()
        assert "ratio = 6.5" in state
        b.claim(SR, 128, 2)
        b.configure(state)
        vals = {p["key"]: p["value"] for p in b.params()}
        assert vals["compressor.ratio"] == 6.5
        assert a.index != b.index


def test_two_lanes_do_not_interfere(server, name):
    other = '[[stage]]\nplugin = "gain"\n[stage.params]\ngain_db = -6.0\n'
    x1, x2 = music_like(2, SR // 2, seed=1), music_like(2, SR // 2, seed=2)
    with Client(name) as a, Client(name) as b:
        a.claim(SR, 64, 2)
        b.claim(SR, 64, 2)
        a.configure(CHAIN)
        b.configure(other)
        y1, y2 = np.empty_like(x1), np.empty_like(x2)
        for s in range(0, x1.shape[1], 64):
            y1[:, s:s + 64] = a.process(x1[:, s:s + 64])[0]
            y2[:, s:s + 64] = b.process(x2[:, s:s + 64])[0]
    r1 = rtengine.Engine(rtengine.Chain.from_toml(CHAIN), SR, 64, 2).render(x1)
    r2 = rtengine.Engine(rtengine.Chain.from_toml(other), SR, 64, 2).render(x2)
    assert np.abs(y1[:, 90:] - r1[:, :-90]).max() <= 1e-6
    assert np.abs(y2 - r2).max() <= 1e-6


def test_bad_chains_and_corrupt_requests_are_refused(server, name):
    with Client(name) as c:
        c.claim(SR, 64, 2)
        with pytest.raises(BridgeError, match="not valid TOML"):
            c.configure("[[stage]\nplugin = 'gain'")
        with pytest.raises(BridgeError, match="no plugin named 'nope'"):
            c.configure('[[stage]]\nplugin = "nope"\n')
        c.configure(CHAIN)
        with pytest.raises(BridgeError, match="no plugin named"):   # the running chain stays
            c.configure('[[stage]]\nplugin = "nope"\n')
        c.configure(CHAIN)
        lane = c.lane
        # a corrupted request (frame count out of range): refused, answered with the input
        lane.nframes = 10 ** 6
        req = lane.req_seq + 1
        lane.req_seq = req
        end = time.monotonic() + 2
        while lane.resp_seq != req:
            assert time.monotonic() < end
            time.sleep(0.001)
        assert lane.counters.rejected >= 1
        # out-of-range parameter indices and NaN values are refused, not applied
        y, got = c.process(np.full((2, 64), 0.1, np.float32), [(9999, 0, 1.0),
                                                              (0, 10, float("nan"))])
        assert got == 64 and np.isfinite(y).all() and lane.counters.rejected >= 3


MIDI_MAP = """
[[map]]
note = 60
channel = 1
target = "gain.bypass"
mode = "toggle"

[[map]]
cc = 7
channel = 1
target = "gain.gain_db"
min = -60.0
max = 0.0
"""


def wait_value(c, key, want, blocks=400):
    """Process silent blocks until the lane publishes want for key (the lane's
    MIDI map runs on the server's control side, a few ms behind the audio)."""
    keys = [p["key"] for p in c.params()]
    k = keys.index(key)
    for _ in range(blocks):
        c.process(np.zeros((2, 64), np.float32))
        if abs(c.lane.values[k] - want) < 1e-6:
            return True
        time.sleep(0.005)
    return False


def test_midi_from_the_daw_goes_through_the_servers_midi_map(name, tmp_path):
    path = tmp_path / "map.toml"
    path.write_text(MIDI_MAP)
    text = '[[stage]]\nplugin = "gain"\n'
    with BridgeServer(name=name, midi_map=path) as srv, Client(name) as c:
        c.claim(SR, 512, 2)
        c.configure(text)
        # the controllers the map listens to, for the plugin's IMidiMapping: CC 7 on
        # channel 1 only (a note is not a controller)
        bits = [int(c.lane.midi_ctrl[w]) for w in range(65)]
        assert [k for k in range(65 * 32) if bits[k >> 5] >> (k & 31) & 1] == [7]
        seq0 = c.lane.values_seq
        x = np.full((2, 512), 0.5, np.float32)
        # CC 7 at 64 on channel 1, in the middle of a block: gain to about -30 dB
        y, got = c.process(x, midi=[(300, b"\xb0\x07\x40")])
        assert got == 512
        assert wait_value(c, "gain.gain_db", -60.0 + 60.0 * 64 / 127)
        assert c.lane.values_seq != seq0, "the plugin is told values moved outside the DAW"
        # a note on (channel 1, note 60) toggles the bypass; on channel 2 it does nothing
        c.process(x, midi=[(0, b"\x91\x3c\x7f")])
        time.sleep(0.1)
        assert wait_value(c, "gain.bypass", 0.0)
        c.process(x, midi=[(10, b"\x90\x3c\x7f"), (20, b"\x80\x3c\x00")])
        assert wait_value(c, "gain.bypass", 1.0)
        for _ in range(20):                            # past the bypass crossfade
            y, _ = c.process(x)
        np.testing.assert_allclose(y, x, atol=1e-6)
        # a block the plugin gives up on at once (no time to wait) loses no MIDI:
        # the note goes with the next request the engine takes, exactly once
        c.process(x, midi=[(0, b"\x90\x3c\x7f")], timeout_us=0)
        assert wait_value(c, "gain.bypass", 0.0)
        for _ in range(20):
            c.process(x)
        assert c.lane.values[[p["key"] for p in c.params()].index("gain.bypass")] == 0.0
        # malformed events are refused by the server's checks, counted, never mapped
        rejected = c.lane.counters.rejected
        lane = c.lane
        y, got = c.process(x, midi=[(5, b"\x07\x40\x40"), (6, b"\xb0\x87\x00")])
        assert got == 512 and lane.counters.rejected == rejected + 2
        with pytest.raises(BridgeError, match="1 to 3 bytes"):
            c.process(x, midi=[(0, b"\xf0\x01\x02\x03\xf7")])
        assert not srv.errors
    # a map whose targets a lane's chain lacks: the lane runs, unmapped, and says so
    with BridgeServer(name=name, midi_map=path) as srv, Client(name) as c:
        c.claim(SR, 512, 2)
        c.configure('[[stage]]\nplugin = "eq"\n')
        y, got = c.process(np.zeros((2, 512), np.float32), midi=[(0, b"\xb0\x07\x40")])
        assert got == 512 and "not mapped" in srv.errors[0] and "gain" in srv.errors[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[map]\ncc = 7")
    with pytest.raises(rtengine.RtEngineError, match="bad.toml"):
        BridgeServer(name=name, midi_map=bad)


def test_a_pyo_patch_runs_only_from_an_allowed_folder(name, tmp_path):
    text = (f'[[stage]]\nplugin = "pyo"\n[stage.options]\npatch = "{PATCHES / "reverb.py"}"\n')
    with BridgeServer(name=name) as srv, Client(name) as c:
        c.claim(SR, 128, 2)
        with pytest.raises(BridgeError, match="--patch-dir"):
            c.configure(text)
        assert srv.errors
    with BridgeServer(name=name, patch_dirs=[PATCHES]) as srv, Client(name) as c:
        c.claim(SR, 128, 2)
        c.configure(text)
        x = music_like(2, 4096)
        y, got = c.process(x)
        k = c.lane.counters
        assert got == 4096 and np.isfinite(y).all(), (
            f"engine frames {got}, ready {c.ready}, late {k.late}, rejected {k.rejected}, "
            f"requests {k.requests}, refused {srv.errors}")


def test_a_slow_chain_build_does_not_stall_the_other_lanes(name, tmp_path):
    """One DAW track loads a chain that takes seconds to build (here a patch
    that sleeps 1.5 s when loaded, like a big model); another track keeps
    being processed by the engine all the while, never falling back to dry."""
    slow = tmp_path / "slow.py"
    slow.write_text((PATCHES / "reverb.py").read_text() + "\nimport time\ntime.sleep(1.5)\n")
    text = f'[[stage]]\nplugin = "pyo"\n[stage.options]\npatch = "{slow}"\n'
    with BridgeServer(name=name, patch_dirs=[tmp_path]) as srv, Client(name) as a, \
            Client(name) as b:
        a.claim(SR, 256, 2)
        a.configure(CHAIN)
        b.claim(SR, 256, 2)
        done = threading.Event()

        def build():
            try:
                b.configure(text)
            finally:
                done.set()
        threading.Thread(target=build, daemon=True).start()
        x = music_like(2, 256)
        blocks = dry = 0
        t0 = time.monotonic()
        while not done.is_set():
            _, got = a.process(x, timeout_us=20000)
            blocks += 1
            dry += got != 256
            time.sleep(0.002)
        assert time.monotonic() - t0 > 1.4 and blocks > 100
        assert dry == 0, f"{dry} of {blocks} blocks fell back to dry during another build"
        assert b.ready and not srv.errors


def test_segment_checks(name, tmp_path):
    with pytest.raises(BridgeError, match="no rtengine bridge server"):
        Client(name)
    with BridgeServer(name=name):
        path = f"/dev/shm/rtengine-{os.getuid()}-{name}"
        os.chmod(path, 0o644)
        with pytest.raises(BridgeError, match="not private"):
            Client(name)
        os.chmod(path, 0o600)
        with open(path, "r+b") as f:                   # a corrupted header
            f.write(b"XXXX")
        with pytest.raises(BridgeError, match="bad header"):
            Client(name)
        # a segment of another size: another version of the protocol
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) + 4096)
        with pytest.raises(BridgeError, match="versions differ"):
            Client(name)



def test_engine_killed_mid_run_gives_aligned_dry_and_reconnects(name):
    cmd = [sys.executable, "-m", "rtengine", "serve", "--name", name]
    srv = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        c = Client.connect(name)
        c.claim(SR, 256, 2)
        c.configure(CHAIN)
        x = music_like(2, SR)
        y, got = c.process(x[:, :4096])
        assert got == 4096
        srv.send_signal(signal.SIGKILL)
        srv.wait(10)
        # gone: every block is the dry input delayed by the latency, and no call
        # waits past its timeout (2 ms here)
        history = [x[:, :4096]]
        outs = []
        worst = 0.0
        for a in range(4096, SR, 256):
            t0 = time.perf_counter()
            blk, got = c.process(x[:, a:a + 256], timeout_us=2000)
            worst = max(worst, time.perf_counter() - t0)
            assert got == 0
            outs.append(blk)
            history.append(x[:, a:a + 256])
        dry = np.concatenate(outs, axis=1)
        whole = np.concatenate(history, axis=1)
        np.testing.assert_array_equal(dry, whole[:, 4096 - 90:SR - 90])
        assert worst < 0.02, f"a block waited {worst * 1e3:.1f} ms with the engine gone"
        # a new server on the same name: the plugin sends its chain again
        srv = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 30
        got = 0
        while got == 0:
            assert time.monotonic() < end, "the lane did not reconnect"
            _, got = c.process(x[:, :256])
            time.sleep(0.01)
        assert c.lane.counters.reconnects == 1 and c.lane.epoch == c.header.epoch == 2
        # and what it answers now is the chain's output again
        y, got = c.process(x[:, :4096])
        assert got == 4096 and np.isfinite(y).all()
        c.close()
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()


def test_cli_serve_refuses_a_second_server(name):
    with BridgeServer(name=name):
        r = subprocess.run([sys.executable, "-m", "rtengine", "serve", "--name", name,
                            "--duration", "1"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 1 and "already runs" in r.stderr


def test_lane_memory_is_bounds_checked_by_the_layout():
    seg = ffi.sizeof("rtb_segment")
    assert seg == ffi.sizeof("rtb_header") + lib.RTB_MAX_LANES * ffi.sizeof("rtb_lane")
    assert ffi.offsetof("rtb_lane", "in") % 4 == 0


def test_a_hosted_vst3_in_a_lane_must_come_from_a_vst3_folder(name, tmp_path):
    fake = tmp_path / "Evil.vst3"
    fake.mkdir()
    text = f'[[stage]]\nplugin = "vst3"\n[stage.options]\nbundle = "{fake}"\n'
    with BridgeServer(name=name), Client(name) as c:
        c.claim(SR, 128, 2)
        with pytest.raises(BridgeError, match="not in a VST3 folder"):
            c.configure(text)


def test_rtengine_status_shows_the_bridge_lanes(name, tmp_path):
    import json
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    srv = subprocess.Popen([sys.executable, "-m", "rtengine", "serve", "--name", name,
                            "--chain", str(ROOT / "latency_bench" / "chains" / "reference.toml")],
                           cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        with Client.connect(name) as c:
            c.claim(SR, 256, 2)
            c.configure("")                                # the server's --chain
            for _ in range(40):
                c.process(music_like(2, 256))
            time.sleep(1.5)
            r = subprocess.run([sys.executable, "-m", "rtengine", "status", "--json"], cwd=ROOT,
                               env=env, capture_output=True, text=True)
            data = [json.loads(line) for line in r.stdout.splitlines()]
            bridge = next(d for d in data if d.get("kind") == "bridge")
            (lane,) = bridge["lanes"]
            assert lane["owner_pid"] == os.getpid() and lane["requests"] >= 40
            assert lane["stages"] == ["eq", "compressor", "limiter"]
            assert lane["latency_samples"] == 90 and lane["late"] == 0
            # the engine's work on the last block, in us: more than the 1 us that even a
            # trivial chain needs for 256 stereo frames, less than two blocks' 10.7 ms (a
            # VM stall may land in it; a unit slip by 1000 either way would not pass)
            assert 1.0 < lane["last_block_work_us"] < 2 * 1e6 * 256 / SR
            assert lane["last_block_load"] == pytest.approx(
                lane["last_block_work_us"] / (1e6 * 256 / SR))
            text = subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT,
                                  env=env, capture_output=True, text=True).stdout
            assert f"bridge server '{name}'" in text and "eq -> compressor -> limiter" in text
            assert "of engine work" in text and "of the block's duration" in text
    finally:
        srv.send_signal(signal.SIGINT)
        srv.wait(10)
    assert not (tmp_path / "rtengine" / f"bridge-{name}.json").exists()
