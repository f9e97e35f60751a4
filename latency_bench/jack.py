"""``python -m latency_bench jack``: the engine as a JACK client, live.

For each period (64 and 128 frames at 48 kHz) a private ``jackd
--no-realtime -d dummy`` runs; a C player client feeds music into the client
under test for ``--seconds`` (default 60): the reference chain (rtengine's
JACK backend) or, as the baseline, a C pass-through client.  Each runs once
with an idle interpreter and once with a Python thread spinning on pure-Python
work (holding the GIL whenever it runs).  Reported per run: xruns and deadline
misses during the run, and the callback time distribution (median, p99, max,
and a histogram PNG).  Target: no xrun added by the engine over the baseline
at 64 frames with the hog running.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
CHAIN_PATH = PACKAGE_DIR / "chains" / "reference.toml"
DEFAULT_OUT = PACKAGE_DIR / "results"
RATE = 48000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="length of each run (default 60)")
    p.add_argument("--periods", default="64,128", help="JACK periods (default 64,128)")
    p.add_argument("--rounds", type=int, default=6,
                   help="split each run into this many rounds, interleaved between the two "
                        "clients, every other round in the reverse order, so slow drifts of "
                        "the machine hit both alike (default 6)")
    p.add_argument("--quick", action="store_true", help="2 s runs (for tests)")
    p.add_argument("--realtime", action="store_true",
                   help="run jackd with real-time scheduling (needs the right to use it)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for JSON and PNG")


def _hog(stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1


class _Collector:
    """Callback durations of a client, gathered from its ring as they come."""

    def __init__(self, recent, stats):
        self.recent, self.stats = recent, stats
        self.last = stats().cycles
        self.times: list[np.ndarray] = []

    def poll(self) -> None:
        now = self.stats().cycles
        new = int(min(now - self.last, 8192))
        if new > 0:
            self.times.append(self.recent(new))
        self.last = now

    def all(self) -> np.ndarray:
        return np.concatenate(self.times) if self.times else np.zeros(0, np.float32)


def one_run(server, system: str, hog: bool, seconds: float, music: np.ndarray) -> dict:
    from rtengine.backends.jack import JackBackend, Peer
    player = Peer("player", music, client_name="player", server=server.name)
    if system == "rtengine":
        client = JackBackend(str(CHAIN_PATH), 2, "rtengine", server.name)
        inputs = client.inputs
        start = client.start
        recent, stats = client.recent_callback_us, client.stats
    else:
        client = Peer("thru", None, 2, "passthrough", server.name)
        inputs = [client.port(False, i) for i in range(2)]
        start = client.activate

        def recent(n, c=client):
            return c.recent_times(n)
        stats = client.stats
    stop = threading.Event()
    th = threading.Thread(target=_hog, args=(stop,)) if hog else None
    old = sys.getswitchinterval()
    try:
        start()
        player.activate()
        for i in range(2):
            player.connect(player.port(True, i), inputs[i])
        time.sleep(0.5)                       # the graph settles
        col = _Collector(recent, stats)
        x0, d0 = stats().xruns, stats().deadline_misses
        mark = server.log_mark()
        player.arm()
        if th:
            sys.setswitchinterval(0.005)
            th.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.25)
            col.poll()
        st = stats()
        t = col.all()
        causes = server.xrun_causes(mark, server.log_mark())
    finally:
        stop.set()
        if th:
            th.join()
        sys.setswitchinterval(old)
        player.close()
        client.close()
    name = "rtengine" if system == "rtengine" else "passthrough"
    return {"system": system, "hog": hog, "seconds": seconds, "xruns": int(st.xruns - x0),
            "deadline_misses": int(st.deadline_misses - d0), "times": t,
            "server_late": causes.server_late,
            "not_started": causes.not_started[name], "overran": causes.overran[name],
            "blamed": causes.blamed(name),
            "player_late": causes.not_started["player"] + causes.overran["player"],
            "audio_thread": st.audio_thread}


def summarise(rounds: list[dict]) -> dict:
    """One system and condition over all its rounds."""
    t = np.concatenate([r["times"] for r in rounds])
    first = rounds[0]
    return {"system": first["system"], "hog": first["hog"],
            "seconds": sum(r["seconds"] for r in rounds), "rounds": len(rounds),
            "cycles": len(t), "xruns": sum(r["xruns"] for r in rounds),
            "xruns_per_round": [r["xruns"] for r in rounds],
            "deadline_misses": sum(r["deadline_misses"] for r in rounds),
            "audio_thread": sorted({r["audio_thread"] for r in rounds}),
            # whom jackd blamed (its log): its own late start, the client under test (not
            # started on the cycle, or still in its callback, at the next one), the player
            **{k: sum(r[k] for r in rounds)
               for k in ("server_late", "not_started", "overran", "blamed", "player_late")},
            "callback_us_median": float(np.median(t)) if t.size else None,
            "callback_us_p99": float(np.percentile(t, 99)) if t.size else None,
            "callback_us_max": float(t.max()) if t.size else None,
            "histogram_us": np.histogram(t, bins=np.geomspace(0.5, 5000, 61))[0].tolist()
            if t.size else []}


def run(args) -> int:
    from rtengine.backends.jackd import PrivateJackd
    from rtengine.demo import music
    seconds = 2.0 if args.quick else args.seconds
    rounds = 1 if args.quick else max(1, args.rounds)
    periods = [int(p) for p in args.periods.split(",")]
    sig = music(seconds / rounds + 3.0, RATE)
    report = {"benchmark": "jack", "machine": {"platform": platform.platform(),
                                               "python": platform.python_version(),
                                               "cpus": __import__("os").cpu_count()},
              "settings": {"seconds": seconds, "rounds": rounds, "periods": periods,
                           "rate": RATE,
                           "chain": str(CHAIN_PATH.relative_to(PACKAGE_DIR.parent)),
                           "server": f"jackd {'-R' if args.realtime else '--no-realtime'} -d "
                                     "dummy"}, "runs": {}}
    print(f"latency_bench jack: {seconds:g} s per client and condition in {rounds} "
          f"interleaved rounds, periods {periods}, "
          f"{report['settings']['server']}", flush=True)
    for period in periods:
        budget = 1e6 * period / RATE
        with PrivateJackd(RATE, period, realtime=args.realtime) as server:
            got: dict = {}
            for i in range(rounds):
                # every other round in the reverse order (ABBA), so that load on the
                # machine that grows or fades during the run falls on both clients alike
                flip = i % 2 == 1
                for hog in (True, False) if flip else (False, True):
                    for system in ("rtengine", "passthrough") if flip else \
                            ("passthrough", "rtengine"):
                        got.setdefault((hog, system), []).append(
                            one_run(server, system, hog, seconds / rounds, sig))
            rows = []
            for (hog, system), runs in got.items():
                r = summarise(runs)
                r["budget_us"] = budget
                rows.append(r)
                print(f"  period {period:4d}  {'hog ' if hog else 'idle'}  {system:12s} "
                      f"xruns {r['xruns']:3d} {r['xruns_per_round']} (server late "
                      f"{r['server_late']}, player {r['player_late']}, client not started "
                      f"{r['not_started']}, client overran {r['overran']})  deadline misses "
                      f"{r['deadline_misses']:3d}  callback median "
                      f"{r['callback_us_median']:.1f} us  p99 {r['callback_us_p99']:.1f} us  "
                      f"max {r['callback_us_max']:.1f} us (budget {budget:.0f} us); audio "
                      f"thread {', '.join(r['audio_thread'])}", flush=True)
            report["runs"][str(period)] = rows
    added = {p: _hog_cell(rows, "rtengine")["xruns"] - _hog_cell(rows, "passthrough")["xruns"]
             for p, rows in report["runs"].items()}
    report["xruns_added_with_hog"] = added
    # the xruns jackd put on the client under test (not started or still in its
    # callback at the next cycle), not on its own late start or on the player
    blamed = {p: _hog_cell(rows, "rtengine")["blamed"] - _hog_cell(rows, "passthrough")["blamed"]
              for p, rows in report["runs"].items()}
    report["xruns_blamed_added_with_hog"] = blamed
    spread = {p: _paired(rows) for p, rows in report["runs"].items()}
    report["xruns_added_per_round_with_hog"] = spread
    print(f"xruns added by the engine over the pass-through client, with the hog: {added}")
    print(f"of them put by the server on the client under test, engine less pass-through, "
          f"with the hog: {blamed}")
    for p, d in spread.items():
        if d["ci95"] is not None:
            print(f"  period {p}: added per round {d['mean']:+.1f}, 95% interval "
                  f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] over {d['rounds']} rounds")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "jack_rt" if args.realtime else "jack"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    _plot(report, args.out / f"{stem}.png")
    print(f"saved {args.out / (stem + '.json')} and {args.out / (stem + '.png')}")
    return 0


def _hog_cell(rows: list[dict], system: str) -> dict:
    """One period's summary for `system` with the hog running."""
    return next(r for r in rows if r["system"] == system and r["hog"])


def _paired(rows: list[dict]) -> dict:
    """Engine less pass-through xruns per round, with the hog: the mean and its 95%
    interval (Student's t), rounds being paired in time."""
    from scipy.stats import t as student
    eng = _hog_cell(rows, "rtengine")["xruns_per_round"]
    base = _hog_cell(rows, "passthrough")["xruns_per_round"]
    d = np.asarray(eng, float) - np.asarray(base, float)
    out = {"rounds": int(d.size), "mean": float(d.mean()), "ci95": None}
    if d.size > 1:
        half = float(student.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def _plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    edges = np.geomspace(0.5, 5000, 61)
    centers = np.sqrt(edges[:-1] * edges[1:])
    periods = list(report["runs"])
    fig, axes = plt.subplots(1, len(periods), figsize=(6 * len(periods), 4), squeeze=False)
    for ax, p in zip(axes[0], periods):
        for r in report["runs"][p]:
            if r["histogram_us"]:
                ax.step(centers, r["histogram_us"], where="mid",
                        label=f"{r['system']}{' + GIL hog' if r['hog'] else ''}")
        ax.axvline(report["runs"][p][0]["budget_us"], color="k", ls=":", label="period")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("callback time (us)")
        ax.set_ylabel("callbacks")
        ax.set_title(f"period {p} frames at {RATE} Hz")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
