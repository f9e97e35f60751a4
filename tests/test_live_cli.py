"""`rtengine run` and `rtengine status` against a real JACK server."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jackutil import JackServer

CHAIN = "latency_bench/chains/reference.toml"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))     # private status folder
    return e


def rt(*args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "rtengine", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_status(env, name, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = subprocess.run([sys.executable, "-m", "rtengine", "status", "--json", "--name", name],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout.splitlines()[0])
        time.sleep(0.2)
    raise AssertionError(f"no status for {name}")


def test_run_and_status(env):
    server = JackServer()
    try:
        p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live1",
               "--connect-in", "none", "--connect-out", "none", "--duration", "4", env=env)
        st = wait_status(env, "live1")
        assert st["latency_samples"] == 90 and st["period"] == 64 and st["sample_rate"] == 48000
        assert st["inputs"] == ["live1:in_1", "live1:in_2"]
        time.sleep(1.0)
        st = wait_status(env, "live1")
        assert st["cycles"] > 300 and st["callback_us_p99"] < 1333
        text = subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT, env=env,
                              capture_output=True, text=True).stdout
        assert "live1" in text and "xruns" in text and "callback median" in text
        assert f"audio thread {st['audio_thread']}" in text and "nice" in st["audio_thread"]
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert "latency 90 samples" in err and "stopped after" in err
        r = subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 1 and "no running engine" in r.stderr
    finally:
        server.stop()


def test_run_exits_when_the_server_goes_away(env):
    server = JackServer()
    p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live2",
           "--connect-in", "none", "--connect-out", "none", env=env)
    try:
        wait_status(env, "live2")
        server.kill()
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
        server.stop()
    assert p.returncode == 3, err
    assert "the JACK server went away" in err and "--reconnect" in err


def test_run_reconnects(env):
    server = JackServer()
    p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live3", "--reconnect",
           "--connect-in", "none", "--connect-out", "none", env=env)
    try:
        first = wait_status(env, "live3")
        server.kill()
        time.sleep(1.0)
        # a new server under the name the engine waits for
        revived = subprocess.Popen(["jackd", "-n", server.name, "--no-realtime", "-d", "dummy",
                                    "-r", "48000", "-p", "64"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                st = wait_status(env, "live3", timeout=20)
                if st["updated"] > first["updated"] + 1 and st["cycles"] > 50 \
                        and not st["shutdown"]:
                    break
                time.sleep(0.3)
            assert st["cycles"] > 50 and not st["shutdown"]
            p.send_signal(2)
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0, err
            assert "went away; reconnecting" in err
        finally:
            revived.terminate()
            revived.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
        server.stop()


def test_run_without_server_is_a_clear_error(env):
    p = rt("run", "--chain", CHAIN, "--server", "no_such_server", env=env)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    assert "cannot connect to the JACK server no_such_server" in err


def test_load_switches_the_running_chain(env, tmp_path):
    server = JackServer()
    quiet = tmp_path / "quiet.toml"
    quiet.write_text('[[stage]]\nplugin = "gain"\n[stage.params]\ngain_db = -12.0\n')
    broken = tmp_path / "broken.toml"
    broken.write_text('[[stage]]\nplugin = "nope"\n')
    p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live4",
           "--connect-in", "none", "--connect-out", "none", "--duration", "8", env=env)
    try:
        first = wait_status(env, "live4")
        assert first["latency_samples"] == 90
        r = subprocess.run([sys.executable, "-m", "rtengine", "load", str(broken), "--name",
                            "live4"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert r.returncode == 1 and "no plugin named 'nope'" in r.stderr
        r = subprocess.run([sys.executable, "-m", "rtengine", "load", str(quiet), "--name",
                            "live4"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        st = wait_status(env, "live4")
        assert st["chain"] == str(quiet) and st["latency_samples"] == 0
        # a chain with a worker stage (a pyo patch next to the chain file)
        room = tmp_path / "room.toml"
        (tmp_path / "verb.py").write_text(
            (Path(ROOT) / "rtengine" / "patches" / "reverb.py").read_text())
        room.write_text('[[stage]]\nplugin = "pyo"\nname = "room"\n[stage.options]\n'
                        'patch = "verb.py"\n')
        r = subprocess.run([sys.executable, "-m", "rtengine", "load", str(room), "--name",
                            "live4"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        time.sleep(1.0)
        st = wait_status(env, "live4")
        assert st["chain"] == str(room) and st["latency_samples"] == 64 + 64 + 240
        w = st["workers"]["room"]
        assert w["chunks_done"] > 300 and w["failures"] == 0, w
        text = subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT, env=env,
                              capture_output=True, text=True).stdout
        assert "worker stage room:" in text
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "now running" in err and "crossfade" in err
    finally:
        if p.poll() is None:
            p.kill()
        server.stop()


def test_run_with_midi_map_and_osc(env, tmp_path):
    import queue
    import socket
    import threading

    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from pythonosc.udp_client import SimpleUDPClient
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp = tmp_path / "map.toml"
    mp.write_text('[[map]]\ncc = 7\ntarget = "compressor.threshold_db"\n'
                  '[[map]]\nosc = "/fader"\ntarget = "compressor.ratio"\n')
    server = JackServer()
    p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live5",
           "--connect-in", "none", "--connect-out", "none", "--duration", "8",
           "--map", str(mp), "--osc-port", str(port), env=env)
    replies = queue.Queue()
    d = Dispatcher()
    d.set_default_handler(lambda addr, *args: replies.put((addr, args)))
    me = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
    threading.Thread(target=me.serve_forever, daemon=True).start()
    client = SimpleUDPClient("127.0.0.1", port)
    client._sock = me.socket
    try:
        wait_status(env, "live5")
        client.send_message("/rtengine/compressor/threshold_db", -33.0)
        assert replies.get(timeout=5) == ("/rtengine/compressor/threshold_db", (-33.0,))
        client.send_message("/fader", 1.0)
        time.sleep(0.3)
        client.send_message("/rtengine/compressor/ratio", [])
        assert replies.get(timeout=5) == ("/rtengine/compressor/ratio", (20.0,))
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert f"OSC on 127.0.0.1:{port}" in err
    finally:
        me.shutdown()
        me.server_close()
        if p.poll() is None:
            p.kill()
        server.stop()


def test_hardware_midi_without_a_sequencer_is_a_clear_error(env, tmp_path):
    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer")
    server = JackServer()
    mp = tmp_path / "map.toml"
    mp.write_text('[[map]]\ncc = 7\ntarget = "compressor.threshold_db"\n')
    try:
        p = rt("run", "--chain", CHAIN, "--server", server.name, "--name", "live6",
               "--connect-in", "none", "--connect-out", "none", "--map", str(mp),
               "--midi-in", "nanoKONTROL", env=env)
        out, err = p.communicate(timeout=30)
    finally:
        server.stop()
    assert p.returncode == 1
    assert "no ALSA sequencer on this machine" in err and "JACK MIDI" in err


def test_status_shows_live_loudness_meters(env, tmp_path):
    """A master stage running live: its input and output meters reach
    `rtengine status` while a second JACK client plays a tone into it."""
    import numpy as np

    from rtengine.backends.jack import Peer
    chain = tmp_path / "m.toml"
    chain.write_text('[[stage]]\nplugin = "master"\n[stage.params]\nauto = false\n'
                     'gain_db = 6.0\n')
    t = np.arange(48000 * 10) / 48000.0
    tone = np.tile(0.1 * np.sin(2 * np.pi * 1000.0 * t), (2, 1)).astype(np.float32)
    server = JackServer()
    player = None
    try:
        p = rt("run", "--chain", str(chain), "--server", server.name, "--name", "live6",
               "--connect-in", "none", "--connect-out", "none", "--duration", "9", env=env)
        wait_status(env, "live6")
        player = Peer("player", tone, client_name="tone", server=server.name)
        player.activate()
        for c in (0, 1):
            subprocess.run(["jack_connect", player.port(True, c), f"live6:in_{c + 1}"],
                           env=dict(env, JACK_DEFAULT_SERVER=server.name), check=True,
                           capture_output=True, timeout=10)
        player.arm()
        time.sleep(4.5)
        st = wait_status(env, "live6")
        m = st["meters"]["master"]
        # a 1 kHz sine of peak -20 dBFS in both channels reads -20 LUFS; +6 dB of gain
        assert abs(m["input"]["short_term"] + 20.0) < 0.2, m["input"]
        assert abs(m["output"]["short_term"] + 14.0) < 0.3, m["output"]
        assert m["gain_db"] == 6.0
        text = subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT, env=env,
                              capture_output=True, text=True).stdout
        assert "master in:" in text and "master out:" in text and "LUFS" in text
        p.communicate(timeout=20)
    finally:
        if player is not None:
            player.close()
        server.stop()
