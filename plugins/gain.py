"""``gain``: level, constant-power pan, stereo width and polarity."""
from kernels import layout
from rtengine.params import Param, toggle
from rtengine.processor import Processor


class Gain(Processor):
    name = "gain"
    description = "Gain, constant-power pan (centre = unity), stereo width, polarity"
    kernel = "gain"
    params = (
        Param("gain_db", "Gain", -60.0, 24.0, 0.0, "dB", smoothing_ms=20.0),
        Param("pan", "Pan", -1.0, 1.0, 0.0, smoothing_ms=20.0),
        Param("width", "Stereo width", 0.0, 2.0, 1.0, smoothing_ms=20.0),
        toggle("invert", "Invert polarity", smoothing_ms=10.0),
    )

    def allocate(self, sample_rate, max_block, channels):
        return layout.gain_state(sample_rate)

    def reset(self):
        layout.gain_reset(self.state)
