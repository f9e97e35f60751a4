"""``python -m latency_bench bridge``: what the DAW bridge costs per block.

A bridge server (``rtengine serve``) runs in its own process, as it does under
a DAW; this process plays the plugin's part with the plugin's own C client
(rtengine/bridge/client.c), timing each call (host -> plugin -> engine ->
plugin -> host) in C.  Beside it, in the same run and interleaved round by
round, the same chain runs in-process through the native runner.  The bridge's
overhead is measured two ways: the difference of the two systems' median and
p99 block times, and, per block, the round trip less the time the server
itself worked on that block (its lane reports it with each answer), which
leaves out how the chain's own time varies from one run to another.  Target
(issue 4): at most 20 us.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
CHAIN_PATH = PACKAGE_DIR / "chains" / "reference.toml"
DEFAULT_OUT = PACKAGE_DIR / "results"
RATE = 48000
TARGET_US = 20.0
WARM = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", default="32,64,128,512", help="block sizes (default 32,64,128,512)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="audio per block size and system (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--back-to-back", action="store_true",
                   help="no pause between blocks (default: one block per period, as a DAW calls)")
    p.add_argument("--spin-us", default="",
                   help="comma-separated --spin-us values of more servers run side by side "
                        "(e.g. 500,1000), each reported as bridge_spinN")
    p.add_argument("--quick", action="store_true", help="0.5 s, 2 rounds (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON report")


def _stats(us: np.ndarray) -> dict:
    return {"blocks": int(us.size), "median_us": float(np.median(us)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}


def _serve(root: Path, name: str, spin_us: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rtengine", "serve", "--chain", str(CHAIN_PATH), "--name", name]
    if spin_us is not None:
        cmd += ["--spin-us", str(spin_us)]
    return subprocess.Popen(cmd, cwd=root, stderr=subprocess.DEVNULL)


def run(args) -> int:
    from rtengine import Chain, Engine
    from rtengine._runner import ffi, lib
    from rtengine.bridge import Client
    seconds, rounds = (0.5, 2) if args.quick else (args.seconds, max(1, args.rounds))
    sizes = [int(f) for f in args.frames.split(",")]
    root = PACKAGE_DIR.parent
    # the bridge as shipped (lane threads wait awake shortly before a block is
    # due) and with --spin-us 0 (they always sleep), side by side
    systems = {"bridge": None, "bridge_asleep": 0}
    for v in filter(None, (t.strip() for t in args.spin_us.split(","))):
        systems[f"bridge_spin{int(v)}"] = int(v)
    names = {k: f"bench{os.getpid()}-{k}" for k in systems}
    servers = {k: _serve(root, names[k], spin) for k, spin in systems.items()}
    report = {"benchmark": "bridge", "machine": {"platform": platform.platform(),
                                                 "python": platform.python_version(),
                                                 "cpus": os.cpu_count()},
              "settings": {"seconds": seconds, "rounds": rounds, "rate": RATE,
                           "chain": str(CHAIN_PATH.relative_to(root)), "quick": args.quick,
                           "paced": not args.back_to_back, "warm_up_blocks_per_round": WARM,
                           "target_overhead_us": TARGET_US},
              "results": {}}
    # a DAW's audio thread runs real-time: so does this one where allowed, or
    # any thread of the machine could preempt it while it waits for an answer
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(60))
        report["settings"]["client_realtime"] = True
    except PermissionError:
        report["settings"]["client_realtime"] = False
    clients = {}
    try:
        for k in systems:
            clients[k] = Client.connect(names[k])
            clients[k].claim(RATE, max(sizes), 2)
            clients[k].configure(CHAIN_PATH.read_text())
        chain = Chain.load(CHAIN_PATH)
        rng = np.random.default_rng(0)
        print(f"latency_bench bridge: {seconds:g} s per block size and system in {rounds} "
              f"rounds, {'back to back' if args.back_to_back else 'one block per period'}; "
              "reference chain", flush=True)
        for n in sizes:
            x = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
            y = np.empty_like(x)
            ins = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in x])
            outs = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in y])
            engine = Engine(chain, RATE, n, 2)
            io = np.ascontiguousarray(x.copy())
            per_round = max(1, int(seconds * RATE / n / rounds))
            period_ns = 0 if args.back_to_back else int(1e9 * n / RATE)
            times = {k: [] for k in (*systems, "in_process")}
            serve = {k: [] for k in systems}
            missed = {k: 0 for k in systems}
            woken = {k: 0 for k in systems}
            # each round starts with WARM untimed blocks, for every system alike:
            # the first block after a pause (a stopped transport) finds caches
            # cold and the lane asleep; what is timed is steady playback
            blocks = per_round + WARM
            for _ in range(rounds):
                for k in systems:
                    us = np.zeros(blocks, np.float32)
                    sv = np.zeros(blocks, np.float32)
                    w0 = int(clients[k].lane.counters.woken)
                    got = lib.rtb_client_time_blocks(clients[k]._c, ins, outs, n, blocks,
                                                     100000, period_ns,
                                                     ffi.cast("float *", us.ctypes.data),
                                                     ffi.cast("float *", sv.ctypes.data))
                    missed[k] += blocks * n - int(got)
                    woken[k] += int(clients[k].lane.counters.woken) - w0
                    times[k].append(us[WARM:])
                    serve[k].append(sv[WARM:])
                us = np.zeros(blocks, np.float32)
                lib.rt_runner_time_blocks(engine._r, ffi.cast("float *", io.ctypes.data),
                                          io.shape[1], n, blocks, period_ns,
                                          ffi.cast("float *", us.ctypes.data))
                times["in_process"].append(us[WARM:])
            st = {k: _stats(np.concatenate(v)) for k, v in times.items()}
            loc = st["in_process"]
            res = {"in_process": loc, "budget_us": 1e6 * n / RATE}
            line = [f"  {n:4d} frames  in-process median {loc['median_us']:6.1f} p99 "
                    f"{loc['p99_us']:6.1f} us"]
            for k in systems:
                over = {q: st[k][q] - loc[q] for q in ("median_us", "p99_us")}
                # per block: the round trip less the server's own work on that block
                # (the chain), i.e. what the bridge added to that very block
                rt, sv = np.concatenate(times[k]), np.concatenate(serve[k])
                added = rt[sv >= 0] - sv[sv >= 0]
                tr = _stats(added) if added.size else None
                res[k] = dict(st[k], overhead_median_us=over["median_us"],
                              overhead_p99_us=over["p99_us"], added_per_block=tr,
                              server_work=_stats(sv[sv >= 0]) if added.size else None,
                              frames_not_processed_by_engine=missed[k],
                              # blocks whose request found the lane thread asleep
                              # (a wake-up added), warm-up blocks included
                              blocks_lane_woken=woken[k],
                              blocks_sent=rounds * blocks)
                line.append(f"{k} median {st[k]['median_us']:6.1f} p99 {st[k]['p99_us']:6.1f}"
                            f" (overhead {over['median_us']:5.1f} / {over['p99_us']:5.1f}")
                line[-1] += (f"; per block {tr['median_us']:5.1f} / {tr['p99_us']:5.1f}"
                             if tr else "")
                line[-1] += f"; lane asleep {100 * woken[k] / (rounds * blocks):.1f}%)"
            report["results"][str(n)] = res
            print(" | ".join(line) + f"  [target overhead {TARGET_US:g} us]", flush=True)
        for c in clients.values():
            c.close()
    finally:
        for srv in servers.values():
            srv.send_signal(signal.SIGINT)
        for k, srv in servers.items():
            try:
                srv.wait(10)
            except subprocess.TimeoutExpired:
                srv.kill()
            Path(f"/dev/shm/rtengine-{os.getuid()}-{names[k]}").unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bridge.json").write_text(json.dumps(report, indent=1))
    print(f"saved {args.out / 'bridge.json'}")
    return 0
