"""OSC control over UDP on the loopback interface."""
import queue
import threading

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

import rtengine
from rtengine.midi import Mapper
from rtengine.osc import OscControl


@pytest.fixture
def rig(tmp_path):
    engine = rtengine.Engine([("gain", {}), ("eq", {})], 48000, 64, 2)
    (tmp_path / "map.toml").write_text('[[map]]\nosc = "/1/fader1"\ntarget = "gain.gain_db"\n'
                                       'min = -60.0\nmax = 0.0\n')
    mapper = Mapper.from_file(tmp_path / "map.toml", engine)
    osc = OscControl(lambda: engine, 0, mapper=lambda: mapper).start()
    replies = queue.Queue()
    d = Dispatcher()
    d.set_default_handler(lambda addr, *args: replies.put((addr, args)))
    me = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
    t = threading.Thread(target=me.serve_forever, daemon=True)
    t.start()
    # send from the socket the replies come back to
    client = SimpleUDPClient("127.0.0.1", osc.port)
    client._sock = me.socket
    yield engine, client, replies, osc
    me.shutdown()
    me.server_close()
    osc.stop()


def test_set_query_and_map(rig):
    engine, client, replies, osc = rig
    client.send_message("/rtengine/gain/gain_db", -12.5)
    assert replies.get(timeout=5) == ("/rtengine/gain/gain_db", (-12.5,))
    assert engine.get("gain.gain_db") == -12.5
    client.send_message("/rtengine/eq/band1_type", "notch")
    assert replies.get(timeout=5) == ("/rtengine/eq/band1_type", (3.0,))
    client.send_message("/rtengine/gain/gain_db", [])
    assert replies.get(timeout=5) == ("/rtengine/gain/gain_db", (-12.5,))
    client.send_message("/1/fader1", 0.5)
    deadline = 50
    while engine.get("gain.gain_db") != -30.0 and deadline:
        deadline -= 1
        threading.Event().wait(0.05)
    assert engine.get("gain.gain_db") == -30.0


@pytest.mark.parametrize("address,value,message", [
    ("/rtengine/gain/volume", 1.0, "has no parameter 'volume'"),
    ("/rtengine/gian/gain_db", 1.0, "no stage named 'gian'"),
    ("/rtengine/gain/gain_db", 99.0, "outside the range"),
    ("/somewhere/else", 1.0, "no OSC address /somewhere/else"),
])
def test_errors_are_answered(rig, address, value, message):
    engine, client, replies, osc = rig
    client.send_message(address, value)
    addr, args = replies.get(timeout=5)
    assert addr == "/rtengine/error" and message in args[0]
    assert engine.get("gain.gain_db") == 0.0
