from pathlib import Path

import numpy as np
import pytest

import rtengine
from rtengine.worker import WorkerProcessor

PATCHES = Path(rtengine.__file__).parent / "patches"

# Settings that make each of rtengine's plugins do real work in the contract
# tests.  A plugin not listed here (a third-party one) runs at its defaults.
EXERCISE = {
    "gain": {"gain_db": -4.5, "pan": 0.25, "width": 1.4},
    "eq": {"lowcut_on": True, "lowcut_freq": 90.0, "lowcut_slope": "24",
           "highcut_on": True, "highcut_freq": 9000.0, "highcut_slope": "12",
           "band1_on": True, "band1_type": "peak", "band1_freq": 900.0, "band1_gain_db": 7.0,
           "band1_q": 1.5,
           "band2_on": True, "band2_type": "lowshelf", "band2_freq": 200.0,
           "band2_gain_db": -5.0,
           "band3_on": True, "band3_type": "highshelf", "band3_freq": 4000.0,
           "band3_gain_db": 4.0},
    "compressor": {"threshold_db": -30.0, "ratio": 6.0, "knee_db": 6.0, "attack_ms": 2.0,
                   "release_ms": 60.0, "makeup_db": 6.0},
    "limiter": {"ceiling_db": -6.0, "release_ms": 30.0, "input_gain_db": 3.0},
    "pyo": {"size": 0.7, "mix": 0.4},
    "vst3": {"threshold_db": -30.0, "ratio": 6.0, "attack_ms": 2.0},
    "balance": {"speed_s": 0.5, "max_boost_db": 9.0, "mid_side": True},
    "denoise": {"adapt_s": 0.5, "floor_db": -25.0},
    "master": {"gain_db": 9.0, "glue_threshold_db": -24.0, "glue_ratio": 3.0,
               "ceiling_db": -3.0, "release_ms": 40.0},
}
# Construction options a plugin needs (a pyo stage needs a patch file).
ZAMCOMP = "/usr/lib/vst3/ZamCompX2.vst3"      # Debian's zam-plugins (run.sh installs it)
OPTIONS = {"pyo": {"patch": str(PATCHES / "reverb.py")}, "vst3": {"bundle": ZAMCOMP}}

PLUGINS = sorted(rtengine.plugins())


def exercise(name: str) -> dict:
    return dict(EXERCISE.get(name, {}))


def options(name: str) -> dict:
    return dict(OPTIONS.get(name, {}))


def need_impl(plugin: str, impl: str) -> type:
    """The plugin's class; skips the test for a kernel implementation it lacks."""
    cls = rtengine.plugins()[plugin]
    if plugin == "vst3" and not Path(ZAMCOMP).exists():
        pytest.skip("zam-plugins is not installed (./run.sh setup installs it as root)")
    if impl not in cls.impls:
        pytest.skip(f"{plugin} offers {', '.join(cls.impls)} kernels only")
    return cls


def is_worker(plugin: str) -> bool:
    return issubclass(rtengine.plugins()[plugin], WorkerProcessor)


def music_like(channels: int, frames: int, sample_rate: float = 48000, seed: int = 0):
    """Noise bursts, tones and a level step: drives dynamics and filters."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / sample_rate
    x = np.zeros((channels, frames))
    for c in range(channels):
        x[c] = 0.3 * np.sin(2 * np.pi * (110 + 37 * c) * t) + 0.1 * rng.standard_normal(frames)
        x[c, frames // 3:] *= 3.0
        x[c, ::997] += 0.8
    return x.astype(np.float32)


@pytest.fixture(params=["c", "numba"])
def impl(request):
    return request.param
