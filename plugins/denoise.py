"""``denoise``: streaming noise reduction.

``spectral`` (this kernel): STFT with 5 ms hops (FFTW), MCRA noise tracking
that follows changing noise, decision-directed MMSE log-spectral-amplitude
gains with a floor; latency one frame (10 ms).  See kernels/c/rtk.h.
"""
from kernels import layout
from rtengine.params import Param, toggle
from rtengine.processor import Processor


class Denoise(Processor):
    name = "denoise"
    description = ("Noise reduction: streaming STFT, noise tracking (MCRA), MMSE-LSA gains; "
                   "latency 10 ms")
    kernel = "denoise"
    impls = ("c",)
    params = (
        Param("amount", "Amount", 0.0, 1.0, 1.0, smoothing_ms=20.0),
        Param("floor_db", "Floor", -40.0, 0.0, -18.0, "dB"),
        Param("adapt_s", "Noise tracking window", 0.3, 10.0, 1.5, "s", scale="log"),
        toggle("learn", "Learn noise", False),
    )

    @property
    def latency(self) -> int:
        return layout.denoise_latency(self.spec[0])

    def allocate(self, sample_rate, max_block, channels):
        return layout.denoise_state(channels, sample_rate)

    def reset(self):
        layout.denoise_reset(self.state)
