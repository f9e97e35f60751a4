"""``pyo``: a pyo patch (a Python file that builds pyo objects) as a worker stage.

Each stage runs its own embedded pyo server in "manual" mode: the worker
thread copies a chunk of the stage's input into the server's input buffer,
asks the server for one buffer and copies the output back.  The patch file
declares the stage's parameters (``PARAMS``) and builds the graph
(``build(inp, params)``); see rtengine/patches/reverb.py.

A patch is code.  It is only ever run from a file path the user gave (a
chain's ``options.patch`` or the Python API), never from text inside a chain,
a preset or a DAW project.
"""
from __future__ import annotations

import contextlib
import ctypes
import inspect
import io
import runpy
from pathlib import Path

import numpy as np

from rtengine.errors import PluginError
from rtengine.params import SCALES, Param
from rtengine.processor import Option
from rtengine.worker import WorkerProcessor

PARAM_KEYS = {"id", "name", "min", "max", "default", "unit", "scale", "smoothing_ms", "toggle"}
PREROLL_BLOCKS = 8                    # pyo fades a freshly started server in


def _pyo():
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # pyo prints GUI notices on import
            import pyo
    except ImportError:
        raise PluginError("the pyo plugin needs the pyo package (pip install pyo)") from None
    return pyo


def load_patch(path: str) -> tuple[tuple[Param, ...], object]:
    """Run a patch file and return its parameters and build function."""
    p = Path(path)
    if not p.is_file():
        raise PluginError(f"pyo patch {p} does not exist; options.patch names a Python file "
                          "(relative to the chain file) with PARAMS and build(inp, params)")
    _pyo()
    try:
        ns = runpy.run_path(str(p), run_name="rtengine_patch")
    except Exception as exc:
        raise PluginError(f"pyo patch {p} failed to load: {type(exc).__name__}: {exc}") \
            from None
    build = ns.get("build")
    if not callable(build) or len(inspect.signature(build).parameters) != 2:
        raise PluginError(f"pyo patch {p} must define build(inp, params) returning the "
                          "stage's output (a pyo object)")
    raw = ns.get("PARAMS", [])
    if not isinstance(raw, (list, tuple)):
        raise PluginError(f"pyo patch {p}: PARAMS must be a list of dicts")
    params = []
    for i, d in enumerate(raw, 1):
        where = f"pyo patch {p}: PARAMS[{i}]"
        if not isinstance(d, dict):
            raise PluginError(f"{where} must be a dict with id, name, min, max, default")
        unknown = set(d) - PARAM_KEYS
        missing = {"id", "min", "max", "default"} - set(d)
        if unknown or missing:
            raise PluginError(f"{where}: " + ("; ".join(
                x for x in (f"unknown keys {', '.join(sorted(unknown))}" if unknown else "",
                            f"missing {', '.join(sorted(missing))}" if missing else "") if x))
                + f" (keys: {', '.join(sorted(PARAM_KEYS))})")
        try:
            pid = str(d["id"])
            if pid == "bypass":
                raise ValueError("'bypass' is the engine's own parameter of every stage")
            if d.get("scale", "linear") not in SCALES:
                raise ValueError(f"scale must be one of {', '.join(SCALES)}")
            params.append(Param(pid, str(d.get("name", pid)), float(d["min"]), float(d["max"]),
                                float(d["default"]), str(d.get("unit", "")),
                                d.get("scale", "linear"), float(d.get("smoothing_ms", 20.0)),
                                toggle=bool(d.get("toggle", False))))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{where}: {exc}") from None
    ids = [q.id for q in params]
    if len(set(ids)) != len(ids):
        raise PluginError(f"pyo patch {p}: duplicate parameter ids in PARAMS")
    return tuple(params), build


def _float_view(addr: str, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(int(addr, 16)))


class PyoPatch(WorkerProcessor):
    name = "pyo"
    description = ("A pyo patch file (Python building pyo objects) on a worker thread; "
                   "parameters are declared by the patch (options.patch = \"file.py\")")
    dynamic_params = True
    options = WorkerProcessor.options + (
        Option("patch", "path", None, "the patch file (Python: PARAMS and build(inp, params)); "
               "a patch is code, only run ones you trust"),
        Option("hop", "int", 64, "frames pyo computes per call (its buffer size)", 16, 4096),
    )

    def __init__(self, impl: str = "c", **options):
        opts = self.check_options(options)
        if opts["patch"] is None:
            raise PluginError("the pyo plugin needs a patch file: options.patch = \"file.py\" "
                              "(see rtengine/patches/reverb.py)")
        self.patch = opts["patch"]
        self.params, self._build_fn = load_patch(self.patch)
        super().__init__(impl, **options)
        self._server = None
        self._dirty = False

    def choose_hop(self, sample_rate, max_block):
        return self.opts["hop"]

    # ---- the pyo graph -----------------------------------------------------------
    def _teardown(self) -> None:
        if self._server is not None:
            self._graph = self._sigs = None
            self._server.stop()
            self._server.shutdown()
            self._server = None

    def _make(self) -> None:
        pyo = _pyo()
        self._teardown()
        sr, _, nch = self.spec
        hop = self.hop
        s = pyo.Server(sr=int(sr), nchnls=nch, ichnls=nch, buffersize=hop, duplex=1,
                       audio="manual", midi="none", verbosity=1)
        s.boot()
        s.start()
        s.setServer()
        self._server = s
        inp = pyo.Input(chnl=list(range(nch)) if nch > 1 else 0)
        self._sigs = [pyo.SigTo(self.values[p.id], time=hop / sr, init=self.values[p.id])
                      for p in self.params]
        self._last = np.array([self.values[p.id] for p in self.params], dtype=np.float32)
        try:
            out = self._build_fn(inp, {p.id: sig for p, sig in zip(self.params, self._sigs)})
        except Exception as exc:
            self._teardown()
            raise PluginError(f"pyo patch {self.patch}: build() failed: "
                              f"{type(exc).__name__}: {exc}") from None
        if not hasattr(out, "out") or not hasattr(out, "__len__"):
            self._teardown()
            raise PluginError(f"pyo patch {self.patch}: build() must return a pyo object "
                              f"(got {type(out).__name__})")
        if len(out) < nch:                   # fewer streams than channels: repeat them
            out = pyo.Sig(out, mul=[1.0] * nch)
        out.out()
        self._graph = (inp, out)
        self._ib = _float_view(s.getInputAddr(), hop * nch).reshape(hop, nch)
        self._ob = _float_view(s.getOutputAddr(), hop * nch).reshape(hop, nch)
        self._ib[:] = 0.0
        for _ in range(PREROLL_BLOCKS):
            s.process()
        self._dirty = False

    def work_prepare(self, sample_rate, hop, channels):
        self._dirty = True                   # a new spec: a new server at the next reset

    def work_reset(self):
        if self._server is None or self._dirty:
            self._make()

    def work(self, block, params, out):
        self._dirty = True
        for i, sig in enumerate(self._sigs):
            v = params[i]
            if v != self._last[i]:
                self._last[i] = v
                sig.value = float(v)
        self._ib[:] = block.T
        self._server.process()
        out[:] = self._ob.T

    def __del__(self):
        try:
            self._teardown()
        except Exception:
            pass
