"""MIDI control through JACK: a second client sends real MIDI bytes to the
engine's midi_in; parameters follow; feedback arrives back on midi_out."""
import time

import pytest

from jackutil import JackServer, midi_link_up
from rtengine.backends.jack import JackBackend, Peer
from rtengine.live import MidiControl

MAP = """
[[map]]
cc = 7
channel = 1
target = "gain.gain_db"
min = -60.0
max = 0.0
feedback = true
[[map]]
note = 36
target = "gain.bypass"
mode = "momentary"
feedback = true
[[map]]
program = true
presets = ["quiet.toml"]
"""


@pytest.fixture
def rig(tmp_path):
    server = JackServer()
    (tmp_path / "quiet.toml").write_text('[[stage]]\nplugin = "gain"\n'
                                         '[stage.params]\ngain_db = -20.0\n')
    (tmp_path / "map.toml").write_text(MAP)
    be = JackBackend([("gain", {})], 2, "rtengine", server.name)
    ctl = Peer("midi", client_name="controller", server=server.name)
    be.start()
    ctl.activate()
    be.connect(ctl.port(True, 0), be.port("midi_in"))
    be.connect(be.port("midi_out"), ctl.port(False, 0))
    midi_link_up(be, ctl)
    midi = MidiControl(be, tmp_path / "map.toml").start()
    yield be, ctl, midi
    midi.stop()
    ctl.close()
    be.close()
    server.stop()


def wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_controller_moves_parameters_and_gets_feedback(rig):
    be, ctl, midi = rig
    assert wait_for(lambda: any(m == bytes([0xB0, 7, 127]) for _, m in ctl.read_midi()))
    ctl.send_midi([bytes([0xB0, 7, 64])])
    assert wait_for(lambda: abs(be.engine.get("gain.gain_db") - (-60 + 60 * 64 / 127)) < 1e-4)
    ctl.send_midi([bytes([0x90, 36, 100])])
    assert wait_for(lambda: be.engine.get("gain.bypass") == 1.0)
    got = []
    assert wait_for(lambda: got.extend(m for _, m in ctl.read_midi()) or
                    bytes([0x90, 36, 127]) in got)
    ctl.send_midi([bytes([0x80, 36, 0])])
    assert wait_for(lambda: be.engine.get("gain.bypass") == 0.0)


def test_program_change_loads_a_preset(rig):
    be, ctl, midi = rig
    ctl.send_midi([bytes([0xC0, 0])])
    assert wait_for(lambda: midi.loads and be.engine.get("gain.gain_db") == -20.0)
    # the map is bound to the new engine: the fader still works
    ctl.send_midi([bytes([0xB0, 7, 127])])
    assert wait_for(lambda: be.engine.get("gain.gain_db") == 0.0)


def test_malformed_bytes_and_sysex_flood(rig):
    be, ctl, midi = rig
    flood = [bytes([0xF0] + [0x11] * 1000 + [0xF7])] * 40      # long SysEx: dropped
    junk = [bytes([0x07, 0x40]), bytes([0xB0, 0x87, 0x10]), bytes([0xB0])]
    ctl.send_midi(flood + junk + [bytes([0xB0, 7, 0])])
    assert wait_for(lambda: be.engine.get("gain.gain_db") == -60.0)
    # the sender spreads the flood over cycles (nothing lost on its side); the
    # engine counts and drops each SysEx, longer than the 256 bytes it takes
    assert ctl.stats().midi_dropped == 0
    assert wait_for(lambda: be.stats().midi_dropped >= 40)
    assert midi.mapper.errors >= 2
    assert not be.server_gone


def test_midi_learn_and_list_commands(tmp_path):
    import os
    import subprocess
    import sys
    server = JackServer()
    ctl = Peer("midi", client_name="knobs", server=server.name)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        ctl.activate()
        r = subprocess.run([sys.executable, "-m", "rtengine", "midi", "list", "--server",
                            server.name], cwd=root, env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "knobs:midi_out" in r.stdout and "knobs:midi_in" in r.stdout
        assert "hardware MIDI" in r.stdout            # listed, or the reason it is not
        mp = tmp_path / "knobs.toml"
        p = subprocess.Popen([sys.executable, "-m", "rtengine", "midi", "learn", "glue.ratio",
                              "--map", str(mp), "--chain", "rtengine/chains/demo.toml",
                              "--server", server.name, "--timeout", "20"], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < end:
            ctl.send_midi([bytes([0xB3, 21, 64]), bytes([0xB3, 53, 10])])   # a 14-bit knob
            time.sleep(0.1)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        text = mp.read_text()
        assert "cc14 = 21" in text and "channel = 4" in text and 'target = "glue.ratio"' in text
    finally:
        ctl.close()
        server.stop()


def test_a_burst_longer_than_a_cycle_arrives_whole_and_in_order():
    """More MIDI than one cycle's port buffer takes (53 kB against 32 kB)
    goes out over the next cycles: every short message arrives, in
    the order sent, and SysEx between them does not push any out."""
    server = JackServer(48000, 256)     # fewer xruns on a busy VM; the same 32 kB buffer
    a = Peer("midi", client_name="burst_out", server=server.name)
    b = Peer("midi", client_name="burst_in", server=server.name)
    try:
        a.activate()
        b.activate()
        a.connect(a.port(True, 0), b.port(False, 0))
        end = time.monotonic() + 20
        while not b.read_midi():
            assert time.monotonic() < end, "no MIDI between two JACK clients in 20 s"
            a.send_midi([bytes([0xFE])])
            time.sleep(0.02)
        sysex = bytes([0xF0] + [0x22] * 1000 + [0xF7])     # each refused by b (longest 256)
        sent = []
        for i in range(300):            # 53 kB in 350 events: over 32 kB a cycle
            sent.append(bytes([0xB0 | (i % 16), (i // 16) % 128, i % 128]))
            if i % 6 == 0:
                sent.append(sysex)
        want = [m for m in sent if len(m) == 3]
        assert len(want) == 300 and len(sent) - len(want) == 50
        # On a cycle that ends in an xrun (the VM stalls) JACK itself loses or
        # repeats a client's MIDI, whatever the client did; so the burst must
        # arrive whole and in order when it saw no xrun, and eight tries must
        # have one such.
        clean, got = 0, []
        for _ in range(8):
            xruns = a.stats().xruns, b.stats().xruns
            dropped = b.stats().midi_dropped
            got.clear()
            assert a.send_midi(sent) == len(sent)
            wait_for(lambda: got.extend(m for _, m in b.read_midi() if m != bytes([0xFE]))
                     or len(got) >= len(want), timeout=5)
            time.sleep(0.05)
            got.extend(m for _, m in b.read_midi() if m != bytes([0xFE]))
            assert a.stats().midi_dropped == 0
            if (a.stats().xruns, b.stats().xruns) == xruns:
                assert len(got) == len(want) and got == want
                assert b.stats().midi_dropped - dropped == 50
                clean += 1
                break
        assert clean, "an xrun in each of eight bursts"
    finally:
        a.close()
        b.close()
        server.stop()
