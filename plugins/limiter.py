"""``limiter``: lookahead true-peak limiter with a ceiling in dBTP."""
from kernels import layout
from rtengine.params import Param
from rtengine.processor import Processor


class Limiter(Processor):
    name = "limiter"
    description = ("Lookahead true-peak limiter: 4x oversampled detection, ceiling in dBTP, "
                   "latency = lookahead + 18 samples")
    kernel = "limiter"
    params = (
        Param("ceiling_db", "Ceiling", -24.0, 0.0, -1.0, "dBTP"),
        Param("release_ms", "Release", 1.0, 1000.0, 50.0, "ms", scale="log"),
        Param("input_gain_db", "Input gain", 0.0, 24.0, 0.0, "dB"),
        Param("lookahead_ms", "Lookahead", 0.5, 10.0, 1.5, "ms", lane=False, realtime=False),
    )

    def lookahead_samples(self, sample_rate: float) -> int:
        return layout.lookahead_frames(self.values["lookahead_ms"], sample_rate)

    @property
    def latency(self) -> int:
        return layout.limiter_latency(self.lookahead_samples(self.spec[0]))

    def allocate(self, sample_rate, max_block, channels):
        return layout.limiter_state(channels, sample_rate, self.lookahead_samples(sample_rate),
                                    max_block)

    def reset(self):
        layout.limiter_reset(self.state)
