"""`rtengine run` and `rtengine status`: the engine as a live JACK client."""
from __future__ import annotations

import functools
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

from .backends.jack import JackBackend, JackError
from .chain import Chain
from .errors import RtEngineError
from .midi import Mapper
from .osc import OscControl

EXIT_SERVER_GONE = 3


def status_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/rtengine-{os.getuid()}"
    d = Path(base) / "rtengine"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _status_path(client: str) -> Path:
    return status_dir() / f"{client}.json"


def _write_status(be: JackBackend, chain_path: str, started: float) -> Path:
    st = be.stats()
    data = {"pid": os.getpid(), "client": be.client_name, "server": be.server or "default",
            "chain": chain_path, "started": started, "updated": time.time(),
            "channels": be.channels, "inputs": be.inputs, "outputs": be.outputs,
            "latency_samples": be.engine.latency, "workers": be.engine.worker_counters,
            "engine_rate": be.engine.sample_rate, "engine_block": be.engine.block_size,
            "meters": be.engine.meters(), **st.as_dict()}
    path = _status_path(be.client_name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def _connect(be: JackBackend, inputs: str, outputs: str) -> None:
    if inputs == "system":
        for src, dst in zip(be.physical_ports(playback=False), be.inputs):
            be.connect(src, dst)
    elif inputs != "none":
        for src, dst in zip(inputs.split(","), be.inputs):
            be.connect(src.strip(), dst)
    if outputs == "system":
        for src, dst in zip(be.outputs, be.physical_ports(playback=True)):
            be.connect(src, dst)
    elif outputs != "none":
        for src, dst in zip(be.outputs, outputs.split(",")):
            be.connect(src, dst.strip())


class MidiControl:
    """The mapper thread: MIDI from the backend's midi_in ring to parameter
    targets, feedback to midi_out, program changes to preset loads."""

    def __init__(self, backend: JackBackend, map_path, interval: float = 0.002,
                 hardware_port: str | None = None):
        self.backend = backend
        self.map_path = map_path
        self.interval = interval
        self.mapper = Mapper.from_file(map_path, backend.engine, self._program)
        self.loads: list[str] = []
        self._hw_in = self._hw_out = None
        self._hw_queue: queue.SimpleQueue = queue.SimpleQueue()
        if hardware_port is not None:
            self._open_hardware(hardware_port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtengine-midi", daemon=True)

    def _open_hardware(self, name: str) -> None:
        """A hardware MIDI port through python-rtmidi (ALSA sequencer)."""
        try:
            import rtmidi
        except ImportError:
            raise RtEngineError("python-rtmidi is not installed (pip install python-rtmidi)") \
                from None
        try:
            mi = rtmidi.MidiIn(rtmidi.API_LINUX_ALSA, "rtengine")
            mo = rtmidi.MidiOut(rtmidi.API_LINUX_ALSA, "rtengine")
        except Exception:
            raise RtEngineError("no ALSA sequencer on this machine (/dev/snd/seq is missing or "
                                "snd-seq is not loaded): hardware MIDI is not available; "
                                "connect the controller through JACK MIDI instead") from None
        ports = mi.get_ports()
        idx = next((i for i, p in enumerate(ports) if name == str(i) or name.lower() in
                    p.lower()), None)
        if idx is None:
            raise RtEngineError(f"no hardware MIDI port {name!r}; ports: "
                                f"{', '.join(ports) or 'none'} (rtengine midi list)")
        mi.ignore_types(sysex=True, timing=True, active_sense=True)
        mi.set_callback(lambda event, data=None: self._hw_queue.put(bytes(event[0])))
        mi.open_port(idx)
        outs = mo.get_ports()
        oidx = next((i for i, p in enumerate(outs) if ports[idx].split(":")[0] in p), None)
        if oidx is not None:
            mo.open_port(oidx)
            self._hw_out = mo
        self._hw_in = mi

    def _program(self, path: str) -> None:
        self.loads.append(path)
        self.backend.swap(Chain.load(path))
        self.rebind()

    def rebind(self) -> None:
        """After a chain change: map again against the new engine."""
        try:
            self.mapper = Mapper.from_file(self.map_path, self.backend.engine, self._program)
        except RtEngineError as exc:
            print(f"rtengine: MIDI map no longer fits the chain: {exc}", file=sys.stderr)
            self.mapper.mappings = []

    def poll(self) -> None:
        msgs = [m for _, m in self.backend.read_midi()]
        while not self._hw_queue.empty():
            msgs.append(self._hw_queue.get_nowait())
        for msg in msgs:
            try:
                self.mapper.handle(msg)
            except RtEngineError as exc:         # e.g. a preset that fails to load
                print(f"rtengine: MIDI {msg.hex()}: {exc}", file=sys.stderr)
        fb = self.mapper.feedback()
        if fb:
            self.backend.send_midi(fb)
            if self._hw_out is not None:
                for m in fb:
                    self._hw_out.send_message(list(m))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(self.interval)

    def start(self) -> "MidiControl":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for port in (self._hw_in, self._hw_out):
            if port is not None:
                port.close_port()


def _request_path(client: str) -> Path:
    return status_dir() / f"{client}.load"


def _take_load_request(be: JackBackend, current: str) -> str:
    """Swap in the chain named in the client's request file, if any.  A bad
    chain is reported and the running one stays."""
    req = _request_path(be.client_name)
    try:
        path = req.read_text().strip()
        req.unlink()
    except OSError:
        return current
    answer = _request_path(be.client_name).with_suffix(".answer")
    try:
        chain = Chain.load(path)
        be.swap(chain)
    except RtEngineError as exc:
        print(f"rtengine: not loading {path}: {exc}; still running {current}", file=sys.stderr)
        answer.write_text(f"error {exc}")
        return current
    print(f"rtengine: now running {path} (latency {be.engine.latency} samples; "
          "20 ms crossfade)", file=sys.stderr)
    answer.write_text(f"ok {path}")
    return path


def _virtual_device(args):
    """--virtual-device: the PipeWire sink and source, and PipeWire's libjack."""
    from .backends.jack import load_library
    from .backends.pipewire import VirtualDevice, pipewire_libjack
    if args.backend != "jack":
        raise RtEngineError("--virtual-device runs the engine through PipeWire's JACK "
                            "interface; it does not combine with --backend portaudio")
    rate = int(args.rate or 48000)
    os.environ.setdefault("PIPEWIRE_QUANTUM", f"{args.block_size}/{rate}")
    load_library(pipewire_libjack())
    return VirtualDevice(args.name, args.channels, rate)


def run(args) -> int:
    chain = Chain.load(args.chain)
    vdev = _virtual_device(args) if getattr(args, "virtual_device", False) else None
    stop = {"now": False}
    current = args.chain
    live: dict = {"be": None, "midi": None}      # what the OSC thread reaches

    def on_signal(signum, frame):
        stop["now"] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)   # wakes the loop: load request
    started = time.time()
    deadline = time.monotonic() + args.duration if args.duration else None
    osc = None
    if args.osc_port is not None:
        def engine():
            be = live["be"]
            if be is None:
                raise RtEngineError("the engine is not running (waiting for JACK)")
            return be.engine
        osc = OscControl(engine, args.osc_port, args.osc_host,
                         mapper=lambda: live["midi"].mapper if live["midi"] else None).start()
        print(f"rtengine: OSC on {args.osc_host}:{osc.port}", file=sys.stderr)
    opens = 0
    try:
        while True:
            try:
                if args.backend == "portaudio":
                    from .backends.portaudio import PortAudioBackend
                    be = PortAudioBackend(chain, args.device, args.channels, args.rate,
                                          args.block_size)
                    be.client_name = args.name
                else:
                    be = JackBackend(chain, args.channels, args.name, args.server)
            except JackError as exc:
                if vdev is not None and opens < 3 and not stop["now"]:
                    opens += 1                    # PipeWire may be re-routing: try again
                    time.sleep(0.5)
                    continue
                if not args.reconnect or stop["now"]:
                    raise
                print(f"rtengine: {exc}; retrying in 1 s (--reconnect)", file=sys.stderr)
                time.sleep(1.0)
                continue
            path = None
            midi = None
            try:
                be.start()
                if vdev is not None:
                    # let PipeWire's libjack finish the activation's latency
                    # callbacks before this thread sends more (its protocol
                    # marshalling is not safe against both at once: an assertion
                    # in PipeWire 0.3.65 was seen here)
                    time.sleep(0.2)
                    vdev.wait_ports(functools.partial(be.list_ports, midi=False))
                    for src, dst in zip(vdev.capture_ports, be.inputs):
                        be.connect(src, dst)
                    for src, dst in zip(be.outputs, vdev.playback_ports):
                        be.connect(src, dst)
                    print(f"rtengine: virtual device: applications play into '{vdev.sink}' "
                          f"and record from '{vdev.source}'", file=sys.stderr)
                elif args.backend == "jack":
                    _connect(be, args.connect_in, args.connect_out)
                if args.midi_map:
                    midi = MidiControl(be, args.midi_map, hardware_port=args.midi_in).start()
                live.update(be=be, midi=midi)
                kind = "JACK client" if args.backend == "jack" else "PortAudio stream"
                print(f"rtengine: running {current} as {kind} '{be.client_name}': "
                      f"{be.sample_rate} Hz, period {be.period}, latency {be.engine.latency} "
                      f"samples ({1e3 * be.engine.latency / be.sample_rate:.2f} ms); inputs "
                      f"{', '.join(be.inputs)}; outputs {', '.join(be.outputs)}", file=sys.stderr)
                while not stop["now"]:
                    if args.backend == "jack" and be.follow_server():
                        print(f"rtengine: the server now runs {be.sample_rate} Hz, period "
                              f"{be.period}: chain prepared again (latency "
                              f"{be.engine.latency} samples)", file=sys.stderr)
                        if midi is not None:
                            midi.rebind()
                    new = _take_load_request(be, current)
                    if new != current:
                        chain = Chain.load(new)      # a reconnect restarts with this one
                        if midi is not None:
                            midi.rebind()
                    current = new
                    path = _write_status(be, current, started)
                    if be.server_gone:
                        break
                    if deadline and time.monotonic() > deadline:
                        stop["now"] = True
                        break
                    time.sleep(args.status_interval)
                gone = be.server_gone
                st = be.stats()
            finally:
                live.update(be=None, midi=None)
                if midi is not None:
                    midi.stop()
                be.close()
                if path is not None:
                    path.unlink(missing_ok=True)
            if not gone:
                print(f"rtengine: stopped after {st.cycles} cycles, {st.xruns} xruns, callback "
                      f"median {st.callback_us_median:.1f} us, p99 {st.callback_us_p99:.1f} us, "
                      f"max {st.callback_us_max:.1f} us", file=sys.stderr)
                return 0
            print("rtengine: the JACK server went away" +
                  ("; reconnecting (--reconnect)" if args.reconnect else
                   "; exiting (use --reconnect to wait for it)"), file=sys.stderr)
            if not args.reconnect:
                return EXIT_SERVER_GONE
    finally:
        if osc is not None:
            osc.stop()
        if vdev is not None:
            vdev.close()


def _running(name: str | None) -> list[dict]:
    found = []
    for path in sorted(status_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            os.kill(int(data["pid"]), 0)
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            continue
        if name is None or data.get("client") == name:
            found.append(data)
    return found


def load(args) -> int:
    """Ask a running engine to switch to another chain file (crossfaded)."""
    Chain.load(args.chain)                        # a bad file fails here, nothing is sent
    engines = _running(args.name)
    if not engines:
        print(f"rtengine: no running engine named {args.name}", file=sys.stderr)
        return 1
    d = engines[0]
    req = _request_path(d["client"])
    answer = req.with_suffix(".answer")
    answer.unlink(missing_ok=True)
    req.write_text(str(Path(args.chain).resolve()))
    os.kill(int(d["pid"]), signal.SIGUSR1)
    end = time.time() + 10
    while time.time() < end:
        time.sleep(0.05)
        try:
            text = answer.read_text()
        except OSError:
            continue
        answer.unlink(missing_ok=True)
        if text.startswith("ok "):
            print(f"rtengine: {d['client']} now runs {args.chain}")
            return 0
        print(f"rtengine: {d['client']} refused {args.chain}: {text[6:]}", file=sys.stderr)
        return 1
    print(f"rtengine: {d['client']} did not answer within 10 s", file=sys.stderr)
    return 1


def _loudness_line(m: dict) -> str:
    def v(key, unit):
        return "-" if m.get(key) is None else f"{m[key]:.1f}{unit}"
    return (f"M {v('momentary', '')}  S {v('short_term', '')}  I {v('integrated', ' LUFS')}, "
            f"LRA {v('lra', ' LU')}, true peak {v('true_peak_db', ' dBTP')}")


def _meter_lines(stage: str, m: dict) -> list[str]:
    if "input" in m and "output" in m:          # master: both meters and its gains
        return [f"{stage} in:  {_loudness_line(m['input'])}",
                f"{stage} out: {_loudness_line(m['output'])}",
                f"{stage}: gain {m['gain_db']:+.1f} dB, glue -{m['glue_reduction_db']:.1f} dB, "
                f"limiter -{m['limiter_reduction_db']:.1f} dB"]
    if "integrated" in m:
        return [f"{stage}: {_loudness_line(m)}"]
    return [f"{stage}: {m}"]


def status(args) -> int:
    found = []
    for path in sorted(status_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        try:
            os.kill(int(data["pid"]), 0)
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)             # a stale file from a dead process
            continue
        if args.name and data.get("client") != args.name:
            continue
        found.append(data)
    if not found:
        print("rtengine: no running engine" + (f" named {args.name}" if args.name else ""),
              file=sys.stderr)
        return 1
    for d in found:
        if args.json:
            print(json.dumps(d))
            continue
        up = time.time() - d["started"]
        if d.get("kind") == "bridge":
            print(f"bridge server '{d['name']}' (pid {d['pid']}): {len(d['lanes'])} plugin "
                  f"instance(s), up {up:.0f} s")
            for ln in d["lanes"]:
                print(f"  lane {ln['lane']} (DAW pid {ln['owner_pid']}): "
                      f"{' -> '.join(ln['stages']) or 'no chain yet'}, "
                      f"latency {ln['latency_samples']}; {ln['requests']} blocks, "
                      f"{ln['late']} late (dry), {ln['rejected']} refused, "
                      f"{ln['reconnects']} reconnects"
                      + (f", {ln['woken']} found the lane asleep (a wake-up added)"
                         if ln.get("woken") else "")
                      + (f", {ln['midi_dropped']} MIDI events dropped"
                         if ln.get("midi_dropped") else ""))
                if ln.get("last_block_load") is not None:
                    print(f"    last block: {ln['last_block_work_us']:.0f} us of engine work, "
                          f"{100 * ln['last_block_load']:.1f}% of the block's duration")
            continue
        print(f"{d['client']} (pid {d['pid']}, server {d['server']}): {d['chain']}, up {up:.0f} s")
        print(f"  {d['sample_rate']} Hz, period {d['period']}, latency {d['latency_samples']} "
              f"samples; {d['cycles']} cycles, {d['xruns']} xruns, "
              f"{d['deadline_misses']} deadline misses")
        print(f"  callback median {d['callback_us_median']:.1f} us, p99 "
              f"{d['callback_us_p99']:.1f} us, max {d['callback_us_max']:.1f} us "
              f"(period {1e6 * d['period'] / d['sample_rate']:.0f} us)"
              + (f"; audio thread {d['audio_thread']}" if d.get("audio_thread") else ""))
        for stage, m in d.get("meters", {}).items():
            for line in _meter_lines(stage, m):
                print(f"  {line}")
        for stage, w in d.get("workers", {}).items():
            print(f"  worker stage {stage}: {w['chunks_done']} chunks, {w['miss_samples']} "
                  f"samples fell back to dry in {w['miss_blocks']} blocks, "
                  f"{w['chunks_skipped']} chunks skipped, {w['failures']} failures")
    return 0
