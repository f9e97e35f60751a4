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


def _render_one(args) -> int:
    """``rtengine render IN OUT``: one file, with a progress bar over its frames."""
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _split_paths(args, command: str, last: str) -> tuple[list[str], str] | None:
    """(inputs, output) from the positional paths; None (after an error message) when there
    is only one, or when --jobs and --cluster are both given."""
    if len(args.paths) < 2:
        print(f"rtengine: error: {command} needs INPUT... and {last} (got only "
              f"{args.paths[0]})", file=sys.stderr)
        return None
    if args.cluster and args.jobs:
        print("rtengine: error: --jobs sets local processes; with --cluster the Dask workers "
              "do the work: give one or the other", file=sys.stderr)
        return None
    return args.paths[:-1], args.paths[-1]


def _single_file_note(args, command: str) -> None:
    given = [opt for opt, value in (("--jobs", args.jobs), ("--cluster", args.cluster),
                                    ("--retries", args.retries), ("--force", args.force))
             if value]
    if given:
        print(f"rtengine {command}: note: {', '.join(given)} apply to batches (several inputs, "
              "a folder, or an existing output folder); one file runs here", file=sys.stderr)


def _run_batch(args, command: str, plan, job_fn, settings: dict, key: dict) -> int:
    from . import batch
    outcomes = batch.run(command, plan, job_fn, settings, key, jobs=args.jobs,
                         cluster=args.cluster,
                         retries=batch.DEFAULT_RETRIES if args.retries is None else args.retries,
                         force=args.force)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _plan_or_one(args, cmd: str, one):
    """(batch plan, None) for many inputs; (None, exit code) after running ``one``
    on a single file, or for paths that do not make sense."""
    from . import batch
    split = _split_paths(args, cmd, "OUTPUT")
    if split is None:
        return None, 2
    inputs, output = split
    plan = batch.plan(inputs, output)
    if plan.batch:
        return plan, None
    _single_file_note(args, cmd)
    args.input, args.output = inputs[0], output
    return None, one(args)


def _cmd_render(args) -> int:
    from . import batch
    plan, rc = _plan_or_one(args, "render", _render_one)
    if plan is None:
        return rc
    settings = {"chain": str(Path(args.chain).resolve()), "block_size": args.block_size,
                "subtype": args.subtype}
    key = dict(settings, chain=batch.chain_digest(args.chain))
    return _run_batch(args, "render", plan, batch.render_job, settings, key)


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


def _master_one(args) -> int:
    """``rtengine master IN OUT``: one file, with the full report."""
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


def _cmd_master(args) -> int:
    from . import batch
    plan, rc = _plan_or_one(args, "master", _master_one)
    if plan is None:
        return rc
    if args.plot:
        print(f"rtengine: error: --plot writes one PNG; leave it out for a batch of "
              f"{len(plan.jobs)} files (or master them one at a time)", file=sys.stderr)
        return 2
    ref = None
    if args.reference is not None:
        ref = Path(args.reference)
        if not ref.is_file():
            raise batch.BatchError(f"reference {ref} does not exist; give a finished track "
                                   "to match, or --target")
    settings = {"target": args.target, "ceiling": args.ceiling,
                "reference": None if ref is None else str(ref.resolve()),
                "subtype": args.subtype, "balance": not args.no_balance}
    key = dict(settings, reference=None if ref is None else batch.sha256(ref))
    return _run_batch(args, "master", plan, batch.master_job, settings, key)


def _cmd_stems(args) -> int:
    from . import batch
    if args.paths[0] == "check" and len(args.paths) == 2:
        return _stems_check(args.paths[1])
    if args.paths == ["check"]:
        print("rtengine: error: stems check needs the model: rtengine stems check MODEL.onnx",
              file=sys.stderr)
        return 2
    split = _split_paths(args, "stems", "OUTDIR")
    if split is None:
        return 2
    inputs, out_dir = split
    from .stems.contract import check_model, default_model
    model = Path(args.model) if args.model else default_model()
    plan = batch.plan(inputs, out_dir, per_input_folder=True)
    if not plan.batch:
        _single_file_note(args, "stems")
        return _stems_one(inputs[0], out_dir, model, args)
    spec = check_model(model)                    # a bad model fails once, before any job
    settings = {"model": str(model.resolve()), "threads": args.threads or 1,
                "subtype": args.subtype}
    key = {"model": spec.sha256, "subtype": args.subtype}
    return _run_batch(args, "stems", plan, batch.stems_job, settings, key)


def _stems_one(in_path: str, out_dir: str, model_path: Path, args) -> int:
    """``rtengine stems IN OUTDIR``: one file, with a progress bar over its STFT frames."""
    from tqdm import tqdm

    from .stems.offline import separate_file
    from .stems.separate import Model, default_threads
    model = Model(model_path, threads=args.threads or default_threads())
    spec = model.spec
    print(f"model {model.path}: {', '.join(spec.stems)}; "
          f"{', '.join(map(str, spec.sample_rates))} Hz; {model.threads} threads",
          file=sys.stderr)
    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit=" STFT frames", desc=Path(in_path).name,
                             file=sys.stderr, dynamic_ncols=True, mininterval=0.2))
        bars[0].update(done - bars[0].n)

    t0 = time.perf_counter()
    try:
        report = separate_file(in_path, out_dir, model=model, subtype=args.subtype,
                               progress=progress)
    finally:
        for bar in bars:
            bar.close()
    dt = time.perf_counter() - t0
    for path in report["outputs"]:
        print(path)
    secs = report["frames"] / report["sample_rate"]
    if report["nonfinite_in"]:
        print(f"warning: {in_path} holds {report['nonfinite_in']} NaN or infinite samples; "
              "they were separated as silence", file=sys.stderr)
    res = report["sum_residual"]
    print(f"wrote {len(report['outputs'])} stems of {report['frames']} frames, "
          f"{report['channels']} ch, {report['sample_rate']} Hz; "
          + (f"sum residual {res:.2e} (the stems add up to the input)" if res is not None else
             f"sum residual not measured (separated at the model's {report['model_rate']} Hz "
             "and resampled)")
          + f"; {secs / max(dt, 1e-9):.0f}x real time", file=sys.stderr)
    print(f"provenance: {report['provenance']}", file=sys.stderr)
    return 0


def _stems_check(path: str) -> int:
    """``rtengine stems check MODEL.onnx``: what the model declares, or a ModelError."""
    from .stems.contract import CONTRACT, check_model
    spec = check_model(path)
    print(f"model {spec.path}: {spec.name or spec.path.stem}, {spec.bytes} bytes")
    print(f"  sample rates: {', '.join(map(str, spec.sample_rates))} Hz")
    print(f"  n_fft {spec.n_fft}, hop {spec.hop} ({spec.bins} bins), window sqrt_hann, "
          f"lookahead {spec.lookahead}")
    print(f"  stems: {', '.join(spec.stems)}")
    states = "; ".join(f"{i} -> {o} {list(shape)}" for i, o, shape in spec.states) or "none"
    print(f"  states: {states}")
    print(f"  latency: {spec.latency()} samples = "
          + ", ".join(f"{1e3 * spec.latency() / r:.2f} ms at {r} Hz" for r in spec.sample_rates))
    print(f"  sha256: {spec.sha256}")
    print(f"OK: follows {CONTRACT}")
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
    srv = BridgeServer(args.chain, name=args.name, patch_dirs=args.patch_dir,
                       midi_map=args.midi_map, spin_us=args.spin_us).start()
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


BATCH_HELP = ("Give several inputs or a folder (its audio files, sorted) to process a batch "
              "into the folder {out} ({each}), in parallel with --jobs local processes or on a "
              "Dask cluster with --cluster. A failed file is retried, then reported (exit "
              "status 1); a rerun skips the files already done with the same input and "
              "settings ({out}/.rtengine-batch.json records them).")


def _batch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batches (several inputs or a folder)")
    g.add_argument("--jobs", type=_positive_int, default=None,
                   help="files processed at once in local processes (default: one per core)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the files on the Dask distributed scheduler at ADDRESS "
                        "(tcp://host:port; start one with `dask scheduler` and `dask worker "
                        "ADDRESS`); every worker needs rtengine installed and must see the "
                        "inputs, chain and output folder at the same paths")
    g.add_argument("--retries", type=_count, default=None,
                   help="extra attempts for a file that fails (default 2)")
    g.add_argument("--force", action="store_true",
                   help="redo every file, also those already done")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rtengine", description="Real-time audio plugin host")
    ap.add_argument("--version", action="version", version=f"rtengine {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plugins", help="list every plugin with its parameters")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("render", help="render audio files offline through a chain",
                       usage="rtengine render INPUT [INPUT ...] OUTPUT --chain FILE [options]",
                       description=BATCH_HELP.format(out="OUTPUT", each="OUTPUT/<file name>"))
    p.add_argument("paths", nargs="+", metavar="INPUT... OUTPUT",
                   help="audio files or folders of them, then the output file (one input "
                        "file) or folder")
    p.add_argument("--chain", required=True, help="chain file (TOML)")
    p.add_argument("--block-size", type=int, default=512, help="frames per block (default 512)")
    p.add_argument("--subtype", default=None,
                   help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    _batch_options(p)
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
    p = sub.add_parser("master", help="master files in one step: loudness to a target, "
                                      "glue compression, true-peak limiting; prints a report",
                       usage="rtengine master INPUT [INPUT ...] OUTPUT [options]",
                       description=BATCH_HELP.format(out="OUTPUT", each="OUTPUT/<file name>"))
    p.add_argument("paths", nargs="+", metavar="INPUT... OUTPUT",
                   help="audio files or folders of them, then the output file (one input "
                        "file) or folder")
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
    _batch_options(p)
    p.set_defaults(func=_cmd_master)
    p = sub.add_parser("stems", help="separate files into stems (one file per stem) with an "
                                     "ONNX model; 'stems check MODEL.onnx' validates a model",
                       usage="rtengine stems INPUT [INPUT ...] OUTDIR [options]\n"
                             "       rtengine stems check MODEL.onnx",
                       description=BATCH_HELP.format(
                           out="OUTDIR", each="OUTDIR/<file name minus extension>/<stem>.wav")
                       + " One input file writes OUTDIR/<stem>.wav. 'rtengine stems check "
                         "MODEL.onnx' checks a model against the rtengine.stems/1 contract "
                         "and prints what it declares.")
    p.add_argument("paths", nargs="+", metavar="INPUT... OUTDIR",
                   help="audio files or folders of them, then the output folder")
    p.add_argument("--model", default=None,
                   help="stem model (.onnx following rtengine.stems/1; default: the shipped "
                        "model)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="onnxruntime threads per file (default: all cores for one file, 1 per "
                        "job in a batch)")
    p.add_argument("--subtype", default=None,
                   help="stem sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    _batch_options(p)
    p.set_defaults(func=_cmd_stems)
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
    p.add_argument("--midi-map", default=None,
                   help="MIDI map (TOML, as for 'run') for the MIDI that DAW tracks send the "
                        "plugin")
    p.add_argument("--spin-us", type=int, default=None,
                   help="how long (us) before a DAW's next block is due each lane waits for "
                        "it awake rather than asleep, and four times as long after it was due "
                        "(default 200, at most a quarter and half of the block: a wake-up "
                        "costs tens of us; 0 saves that CPU)")
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


def _parse(argv) -> argparse.Namespace:
    """parse_args, except that the paths of render, master and stems may also come after
    options (``render a.wav --chain c.toml b.wav out/``): argparse takes the first run of
    positionals only, so later runs are appended to ``paths`` in order."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "paths", None) is None or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.paths += extra
    return args


def main(argv=None) -> int:
    args = _parse(argv)
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
