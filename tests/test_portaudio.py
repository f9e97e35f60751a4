"""The PortAudio backend, on PortAudio's JACK host API against a private jackd
(this machine has no sound card; with one, the ALSA devices appear too)."""
import os
import subprocess
import sys
import textwrap

from jackutil import JackServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, time
    from rtengine.backends.portaudio import PortAudioBackend, PortAudioError, devices
    devs = devices()
    jack = [d for d in devs if "JACK" in d.host_api]
    assert jack, [str(d) for d in devs]
    try:
        PortAudioBackend("latency_bench/chains/reference.toml", device="no such device")
    except PortAudioError as e:
        bad = str(e)
    with PortAudioBackend("latency_bench/chains/reference.toml", device=jack[0].index,
                          channels=2, block_size=64) as be:
        be.start()
        time.sleep(1.5)
        st = be.stats()
        lat = be.stream_latency
        # a chain change crossfades in the callback (the same code as on JACK):
        # swap returns once the callback has faded over 200 ms of audio
        t0 = time.monotonic()
        be.swap([("gain", {"gain_db": -12.0})], fade_ms=200.0)
        fade_s = time.monotonic() - t0
        swapped_latency = be.engine.latency
        cycles_after = be.stats().cycles
    print(json.dumps({"devices": [str(d) for d in devs], "bad": bad, "cycles": st.cycles,
                      "rate": st.sample_rate, "median": st.callback_us_median,
                      "thread": st.audio_thread,
                      "p99": st.callback_us_p99, "xruns": st.xruns, "latency": lat,
                      "fade_s": fade_s, "swapped_latency": swapped_latency,
                      "cycles_after": cycles_after}))
""")


def test_portaudio_stream_runs_the_chain():
    server = JackServer(48000, 64)
    try:
        env = dict(os.environ, JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
        r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "no PortAudio device 'no such device'" in res["bad"] and "JACK" in res["bad"]
    assert res["rate"] == 48000
    assert res["cycles"] > 0.5 * 1.5 * 48000 / 64          # the C callback ran the runner
    assert 0 < res["median"] <= res["p99"] < 1333
    # how PortAudio scheduled its callback thread, as read on it (no nice of ours there)
    assert res["thread"].startswith(("SCHED_FIFO", "SCHED_RR", "nice ")), res["thread"]
    assert res["latency"][1] > 0
    assert 0.19 <= res["fade_s"] < 3.0 and res["swapped_latency"] == 0
    assert res["cycles_after"] > res["cycles"]


def test_rtengine_run_with_the_portaudio_backend(tmp_path):
    import json
    import time
    server = JackServer(48000, 64)
    env = dict(os.environ, JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1",
               XDG_RUNTIME_DIR=str(tmp_path))
    try:
        p = subprocess.Popen([sys.executable, "-m", "rtengine", "run", "--backend", "portaudio",
                              "--device", "system", "--block-size", "64", "--name", "pa1",
                              "--chain", "latency_bench/chains/reference.toml", "--duration",
                              "4"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        status = None
        end = time.monotonic() + 20
        while time.monotonic() < end and p.poll() is None:
            r = subprocess.run([sys.executable, "-m", "rtengine", "status", "--json", "--name",
                                "pa1"], cwd=ROOT, env=env, capture_output=True, text=True)
            if r.returncode == 0:
                status = json.loads(r.stdout.splitlines()[0])
                if status["cycles"] > 200:
                    break
            time.sleep(0.2)
        out, err = p.communicate(timeout=30)
        bad = subprocess.run([sys.executable, "-m", "rtengine", "run", "--backend", "portaudio",
                              "--device", "nonexistent", "--chain",
                              "latency_bench/chains/reference.toml"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert p.returncode == 0, err
    assert "as PortAudio stream 'pa1'" in err and "stopped after" in err
    assert status and status["cycles"] > 200 and status["server"] == "portaudio"
    assert "system" in status["inputs"][0]
    assert bad.returncode == 1 and "no PortAudio device 'nonexistent'" in bad.stderr
