"""A private JACK server (jackd, dummy driver) for live tests."""
import os
import shutil
import subprocess
import time
import uuid

import pytest

from rtengine.backends.jack import JackError, Peer


class JackServer:
    def __init__(self, rate=48000, period=64):
        if shutil.which("jackd") is None:
            pytest.fail("jackd is not installed: ./run.sh installs jackd2 (as root) or prints "
                        "the apt-get line")
        self.name = f"rt_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(rate),
             "-p", str(period)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe = Peer("thru", None, 1, "probe", self.name)
                probe.close()
                break
            except JackError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                    self.stop()
                    pytest.fail(f"jackd did not start: {out[-2000:]}")
                time.sleep(0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
