"""The JACK backend: the engine as a JACK client.

The process callback is C (rtengine/native/jack.c) and calls the native runner
directly: no Python, no GIL, no lock and no allocation on JACK's thread.  This
module opens the client, builds the engine at the server's sample rate,
connects ports, publishes the chain latency and reads the statistics.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .._runner import ffi, lib
from ..engine import Engine
from ..errors import RtEngineError

ERRLEN = 512


class JackError(RtEngineError):
    """The JACK server is missing, refused the client, or went away."""


MIDI_MAX = 256                      # longer messages (SysEx) are dropped on receipt
MIDI_SEND_MAX = 4096                # longest message that can be sent
_MIDI_BUF = 65536


def pack_midi(messages) -> bytes:
    """MIDI messages (bytes-like) as ring records: [u32 time][u16 size][bytes]."""
    out = bytearray()
    for m in messages:
        m = bytes(m)
        if not 0 < len(m) <= MIDI_SEND_MAX:
            raise ValueError(f"a MIDI message must be 1..{MIDI_SEND_MAX} bytes, got {len(m)}")
        out += (0).to_bytes(4, "little") + len(m).to_bytes(2, "little") + m
    return bytes(out)


def unpack_midi(data: bytes) -> list[tuple[int, bytes]]:
    """Ring records as (frame time, message) pairs."""
    out, off = [], 0
    while off + 6 <= len(data):
        t = int.from_bytes(data[off:off + 4], "little")
        n = int.from_bytes(data[off + 4:off + 6], "little")
        out.append((t, bytes(data[off + 6:off + 6 + n])))
        off += 6 + n
    return out


def _list(fn, handle, midi: bool, inputs: bool | None) -> list[str]:
    buf = ffi.new("char[]", 256 * 256)
    flags = 0 if inputs is None else (1 if inputs else 2)
    n = fn(handle, 1 if midi else 0, flags, buf, 256)
    return [ffi.string(buf + 256 * i).decode() for i in range(n)]


class _MidiIO:
    """Reading and sending MIDI through a client's lock-free rings."""

    def _midi_init(self):
        self._midi_buf = ffi.new("uint8_t[]", _MIDI_BUF)

    def read_midi(self) -> list[tuple[int, bytes]]:
        """Everything received on midi_in since the last call (control thread)."""
        events = []
        while True:
            n = self._read_fn(self._handle, self._midi_buf, _MIDI_BUF)
            if n <= 0:
                return events
            events += unpack_midi(bytes(ffi.buffer(self._midi_buf, n)))

    def send_midi(self, messages) -> int:
        """Queue messages for midi_out (sent at the next cycle); returns how many
        were accepted (a full ring takes fewer).  Control thread."""
        data = pack_midi(messages)
        if not data:
            return 0
        took = self._send_fn(self._handle, ffi.from_buffer(data), len(data))
        return len(unpack_midi(data[:max(took, 0)]))


def load_library(path: str) -> None:
    """Use this libjack (e.g. PipeWire's) for every client of the process.
    Must come before the first client; the library stays loaded."""
    err = _err_buf()
    if lib.rt_jack_load(path.encode(), err, ERRLEN):
        raise JackError(ffi.string(err).decode())


def _err_buf():
    return ffi.new("char[]", ERRLEN)


def _str(p) -> str | None:
    return None if p == ffi.NULL else ffi.string(p).decode()


@dataclass
class JackStats:
    cycles: int
    frames: int
    xruns: int
    midi_in: int
    midi_dropped: int
    deadline_misses: int
    sample_rate: int
    period: int
    latency: int
    shutdown: bool
    callback_us_median: float
    callback_us_p99: float
    callback_us_max: float
    audio_thread: str = ""       # "SCHED_FIFO 5", "nice -11" (no real-time scheduling) ...

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _stats(raw, times: np.ndarray) -> JackStats:
    t = times if times.size else np.zeros(1, dtype=np.float32)
    return JackStats(int(raw.cycles), int(raw.frames), int(raw.xruns), int(raw.midi_in),
                     int(raw.midi_dropped),
                     int(raw.deadline_misses), int(raw.sample_rate), int(raw.period),
                     int(raw.latency), bool(raw.shutdown), float(np.median(t)),
                     float(np.percentile(t, 99)), float(raw.max_ns) * 1e-3,
                     _thread(int(raw.thread_policy), int(raw.thread_priority)))


def _thread(policy: int, priority: int) -> str:
    """How the client's audio thread is scheduled, as `rtengine status` says it."""
    if policy < 0:
        return "no cycle yet"
    if policy in (1, 2):
        return f"{'SCHED_FIFO' if policy == 1 else 'SCHED_RR'} {priority}"
    return f"nice {priority} (no real-time scheduling)"


class JackBackend(_MidiIO):
    """Run a chain as a JACK client.

    ``chain`` is anything Engine takes; the engine is built at the server's
    sample rate and period.  ``channels`` audio inputs and outputs are
    registered (in_1.., out_1..) plus midi_in and midi_out.  Control thread
    only; the audio runs on JACK's thread from ``start()`` to ``close()``.
    """

    def __init__(self, chain, channels: int = 2, client_name: str = "rtengine",
                 server: str | None = None):
        self.channels = int(channels)
        err = _err_buf()
        if lib.rt_jack_load(ffi.NULL, err, ERRLEN):
            raise JackError(ffi.string(err).decode())
        self._j = lib.rt_jack_open(client_name.encode(), (server or "").encode() or ffi.NULL,
                                   self.channels, self.channels, err, ERRLEN)
        if self._j == ffi.NULL:
            raise JackError(ffi.string(err).decode())
        self.server = server
        raw = self._raw_stats()
        self.sample_rate = int(raw.sample_rate)
        self.period = int(raw.period)
        try:
            self.engine = Engine(chain, sample_rate=self.sample_rate,
                                 block_size=max(self.period, 64), channels=self.channels)
        except Exception:
            lib.rt_jack_close(self._j)
            self._j = ffi.NULL
            raise
        self._old: list[Engine] = []
        self._lock = threading.Lock()
        self._handle, self._read_fn, self._send_fn = self._j, lib.rt_jack_midi_read, \
            lib.rt_jack_midi_send
        self._midi_init()
        self.engine.start_workers()               # before the callback can reach them
        lib.rt_jack_set_runner(self._j, self.engine._r, self.engine.latency)
        self.active = False

    # ---- ports ------------------------------------------------------------------
    @property
    def client_name(self) -> str:
        return _str(lib.rt_jack_client_name(self._j))

    def port(self, kind: str, index: int = 0) -> str:
        """Full name of a port: kind 'in', 'out', 'midi_in' or 'midi_out'."""
        k = {"in": 0, "out": 1, "midi_in": 2, "midi_out": 3}[kind]
        name = _str(lib.rt_jack_port_name(self._j, k, index))
        if name is None:
            raise JackError(f"no {kind} port {index + 1} (the client has {self.channels})")
        return name

    @property
    def inputs(self) -> list[str]:
        return [self.port("in", i) for i in range(self.channels)]

    @property
    def outputs(self) -> list[str]:
        return [self.port("out", i) for i in range(self.channels)]

    def list_ports(self, midi: bool, inputs: bool | None = None) -> list[str]:
        """Port names of the server (MIDI or audio; inputs, outputs or both)."""
        return _list(lib.rt_jack_list_ports, self._j, midi, inputs)

    def physical_ports(self, playback: bool) -> list[str]:
        """System playback (True) or capture (False) ports of the server."""
        buf = ffi.new("char[]", 256 * 64)
        n = lib.rt_jack_physical_ports(self._j, 1 if playback else 2, buf, 64)
        return [ffi.string(buf + 256 * i).decode() for i in range(n)]

    def latency_range(self, port: str, playback: bool) -> tuple[int, int]:
        """(min, max) latency JACK reports for any port (frames)."""
        lo, hi = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        if lib.rt_jack_port_latency(self._j, port.encode(), 1 if playback else 0, lo, hi):
            raise JackError(f"no JACK port named {port!r}")
        return int(lo[0]), int(hi[0])

    def connect(self, source: str, destination: str) -> None:
        err = lib.rt_jack_connect(self._j, source.encode(), destination.encode())
        if err and err != 17:                     # EEXIST: already connected
            raise JackError(f"cannot connect {source} -> {destination} (JACK error {err}); "
                            "check the port names with 'jack_lsp'")

    def connect_system(self) -> None:
        """Capture ports into our inputs, our outputs to playback ports (as many as exist)."""
        for src, dst in zip(self.physical_ports(playback=False), self.inputs):
            self.connect(src, dst)
        for src, dst in zip(self.outputs, self.physical_ports(playback=True)):
            self.connect(src, dst)

    # ---- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        if lib.rt_jack_activate(self._j):
            raise JackError("JACK refused to activate the client")
        self.active = True
        lib.rt_jack_recompute_latency(self._j)

    def swap(self, chain, fade_ms: float = 20.0, timeout: float = 5.0) -> None:
        """Replace the running chain without a click.  The new engine is
        prepared here, off the audio thread; the callback then runs both chains
        and crossfades over ``fade_ms`` before dropping the old one.  Returns
        when the fade is over (control thread)."""
        new = Engine(chain, sample_rate=self.sample_rate, block_size=max(self.period, 64),
                     channels=self.channels)
        fade = max(0, int(round(fade_ms * 1e-3 * self.sample_rate)))
        new.start_workers()
        with self._lock:
            old = self.engine
            if not self.active or self.server_gone:
                lib.rt_jack_set_runner(self._j, new._r, new.latency)
                self.engine = new
                old.stop_workers()
                return
            done0 = lib.rt_jack_swaps_done(self._j)
            lib.rt_jack_swap_runner(self._j, new._r, new.latency, fade)
            self.engine = new
            end = time.monotonic() + timeout
            while lib.rt_jack_swaps_done(self._j) == done0:
                if self.server_gone or time.monotonic() > end:
                    self._old.append(old)         # maybe still in use: keep it alive
                    break
                time.sleep(0.002)
            else:
                old.stop_workers()
            # swaps_done moves only once the callback has dropped the old runner
            lib.rt_jack_recompute_latency(self._j)

    def follow_server(self) -> bool:
        """Re-prepare the chain, off the audio thread, when the server's period
        or sample rate changed, and swap it in (crossfaded); the parameter
        values carry over.  Control thread; returns True when it swapped."""
        raw = self._raw_stats()
        rate, period = int(raw.sample_rate), int(raw.period)
        if (rate, period) == (self.sample_rate, self.period) or self.server_gone:
            return False
        self.sample_rate, self.period = rate, period
        if (rate, max(period, 64)) == (self.engine.sample_rate, self.engine.block_size):
            return False
        self.swap(self.engine.to_chain(), fade_ms=5.0)
        return True

    def close(self) -> None:
        if self._j != ffi.NULL:
            lib.rt_jack_close(self._j)
            self._j = ffi.NULL
            self.active = False
        for e in [self.engine, *self._old]:
            e.stop_workers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- statistics -------------------------------------------------------------
    def _raw_stats(self):
        raw = ffi.new("rt_jack_stats *")
        lib.rt_jack_get_stats(self._j, raw)
        return raw

    def recent_callback_us(self, n: int = 8192) -> np.ndarray:
        buf = np.zeros(n, dtype=np.float32)
        got = lib.rt_jack_recent_times(self._j, ffi.cast("float *", buf.ctypes.data), n)
        return buf[:got]

    def stats(self) -> JackStats:
        return _stats(self._raw_stats(), self.recent_callback_us())

    @property
    def server_gone(self) -> bool:
        return bool(self._raw_stats().shutdown)

    def wait_cycles(self, n: int, timeout: float = 10.0) -> None:
        """Block (control thread) until n more callbacks have run."""
        target = self._raw_stats().cycles + n
        end = time.monotonic() + timeout
        while self._raw_stats().cycles < target:
            if self.server_gone:
                raise JackError("the JACK server went away")
            if time.monotonic() > end:
                raise JackError(f"JACK ran fewer than {n} cycles in {timeout} s")
            time.sleep(0.002)


class Peer(_MidiIO):
    """A C JACK client for tests and benchmarks: 'player' plays a planar
    buffer once armed, 'recorder' records into one from its first cycle,
    'thru' copies inputs to outputs (a baseline), 'midi' sends and receives
    MIDI on midi_out / midi_in (a controller)."""

    MODES = {"player": 0, "recorder": 1, "thru": 2, "midi": 3}

    def __init__(self, mode: str, buf: np.ndarray | None = None, ports: int = 2,
                 client_name: str = "rt_peer", server: str | None = None):
        err = _err_buf()
        if lib.rt_jack_load(ffi.NULL, err, ERRLEN):
            raise JackError(ffi.string(err).decode())
        if buf is not None:
            if buf.dtype != np.float32 or not buf.flags.c_contiguous or buf.ndim != 2:
                raise ValueError("peer buffer must be a C-contiguous (ports, frames) float32 array")
            ports = buf.shape[0]
        self.buf = buf
        ptr = ffi.cast("float *", buf.ctypes.data) if buf is not None else ffi.NULL
        stride = buf.shape[1] if buf is not None else 0
        self._p = lib.rt_peer_open(client_name.encode(), (server or "").encode() or ffi.NULL,
                                   self.MODES[mode], ports, ptr, stride, err, ERRLEN)
        if self._p == ffi.NULL:
            raise JackError(ffi.string(err).decode())
        self.mode, self.ports = mode, ports
        self._handle, self._read_fn, self._send_fn = self._p, lib.rt_peer_midi_read, \
            lib.rt_peer_midi_send
        self._midi_init()

    def port(self, is_output: bool, index: int) -> str:
        return _str(lib.rt_peer_port_name(self._p, 1 if is_output else 0, index))

    def list_ports(self, midi: bool, inputs: bool | None = None) -> list[str]:
        """Port names of the server (MIDI or audio; inputs, outputs or both)."""
        return _list(lib.rt_peer_list_ports, self._p, midi, inputs)

    def activate(self) -> None:
        if lib.rt_peer_activate(self._p):
            raise JackError("JACK refused to activate the peer")

    def connect(self, source: str, destination: str) -> None:
        err = lib.rt_peer_connect(self._p, source.encode(), destination.encode())
        if err and err != 17:
            raise JackError(f"cannot connect {source} -> {destination} (JACK error {err})")

    def arm(self) -> None:
        lib.rt_peer_arm(self._p)

    @property
    def start_time(self) -> int:
        return int(lib.rt_peer_start_time(self._p))

    @property
    def frames(self) -> int:
        return int(lib.rt_peer_frames(self._p))

    def recent_times(self, n: int = 8192) -> np.ndarray:
        """The most recent callback durations (microseconds), oldest first."""
        buf = np.zeros(n, dtype=np.float32)
        got = lib.rt_peer_recent_times(self._p, ffi.cast("float *", buf.ctypes.data), n)
        return buf[:got]

    def stats(self) -> JackStats:
        raw = ffi.new("rt_jack_stats *")
        lib.rt_peer_get_stats(self._p, raw)
        return _stats(raw, self.recent_times())

    def close(self) -> None:
        if self._p != ffi.NULL:
            lib.rt_peer_close(self._p)
            self._p = ffi.NULL
