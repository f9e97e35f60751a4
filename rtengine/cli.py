"""The ``rtengine`` command line."""
from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from . import __version__, provenance, registry
from .chain import Chain
from .errors import RtEngineError


def _cmd_plugins(args) -> int:
    for name, cls in registry.plugins().items():
        print(f"{name}: {cls.description}")
        impls = ", ".join(cls.impls)
        chans = "any" if cls.channels is None else " or ".join(map(str, cls.channels))
        print(f"  kernels: {impls}; channels: {chans}")
        for p in cls.params:
            print(f"  {p.describe()}")
        if cls.dynamic_params:
            print("  parameters: declared by the file its options name")
        for o in cls.options:
            print(f"  {o.describe()}")
        print()
    return 0


def _progress(total: int, desc: str):
    from tqdm import tqdm
    bar = tqdm(total=total, unit="frames", unit_scale=True, desc=desc, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.2)
    state = {"done": 0}

    def update(done: int) -> None:
        bar.update(done - state["done"])
        state["done"] = done
    return bar, update


def _cmd_render(args) -> int:
    from .audio import open_input, render_file
    from .engine import Engine
    chain = Chain.load(args.chain)
    with open_input(args.input) as f:
        sr, ch, frames = f.samplerate, f.channels, f.frames
    engine = Engine(chain, sample_rate=sr, block_size=args.block_size, channels=ch)
    print(f"chain {args.chain}: {len(engine.stages)} stages, latency {engine.latency} samples "
          f"({1e3 * engine.latency / sr:.2f} ms), compensated", file=sys.stderr)
    bar, update = _progress(frames, Path(args.input).name)
    t0 = time.perf_counter()
    try:
        report = render_file(engine, args.input, args.output, subtype=args.subtype,
                             progress=update)
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    secs = frames / sr
    if report["nonfinite_in"]:
        print(f"warning: {args.input} holds {report['nonfinite_in']} NaN or infinite samples; "
              "they were rendered as silence", file=sys.stderr)
    print(f"wrote {args.output}: {frames} frames, {ch} ch, {sr} Hz; latency {report['latency']} "
          f"samples compensated; {secs / max(dt, 1e-9):.0f}x real time", file=sys.stderr)
    side = provenance.write(args.output, command="rtengine render",
                            inputs=[("input", args.input), ("chain", args.chain)],
                            chains={"render": engine})
    print(f"provenance: {side}", file=sys.stderr)
    return 0


def _cmd_balance_learn(args) -> int:
    from .balancing import learn
    curve = learn(args.reference, args.curve)
    print(f"wrote {args.curve}: {len(curve.freqs)} third-octave bands from {args.reference} "
          f"({min(curve.levels_db):+.1f} .. {max(curve.levels_db):+.1f} dB)", file=sys.stderr)
    return 0


def _cmd_balance_plot(args) -> int:
    import soundfile as sf

    from .audio import open_input
    from .balancing import distance_db, plot
    from .engine import Engine
    with open_input(args.input) as f:
        sr = f.samplerate
        x = f.read(dtype="float32", always_2d=True).T
    engine = Engine([{"plugin": "balance", "options": {"target": args.target},
                      "params": {"max_boost_db": args.max_boost, "max_cut_db": args.max_cut,
                                 "speed_s": args.speed}}],
                    sample_rate=sr, block_size=1024, channels=x.shape[0])
    y = engine.render(x)
    curve = engine.stages[0].processor.curve
    settle = min(x.shape[1] // 2, int(3 * args.speed * sr))
    before = distance_db(x[:, settle:], sr, curve)
    after = distance_db(y[:, settle:], sr, curve)
    print(f"distance to {curve.name} after {settle / sr:.1f} s of settling: {before:.2f} dB RMS "
          f"before, {after:.2f} dB RMS after", file=sys.stderr)
    if args.output:
        sf.write(args.output, y.T, sr)
    print(f"plot: {plot(x[:, settle:], y[:, settle:], sr, curve, args.png)}", file=sys.stderr)
    return 0


def _cmd_master(args) -> int:
    from .mastering import format_report, master_file, plot
    report = master_file(args.input, args.output, target=args.target, ceiling=args.ceiling,
                         reference=args.reference, subtype=args.subtype,
                         balance=not args.no_balance,
                         progress=lambda msg: print(f"rtengine master: {msg}", file=sys.stderr))
    print(format_report(report))
    if args.plot:
        print(f"plot: {plot(report, args.plot)}", file=sys.stderr)
    print(f"wrote {args.output}; provenance: {report['provenance']}", file=sys.stderr)
    return 0


def _cmd_demo(args) -> int:
    import numpy as np
    import soundfile as sf
    from .audio import true_peak_db
    from .demo import music
    from .engine import Engine
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sr = 48000
    x = music(args.seconds, sr)
    src = out_dir / "demo_in.wav"
    dst = out_dir / "demo_out.wav"
    sf.write(str(src), x.T, sr, subtype="FLOAT")
    with resources.as_file(resources.files("rtengine") / "chains" / "demo.toml") as path:
        chain = Chain.load(path)
    engine = Engine(chain, sample_rate=sr, block_size=args.block_size, channels=2)
    print(engine.describe())
    bar, update = _progress(x.shape[1], "demo")
    t0 = time.perf_counter()
    y = engine.render(x, progress=update, chunk=args.block_size * 64)
    dt = time.perf_counter() - t0
    bar.close()
    sf.write(str(dst), y.T, sr, subtype="FLOAT")

    def rms_db(s):
        return 20 * np.log10(np.sqrt(np.mean(np.square(s, dtype=np.float64))) + 1e-12)
    print(f"input : {src}  RMS {rms_db(x):6.2f} dBFS  true peak {true_peak_db(x):6.2f} dBTP")
    print(f"output: {dst}  RMS {rms_db(y):6.2f} dBFS  true peak {true_peak_db(y):6.2f} dBTP")
    print(f"{args.seconds:g} s rendered in {dt * 1e3:.0f} ms ({args.seconds / dt:.0f}x real time), "
          f"block {args.block_size}, counters {engine.counters}")
    return 0


def _cmd_run(args) -> int:
    from .live import run
    if args.channels < 1:
        print("rtengine: error: --channels must be at least 1", file=sys.stderr)
        return 2
    if args.backend == "portaudio" and (args.connect_in != "system" or
                                        args.connect_out != "system" or args.reconnect):
        print("rtengine: error: --connect-in/--connect-out/--reconnect are for JACK",
              file=sys.stderr)
        return 2
    if args.midi_in and not args.midi_map:
        print("rtengine: error: --midi-in needs --map (what should the controls drive?)",
              file=sys.stderr)
        return 2
    return run(args)


def _cmd_devices(args) -> int:
    from .backends.portaudio import devices
    devs = devices()
    for d in devs:
        print(d)
    if not devs:
        print("no PortAudio devices (no sound card, and no JACK server running)")
    return 0


def _cmd_load(args) -> int:
    from .live import load
    return load(args)


def _cmd_serve(args) -> int:
    import signal

    from .bridge import BridgeServer
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    srv = BridgeServer(args.chain, name=args.name, patch_dirs=args.patch_dir).start()
    print(f"rtengine: bridge server '{args.name}' ready for the rtengine VST3 plugin"
          + (f" (default chain {args.chain})" if args.chain else ""), file=sys.stderr)
    import json

    from .live import status_dir
    end = time.monotonic() + args.duration if args.duration else None
    seen = 0
    started = time.time()
    path = status_dir() / f"bridge-{args.name}.json"
    try:
        while not stop["now"] and (end is None or time.monotonic() < end):
            time.sleep(0.1)
            for msg in srv.errors[seen:]:
                print(f"rtengine: refused {msg}", file=sys.stderr)
            seen = len(srv.errors)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**srv.status(), "started": started,
                                       "updated": time.time()}))
            tmp.replace(path)
    finally:
        srv.close()
        path.unlink(missing_ok=True)
    print(f"rtengine: bridge server '{args.name}' stopped", file=sys.stderr)
    return 0


def _cmd_vst3(args) -> int:
    from . import vst3
    if args.vst3_cmd == "build":
        bundle = vst3.build(args.out)
    else:
        bundle = vst3.install(args.dest)
    print(bundle)
    print(f"rtengine: built {bundle}; it talks to 'rtengine serve' (set RTENGINE_BRIDGE in the "
          "DAW's environment to use a server --name other than 'default')", file=sys.stderr)
    return 0


def _cmd_midi_list(args) -> int:
    from .backends.jack import JackError, Peer
    try:
        probe = Peer("midi", client_name="rtengine-list", server=args.server)
    except JackError as exc:
        print(f"JACK MIDI: {exc}")
    else:
        for inputs, label in ((False, "sources (connect them to an engine's midi_in)"),
                              (True, "destinations (for an engine's midi_out)")):
            names = [x for x in probe.list_ports(midi=True, inputs=inputs)
                     if not x.startswith("rtengine-list:")]
            print(f"JACK MIDI {label}:")
            for x in names or ["(none)"]:
                print(f"  {x}")
        probe.close()
    try:
        import rtmidi
        ports = rtmidi.MidiIn(rtmidi.API_LINUX_ALSA).get_ports()
    except ImportError:
        print("hardware MIDI: python-rtmidi is not installed (pip install python-rtmidi)")
    except Exception:
        print("hardware MIDI: no ALSA sequencer on this machine (/dev/snd/seq is missing or "
              "the snd-seq module is not loaded); use JACK MIDI, or load snd-seq")
    else:
        print("hardware MIDI (ALSA):")
        for x in ports or ["(none)"]:
            print(f"  {x}")
    return 0


def _cmd_midi_learn(args) -> int:
    from .backends.jack import Peer
    from .engine import Engine
    from .midi import entry_toml, learn, load_map
    engine = None
    if args.chain:
        engine = Engine(args.chain, 48000, 64, 2)
        engine.get(args.target)                   # a clear error for a bad target
    peer = Peer("midi", client_name="rtengine-learn", server=args.server)
    try:
        peer.activate()
        sources = [args.port] if args.port else [
            p for p in peer.list_ports(midi=True, inputs=False)
            if not p.startswith("rtengine-learn:")]
        for src in sources:
            peer.connect(src, peer.port(False, 0))
        print(f"move the control for {args.target} (listening to "
              f"{', '.join(sources) or 'no port yet'}; {args.timeout:g} s) ...", file=sys.stderr)
        got, end, first = [], time.monotonic() + args.timeout, None
        while time.monotonic() < end:
            got += [m for _, m in peer.read_midi()]
            if got and first is None:
                first = time.monotonic()
            if first is not None and time.monotonic() - first > 0.3:
                entry = learn(got, args.target)
                if entry:
                    break
            time.sleep(0.005)
        else:
            print("rtengine: no control moved; nothing written", file=sys.stderr)
            return 1
    finally:
        peer.close()
    text = entry_toml(entry)
    path = Path(args.map)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(old + ("\n" if old else "") + text, encoding="utf-8")
    if engine is not None:
        load_map(path, engine)                    # the file still loads
    print(text, end="")
    print(f"added to {path}", file=sys.stderr)
    return 0


def _cmd_status(args) -> int:
    from .live import status
    return status(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rtengine", description="Real-time audio plugin host")
    ap.add_argument("--version", action="version", version=f"rtengine {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plugins", help="list every plugin with its parameters")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("render", help="render an audio file offline through a chain")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--chain", required=True, help="chain file (TOML)")
    p.add_argument("--block-size", type=int, default=512, help="frames per block (default 512)")
    p.add_argument("--subtype", default=None,
                   help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    p.set_defaults(func=_cmd_render)
    p = sub.add_parser("balance", help="EQ balancing: learn a target curve, plot a correction")
    bsub = p.add_subparsers(dest="balance_cmd", required=True)
    q = bsub.add_parser("learn", help="measure a reference file's long-term spectrum into a "
                                      "curve file (TOML) for the balance stage's target option")
    q.add_argument("reference")
    q.add_argument("curve")
    q.set_defaults(func=_cmd_balance_learn)
    q = bsub.add_parser("plot", help="balance a file and plot its spectrum before and after "
                                     "against the target (PNG)")
    q.add_argument("input")
    q.add_argument("png")
    q.add_argument("--target", default="pink",
                   help="built-in curve (pink, music, warm, bright) or curve file")
    q.add_argument("--max-boost", type=float, default=6.0, help="dB (default 6)")
    q.add_argument("--max-cut", type=float, default=6.0, help="dB (default 6)")
    q.add_argument("--speed", type=float, default=8.0, help="averaging time in s (default 8)")
    q.add_argument("--output", default=None, help="also write the balanced audio")
    q.set_defaults(func=_cmd_balance_plot)
    p = sub.add_parser("master", help="master a file in one step: loudness to a target, "
                                      "glue compression, true-peak limiting; prints a report")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--target", type=float, default=None,
                   help="integrated loudness in LUFS (default -14, or the reference's)")
    p.add_argument("--ceiling", type=float, default=-1.0, help="true-peak ceiling in dBTP "
                   "(default -1)")
    p.add_argument("--reference", default=None,
                   help="a finished track whose loudness to match")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write short-term loudness and spectrum before/after against the "
                        "targets")
    p.add_argument("--no-balance", action="store_true",
                   help="loudness, compression and limiting only: no EQ balancing")
    p.add_argument("--subtype", default=None,
                   help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    p.set_defaults(func=_cmd_master)
    p = sub.add_parser("run", help="run a chain live as a JACK client")
    p.add_argument("--chain", required=True, help="chain file (TOML)")
    p.add_argument("--backend", choices=("jack", "portaudio"), default="jack",
                   help="jack (default) or portaudio (a sound card without JACK)")
    p.add_argument("--device", default=None,
                   help="PortAudio device, by number or part of its name (rtengine devices)")
    p.add_argument("--rate", type=float, default=None,
                   help="PortAudio (or --virtual-device) sample rate (default: the device's; "
                        "48000 for the virtual device)")
    p.add_argument("--block-size", type=int, default=128,
                   help="PortAudio frames per callback, or the PipeWire quantum of "
                        "--virtual-device (default 128)")
    p.add_argument("--name", default="rtengine", help="JACK client name (default rtengine)")
    p.add_argument("--server", default=None, help="JACK server name (default: the default server)")
    p.add_argument("--channels", type=int, default=2, help="audio inputs and outputs (default 2)")
    p.add_argument("--connect-in", default="system",
                   help="'system' (capture ports), 'none', or comma-separated port names")
    p.add_argument("--connect-out", default="system",
                   help="'system' (playback ports), 'none', or comma-separated port names")
    p.add_argument("--midi-map", "--map", dest="midi_map", default=None,
                   help="map file (TOML): MIDI controls on midi_in and OSC addresses")
    p.add_argument("--midi-in", default=None,
                   help="also read a hardware MIDI port (ALSA, by name or number; needs --map)")
    p.add_argument("--osc-port", type=int, default=None,
                   help="listen for OSC on this UDP port (/rtengine/<stage>/<param>)")
    p.add_argument("--osc-host", default="127.0.0.1",
                   help="address to listen on for OSC (default 127.0.0.1; 0.0.0.0 for a tablet)")
    p.add_argument("--virtual-device", action="store_true",
                   help="on PipeWire: create a sink '<name> input' and a source '<name> "
                        "output' for desktop apps, wired through the engine; removed on exit")
    p.add_argument("--reconnect", action="store_true",
                   help="wait for the JACK server and reconnect when it goes away")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--status-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("devices", help="list PortAudio devices (for machines without JACK)")
    p.set_defaults(func=_cmd_devices)
    p = sub.add_parser("load", help="switch a running engine to another chain (crossfaded)")
    p.add_argument("chain", help="chain file (TOML)")
    p.add_argument("--name", default="rtengine", help="client name of the running engine")
    p.set_defaults(func=_cmd_load)
    p = sub.add_parser("serve", help="serve the rtengine VST3 plugin in DAWs (the bridge)")
    p.add_argument("--chain", default=None,
                   help="chain for plugin instances that bring none of their own")
    p.add_argument("--name", default="default", help="bridge name (default 'default')")
    p.add_argument("--patch-dir", action="append", default=[],
                   help="folder whose pyo patches DAW projects may name (repeatable)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("vst3", help="build or install the rtengine VST3 plugin")
    vsub = p.add_subparsers(dest="vst3_cmd", required=True)
    q = vsub.add_parser("build", help="compile rtengine.vst3 into a folder")
    q.add_argument("--out", default=".", help="folder for rtengine.vst3 (default: here)")
    q.set_defaults(func=_cmd_vst3)
    q = vsub.add_parser("install", help="build rtengine.vst3 into ~/.vst3 (or --dest)")
    q.add_argument("--dest", default=None, help="VST3 folder (default ~/.vst3)")
    q.set_defaults(func=_cmd_vst3)
    p = sub.add_parser("status", help="statistics of running engines")
    p.add_argument("--name", default=None, help="only the engine with this client name")
    p.add_argument("--json", action="store_true", help="one JSON object per engine")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("midi", help="MIDI ports and MIDI learn")
    msub = p.add_subparsers(dest="midi_cmd", required=True)
    q = msub.add_parser("list", help="list JACK MIDI ports and hardware (ALSA) MIDI ports")
    q.add_argument("--server", default=None, help="JACK server name")
    q.set_defaults(func=_cmd_midi_list)
    q = msub.add_parser("learn", help="move a control; its mapping is added to a map file")
    q.add_argument("target", help="stage.param_id the control should drive")
    q.add_argument("--map", required=True, help="MIDI map file to add the entry to")
    q.add_argument("--chain", default=None, help="chain file to check the target against")
    q.add_argument("--server", default=None, help="JACK server name")
    q.add_argument("--port", default=None,
                   help="JACK MIDI output port to listen to (default: all of them)")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    q.set_defaults(func=_cmd_midi_learn)
    p = sub.add_parser("demo", help="render generated music through the demo chain")
    p.add_argument("out_dir", nargs="?", default="out", help="folder for demo_in/out.wav")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--block-size", type=int, default=128)
    p.set_defaults(func=_cmd_demo)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "block_size", 1) is not None and getattr(args, "block_size", 1) < 1:
        print("rtengine: error: --block-size must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RtEngineError as exc:
        print(f"rtengine: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
