"""``vst3``: a third-party VST3 plugin in a chain, hosted through pedalboard on a
worker stage (off the audio thread; see rtengine/worker.py).

The hosted plugin's parameters become the stage's parameters (MIDI-mappable,
automatable, saved in chains); its full state (``raw_state``) is kept in the
chain file as ``options.state`` (base64), so settings that are not parameters
survive too.  The stage's declared latency is the worker's plus the plugin's own.
"""
from __future__ import annotations

import base64
import binascii
import math
from pathlib import Path

import numpy as np

from rtengine.errors import PluginError
from rtengine.params import Param, choice
from rtengine.processor import Option
from rtengine.worker import WorkerProcessor


def _load(bundle: str):
    path = Path(bundle)
    if not path.exists():
        raise PluginError(f"VST3 bundle {path} does not exist (Debian's plugins are in "
                          "/usr/lib/vst3; yours in ~/.vst3)")
    try:
        import pedalboard
    except ImportError:
        raise PluginError("the vst3 plugin needs pedalboard (pip install pedalboard)") from None
    try:
        return pedalboard.VST3Plugin(str(path))
    except Exception as exc:                   # pedalboard raises ImportError/RuntimeError
        raise PluginError(f"VST3 bundle {path} failed to load: {exc}") from None


def _params(plugin) -> tuple[list[Param], dict[str, str]]:
    """Engine parameters for the hosted plugin's; and engine id -> plugin name."""
    out, names = [], {}
    for name, p in plugin.parameters.items():
        pid = "plugin_bypass" if name == "bypass" else name
        if not pid.isidentifier():
            continue
        value = getattr(plugin, name)
        label = p.name if isinstance(getattr(p, "name", None), str) else name
        if p.type is str or isinstance(value, str):
            vv = [str(v) for v in (p.valid_values or [])]
            if 1 < len(vv) <= 256 and str(value) in vv:
                out.append(choice(pid, label, vv, str(value), lane=True))
                names[pid] = name
            continue
        lo, hi = p.range[0], p.range[1]
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            continue
        if p.type is bool:
            out.append(Param(pid, label, 0.0, 1.0, 1.0 if value else 0.0, toggle=True))
        else:
            v = min(max(float(value), lo), hi)
            out.append(Param(pid, label, float(lo), float(hi), v, p.units or "",
                             smoothing_ms=0.0))
        names[pid] = name
    return out, names


class Vst3Host(WorkerProcessor):
    name = "vst3"
    description = ("A third-party VST3 plugin (options.bundle = \"/usr/lib/vst3/X.vst3\") "
                   "hosted through pedalboard on a worker thread")
    dynamic_params = True
    options = WorkerProcessor.options + (
        Option("bundle", "path", None, "the .vst3 bundle to host"),
        Option("hop", "int", 256, "frames the hosted plugin processes per call", 16, 8192),
        Option("state", "str", "", "the plugin's own state (base64; written by rtengine)"),
    )

    def __init__(self, impl: str = "c", **options):
        opts = self.check_options(options)
        if opts["bundle"] is None:
            raise PluginError("the vst3 plugin needs options.bundle = \"path/to/Plugin.vst3\"")
        self.bundle = opts["bundle"]
        self.plugin = _load(self.bundle)
        if opts["state"]:
            try:
                self.plugin.raw_state = base64.b64decode(opts["state"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PluginError(f"VST3 bundle {self.bundle}: options.state is not a state "
                                  f"this plugin accepts ({exc})") from None
        self.params, self._names = _params(self.plugin)
        super().__init__(impl, **options)
        self._plugin_latency = 0

    # ---- worker stage -------------------------------------------------------------
    def choose_hop(self, sample_rate, max_block):
        return self.opts["hop"]

    def allocate(self, sample_rate, max_block, channels):
        probe = np.zeros((channels, 16), np.float32)
        try:
            self.plugin.process(probe, sample_rate, buffer_size=16, reset=True)
        except Exception as exc:
            raise PluginError(f"VST3 bundle {self.bundle} cannot process {channels} "
                              f"channel(s): {exc}") from None
        self._plugin_latency = int(self.plugin.reported_latency_samples or 0)
        state = super().allocate(sample_rate, max_block, channels)
        return state

    @property
    def latency(self) -> int:
        return self._latency + self._plugin_latency

    def work_prepare(self, sample_rate, hop, channels):
        self._sr = float(sample_rate)
        self._fifo = np.zeros((channels, 0), np.float32)
        self._last = [None] * len(self.params)

    def work_reset(self):
        self.plugin.reset()
        self._fifo = np.zeros((self._in.shape[0], self._plugin_latency), np.float32)
        self._last = [None] * len(self.params)

    def work(self, block, params, out):
        for i, p in enumerate(self.params):
            v = float(params[i])
            if v == self._last[i]:
                continue
            self._last[i] = v
            name = self._names[p.id]
            if p.choices:
                setattr(self.plugin, name, p.choices[int(round(v))])
            elif p.toggle:
                setattr(self.plugin, name, v >= 0.5)
            else:
                setattr(self.plugin, name, v)
        y = self.plugin.process(block, self._sr, buffer_size=block.shape[1], reset=False)
        # a plugin with latency may hand back fewer frames at first: the FIFO holds
        # its output so the stage is delayed by exactly the plugin's latency
        self._fifo = np.concatenate([self._fifo, y], axis=1) if y.shape[1] else self._fifo
        n = out.shape[1]
        if self._fifo.shape[1] >= n:
            out[:] = self._fifo[:, :n]
            self._fifo = self._fifo[:, n:]
        else:
            out[:] = 0.0

    # ---- chains -----------------------------------------------------------------------
    def current_options(self) -> dict:
        opts = dict(self.opts)
        try:
            opts["state"] = base64.b64encode(bytes(self.plugin.raw_state)).decode()
        except Exception:
            pass
        return opts
