"""Worker stages: processors whose work must run Python (a pyo patch,
onnxruntime, a plugin hosted through pedalboard).

The stage's kernel on the audio thread is native (rtengine/native/worker.c):
it pushes each block into a lock-free ring, wakes the worker thread and
outputs the worker's result for the samples ``latency`` frames back.  Where
the worker is late, the stage outputs the dry input of the same instant (so
the chain stays time-aligned) and counts the miss; it never waits.

A subclass implements three methods, all called on the worker's side:

* ``work_prepare(sample_rate, hop, channels)``: build what processing needs;
* ``work_reset()``: forget all audio (a fresh render starts);
* ``work(block, params, out)``: process one ``(channels, hop)`` float32 chunk
  into ``out``; ``params`` holds the stage's parameter values (in ``params``
  order) at the chunk's last frame.

When no worker thread runs (offline render, ``Engine.process``) the engine
drives the worker synchronously after every block, so offline output is
deterministic and equals what a worker that keeps up produces live.
"""
from __future__ import annotations

import sys
import threading
from typing import ClassVar

import numpy as np

from ._runner import ffi, lib
from .errors import NativeError, PluginError
from .processor import Option, Processor

COUNTERS = ("frames", "chunks_in", "chunks_done", "chunks_skipped", "miss_samples",
            "miss_blocks")


class WorkerError(PluginError):
    """A worker stage's own code failed."""


class WorkerProcessor(Processor):
    impls = ("c",)                     # the stage kernel is the native ring
    options: ClassVar[tuple[Option, ...]] = (
        Option("headroom_ms", "float", 5.0, "time the worker may take beyond one block, "
               "added to the declared latency", 0.0, 500.0),
    )
    fade_ms: ClassVar[float] = 2.0     # fade back from dry to the worker's output

    def __init__(self, impl: str = "c", **options):
        super().__init__(impl, **options)
        self._w = None
        self._latency = 0
        self.hop = 0
        self.error: str | None = None
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.stage_name = self.name        # the engine sets the chain's stage name

    # ---- what subclasses implement ---------------------------------------------
    def choose_hop(self, sample_rate: float, max_block: int) -> int:
        """Frames per worker chunk."""
        return max_block

    def inner_latency(self, sample_rate: float) -> int:
        """Frames by which ``work`` itself delays its output (a model's
        lookahead); added to the declared latency and to the dry fallback's
        delay, so a miss stays time-aligned."""
        return 0

    def work_prepare(self, sample_rate: float, hop: int, channels: int) -> None:
        pass

    def work_reset(self) -> None:
        pass

    def work(self, block: np.ndarray, params: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    # ---- processor contract ---------------------------------------------------
    @property
    def latency(self) -> int:
        return self._latency

    @property
    def kernel_address(self) -> int:
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_worker_kernel")))

    def allocate(self, sample_rate, max_block, channels):
        self.stop()
        hop = int(self.choose_hop(sample_rate, max_block))
        headroom = int(round(self.opts["headroom_ms"] * 1e-3 * sample_rate))
        latency = hop + max_block + headroom
        inner = int(self.inner_latency(sample_rate))
        fade = int(round(self.fade_ms * 1e-3 * sample_rate))
        err = ffi.new("int *")
        w = lib.rt_worker_new(channels, hop, latency, inner, max_block, len(self.params), fade,
                              err)
        if w == ffi.NULL:
            raise NativeError(err[0], f"creating the worker rings of {self.name!r}")
        self._w = ffi.gc(w, lib.rt_worker_free)
        self._latency = latency + inner
        self.hop = hop
        self._in = np.zeros((channels, hop), dtype=np.float32)
        self._out = np.zeros((channels, hop), dtype=np.float32)
        self._par = np.zeros(max(len(self.params), 1), dtype=np.float32)
        self._pos = ffi.new("uint64_t *")
        self._in_p = ffi.cast("float *", self._in.ctypes.data)
        self._out_p = ffi.cast("float *", self._out.ctypes.data)
        self._par_p = ffi.cast("float *", self._par.ctypes.data)
        state = np.zeros(1, dtype=np.float64)
        lib.rt_worker_bind(ffi.cast("double *", state.ctypes.data), w)
        self.work_prepare(sample_rate, hop, channels)
        return state

    def reset(self) -> None:
        """Forget all audio.  Not while the worker thread runs (the engine stops it)."""
        if self._w is None:
            return
        lib.rt_worker_reset(self._w)
        self.error = None
        self.failures = 0
        self.work_reset()

    # ---- the worker's side ------------------------------------------------------
    def pump(self, raise_errors: bool = False) -> int:
        """Process every chunk that is waiting; returns how many.  A failing
        ``work`` leaves the stage on its dry fallback and records the error."""
        n = 0
        while lib.rt_worker_take(self._w, self._in_p, self._par_p, self._pos):
            if self.error is not None:
                continue                       # failed: dry from here on (counted as misses)
            try:
                self.work(self._in, self._par, self._out)
            except Exception as exc:
                self.failures += 1
                self.error = f"{type(exc).__name__}: {exc}"
                msg = (f"worker stage {self.stage_name!r} ({self.name}) failed: {self.error}; "
                       "the stage passes its dry input from now on")
                if raise_errors:
                    raise WorkerError(msg) from exc
                print(f"rtengine: {msg}", file=sys.stderr)
                continue
            lib.rt_worker_give(self._w, self._pos[0], self._out_p)
            n += 1
        return n

    def _loop(self) -> None:
        while not self._stop.is_set():
            lib.rt_worker_wait(self._w, 100)   # releases the GIL while it sleeps
            if not self._stop.is_set():
                self.pump()

    def start(self, stage_name: str | None = None) -> None:
        """Start the worker thread (live backends).  Control thread."""
        if self._thread is not None:
            return
        if stage_name:
            self.stage_name = stage_name
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"rtengine-worker-{self.stage_name}")
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        lib.rt_worker_wake(self._w)
        self._thread.join(10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def counters(self) -> dict[str, int]:
        c = ffi.new("rt_worker_counters *")
        lib.rt_worker_get_counters(self._w, c)
        out = {k: int(getattr(c, k)) for k in COUNTERS}
        out["failures"] = self.failures
        return out
