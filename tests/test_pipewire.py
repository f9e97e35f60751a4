"""`rtengine run --virtual-device` on a real, headless PipeWire (pipewire,
wireplumber and pipewire-pulse with a private runtime folder and session bus):
a file played into the virtual sink comes out of the virtual source processed
by the chain, and the device is gone when rtengine exits or is killed."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

import rtengine
from rtengine.demo import music

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN = "latency_bench/chains/reference.toml"
NEEDED = ("pipewire", "wireplumber", "pipewire-pulse", "pw-cli", "dbus-daemon", "paplay",
          "parecord", "pactl")


@contextlib.contextmanager
def pipewire_stack(run):
    """dbus, pipewire, wireplumber and pipewire-pulse in a private runtime folder."""
    missing = [b for b in NEEDED if shutil.which(b) is None]
    if missing:
        pytest.skip(f"PipeWire is not installed ({', '.join(missing)} missing; ./run.sh setup "
                    "installs it when run as root)")
    os.chmod(run, 0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run),
               DBUS_SESSION_BUS_ADDRESS=f"unix:path={run}/bus", PIPEWIRE_RUNTIME_DIR=str(run))
    env.pop("PULSE_SERVER", None)
    procs = [subprocess.Popen(["dbus-daemon", "--session", "--nofork",
                               f"--address=unix:path={run}/bus"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait(lambda: (run / "bus").exists(), "the session bus")
        for name in ("pipewire", "wireplumber", "pipewire-pulse"):
            procs.append(subprocess.Popen([name], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            if name == "pipewire":
                _wait(lambda: subprocess.run(["pw-cli", "info", "0"], env=env,
                                             capture_output=True).returncode == 0, "pipewire")
        _wait(lambda: subprocess.run(["pactl", "info"], env=env,
                                     capture_output=True).returncode == 0, "pipewire-pulse")
        yield env
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def pipewire(tmp_path_factory):
    with pipewire_stack(tmp_path_factory.mktemp("xdg")) as env:
        yield env


def _wait(cond, what, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not start within {timeout:g} s")


def _devices(env) -> str:
    out = subprocess.run(["pactl", "list", "short", "sinks"], env=env, capture_output=True,
                         text=True).stdout
    return out + subprocess.run(["pactl", "list", "short", "sources"], env=env,
                                capture_output=True, text=True).stdout


def _start(env, *extra, name="rtengine"):
    """rtengine run --virtual-device, up; a start that PipeWire's client library
    aborted (an assert_single_pod assertion of PipeWire 0.3.65, seen now and then
    here) is tried once more."""
    try:
        return _start_once(env, *extra, name=name)
    except AssertionError as exc:
        if "assert_single_pod" not in str(exc):
            raise
        return _start_once(env, *extra, name=name)


def _start_once(env, *extra, name="rtengine"):
    p = subprocess.Popen([sys.executable, "-m", "rtengine", "run", "--chain", CHAIN,
                          "--virtual-device", "--name", name, *extra], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: f"{name}_input" in _devices(env) and f"{name}_output" in _devices(env)
              and subprocess.run([sys.executable, "-m", "rtengine", "status"], cwd=ROOT,
                                 env=env, capture_output=True).returncode == 0,
              "the virtual device", timeout=20)
    except AssertionError:
        p.kill()
        raise AssertionError("rtengine --virtual-device did not come up: " +
                             p.communicate()[1][-2000:]) from None
    return p


def _take(env, src, dst):
    """Play src into the sink while recording the source; returns the recording.
    Both clients keep 200 ms of buffer, so that on a busy machine they do not
    run dry themselves, and playing starts only once the recording stream is up."""
    rec = subprocess.Popen(["parecord", "--device=rtengine_output", "--file-format=wav",
                            "--format=float32le", "--rate=48000", "--channels=2",
                            "--latency-msec=200", str(dst)], env=env)
    try:
        _wait(lambda: subprocess.run(["pactl", "list", "short", "source-outputs"], env=env,
                                     capture_output=True, text=True).stdout.strip() != "",
              "the recording stream")
        time.sleep(0.3)
        r = subprocess.run(["paplay", "--device=rtengine_input", "--latency-msec=200", str(src)],
                           env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        time.sleep(0.7)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(10)
    return sf.read(dst, dtype="float32")[0].T


def test_a_file_played_into_the_sink_comes_out_of_the_source_processed(pipewire, tmp_path):
    env = pipewire
    x = music(2.0, 48000)
    src = tmp_path / "in.wav"
    sf.write(src, x.T, 48000, subtype="FLOAT")
    ref = rtengine.Engine(CHAIN, 48000, 128, 2).render(x)
    p = _start(env, "--duration", "90")
    errs = []
    try:
        # a take during which the headless PipeWire on a busy VM dropped a cycle
        # (a gap in the recording) is repeated, as the JACK tests repeat xruns,
        # after a second's pause (the VM's stalls come in bursts: six takes in a
        # row were seen to fail); each failed take is described by its largest
        # error and where the output first left the offline render
        for k in range(10):
            if k:
                time.sleep(1.0)
            y = _take(env, src, tmp_path / f"out{k}.wav")
            assert y.shape[1] > ref.shape[1]
            off = int(np.argmax(correlate(y[0], ref[0], mode="valid", method="fft")))
            d = np.abs(y[:, off:off + ref.shape[1]] - ref).max(axis=0)
            bad = np.flatnonzero(d > 1e-6)
            errs.append((float(d.max()), f"from sample {bad[0]} of {d.size}" if bad.size else ""))
            if errs[-1][0] <= 1e-6:
                break
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "applications play into 'rtengine input'" in err
    # float32 all the way at 48 kHz: no resampling, no volume, no dither
    assert errs[-1][0] <= 1e-6, f"every take differed from the offline render: {errs}"
    # and the chain did something (the reference chain is not the identity)
    assert np.abs(ref - x).max() > 1e-2
    # removed on exit
    assert "rtengine_input" not in _devices(env) and "rtengine_output" not in _devices(env)


def test_the_device_goes_away_when_rtengine_is_killed(pipewire):
    env = pipewire
    p = _start(env, "--channels", "1", "--duration", "30", name="stage_fx")
    names = _devices(env)
    assert "stage_fx_input" in names and "stage_fx_output" in names
    p.kill()                                      # no chance to clean up itself
    p.wait(10)
    _wait(lambda: "stage_fx_input" not in _devices(env)
          and "stage_fx_output" not in _devices(env), "removal of the virtual device")


def _status(env, name="rtengine"):
    r = subprocess.run([sys.executable, "-m", "rtengine", "status", "--json", "--name", name],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    return json.loads(r.stdout.splitlines()[0]) if r.returncode == 0 else {}


def _force(env, key, value):
    r = subprocess.run(["pw-metadata", "-n", "settings", "0", key, value], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_new_quantum_re_prepares_the_virtual_device_chain(pipewire):
    env = pipewire
    p = _start(env, "--duration", "40", name="follow")
    try:
        st = _status(env, "follow")
        assert st["engine_rate"] == 48000 and st["engine_block"] == 128
        _force(env, "clock.force-quantum", "256")
        _wait(lambda: _status(env, "follow").get("engine_block") == 256,
              "the re-prepared chain")
        cycles = _status(env, "follow")["cycles"]
        time.sleep(1.0)
        assert _status(env, "follow")["cycles"] > cycles + 100
    finally:
        _force(env, "clock.force-quantum", "0")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "the server now runs 48000 Hz, period 256" in err


def test_a_new_sample_rate_re_prepares_the_chain(tmp_path):
    """PipeWire's graph changes rate under a running engine (a JACK client
    through PipeWire's libjack): the chain is prepared again at 44.1 kHz.  Its
    own PipeWire: a forced rate change leaves this headless PipeWire 0.3.65 in a
    state later tests should not inherit."""
    with pipewire_stack(tmp_path) as env:
        p = subprocess.Popen(["pw-jack", sys.executable, "-m", "rtengine", "run", "--chain",
                              CHAIN, "--name", "rate", "--connect-in", "none", "--connect-out",
                              "none", "--duration", "40"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: _status(env, "rate").get("engine_rate") == 48000, "the engine", 20)
            assert _status(env, "rate")["latency_samples"] == 90
            _force(env, "clock.force-rate", "44100")
            _wait(lambda: _status(env, "rate").get("engine_rate") == 44100,
                  "the re-prepared chain")
            st = _status(env, "rate")
            assert st["sample_rate"] == 44100 and st["latency_samples"] == 84  # 1.5 ms + 18
            time.sleep(1.0)
            assert _status(env, "rate")["cycles"] > st["cycles"] + 20      # still running
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert "the server now runs 44100 Hz" in err


def test_without_pipewire_the_error_says_what_to_do(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), PIPEWIRE_RUNTIME_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "rtengine", "run", "--chain", CHAIN,
                        "--virtual-device", "--duration", "1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert ("no PipeWire daemon" in r.stderr or "not installed" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr
