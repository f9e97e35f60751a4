"""A private JACK server (jackd, dummy driver) for tests, benchmarks and
machines without a sound card."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

from .jack import JackError, Peer


class PrivateJackd:
    """``jackd -n NAME [--no-realtime] -d dummy -r RATE -p PERIOD``, started now,
    ready when the constructor returns (a client could connect)."""

    def __init__(self, rate: int = 48000, period: int = 64, realtime: bool = False,
                 name: str | None = None, timeout: float = 10.0):
        if shutil.which("jackd") is None:
            raise JackError("jackd is not installed: apt-get install jackd2 (./run.sh does it "
                            "when run as root)")
        self.name = name or f"rt_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        # the server's messages go to a file: a pipe nobody reads fills up and
        # then blocks jackd
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.name}_", suffix=".log",
                                               delete=False)
        cmd = ["jackd", "-n", self.name] + ([] if realtime else ["--no-realtime"]) + \
            ["-d", "dummy", "-r", str(rate), "-p", str(period)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                Peer("thru", None, 1, "probe", self.name).close()
                return
            except JackError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.output()
                    self.stop()
                    raise JackError(f"jackd did not start: {out[-1500:]}") from None
                time.sleep(0.05)

    def output(self) -> str:
        try:
            with open(self.log.name, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self) -> None:
        """The server goes away under its clients (SIGTERM)."""
        self.proc.terminate()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
