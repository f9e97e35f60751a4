"""The DAW bridge's engine side: ``rtengine serve`` and ``BridgeServer``.

The rtengine VST3 plugin (in a DAW's process) claims a *lane* of the shared
segment (protocol.h) and sends its chain as TOML text; the server builds an
Engine for it and hands the runner to a native lane thread (server.c), which
answers every audio request without Python or the GIL.  This module is the
control side: it builds and swaps chains, publishes parameter tables and
values, answers state requests, applies parameter changes the lane thread
cannot (designed coefficients), and frees the lanes of plugins that went
away.  ``Client`` is the plugin's end (client.c) for tests and benchmarks.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from .._runner import ffi, lib
from ..chain import Chain
from ..engine import Engine
from ..errors import RtEngineError
from ..midi import Mapper, controllers, read_map
from ..params import BYPASS

ERRLEN = 1024
VST3_DIRS = (Path.home() / ".vst3", Path("/usr/lib/vst3"), Path("/usr/local/lib/vst3"))


class BridgeError(RtEngineError):
    """The bridge segment cannot be created or used."""


def param_id(key: str, taken: set[int]) -> int:
    """A stable VST3 ParamID for "stage.param": FNV-1a, 31 bits (as saved projects know
    them), kept below RTB_PROXY_BASE (2^31 - 2^16), unique in the lane."""
    h = 0x811C9DC5
    for b in key.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    h &= 0x7FFFFFFF
    if h >= lib.RTB_PROXY_BASE:         # ids from there up are the plugin's MIDI controllers
        h %= lib.RTB_PROXY_BASE
    while h in taken:
        h = (h + 1) % lib.RTB_PROXY_BASE
    taken.add(h)
    return h


def _text(dst, value: str, size: int) -> None:
    raw = value.encode()[:size - 1]
    ffi.memmove(dst, raw + b"\0", len(raw) + 1)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lane:
    def __init__(self, engine: Engine, keys: list[str]):
        self.engine = engine
        self.keys = keys
        self.old: list[Engine] = []
        self.swaps0 = 0
        self.mapper: Mapper | None = None


class BridgeServer:
    """Serve lanes on the segment ``name``.  ``chain`` (a Chain, a path or None)
    runs in lanes whose plugin sends no chain of its own.  A chain from a DAW
    project may use a pyo patch only from one of ``patch_dirs``.  ``midi_map``
    (a MIDI map file, as for ``rtengine run``) maps the MIDI a DAW track sends
    the plugin to each lane's parameters; targets a lane's chain lacks leave
    that lane unmapped (said in ``errors``), never refused."""

    def __init__(self, chain=None, name: str = "default", patch_dirs=(), fade_ms: float = 10.0,
                 poll_s: float = 0.02, midi_map=None, spin_us: int | None = None):
        if isinstance(chain, (list, tuple)):
            chain = Chain.from_list(chain)
        elif chain is not None and not isinstance(chain, Chain):
            chain = Chain.load(chain)
        self.default_chain = chain
        self.name = name
        self.patch_dirs = [Path(d).resolve() for d in patch_dirs]
        self.fade_ms = fade_ms
        self.poll_s = poll_s
        self.midi_map = Path(midi_map) if midi_map is not None else None
        if self.midi_map is not None:
            read_map(self.midi_map)        # unreadable: refused now; targets per lane
        err = ffi.new("char[]", ERRLEN)
        self._s = lib.rtb_server_create(name.encode(), err, ERRLEN)
        if self._s == ffi.NULL:
            raise BridgeError(ffi.string(err).decode())
        if spin_us is not None:
            if not 0 <= spin_us <= 10000:
                lib.rtb_server_destroy(self._s)
                raise BridgeError(f"spin_us={spin_us}: give 0 (lane threads always sleep) to "
                                  "10000 microseconds")
            lib.rtb_server_set_spin(self._s, int(spin_us))
        self.seg = lib.rtb_server_segment(self._s)
        self.lanes: dict[int, _Lane] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idx = np.zeros(lib.RTB_MAX_CHANGES, dtype=np.int32)
        self._val = np.zeros(lib.RTB_MAX_CHANGES, dtype=np.float64)
        self._midi = np.zeros(4 * lib.RTB_MAX_MIDI, dtype=np.uint8)

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> "BridgeServer":
        self._thread = threading.Thread(target=self._run, name="rtengine-bridge", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            self.poll()
            # until a plugin asks for something (claim, chain, state, reset, a
            # designed parameter), or the heartbeat and liveness checks are due
            seq = lib.rtb_server_wait(self._s, seq, int(self.poll_s * 1000))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._s != ffi.NULL:
            lib.rtb_server_destroy(self._s)
            self._s = ffi.NULL
        for lane in self.lanes.values():
            for e in [lane.engine, *lane.old]:
                e.close()
        self.lanes.clear()

    def unlink(self) -> None:
        """Remove the segment (after close); plugins still attached fall back to dry."""
        try:
            os.unlink(f"/dev/shm/rtengine-{os.getuid()}-{self.name}")
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        self.unlink()

    def status(self) -> dict:
        """What `rtengine status` shows: every lane in use and its counters."""
        lanes = []
        for i in range(lib.RTB_MAX_LANES):
            lane = self.seg.lanes[i]
            if lane.state == lib.RTB_FREE:
                continue
            c = lane.counters
            held = self.lanes.get(i)
            # the lane's work on the last block it answered, and that as a share of the
            # block's duration (what a DAW's DSP meter shows for the plugin)
            work_us = max(0, int(lane.serve_ns)) * 1e-3
            block_us = (1e6 * int(lane.nframes) / float(lane.sample_rate)
                        if int(c.requests) and 0 < int(lane.nframes) <= lib.RTB_MAX_FRAMES
                        and float(lane.sample_rate) > 0 else None)
            lanes.append({"lane": i, "owner_pid": int(lane.owner_pid),
                          "running": held is not None,
                          "stages": [st.name for st in held.engine.stages] if held else [],
                          "latency_samples": held.engine.latency if held else None,
                          "sample_rate": float(lane.sample_rate), "channels": int(lane.channels),
                          "requests": int(c.requests), "frames": int(c.frames),
                          "rejected": int(c.rejected), "late": int(c.late),
                          "fallback_frames": int(c.fallback_frames),
                          "reconnects": int(c.reconnects),
                          "midi_dropped": int(c.midi_dropped),
                          "woken": int(c.woken),
                          "last_block_work_us": work_us if block_us else None,
                          "last_block_load": work_us / block_us if block_us else None})
        return {"kind": "bridge", "pid": os.getpid(), "client": f"bridge:{self.name}",
                "name": self.name, "lanes": lanes, "refused": self.errors[-20:]}

    # ---- the control loop ------------------------------------------------------------
    def poll(self) -> None:
        lib.rtb_server_heartbeat(self._s)
        for i in range(lib.RTB_MAX_LANES):
            lane = self.seg.lanes[i]
            state = lane.state
            if state == lib.RTB_FREE:
                if i in self.lanes:
                    self._drop(i)
                continue
            if not _alive(int(lane.owner_pid)):
                self._drop(i)                      # the DAW (or the plugin) went away
                continue
            if lane.config_seq != lane.config_ack:
                self._configure(i)
            if i in self.lanes:
                self._control(i)

    def _drop(self, i: int) -> None:
        lib.rtb_server_detach(self._s, i)
        lane = self.lanes.pop(i, None)
        if lane is not None:
            for e in [lane.engine, *lane.old]:
                e.close()

    def _refuse(self, i: int, seq: int, msg: str) -> None:
        lane = self.seg.lanes[i]
        self.errors.append(f"lane {i}: {msg}")
        _text(lane.msg, msg, lib.RTB_MSG)
        lane.config_status = -1
        lane.config_ack = seq
        lib.rtb_server_wake(self._s, ffi.addressof(lane, "config_ack"))

    def _chain_of(self, i: int) -> Chain:
        lane = self.seg.lanes[i]
        n = int(lane.chain_len)
        if n >= lib.RTB_STATE_MAX:
            raise BridgeError(f"chain text of {n} bytes is longer than the state area")
        try:
            text = ffi.unpack(lane.chain, n).decode("utf-8")
        except UnicodeDecodeError:
            raise BridgeError("the chain text is not UTF-8") from None
        if not text.strip():
            if self.default_chain is None:
                raise BridgeError("the plugin sent no chain and the server has none "
                                  "(rtengine serve --chain FILE)")
            return self.default_chain
        chain = Chain.from_toml(text, source=f"chain from the DAW (lane {i})")
        for st in chain.stages:
            bundle = st.options.get("bundle")
            if bundle is not None:              # a hosted VST3 is code too
                path = Path(bundle).expanduser().resolve()
                allowed = [d.resolve() for d in VST3_DIRS] + self.patch_dirs
                if not path.is_absolute() or not any(path.is_relative_to(d) for d in allowed):
                    raise BridgeError(f"stage {st.name!r}: the VST3 bundle {bundle} named by a "
                                      "DAW project is not in a VST3 folder (~/.vst3, "
                                      "/usr/lib/vst3, /usr/local/lib/vst3) or a --patch-dir")
            patch = st.options.get("patch")
            if patch is None:
                continue
            path = Path(patch)
            if not path.is_absolute() and self.patch_dirs:
                path = self.patch_dirs[0] / path
            path = path.resolve()
            if not any(path.is_relative_to(d) for d in self.patch_dirs):
                raise BridgeError(f"stage {st.name!r}: the pyo patch {patch} is code named by a "
                                  "DAW project; the server runs patches only from folders "
                                  "given with 'rtengine serve --patch-dir DIR'")
            st.options["patch"] = str(path)
        return chain

    def _configure(self, i: int) -> None:
        lane = self.seg.lanes[i]
        seq = int(lane.config_seq)
        sr, mb, nch = float(lane.sample_rate), int(lane.max_block), int(lane.channels)
        if not (nch in (1, 2) and 1 <= mb and 8000 <= sr <= 384000):
            self._refuse(i, seq, f"unsupported set-up: {nch} channels, block {mb}, {sr:g} Hz "
                                 "(the bridge takes 1 or 2 channels at 8-384 kHz)")
            return
        try:
            chain = self._chain_of(i)
            engine = Engine(chain, sr, min(mb, lib.RTB_MAX_FRAMES), nch)
        except RtEngineError as exc:
            self._refuse(i, seq, str(exc))
            return
        keys = list(engine._index)
        if len(keys) > lib.RTB_MAX_PARAMS:
            self._refuse(i, seq, f"the chain has {len(keys)} parameters; a lane carries "
                                 f"{lib.RTB_MAX_PARAMS}")
            return
        taken: set[int] = set()
        par_index = np.zeros(max(len(keys), 1), dtype=np.int32)
        par_rt = np.zeros(max(len(keys), 1), dtype=np.uint8)
        for k, key in enumerate(keys):
            st, p, idx = engine._index[key]
            d = lane.params[k]
            d.id = param_id(key, taken)
            d.flags = ((lib.RTB_PARAM_LOG if p.scale == "log" else 0) |
                       (lib.RTB_PARAM_TOGGLE if p.toggle else 0) |
                       (lib.RTB_PARAM_CHOICE if p.choices else 0) |
                       (lib.RTB_PARAM_BYPASS if p is BYPASS else 0))
            d.steps = (len(p.choices) - 1) if p.choices else (1 if p.toggle else 0)
            d.min, d.max, d.default_value = p.min, p.max, p.default
            _text(d.key, key, lib.RTB_TEXT)
            _text(d.name, f"{st.name} {p.name}", lib.RTB_TEXT)
            _text(d.unit, p.unit, lib.RTB_TEXT)
            _text(d.choices, "\n".join(p.choices), lib.RTB_MSG)
            lane.values[k] = engine.get(key)
            par_index[k] = idx
            par_rt[k] = 1 if p.lane else 0
        lane.nparams = len(keys)
        lane.latency = engine.latency
        engine.start_workers()
        old = self.lanes.get(i)
        done0 = lib.rtb_server_swaps_done(self._s, i)
        fade = int(round(self.fade_ms * 1e-3 * sr))
        if lib.rtb_server_attach(self._s, i, engine._r,
                                 ffi.cast("int32_t *", par_index.ctypes.data),
                                 ffi.cast("uint8_t *", par_rt.ctypes.data), len(keys), fade):
            engine.close()
            self._refuse(i, seq, "the lane thread could not start")
            return
        new = _Lane(engine, keys)
        new.par_arrays = (par_index, par_rt)
        new.mapper = self._mapper(i, engine)
        bits = [0] * lib.RTB_CTRL_WORDS             # what the plugin offers its host
        for ch, ctrl in controllers(new.mapper.mappings if new.mapper else ()):
            code = ch * lib.RTB_CTRLS + ctrl
            bits[code >> 5] |= 1 << (code & 31)
        for w, b in enumerate(bits):
            lane.midi_ctrl[w] = b
        if old is not None:
            # the lane thread switches at its next request; until it has, the old
            # engines stay alive (released by _control)
            new.old = [old.engine, *old.old]
            new.swaps0 = done0
        self.lanes[i] = new
        lane.config_status = 0
        _text(lane.msg, "", lib.RTB_MSG)
        lane.state = lib.RTB_READY
        lane.config_ack = seq
        lib.rtb_server_wake(self._s, ffi.addressof(lane, "config_ack"))

    def _control(self, i: int) -> None:
        lane = self.seg.lanes[i]
        if lane.reset_seq != lane.reset_ack:
            self._reset(i)
        held = self.lanes[i]
        e = held.engine
        if held.old and lib.rtb_server_swaps_done(self._s, i) != held.swaps0:
            for old in held.old:                   # the lane thread has let go of them
                old.close()
            held.old = []
        n = lib.rtb_server_take_changes(self._s, i, ffi.cast("int32_t *", self._idx.ctypes.data),
                                        ffi.cast("double *", self._val.ctypes.data),
                                        len(self._idx))
        for k in range(n):
            try:
                e.set(held.keys[self._idx[k]], float(self._val[k]))
            except RtEngineError:
                pass                               # clamped on the lane thread already
        moved = self._lane_midi(i, held)
        if moved:                                  # the plugin tells its host (process())
            seq = (int(lane.values_seq) + 1) & 0xFFFFFFFF
            for k in moved:
                lane.moved[k] = seq
        for k, key in enumerate(held.keys):
            lane.values[k] = e.get(key)
        if moved:
            lane.values_seq = seq                  # last: the values and marks are written
        if lane.state_seq != lane.state_ack:
            text = e.to_chain().to_toml().encode()
            want = int(lane.state_seq)
            if len(text) < lib.RTB_STATE_MAX:
                ffi.memmove(lane.chain, text + b"\0", len(text) + 1)
                lane.chain_len = len(text)
            lane.state_ack = want
            lib.rtb_server_wake(self._s, ffi.addressof(lane, "state_ack"))


    def _mapper(self, i: int, engine: Engine) -> Mapper | None:
        if self.midi_map is None:
            return None
        try:
            return Mapper.from_file(self.midi_map, engine, lambda path: self._program(i, path))
        except RtEngineError as exc:
            self.errors.append(f"lane {i}: MIDI from the DAW is not mapped: {exc}")
            return None

    def _program(self, i: int, path: str) -> None:
        self.errors.append(f"lane {i}: program change to {path} ignored: a DAW project owns "
                           "the chain of its plugin (use the DAW's presets)")

    def _lane_midi(self, i: int, held: _Lane) -> list[int]:
        """The DAW's MIDI for lane i through its map; the parameters it moved."""
        n = lib.rtb_server_take_midi(self._s, i, ffi.cast("uint8_t *", self._midi.ctypes.data),
                                     lib.RTB_MAX_MIDI)
        if n == 0 or held.mapper is None:
            return []
        e = held.engine
        before = [e.get(k) for k in held.keys]
        raw = self._midi
        for k in range(n):
            size = int(raw[4 * k])
            held.mapper.handle(bytes(raw[4 * k + 1:4 * k + 1 + size]))
        return [k for k, (key, v) in enumerate(zip(held.keys, before)) if e.get(key) != v]

    def _reset(self, i: int) -> None:
        """A fresh engine for the lane (clean processing state) with the values the
        plugin holds, switched in without a fade."""
        lane, held = self.seg.lanes[i], self.lanes[i]
        want = int(lane.reset_seq)
        e = held.engine
        chain = e.to_chain()
        n = max(0, min(int(lane.nset), len(held.keys)))
        try:
            fresh = Engine(chain, e.sample_rate, e.block_size, e.channels)
            for k in range(n):
                try:
                    fresh.set(held.keys[k], float(lane.set_values[k]))
                except RtEngineError:
                    pass                           # out of range or not a number: keep
            fresh.reset()
        except RtEngineError as exc:
            self.errors.append(f"lane {i}: reset: {exc}")
            lane.reset_ack = want
            lib.rtb_server_wake(self._s, ffi.addressof(lane, "reset_ack"))
            return
        fresh.start_workers()
        done0 = lib.rtb_server_swaps_done(self._s, i)
        par_index, par_rt = held.par_arrays
        lib.rtb_server_attach(self._s, i, fresh._r, ffi.cast("int32_t *", par_index.ctypes.data),
                              ffi.cast("uint8_t *", par_rt.ctypes.data), len(held.keys), 0)
        new = _Lane(fresh, held.keys)
        new.par_arrays = held.par_arrays
        new.mapper = self._mapper(i, fresh)
        new.old = [held.engine, *held.old]
        new.swaps0 = done0
        self.lanes[i] = new
        for k, key in enumerate(held.keys):
            lane.values[k] = fresh.get(key)
        lane.reset_ack = want
        lib.rtb_server_wake(self._s, ffi.addressof(lane, "reset_ack"))


class Client:
    """The plugin's end of the bridge (client.c), for tests and benchmarks."""

    def __init__(self, name: str = "default"):
        err = ffi.new("char[]", ERRLEN)
        self._c = lib.rtb_client_open(name.encode(), err, ERRLEN)
        if self._c == ffi.NULL:
            raise BridgeError(ffi.string(err).decode())
        self._ins = self._outs = None

    @classmethod
    def connect(cls, name: str = "default", timeout: float = 30.0) -> "Client":
        """Open the segment of server ``name``, waiting up to ``timeout`` seconds for
        the server to create it."""
        end = time.monotonic() + timeout
        while True:
            try:
                return cls(name)
            except BridgeError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def claim(self, sample_rate: float, max_block: int, channels: int) -> int:
        err = ffi.new("char[]", ERRLEN)
        lane = lib.rtb_client_claim(self._c, sample_rate, max_block, channels, err, ERRLEN)
        if lane < 0:
            raise BridgeError(ffi.string(err).decode())
        self.channels = channels
        self.index = lane
        return lane

    def configure(self, chain_text: str, timeout_ms: int = 10000) -> None:
        err = ffi.new("char[]", ERRLEN)
        raw = chain_text.encode()
        if lib.rtb_client_configure(self._c, raw, len(raw), timeout_ms, err, ERRLEN):
            raise BridgeError(ffi.string(err).decode())

    def state(self, timeout_ms: int = 5000) -> str:
        buf = ffi.new("char[]", lib.RTB_STATE_MAX)
        n = lib.rtb_client_get_state(self._c, buf, lib.RTB_STATE_MAX, timeout_ms)
        if n < 0:
            raise BridgeError("the server did not send the lane's state")
        return ffi.unpack(buf, n).decode()

    @property
    def lane(self):
        return lib.rtb_client_lane(self._c)

    @property
    def header(self):
        return lib.rtb_client_segment(self._c).h

    @property
    def ready(self) -> bool:
        return bool(lib.rtb_client_ready(self._c))

    def params(self) -> list[dict]:
        lane = self.lane
        out = []
        for k in range(lane.nparams):
            d = lane.params[k]
            out.append({"id": d.id, "key": ffi.string(d.key).decode(),
                        "name": ffi.string(d.name).decode(), "min": d.min, "max": d.max,
                        "default": d.default_value, "steps": d.steps, "flags": d.flags,
                        "value": lane.values[k]})
        return out

    def process(self, x: np.ndarray, changes=(), midi=(),
                timeout_us: int = 2_000_000) -> tuple[np.ndarray, int]:
        """Process a (channels, frames) float32 block; returns (output, frames the
        engine processed).  ``changes``: (param index, offset, plain value).
        ``timeout_us`` bounds the wait per piece of at most 4096 frames; the
        default is the VST3 plugin's offline deadline (a caller from Python is
        not real-time), a real-time caller passes its block's share.  ``midi``:
        (sample offset, message bytes) pairs, messages of 1 to 3 bytes."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty_like(x)
        ins = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in x])
        outs = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in y])
        ch = ffi.new("rtb_change[]", max(len(changes), 1))
        for k, (idx, off, v) in enumerate(changes):
            ch[k].index, ch[k].offset, ch[k].value = idx, off, v
        ev = ffi.new("rtb_midi[]", max(len(midi), 1))
        for k, (off, msg) in enumerate(midi):
            msg = bytes(msg)
            if not 1 <= len(msg) <= 3:
                raise BridgeError(f"MIDI message {msg.hex()}: the bridge carries messages of "
                                  "1 to 3 bytes (no SysEx)")
            ev[k].offset, ev[k].size = off, len(msg)
            ev[k].data[0:len(msg)] = list(msg)
        got = lib.rtb_client_process_midi(self._c, ins, outs, x.shape[1], ch, len(changes),
                                          ev, len(midi), timeout_us)
        return y, got

    def close(self) -> None:
        if self._c != ffi.NULL:
            lib.rtb_client_close(self._c)
            self._c = ffi.NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
