"""A private JACK server (jackd, dummy driver) for tests, benchmarks and
machines without a sound card."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

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

    def output(self, start: int = 0, end: int | None = None) -> str:
        """The server's messages (from byte ``start`` of its log up to ``end``)."""
        try:
            with open(self.log.name, "rb") as f:
                f.seek(start)
                data = f.read() if end is None else f.read(max(0, end - start))
            return data.decode(errors="replace")
        except OSError:
            return ""

    def log_mark(self) -> int:
        """Where the server's log ends now: give it to :meth:`xrun_causes` later."""
        try:
            return os.path.getsize(self.log.name)
        except OSError:
            return 0

    def xrun_causes(self, start: int = 0, end: int | None = None) -> "XrunCauses":
        """Who the server blamed for the xruns it logged between two marks."""
        return XrunCauses.parse(self.output(start, end))

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


_SERVER_LATE = re.compile(r"JackTimedDriver::Process XRun = (\d+) usec")
_NOT_FINISHED = re.compile(r"JackEngine::XRun: client = (.+?) was not finished, state = (\w+)")
_FINISHED_LATE = re.compile(r"JackEngine::XRun: client (.+?) finished after current callback")


@dataclass
class XrunCauses:
    """The xruns jackd (jackd2) logged, by cause.

    - ``server_late``: the server's own cycle started late (its timer thread woke
      late): put on no client.
    - ``not_started``: per client, cycles where the client had been signalled
      but had not begun the cycle when the next one was due (state Triggered):
      its thread was not scheduled in time, or was still busy elsewhere (a
      callback that waits for Python's GIL shows up here).
    - ``overran``: per client, cycles where the client was still inside its
      process callback at the next cycle (state Running), or finished after
      that cycle began: its callback took too long, or the system stopped it
      mid-way.

    :meth:`blamed` is the sum of the two for a client: the xruns the server
    puts on it rather than on itself or on another client.
    """
    server_late: int = 0
    not_started: Counter = field(default_factory=Counter)
    overran: Counter = field(default_factory=Counter)

    @classmethod
    def parse(cls, text: str) -> "XrunCauses":
        c = cls()
        for line in text.splitlines():
            if _SERVER_LATE.search(line):
                c.server_late += 1
            elif m := _NOT_FINISHED.search(line):
                (c.overran if m.group(2) == "Running" else c.not_started)[m.group(1)] += 1
            elif m := _FINISHED_LATE.search(line):
                c.overran[m.group(1)] += 1
        return c

    def blamed(self, client: str) -> int:
        return self.not_started[client] + self.overran[client]

    def as_dict(self) -> dict:
        return {"server_late": self.server_late, "not_started": dict(self.not_started),
                "overran": dict(self.overran)}
