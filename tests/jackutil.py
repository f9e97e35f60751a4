"""A private JACK server (jackd --no-realtime -d dummy) for live tests."""
import os
import subprocess

import pytest

from rtengine.backends.jack import JackError
from rtengine.backends.jackd import PrivateJackd

_cleaned = False


def clean_stale_shm():
    """A jackd killed with SIGKILL leaves its shared memory behind, and jackd2
    refuses to start once eight servers are registered.  With no jackd
    running, every JACK segment in /dev/shm is stale: remove them, once per
    test process and before it opens any JACK client (libjack keeps the
    registry mapped, so it must not vanish under a process that uses it)."""
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    if subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode == 0:
        return
    for name in os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else ():
        if name == "jack-shm-registry" or name.startswith(("jack_", "jack-")):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass


def JackServer(rate=48000, period=64, realtime=False):
    """A private server; with realtime=True it tries real-time scheduling first
    (root may use it) and says, in .realtime, whether it got it."""
    clean_stale_shm()
    if realtime:
        try:
            s = PrivateJackd(rate, period, realtime=True)
            s.realtime = True
            return s
        except JackError:
            pass
    try:
        s = PrivateJackd(rate, period)
        s.realtime = False
        return s
    except JackError as exc:
        pytest.fail(str(exc))


PROBE = bytes([0xFE])                             # Active Sensing: no mapper acts on it


def midi_link_up(be, ctl, timeout: float = 20.0) -> None:
    """Wait until MIDI flows both ways between the engine `be` and the
    controller `ctl` (a Peer in 'midi' mode, ports connected both ways).  A
    new connection takes effect at a later cycle (later still when the VM
    stalls), and what a client sends before then reaches nobody, as with any
    MIDI cable not yet plugged in: a probe goes out every 20 ms until one
    arrives, each way; then both sides are drained."""
    import time
    for src, dst, what in ((ctl, be, "controller -> engine"), (be, ctl, "engine -> controller")):
        end = time.monotonic() + timeout
        while not any(m == PROBE for _, m in dst.read_midi()):
            assert time.monotonic() < end, (
                f"no MIDI {what} through JACK in {timeout} s; cycles {ctl.stats().cycles}, "
                f"{be.stats().cycles}; xruns {ctl.stats().xruns}, {be.stats().xruns}")
            src.send_midi([PROBE])
            time.sleep(0.02)
    time.sleep(0.1)                               # probes still in flight
    be.read_midi()
    ctl.read_midi()
