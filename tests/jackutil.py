"""A private JACK server (jackd, dummy driver) for live tests."""
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from rtengine.backends.jack import JackError, Peer


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


class JackServer:
    def __init__(self, rate=48000, period=64):
        if shutil.which("jackd") is None:
            pytest.fail("jackd is not installed: ./run.sh installs jackd2 (as root) or prints "
                        "the apt-get line")
        clean_stale_shm()
        self.name = f"rt_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        # the server's messages go to a file: a pipe nobody reads fills up and
        # then blocks jackd
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.name}_", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(rate),
             "-p", str(period)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe = Peer("thru", None, 1, "probe", self.name)
                probe.close()
                break
            except JackError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = open(self.log.name, errors="replace").read()
                    self.stop()
                    pytest.fail(f"jackd did not start: {out[-2000:]}")
                time.sleep(0.05)

    def kill(self):
        """The server goes away under its clients (SIGTERM: a SIGKILL would
        leave shared memory behind that only a restart of every jackd frees)."""
        self.proc.terminate()
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
