"""The PortAudio backend: a duplex PortAudio stream for machines without JACK.

The stream callback is C (rtengine/native/pa.c) and calls the native runner
directly, as the JACK backend does: no Python, no GIL, no lock and no
allocation on PortAudio's thread.  Devices are chosen by index or by (part
of) their name.  What it does not do, unlike JACK: publish the chain's latency
to other programs, or route to other applications.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._runner import ffi, lib
from ..engine import Engine
from ..errors import RtEngineError
from .jack import _stats

ERRLEN = 512


class PortAudioError(RtEngineError):
    """PortAudio is missing, or a device cannot do what was asked."""


@dataclass
class Device:
    index: int
    name: str
    host_api: str
    max_in: int
    max_out: int
    default_rate: float
    low_in_latency: float
    low_out_latency: float

    def __str__(self) -> str:
        return (f"{self.index:3d}  {self.name}  [{self.host_api}]  in {self.max_in}, "
                f"out {self.max_out}, {self.default_rate:g} Hz")


def devices() -> list[Device]:
    err = ffi.new("char[]", ERRLEN)
    buf = ffi.new("rt_pa_device[]", 256)
    n = lib.rt_pa_devices(buf, 256, err, ERRLEN)
    if n < 0:
        raise PortAudioError(ffi.string(err).decode())
    return [Device(int(d.index), ffi.string(d.name).decode(errors="replace"),
                   ffi.string(d.host_api).decode(errors="replace"), int(d.max_in),
                   int(d.max_out), float(d.default_rate), float(d.low_in_latency),
                   float(d.low_out_latency)) for d in buf[0:n]]


def find_device(spec, need_in: int, need_out: int) -> Device:
    """A device by index (int or digits) or by a case-insensitive part of its
    name, with enough input and output channels."""
    devs = devices()
    listing = "\n".join(f"  {d}" for d in devs) or "  (none)"
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        found = [d for d in devs if d.index == int(spec)]
    else:
        found = [d for d in devs if str(spec).lower() in d.name.lower()
                 or str(spec).lower() in d.host_api.lower()]
    found = [d for d in found if d.max_in >= need_in and d.max_out >= need_out]
    if not found:
        raise PortAudioError(f"no PortAudio device {spec!r} with {need_in} inputs and "
                             f"{need_out} outputs; devices:\n{listing}")
    return found[0]


class PortAudioBackend:
    """Run a chain on a duplex PortAudio stream.  Control thread only."""

    def __init__(self, chain, device=None, channels: int = 2, sample_rate: float | None = None,
                 block_size: int = 128, latency: float | None = None,
                 input_device=None, output_device=None):
        self.channels = int(channels)
        din = find_device(input_device if input_device is not None else device or 0,
                          self.channels, 0)
        dout = find_device(output_device if output_device is not None else device or 0,
                           0, self.channels)
        self.input_device, self.output_device = din, dout
        self.sample_rate = float(sample_rate or dout.default_rate)
        self.block_size = int(block_size)
        self.engine = Engine(chain, sample_rate=self.sample_rate, block_size=self.block_size,
                             channels=self.channels)
        lat = latency if latency is not None else max(din.low_in_latency, dout.low_out_latency)
        err = ffi.new("char[]", ERRLEN)
        self._s = lib.rt_pa_open(din.index, dout.index, self.channels, self.sample_rate,
                                 self.block_size, lat, err, ERRLEN)
        if self._s == ffi.NULL:
            raise PortAudioError(ffi.string(err).decode())
        self.engine.start_workers()
        lib.rt_pa_set_runner(self._s, self.engine._r)

    # what `rtengine run` and `rtengine status` read, as for the JACK backend
    client_name = "rtengine"
    server = "portaudio"
    server_gone = False

    @property
    def inputs(self) -> list[str]:
        return [f"{self.input_device.name} [{self.input_device.host_api}]"]

    @property
    def outputs(self) -> list[str]:
        return [f"{self.output_device.name} [{self.output_device.host_api}]"]

    @property
    def period(self) -> int:
        return self.block_size

    def read_midi(self) -> list:
        return []                              # MIDI comes from hardware ports (--midi-in)

    def send_midi(self, messages) -> int:
        return 0

    def swap(self, chain, fade_ms: float = 20.0, timeout: float = 5.0) -> None:
        """Replace the chain without a click: the new engine is prepared here
        (off the audio thread); the callback runs both chains on the same input
        and crossfades over ``fade_ms`` before dropping the old one.  Returns
        when the fade is over (control thread)."""
        new = Engine(chain, sample_rate=self.sample_rate, block_size=self.block_size,
                     channels=self.channels)
        new.start_workers()
        fade = max(0, int(round(fade_ms * 1e-3 * self.sample_rate)))
        old = self.engine
        if not self.started:
            lib.rt_pa_set_runner(self._s, new._r)
            self.engine = new
            old.stop_workers()
            return
        done0 = lib.rt_pa_swaps_done(self._s)
        lib.rt_pa_swap_runner(self._s, new._r, fade)
        self.engine = new
        end = time.monotonic() + timeout
        while lib.rt_pa_swaps_done(self._s) == done0:
            if time.monotonic() > end:            # the stream stalled: keep the old alive
                self._old = getattr(self, "_old", []) + [old]
                return
            time.sleep(0.002)
        old.stop_workers()

    started = False

    def start(self) -> None:
        err = ffi.new("char[]", ERRLEN)
        if lib.rt_pa_start(self._s, err, ERRLEN):
            raise PortAudioError(ffi.string(err).decode())
        self.started = True

    @property
    def stream_latency(self) -> tuple[float, float]:
        """(input, output) latency of the stream in seconds, as PortAudio reports it;
        the chain adds engine.latency samples on top."""
        i, o = ffi.new("double *"), ffi.new("double *")
        lib.rt_pa_latency(self._s, i, o)
        return float(i[0]), float(o[0])

    def stats(self):
        raw = ffi.new("rt_jack_stats *")
        lib.rt_pa_get_stats(self._s, raw)
        buf = np.zeros(8192, dtype=np.float32)
        got = lib.rt_pa_recent_times(self._s, ffi.cast("float *", buf.ctypes.data), 8192)
        return _stats(raw, buf[:got])

    def close(self) -> None:
        if self._s != ffi.NULL:
            lib.rt_pa_close(self._s)
            self._s = ffi.NULL
        for e in [self.engine, *getattr(self, "_old", [])]:
            e.stop_workers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
