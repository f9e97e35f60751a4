"""The Engine: a chain of processors prepared for one sample rate, block size
and channel count, run block by block by the native runner."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from os import PathLike
from typing import Callable, Iterable

import numpy as np

import kernels
from kernels import layout

from . import registry
from ._runner import ffi, lib
from .chain import Chain, StageSpec
from .errors import AudioFormatError, NativeError, ParameterError, PluginError
from .params import BYPASS, Param
from .processor import Processor
from .worker import WorkerProcessor


def _check(err: int, what: str) -> None:
    if err != 0:
        raise NativeError(err, what)


def _ptr(ctype: str, arr: np.ndarray):
    return ffi.cast(ctype, arr.ctypes.data)


@dataclass
class Stage:
    """One prepared stage of an engine."""
    name: str
    plugin: str
    processor: Processor
    par_off: int
    params: tuple[Param, ...]          # the processor's params, then bypass
    align: np.ndarray                  # dry-path delay state (bypass alignment)
    blob_shared: np.ndarray | None = None
    blob_scratch: np.ndarray | None = None
    generation: int = 1

    @property
    def latency(self) -> int:
        return self.processor.latency


class Engine:
    """A chain ready to process audio.

    ``chain`` is a Chain, the path of a chain file (TOML; for TOML text use
    ``Chain.from_toml``), or a list of stages: dicts like
    ``{"plugin": "gain", "params": {"gain_db": -6}}``, ``("gain", {...})``
    tuples or plugin names.

    Threads: ``process`` and ``render`` run on the caller's thread (the audio
    thread of an offline render); ``set`` may be called from any other thread
    while ``process`` runs, except for parameters that change latency.
    """

    def __init__(self, chain: Chain | str | PathLike | Iterable, sample_rate: float = 48000,
                 block_size: int = 512, channels: int = 2):
        if isinstance(chain, Chain):
            self.chain = chain
        elif isinstance(chain, (str, PathLike)):
            self.chain = Chain.load(chain)
        else:
            self.chain = Chain.from_list(chain)
        if int(channels) < 1:
            raise AudioFormatError(f"channels must be at least 1, got {channels}")
        if int(block_size) < 1:
            raise AudioFormatError(f"block size must be at least 1, got {block_size}")
        self.sample_rate = float(sample_rate)
        self.block_size = int(block_size)
        self.channels = int(channels)
        self._lock = threading.Lock()
        self._in_obj = self._out_obj = None
        self._in_ptr = self._out_ptr = None
        processors = []
        for spec in self.chain.stages:
            try:
                proc = registry.get(spec.plugin)(impl=spec.impl, **spec.options)
                for pid, value in spec.params.items():
                    proc.values[pid] = proc.param(pid).coerce(value, where=f"{spec.name}.")
            except (PluginError, ParameterError) as exc:
                raise type(exc)(f"{self.chain.source}: stage {spec.name!r}: {exc}") from None
            processors.append((spec, proc))
        self._build(processors)

    # ---- construction ---------------------------------------------------------
    def _build(self, processors: list[tuple[StageSpec, Processor]]) -> None:
        sr, mb, nch = self.sample_rate, self.block_size, self.channels
        self.stages: list[Stage] = []
        npar = 0
        for spec, proc in processors:
            proc.prepare(sr, mb, nch)
            params = tuple(proc.params) + (BYPASS,)
            align = layout.delay_state(nch, proc.latency, sr)
            st = Stage(spec.name, spec.plugin, proc, npar, params, align)
            if isinstance(proc, WorkerProcessor):
                proc.stage_name = spec.name
            if proc.blob_size:
                st.blob_shared = np.zeros(proc.blob_size)
                st.blob_scratch = np.zeros(proc.blob_size)
            self.stages.append(st)
            npar += len(params)
        self._index = {}
        for st in self.stages:
            for k, p in enumerate(st.params):
                self._index[f"{st.name}.{p.id}"] = (st, p, st.par_off + k)

        self._targets = np.zeros(npar, dtype=np.float32)
        for spec, st in zip((s for s, _ in processors), self.stages):
            for k, p in enumerate(st.params[:-1]):
                self._targets[st.par_off + k] = st.processor.values[p.id]
            self._targets[st.par_off + len(st.params) - 1] = 1.0 if spec.bypass else 0.0
        self._cur = self._targets.copy()
        self._last_target = self._targets.copy()
        self._step = np.zeros(npar, dtype=np.float32)
        self._remaining = np.zeros(npar, dtype=np.int32)
        self._ramp_len = np.zeros(npar, dtype=np.int32)
        self._lane = np.zeros(npar, dtype=np.uint8)
        self._lane_fill = np.zeros(npar, dtype=np.int32)
        for st in self.stages:
            for k, p in enumerate(st.params):
                self._ramp_len[st.par_off + k] = int(round(p.smoothing_ms * 1e-3 * sr))
                self._lane[st.par_off + k] = 1 if p.lane else 0
        self._lanes = np.zeros((max(npar, 1), mb), dtype=np.float32)
        self._dry = np.zeros((nch, mb), dtype=np.float32)

        delay_fn = ffi.cast("rt_kernel_fn", kernels.address("delay", "c"))
        self._cstages = ffi.new("rt_stage[]", len(self.stages))
        for i, st in enumerate(self.stages):
            cs = self._cstages[i]
            proc = st.processor
            cs.fn = ffi.cast("rt_kernel_fn", proc.kernel_address)
            cs.state = _ptr("double *", proc.state)
            cs.par_off = st.par_off
            cs.npar = len(st.params) - 1
            cs.bypass_idx = st.par_off + len(st.params) - 1
            cs.latency = proc.latency
            cs.align_fn = delay_fn
            cs.align_state = _ptr("double *", st.align)
            if st.blob_shared is not None:
                blob = proc.state[proc.blob_offset:proc.blob_offset + proc.blob_size]
                st.blob_shared[:] = blob
                st.generation = int(blob[0])
                cs.blob_shared = _ptr("double *", st.blob_shared)
                cs.blob_scratch = _ptr("double *", st.blob_scratch)
                cs.blob_dst = _ptr("double *", blob)
                cs.nblob = proc.blob_size
            cs.blob_seq = 0
            cs.blob_seen = 0

        self.workers = [st for st in self.stages if isinstance(st.processor, WorkerProcessor)]
        self._workers_live = False
        self._r = ffi.new("rt_runner *")
        r = self._r
        r.nstages = len(self.stages)
        r.nch = nch
        r.max_block = mb
        r.npar = npar
        r.stages = self._cstages
        r.targets = _ptr("float *", self._targets)
        r.cur = _ptr("float *", self._cur)
        r.last_target = _ptr("float *", self._last_target)
        r.step = _ptr("float *", self._step)
        r.remaining = _ptr("int32_t *", self._remaining)
        r.ramp_len = _ptr("int32_t *", self._ramp_len)
        r.lane = _ptr("uint8_t *", self._lane)
        r.lane_fill = _ptr("int32_t *", self._lane_fill)
        r.lanes = _ptr("float *", self._lanes)
        r.dry = _ptr("float *", self._dry)
        self.reset()

    # ---- information ----------------------------------------------------------
    @property
    def latency(self) -> int:
        """Total latency of the chain in samples (the sum over stages)."""
        return sum(st.latency for st in self.stages)

    @property
    def counters(self) -> dict[str, int]:
        c = self._r.counters
        return {"blocks": c.blocks, "frames": c.frames, "nonfinite_in": c.nonfinite_in,
                "nonfinite_stage": c.nonfinite_stage, "blob_retries": c.blob_retries}

    @property
    def worker_counters(self) -> dict[str, dict[str, int]]:
        """Per worker stage: chunks processed and skipped, samples that fell back
        to the dry signal (misses), failures."""
        return {st.name: st.processor.counters for st in self.workers}

    def meters(self) -> dict[str, dict]:
        """Per stage that measures something (``loudness``, ``master``): its
        meters, read while the engine runs (any thread, no lock)."""
        out = {}
        for st in self.stages:
            m = st.processor.meters()
            if m:
                out[st.name] = m
        return out

    # ---- worker stages ----------------------------------------------------------
    def start_workers(self) -> None:
        """Run worker stages on their own threads (live backends call this before
        the audio starts).  Until then, and after ``stop_workers``, the engine
        drives them itself after every block."""
        for st in self.workers:
            st.processor.start(st.name)
        self._workers_live = True

    def stop_workers(self) -> None:
        for st in self.workers:
            st.processor.stop()
        self._workers_live = False

    def close(self) -> None:
        """Stop worker threads.  The engine can still render afterwards."""
        self.stop_workers()

    def _pump(self) -> None:
        for st in self.workers:
            st.processor.pump(raise_errors=True)

    def describe(self) -> str:
        lines = [f"chain {self.chain.source}: {len(self.stages)} stages, "
                 f"{self.channels} ch at {self.sample_rate:g} Hz, block {self.block_size}, "
                 f"latency {self.latency} samples ({1e3 * self.latency / self.sample_rate:.2f} ms)"]
        for st in self.stages:
            lines.append(f"  {st.name} ({st.plugin}, {st.processor.impl}): latency {st.latency}")
        return "\n".join(lines)

    # ---- parameters -----------------------------------------------------------
    def _lookup(self, key: str):
        try:
            return self._index[key]
        except KeyError:
            stage, _, pid = key.partition(".")
            names = [st.name for st in self.stages]
            if stage not in names:
                raise ParameterError(f"no stage named {stage!r} in {key!r}; stages are "
                                     f"{', '.join(names)} (address parameters as "
                                     "'stage.param_id')") from None
            st = self.stages[names.index(stage)]
            raise ParameterError(f"stage {stage!r} ({st.plugin}) has no parameter {pid!r}; its "
                                 f"parameters are {', '.join(p.id for p in st.params)}") from None

    def get(self, key: str) -> float:
        """Target value of parameter ``"stage.param_id"``."""
        return float(self._targets[self._lookup(key)[2]])

    def set(self, key: str, value) -> None:
        """Set parameter ``"stage.param_id"``; the runner ramps to it.  Any thread;
        a parameter that changes latency re-prepares the chain (not while a live
        backend runs it)."""
        st, p, idx = self._lookup(key)
        v = p.coerce(value, where=f"{st.name}.")
        if p is BYPASS:
            self._targets[idx] = v
            return
        proc = st.processor
        if not p.realtime:
            proc.values[p.id] = v
            procs = [(StageSpec(s.plugin, s.name, {}, s.processor.impl,
                                self.get(f"{s.name}.bypass") >= 0.5), s.processor)
                     for s in self.stages]
            for _, pr in procs:
                pr.spec = None
            self._build(procs)
            return
        proc.values[p.id] = v
        self._targets[idx] = v
        if not p.lane and st.blob_shared is not None:
            self._publish(st)

    def _publish(self, st: Stage) -> None:
        with self._lock:
            st.generation += 1
            blob = st.processor.design(st.processor.values, st.generation)
            i = self.stages.index(st)
            _check(lib.rt_blob_publish(self._r, i, _ptr("double *", blob), len(blob)),
                   f"publishing coefficients of stage {st.name!r}")
            st._blob_keepalive = blob

    @property
    def params(self) -> dict[str, float]:
        return {k: float(self._targets[i]) for k, (_, _, i) in self._index.items()}

    def to_chain(self) -> Chain:
        """The chain with every current parameter value (a preset)."""
        specs = []
        for st in self.stages:
            vals = {}
            for k, p in enumerate(st.params[:-1]):
                # the targets: what every control path (MIDI, OSC, the bridge's lane
                # threads) writes; the float32 target of a value set as a double
                # reads back as that double when it was representable
                v = float(self._targets[st.par_off + k])
                if not p.discrete and float(np.float32(st.processor.values[p.id])) == v:
                    v = st.processor.values[p.id]
                vals[p.id] = p.choices[int(round(v))] if p.choices else \
                    (bool(v >= 0.5) if p.toggle else v)
            now = st.processor.current_options()
            opts = {o.id: now[o.id] for o in st.processor.options if now[o.id] != o.default}
            specs.append(StageSpec(st.plugin, st.name, vals, st.processor.impl,
                                   self.get(f"{st.name}.bypass") >= 0.5, opts))
        return Chain(specs, self.chain.source)

    # ---- processing -----------------------------------------------------------
    def reset(self) -> None:
        """Clear all processing state; parameters jump to their targets.  Not
        concurrent with ``process`` (worker threads are stopped and restarted)."""
        live = self._workers_live
        if live:
            self.stop_workers()
        for i, st in enumerate(self.stages):
            if st.blob_shared is not None:
                proc = st.processor
                proc.state[proc.blob_offset:proc.blob_offset + proc.blob_size] = st.blob_shared
                self._cstages[i].blob_seen = self._cstages[i].blob_seq
            st.processor.reset()
            layout.delay_reset(st.align)
        lib.rt_runner_settle(self._r)
        if live:
            self.start_workers()

    def _check_block(self, block: np.ndarray, what: str) -> np.ndarray:
        if not isinstance(block, np.ndarray) or block.ndim != 2 or block.shape[0] != self.channels:
            shape = getattr(block, "shape", type(block).__name__)
            raise AudioFormatError(f"{what}: expected a ({self.channels}, frames) float32 array "
                                   f"(channels first), got {shape}")
        return block

    def _buffer(self, arr, what: str):
        """Validate a float32 (channels, frames) array with contiguous rows and
        return a pointer to it.  Control path: called once per new array."""
        self._check_block(arr, what)
        if arr.dtype != np.float32 or arr.strides[1] != 4 or arr.strides[0] % 4:
            raise AudioFormatError(f"{what}: expected float32 with contiguous rows, got "
                                   f"{arr.dtype} with strides {arr.strides}; use "
                                   "np.ascontiguousarray(x, dtype=np.float32)")
        if arr.shape[0] > 1 and arr.strides[0] < 4 * arr.shape[1]:
            raise AudioFormatError(f"{what}: channel rows overlap (strides {arr.strides}); "
                                   "pass a (channels, frames) array with separate rows")
        if arr.flags.c_contiguous:
            return ffi.from_buffer("float[]", arr, require_writable=False)
        return _ptr("float *", arr)

    @staticmethod
    def _stride(arr) -> int:
        """Floats between channel rows (a single row may have any stride)."""
        return arr.strides[0] >> 2 if arr.shape[0] > 1 else arr.shape[1]

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process one (channels, frames) float32 block and return the result.

        With ``out`` (float32, same shape, rows contiguous; may be ``block``
        itself) nothing is allocated: warm calls with the same two arrays create
        no Python object and allocate no memory.  Arrays are recognised by
        identity, so do not reshape one in place between calls.  Runs on the
        caller's thread; frames may exceed the block size (the runner splits).
        """
        if block is self._in_obj and out is self._out_obj:
            if self.workers and not self._workers_live:
                return self._process_driving_workers()
            lib.rt_runner_process_io(self._r, self._in_ptr, self._in_stride,
                                     self._out_ptr, self._out_stride, self._n)
            return out
        return self._process_new(block, out)

    def _process_driving_workers(self):
        """Blocks of at most block_size, the worker stages driven after each."""
        pos, mb = 0, self.block_size
        while pos < self._n:
            m = min(mb, self._n - pos)
            lib.rt_runner_process_io(self._r, self._in_ptr + pos, self._in_stride,
                                     self._out_ptr + pos, self._out_stride, m)
            self._pump()
            pos += m
        return self._out_obj

    def _process_new(self, block, out):
        if isinstance(block, np.ndarray) and block.dtype != np.float32:
            block = np.ascontiguousarray(block, dtype=np.float32)
        in_ptr = self._buffer(block, "process")
        if out is None:
            out = np.empty(block.shape, dtype=np.float32)
        out_ptr = self._buffer(out, "process(out=)")
        if out.shape != block.shape:
            raise AudioFormatError(f"process: out has shape {out.shape}, block {block.shape}")
        self._in_obj, self._in_ptr, self._in_stride = block, in_ptr, self._stride(block)
        self._out_obj, self._out_ptr, self._out_stride = out, out_ptr, self._stride(out)
        self._n = block.shape[1]
        if self.workers and not self._workers_live:
            return self._process_driving_workers()
        lib.rt_runner_process_io(self._r, in_ptr, self._in_stride, out_ptr, self._out_stride,
                                 self._n)
        return out

    def render(self, signal: np.ndarray, progress: Callable[[int], None] | None = None,
               chunk: int | None = None) -> np.ndarray:
        """Render a whole (channels, frames) signal from a fresh state.

        The output has the input's shape and is latency-compensated: the
        chain's latency is flushed with silence and trimmed off the front.
        ``progress(frames_done)`` is called after each chunk.
        """
        self._check_block(signal, "render")
        n = signal.shape[1]
        lat = self.latency
        buf = np.zeros((self.channels, n + lat), dtype=np.float32)
        buf[:, :n] = signal
        self.reset()
        step = chunk or max(self.block_size, 65536 // self.block_size * self.block_size)
        driving = bool(self.workers) and not self._workers_live
        ptr = _ptr("float *", buf)
        stride = buf.shape[1]
        pos = 0
        while pos < buf.shape[1]:
            m = min(step, buf.shape[1] - pos)
            if driving:                   # worker stages: one block at a time, then the workers
                end = pos + m
                while pos < end:
                    k = min(self.block_size, end - pos)
                    lib.rt_runner_process(self._r, ptr + pos, stride, k)
                    self._pump()
                    pos += k
            else:
                lib.rt_runner_process(self._r, ptr + pos, stride, m)
                pos += m
            if progress is not None:
                progress(min(pos, n))
        return np.ascontiguousarray(buf[:, lat:])

    def render_on_native_thread(self, signal: np.ndarray, frames_per_block: int) -> np.ndarray:
        """Like ``render`` but every block runs on a fresh native thread that holds
        no GIL and runs no Python (how the JACK backend and the bridge call the
        runner).  ``last_native_seconds`` then holds that thread's processing
        time.  For tests and diagnostics."""
        self._check_block(signal, "render_on_native_thread")
        n = signal.shape[1]
        lat = self.latency
        nblocks = -(-(n + lat) // frames_per_block)
        buf = np.zeros((self.channels, nblocks * frames_per_block), dtype=np.float32)
        buf[:, :n] = signal
        self.reset()
        elapsed = ffi.new("uint64_t *")
        live = self._workers_live
        self.start_workers()
        try:
            _check(lib.rt_runner_run_on_thread(self._r, _ptr("float *", buf), buf.shape[1],
                                               frames_per_block, nblocks, elapsed),
                   "native render thread")
        finally:
            if not live:
                self.stop_workers()
        self.last_native_seconds = elapsed[0] * 1e-9
        return np.ascontiguousarray(buf[:, lat:lat + n])
