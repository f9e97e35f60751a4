"""The MIDI mapper, feature by feature: each feature test runs twice, with the
mapper fed directly and with the bytes sent by a second JACK client through the
engine's JACK MIDI port (more of the live path is in test_midi_jack.py)."""
import math
import re
import time

import pytest

import rtengine
from jackutil import JackServer, midi_link_up
from rtengine.backends.jack import JackBackend, Peer
from rtengine.midi import Mapper, MidiMapError, decode_relative, load_map

CHAIN = [("gain", {}), ("eq", {"band1_on": True}), ("compressor", {}), ("limiter", {})]


@pytest.fixture
def engine():
    return rtengine.Engine(CHAIN, sample_rate=48000, block_size=64, channels=2)


class JackLink:
    """The mapper behind a real JACK MIDI path: each message leaves a second
    client's midi_out, reaches the engine's midi_in (read in the native
    callback, passed through the ring) and is handed to the mapper as the live
    MIDI thread does; feedback goes back out of the engine's midi_out and is
    returned as the controller received it."""

    def __init__(self, be, ctl, mapper):
        self.be, self.ctl, self.mapper = be, ctl, mapper

    @property
    def errors(self):
        return self.mapper.errors

    def handle(self, msg: bytes) -> None:
        assert self.ctl.send_midi([msg]) == 1
        # generous: this VM stalls for seconds at times.  A message can only be
        # lost when JACK skipped a client's cycle (an xrun): then it is sent
        # again; lost without an xrun, the test fails and says so.
        before = self._counts()
        end, resend = time.monotonic() + 20, time.monotonic() + 1
        while True:
            got = [m for _, m in self.be.read_midi()]
            if got:
                break
            now = self._counts()
            assert time.monotonic() < end, (
                f"{msg.hex()} did not arrive through JACK in 20 s; cycles and xruns of the "
                f"controller and the engine: {before} -> {now}")
            if time.monotonic() > resend and now[1] >= before[1] + 100 and (
                    now[2] > before[2] or now[3] > before[3]):
                assert self.ctl.send_midi([msg]) == 1
                before, resend = now, time.monotonic() + 1
            time.sleep(0.001)
        assert got == [msg]                       # byte for byte
        for m in got:
            self.mapper.handle(m)

    def _counts(self) -> tuple[int, int, int, int]:
        c, e = self.ctl.stats(), self.be.stats()
        return c.cycles, e.cycles, c.xruns, e.xruns

    def feedback(self) -> list[bytes]:
        out = self.mapper.feedback()
        if not out:
            return []
        self.be.send_midi(out)
        got, end = [], time.monotonic() + 20
        while len(got) < len(out) and time.monotonic() < end:
            got += [m for _, m in self.ctl.read_midi()]
            time.sleep(0.001)
        return got


@pytest.fixture(params=["direct", "jack"])
def live(request, tmp_path):
    """(engine, make_mapper): the mapper fed directly, or through JACK MIDI."""
    if request.param == "direct":
        e = rtengine.Engine(CHAIN, sample_rate=48000, block_size=64, channels=2)
        yield e, lambda text, on_program=None: mapper(e, tmp_path, text, on_program)
        return
    server = JackServer(48000, 64)
    be = JackBackend(CHAIN, 2, "rtengine", server.name)
    ctl = Peer("midi", client_name="controller", server=server.name)
    try:
        be.start()
        ctl.activate()
        be.connect(ctl.port(True, 0), be.port("midi_in"))
        be.connect(be.port("midi_out"), ctl.port(False, 0))
        midi_link_up(be, ctl)
        yield be.engine, lambda text, on_program=None: JackLink(
            be, ctl, mapper(be.engine, tmp_path, text, on_program))
    finally:
        ctl.close()
        be.close()
        server.stop()


def mapper(engine, tmp_path, text, on_program=None):
    p = tmp_path / "map.toml"
    p.write_text(text)
    return Mapper.from_file(p, engine, on_program)


def cc(ch, n, v):
    return bytes([0xB0 | (ch - 1), n, v])


def test_cc7_range_channel_inversion(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc = 7
channel = 1
target = "gain.gain_db"
min = -60.0
max = 0.0
[[map]]
cc = 8
target = "compressor.mix"
invert = true
""")
    m.handle(cc(1, 7, 127))
    assert engine.get("gain.gain_db") == 0.0
    m.handle(cc(1, 7, 0))
    assert engine.get("gain.gain_db") == -60.0
    m.handle(cc(1, 7, 64))
    assert engine.get("gain.gain_db") == pytest.approx(-60 + 60 * 64 / 127, abs=1e-4)
    m.handle(cc(2, 7, 127))                       # other channel: ignored
    assert engine.get("gain.gain_db") == pytest.approx(-60 + 60 * 64 / 127, abs=1e-4)
    m.handle(cc(5, 8, 127))                       # any channel, inverted
    assert engine.get("compressor.mix") == 0.0


def test_cc14_and_pitchbend(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc14 = 1
target = "gain.pan"
[[map]]
pitchbend = true
channel = 3
target = "gain.width"
""")
    m.handle(cc(1, 1, 64))
    m.handle(cc(1, 33, 0))
    assert engine.get("gain.pan") == pytest.approx(-1 + 2 * 8192 / 16383, abs=1e-6)
    m.handle(cc(1, 33, 127))
    assert engine.get("gain.pan") == pytest.approx(-1 + 2 * 8319 / 16383, abs=1e-6)
    m.handle(bytes([0xE2, 0x00, 0x40]))           # centre
    assert engine.get("gain.width") == pytest.approx(2 * 8192 / 16383, abs=1e-6)
    m.handle(bytes([0xE2, 0x7F, 0x7F]))
    assert engine.get("gain.width") == 2.0


def test_nrpn_rpn_with_increment_decrement(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
nrpn = 300
target = "compressor.threshold_db"
[[map]]
rpn = 0
target = "gain.gain_db"
min = -24.0
max = 24.0
""")
    for b in (cc(1, 99, 300 >> 7), cc(1, 98, 300 & 127), cc(1, 6, 127), cc(1, 38, 127)):
        m.handle(b)
    assert engine.get("compressor.threshold_db") == 0.0
    m.handle(cc(1, 97, 0))                        # decrement: one coarse step
    assert engine.get("compressor.threshold_db") == pytest.approx(-60 * 128 / 16383, abs=1e-4)
    m.handle(cc(1, 101, 0))
    m.handle(cc(1, 100, 0))
    m.handle(cc(1, 6, 64))
    m.handle(cc(1, 38, 0))
    assert engine.get("gain.gain_db") == pytest.approx(-24 + 48 * 8192 / 16383, abs=1e-4)
    m.handle(cc(1, 96, 0))
    assert engine.get("gain.gain_db") == pytest.approx(-24 + 48 * 8320 / 16383, abs=1e-4)
    m.handle(cc(1, 101, 127))                     # RPN null: data entry does nothing now
    m.handle(cc(1, 100, 127))
    before = engine.get("gain.gain_db")
    m.handle(cc(1, 6, 0))
    assert engine.get("gain.gain_db") == before


def test_notes_toggle_and_momentary(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
note = 60
target = "limiter.bypass"
mode = "toggle"
[[map]]
note = 62
target = "compressor.bypass"
mode = "momentary"
""")
    m.handle(bytes([0x90, 60, 100]))
    assert engine.get("limiter.bypass") == 1.0
    m.handle(bytes([0x80, 60, 0]))                # note off does nothing for a toggle
    assert engine.get("limiter.bypass") == 1.0
    m.handle(bytes([0x90, 60, 90]))
    assert engine.get("limiter.bypass") == 0.0
    m.handle(bytes([0x90, 62, 100]))
    assert engine.get("compressor.bypass") == 1.0
    m.handle(bytes([0x90, 62, 0]))                # note on with velocity 0 = note off
    assert engine.get("compressor.bypass") == 0.0


def test_program_change_recalls_a_preset(live, tmp_path):
    engine, make = live
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('[[stage]]\nplugin = "gain"\n')
    b.write_text('[[stage]]\nplugin = "eq"\n')
    loaded = []
    m = make('[[map]]\nprogram = true\npresets = ["a.toml", "b.toml"]\n',
               on_program=loaded.append)
    m.handle(bytes([0xC0, 1]))
    m.handle(bytes([0xC0, 5]))                    # no such preset: ignored
    assert loaded == [str(b.resolve())]


@pytest.mark.parametrize("mode,up,down", [("twos_complement", 3, 125), ("binary_offset", 67, 61),
                                          ("sign_magnitude", 3, 67)])
def test_relative_encoders(live, mode, up, down):
    engine, make = live
    assert decode_relative(mode, up) == 3 and decode_relative(mode, down) == -3
    m = make(f"""
[[map]]
cc = 20
target = "gain.gain_db"
min = -40.0
max = 0.0
relative = "{mode}"
step = 0.01
""")
    engine.set("gain.gain_db", -20.0)
    m.handle(cc(1, 20, up))
    assert engine.get("gain.gain_db") == pytest.approx(-20 + 3 * 0.4, abs=1e-4)
    m.handle(cc(1, 20, down))
    m.handle(cc(1, 20, down))
    assert engine.get("gain.gain_db") == pytest.approx(-20 - 3 * 0.4, abs=1e-4)


def test_relative_acceleration(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc = 20
target = "gain.gain_db"
min = -40.0
max = 0.0
relative = "binary_offset"
step = 0.01
acceleration = 0.5
""")
    engine.set("gain.gain_db", -30.0)
    m.handle(cc(1, 20, 64 + 1))                   # one slow tick: one step
    assert engine.get("gain.gain_db") == pytest.approx(-30 + 0.4, abs=1e-4)
    m.handle(cc(1, 20, 64 + 5))                   # a fast turn: 5 * (1 + 0.5 * 4) steps
    assert engine.get("gain.gain_db") == pytest.approx(-29.6 + 15 * 0.4, abs=1e-4)


def test_curves(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc = 1
target = "eq.band1_freq"
min = 20.0
max = 20000.0
[[map]]
cc = 2
target = "gain.width"
curve = "log"
[[map]]
cc = 3
target = "compressor.makeup_db"
curve = "exp"
""")
    m.handle(cc(1, 1, 64))                        # auto: the parameter's log scale
    f = engine.get("eq.band1_freq")
    assert f == pytest.approx(20 * 1000 ** (64 / 127), rel=1e-5)
    m.handle(cc(1, 2, 64))
    assert engine.get("gain.width") == pytest.approx(2 * math.log10(1 + 9 * 64 / 127), rel=1e-5)
    m.handle(cc(1, 3, 64))
    assert engine.get("compressor.makeup_db") == pytest.approx(
        24 * (10 ** (64 / 127) - 1) / 9, rel=1e-5)


def test_takeover_pickup_and_scale(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc = 1
target = "compressor.mix"
takeover = "pickup"
[[map]]
cc = 2
target = "gain.width"
takeover = "scale"
""")
    engine.set("compressor.mix", 0.5)
    m.handle(cc(1, 1, 10))                        # far below: not picked up
    assert engine.get("compressor.mix") == 0.5
    m.handle(cc(1, 1, 40))
    assert engine.get("compressor.mix") == 0.5
    m.handle(cc(1, 1, 70))                        # crossed 0.5: picked up, follows
    assert engine.get("compressor.mix") == pytest.approx(70 / 127, abs=1e-5)
    m.handle(cc(1, 1, 100))
    assert engine.get("compressor.mix") == pytest.approx(100 / 127, abs=1e-5)
    engine.set("compressor.mix", 0.2)             # changed elsewhere: pick up again
    m.handle(cc(1, 1, 110))
    assert engine.get("compressor.mix") == pytest.approx(0.2)

    engine.set("gain.width", 1.5)                 # 0.75 of the range
    m.handle(cc(1, 2, 0))                         # first message: sets the position
    engine.set("gain.width", 1.5)
    m.handle(cc(1, 2, 64))                        # halfway up: value moves halfway to the top
    assert engine.get("gain.width") == pytest.approx(2 * (0.75 + 64 / 127 * 0.25), abs=1e-5)
    m.handle(cc(1, 2, 127))                       # they meet at the end
    assert engine.get("gain.width") == 2.0


def test_feedback(live, tmp_path):
    engine, make = live
    m = make("""
[[map]]
cc = 7
channel = 2
target = "gain.gain_db"
min = -60.0
max = 0.0
feedback = true
[[map]]
cc14 = 3
target = "gain.pan"
feedback = true
[[map]]
note = 60
target = "limiter.bypass"
feedback = true
""")
    engine.set("gain.gain_db", -30.0)
    engine.set("gain.pan", 1.0)
    out = m.feedback()
    assert bytes([0xB1, 7, 64]) in out            # -30 of -60..0 = position 0.5 -> 64
    assert bytes([0xB0, 3, 127]) in out and bytes([0xB0, 35, 127]) in out
    assert bytes([0x80, 60, 0]) in out
    assert m.feedback() == []                     # nothing changed
    m.handle(bytes([0x90, 60, 1]))
    assert m.feedback() == [bytes([0x90, 60, 127])]


@pytest.mark.parametrize("text,message", [
    ("[[map]]\ncc = 7\ntarget = 'gian.gain_db'", "no stage named 'gian'"),
    ("[[map]]\ncc = 7\ntarget = 'gain.volume'", "has no parameter 'volume'"),
    ("[[map]]\ncc = 7\ntarget = 'gain.gain_db'\nmin = -90.0", "min = -90 is outside"),
    ("[[map]]\ncc = 200\ntarget = 'gain.gain_db'", "cc must be a number 0..127"),
    ("[[map]]\ncc = 7\nchannel = 17\ntarget = 'gain.gain_db'", "channel must be 1..16"),
    ("[[map]]\ncc = 7\nnote = 3\ntarget = 'gain.gain_db'", "exactly one of"),
    ("[[map]]\ncc = 7\ntarget = 'gain.gain_db'\ncurve = 'cubic'", "curve must be one of"),
    ("[[map]]\ncc = 7\ntarget = 'gain.gain_db'\nspeed = 2", "unknown keys speed"),
    ("[[map]]\nprogram = true\npresets = ['missing.toml']", "does not exist"),
    ("map = 3", "no [[map]] entries"),
    ("[[map]\n", "map.toml"),
])
def test_bad_map_files_are_explained(engine, tmp_path, text, message):
    with pytest.raises(MidiMapError, match=re.escape(message)) as err:
        mapper(engine, tmp_path, text)
    assert "map.toml" in str(err.value)


def test_malformed_messages_are_counted_not_fatal(engine, tmp_path):
    m = mapper(engine, tmp_path, "[[map]]\ncc = 7\ntarget = 'gain.gain_db'\n")
    for bad in (b"", b"\x07", b"\xb0\x07", b"\xb0\x87\x10", bytes([0xF0, 1, 2, 0xF7]),
                b"\xc0"):
        m.handle(bad)
    assert m.errors == 5
    assert engine.get("gain.gain_db") == 0.0
    with pytest.raises(MidiMapError, match="does not exist"):
        load_map(tmp_path / "nope.toml", engine)


@pytest.mark.parametrize("msgs,entry", [
    ([cc(2, 7, 10), cc(2, 7, 11)], {"cc": 7, "channel": 2}),
    ([cc(1, 1, 64), cc(1, 33, 5)], {"cc14": 1, "channel": 1}),
    ([cc(1, 99, 2), cc(1, 98, 44), cc(1, 6, 64), cc(1, 38, 0)], {"nrpn": 300, "channel": 1}),
    ([cc(3, 101, 0), cc(3, 100, 1), cc(3, 6, 64)], {"rpn": 1, "channel": 3}),
    ([bytes([0xE4, 0, 0x40])], {"pitchbend": True, "channel": 5}),
    ([bytes([0xF8]), bytes([0x91, 36, 100])], {"note": 36, "mode": "toggle", "channel": 2}),
])
def test_learn_recognises_the_control(msgs, entry, engine, tmp_path):
    from rtengine.midi import entry_toml, learn
    got = learn(msgs, "gain.gain_db")
    assert got == {**entry, "target": "gain.gain_db"}
    p = tmp_path / "learned.toml"
    p.write_text(entry_toml(got))
    assert len(load_map(p, engine)) == 1


def test_the_controllers_a_map_listens_to_for_a_daw(engine, tmp_path):
    """What the VST3 plugin offers its host through IMidiMapping: every
    controller a map needs, numbered as VST3 does (129 = pitch bend)."""
    from rtengine.midi import PITCH_BEND, controllers
    path = tmp_path / "map.toml"
    path.write_text('[[map]]\ncc = 7\nchannel = 1\ntarget = "gain.gain_db"\n'
                    '[[map]]\ncc14 = 1\nchannel = 2\ntarget = "gain.pan"\n'
                    '[[map]]\nnrpn = 300\nchannel = 3\ntarget = "gain.width"\n'
                    '[[map]]\nrpn = 0\nchannel = 4\ntarget = "gain.width"\n'
                    '[[map]]\npitchbend = true\nchannel = 5\ntarget = "gain.pan"\n'
                    '[[map]]\nnote = 60\nchannel = 1\ntarget = "gain.bypass"\n'
                    '[[map]]\ncc = 74\ntarget = "gain.gain_db"\n')
    got = controllers(load_map(path, engine))
    want = {(0, 7), (1, 1), (1, 33), *((2, n) for n in (99, 98, 6, 38, 96, 97)),
            *((3, n) for n in (101, 100, 6, 38, 96, 97)), (4, PITCH_BEND),
            *((ch, 74) for ch in range(16))}           # no channel: all sixteen
    assert got == want
