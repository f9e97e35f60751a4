"""The native runner: parameter ramps, denormals, NaN containment, coefficient
hand-over, latency compensation, and running on a native thread with no GIL."""
import sys
import threading
import time

import numpy as np
import pytest
from numba import carray, cfunc

import rtengine
from kernels import layout
from kernels.nb import SIGNATURE
from rtengine.params import Param
from rtengine.processor import Processor

SR = 48000


def test_parameter_changes_are_ramped_inside_the_block_at_any_block_size():
    ramps = []
    for block in (1, 64, 4096):
        e = rtengine.Engine([("gain", {"gain_db": 0.0})], sample_rate=SR, block_size=block,
                            channels=1)
        x = np.ones((1, SR // 10), dtype=np.float32)
        y = np.empty_like(x)
        half = x.shape[1] // 2
        # the change lands between two blocks, whatever their size
        e.process(x[:, :half], out=y[:, :half])
        e.set("gain.gain_db", -20.0)
        e.process(x[:, half:], out=y[:, half:])
        ramps.append(y[0])
    for r in ramps[1:]:
        np.testing.assert_allclose(r, ramps[0], atol=1e-6)
    g_db = 20 * np.log10(ramps[0])
    n = int(round(0.020 * SR))                          # gain_db smooths over 20 ms
    seg = g_db[half:half + n]
    steps = np.diff(seg)
    # a straight ramp in dB, no jump: each sample moves 20 dB / n
    np.testing.assert_allclose(steps, -20.0 / n, rtol=1e-3, atol=1e-4)
    assert g_db[half - 1] == pytest.approx(0.0, abs=1e-6)
    assert g_db[half + n:] == pytest.approx(-20.0, abs=1e-5)


def test_eq_coefficient_changes_make_no_click(impl):
    e = rtengine.Engine([{"plugin": "eq", "impl": impl,
                          "params": {"band1_on": True, "band1_freq": 1000.0}}],
                        sample_rate=SR, block_size=64, channels=1)
    t = np.arange(SR // 2) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
    y = np.empty_like(x)
    for a in range(0, x.shape[1], 64):
        if a == 64 * 100:
            e.set("eq.band1_gain_db", 18.0)             # +18 dB at the sine's frequency
        e.process(x[:, a:a + 64], out=y[:, a:a + 64])
    amp_after = 0.5 * 10 ** (18 / 20)
    assert np.abs(y[0, -2000:]).max() == pytest.approx(amp_after, rel=1e-3)
    # the level moves smoothly: no sample-to-sample jump beyond what the sine
    # itself does at the final level (a click would exceed it)
    assert np.abs(np.diff(y[0])).max() <= amp_after * 2 * np.pi * 1000 / SR * 1.05
    assert e.counters["blob_retries"] == 0


def test_denormals_are_flushed():
    # a very low low-pass rings down towards zero for a long time
    e = rtengine.Engine([("eq", {"band1_on": True, "band1_type": "lowpass",
                                 "band1_freq": 20.0, "band1_q": 0.7})],
                        sample_rate=SR, block_size=4096, channels=1)
    x = np.zeros((1, 4096), dtype=np.float32)
    x[0, 0] = 1.0
    e.process(x.copy())
    x[0, 0] = 0.0
    tiny = np.finfo(np.float32).tiny
    for _ in range(300):                                # 25 s of silence
        y = e.process(x)
        assert not np.any((y != 0) & (np.abs(y) < tiny)), "subnormal float32 output"
    z = layout.biquad_z(e.stages[0].processor.state, 1)
    dtiny = np.finfo(np.float64).tiny
    assert not np.any((z != 0) & (np.abs(z) < dtiny)), "subnormal state"
    assert np.all(z == 0), "state should have been flushed to exact zero"


class NaNMaker(Processor):
    """A deliberately broken third-party plugin: writes NaN and Inf."""
    name = "test_nan_maker"
    description = "writes NaN at frame 3 and Inf at frame 5 of every block"
    params = (Param("amount", "Amount", 0.0, 1.0, 1.0),)
    impls = ("numba",)

    @property
    def kernel_address(self):
        return _nan_kernel.address

    def allocate(self, sample_rate, max_block, channels):
        return np.zeros(1)

    def reset(self):
        pass


@cfunc(SIGNATURE, nopython=True)
def _nan_kernel(stp, iop, nch, stride, n, parp, pstride):
    io = carray(iop, ((nch - 1) * stride + n,))
    if n > 5:
        io[3] = np.nan
        io[5] = np.inf


def test_a_stage_that_makes_nan_is_contained():
    rtengine.register(NaNMaker)
    e = rtengine.Engine([{"plugin": "test_nan_maker", "impl": "numba"},
                         ("eq", {"band1_on": True, "band1_gain_db": 6.0})],
                        sample_rate=SR, block_size=64, channels=1)
    x = np.random.default_rng(0).standard_normal((1, 64 * 20)).astype(np.float32) * 0.1
    y = e.render(x)
    assert np.isfinite(y).all()
    assert e.counters["nonfinite_stage"] == 2 * 20       # two per block of 64
    assert e.counters["nonfinite_in"] == 0


def test_chain_latency_is_the_sum_and_is_compensated(impl):
    chain = [{"plugin": "limiter", "name": "a", "impl": impl, "params": {"lookahead_ms": 1.0}},
             {"plugin": "gain", "impl": impl},
             {"plugin": "limiter", "name": "b", "impl": impl, "params": {"lookahead_ms": 3.0}}]
    e = rtengine.Engine(chain, sample_rate=SR, block_size=100, channels=2)
    assert e.latency == (48 + 18) + (144 + 18)
    x = (0.2 * np.random.default_rng(1).standard_normal((2, 5000))).astype(np.float32)
    np.testing.assert_allclose(e.render(x), x, atol=1e-6)
    e.set("b.bypass", True)
    e.set("a.bypass", True)
    np.testing.assert_allclose(e.render(x), x, atol=1e-6)   # alignment kept when bypassed


def test_bypass_switch_crossfades_without_click():
    e = rtengine.Engine([("gain", {"gain_db": -12.0})], sample_rate=SR, block_size=64,
                        channels=1)
    x = np.ones((1, 4800), dtype=np.float32)
    y = np.empty_like(x)
    for a in range(0, 4800, 64):
        if a == 1024:
            e.set("gain.bypass", True)
        e.process(x[:, a:a + 64], out=y[:, a:a + 64])
    assert y[0, 1000] == pytest.approx(10 ** (-12 / 20), rel=1e-5)
    assert y[0, -1] == pytest.approx(1.0, abs=1e-6)
    n = int(0.010 * SR)
    assert np.abs(np.diff(y[0])).max() < 1.2 / n            # spread over the 10 ms fade


def test_live_block_processing_equals_offline_render_on_a_native_thread(impl):
    chain = rtengine.Chain.load("rtengine/chains/demo.toml")
    for st in chain.stages:
        st.impl = impl
    e = rtengine.Engine(chain, sample_rate=SR, block_size=128, channels=2)
    from rtengine.demo import music
    x = music(2.0, SR)
    offline = e.render(x)
    native = e.render_on_native_thread(x, 128)
    np.testing.assert_array_equal(native, offline)


def test_runner_needs_no_gil():
    """A Python thread holds the GIL for long stretches; the native thread
    still processes every block at full speed."""
    e = rtengine.Engine("rtengine/chains/demo.toml", sample_rate=SR, block_size=64,
                        channels=2)
    x = np.zeros((2, SR * 2), dtype=np.float32)
    e.render_on_native_thread(x, 64)
    free = e.last_native_seconds
    stop = time.monotonic() + 3.0
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)           # the busy thread keeps the GIL up to 1 s at a time

    def hog():
        n = 0
        while time.monotonic() < stop:
            n += 1

    th = threading.Thread(target=hog)
    try:
        th.start()
        time.sleep(0.05)
        e.render_on_native_thread(x, 64)
        held = e.last_native_seconds
    finally:
        th.join()
        sys.setswitchinterval(old)
    print(f"native thread: {free:.4f} s free, {held:.4f} s with the GIL held")
    assert held < max(5 * free, 0.5), (f"native thread took {held:.3f} s with the GIL held "
                                       f"elsewhere vs {free:.3f} s free")


def test_numba_kernels_allocate_nothing_when_warm():
    from numba.core.runtime import _nrt_python, rtsys
    _nrt_python.memsys_enable_stats()
    chain = [{"plugin": p, "impl": "numba"} for p in ("gain", "eq", "compressor", "limiter")]
    e = rtengine.Engine(chain, sample_rate=SR, block_size=256, channels=2)
    x = (0.5 * np.random.default_rng(3).standard_normal((2, 256))).astype(np.float32)
    out = np.empty_like(x)
    for _ in range(10):
        e.process(x, out=out)
    before = rtsys.get_allocation_stats()
    for _ in range(200):
        e.process(x, out=out)
    after = rtsys.get_allocation_stats()
    assert after.alloc == before.alloc, "a numba kernel allocated on the audio path"
