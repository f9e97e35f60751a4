"""``compressor``: feed-forward, soft knee, linked stereo detection, dry/wet mix."""
from kernels import layout
from rtengine.params import Param
from rtengine.processor import Processor


class Compressor(Processor):
    name = "compressor"
    description = ("Feed-forward compressor: threshold, ratio, soft knee, attack, release, "
                   "makeup, mix")
    kernel = "compressor"
    params = (
        Param("threshold_db", "Threshold", -60.0, 0.0, -20.0, "dB"),
        Param("ratio", "Ratio", 1.0, 20.0, 4.0, ":1", scale="log"),
        Param("knee_db", "Knee", 0.0, 24.0, 6.0, "dB"),
        Param("attack_ms", "Attack", 0.1, 200.0, 10.0, "ms", scale="log"),
        Param("release_ms", "Release", 5.0, 2000.0, 100.0, "ms", scale="log"),
        Param("makeup_db", "Makeup", 0.0, 24.0, 0.0, "dB"),
        Param("mix", "Mix (dry/wet)", 0.0, 1.0, 1.0),
    )

    def allocate(self, sample_rate, max_block, channels):
        return layout.compressor_state(sample_rate, max_block)

    def reset(self):
        layout.compressor_reset(self.state)
