"""``python -m latency_bench bridge``: what the DAW bridge costs per block.

A bridge server (``rtengine serve``) runs in its own process, as it does under
a DAW; this process plays the plugin's part with the plugin's own C client
(rtengine/bridge/client.c), timing each call (host -> plugin -> engine ->
plugin -> host) in C.  Beside it, in the same run and interleaved round by
round, the same chain runs in-process through the native runner.  The bridge's
overhead per block is the difference.  Target (issue 4): at most 20 us.
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", default="32,64,128,512", help="block sizes (default 32,64,128,512)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="audio per block size and system (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="0.5 s, 2 rounds (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON report")


def _stats(us: np.ndarray) -> dict:
    return {"blocks": int(us.size), "median_us": float(np.median(us)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}


def run(args) -> int:
    from rtengine import Chain, Engine
    from rtengine._runner import ffi, lib
    from rtengine.bridge import Client
    seconds, rounds = (0.5, 2) if args.quick else (args.seconds, max(1, args.rounds))
    sizes = [int(f) for f in args.frames.split(",")]
    name = f"bench{os.getpid()}"
    root = PACKAGE_DIR.parent
    srv = subprocess.Popen([sys.executable, "-m", "rtengine", "serve", "--chain", str(CHAIN_PATH),
                            "--name", name], cwd=root, stderr=subprocess.DEVNULL)
    report = {"benchmark": "bridge", "machine": {"platform": platform.platform(),
                                                 "python": platform.python_version(),
                                                 "cpus": os.cpu_count()},
              "settings": {"seconds": seconds, "rounds": rounds, "rate": RATE,
                           "chain": str(CHAIN_PATH.relative_to(root)), "quick": args.quick,
                           "target_overhead_us": TARGET_US},
              "results": {}}
    try:
        client = Client.connect(name)
        client.claim(RATE, max(sizes), 2)
        client.configure(CHAIN_PATH.read_text())
        chain = Chain.load(CHAIN_PATH)
        rng = np.random.default_rng(0)
        print(f"latency_bench bridge: {seconds:g} s per block size and system in {rounds} "
              f"rounds; reference chain; server pid {srv.pid}", flush=True)
        for n in sizes:
            x = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
            y = np.empty_like(x)
            ins = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in x])
            outs = ffi.new("float *[]", [ffi.cast("float *", r.ctypes.data) for r in y])
            engine = Engine(chain, RATE, n, 2)
            io = np.ascontiguousarray(x.copy())
            per_round = max(1, int(seconds * RATE / n / rounds))
            bridge_us, local_us = [], []
            missed = 0
            for _ in range(rounds):
                us = np.zeros(per_round, np.float32)
                got = lib.rtb_client_time_blocks(client._c, ins, outs, n, per_round, 100000,
                                                 ffi.cast("float *", us.ctypes.data))
                missed += per_round * n - int(got)
                bridge_us.append(us)
                us2 = np.zeros(per_round, np.float32)
                lib.rt_runner_time_blocks(engine._r, ffi.cast("float *", io.ctypes.data),
                                          io.shape[1], n, per_round,
                                          ffi.cast("float *", us2.ctypes.data))
                local_us.append(us2)
            b, loc = _stats(np.concatenate(bridge_us)), _stats(np.concatenate(local_us))
            overhead = {k: b[k] - loc[k] for k in ("median_us", "p99_us")}
            report["results"][str(n)] = {"bridge": b, "in_process": loc,
                                         "overhead_median_us": overhead["median_us"],
                                         "overhead_p99_us": overhead["p99_us"],
                                         "budget_us": 1e6 * n / RATE,
                                         "frames_not_processed_by_engine": missed}
            print(f"  {n:4d} frames  bridge median {b['median_us']:6.1f} us  p99 "
                  f"{b['p99_us']:6.1f}  max {b['max_us']:7.1f} | in-process median "
                  f"{loc['median_us']:6.1f}  p99 {loc['p99_us']:6.1f}  max {loc['max_us']:7.1f}"
                  f" | overhead median {overhead['median_us']:5.1f} us, p99 "
                  f"{overhead['p99_us']:5.1f} us (target {TARGET_US:g})", flush=True)
        client.close()
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
        Path(f"/dev/shm/rtengine-{os.getuid()}-{name}").unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bridge.json").write_text(json.dumps(report, indent=1))
    print(f"saved {args.out / 'bridge.json'}")
    return 0
