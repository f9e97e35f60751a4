"""``loudness``: a pass-through loudness meter (ITU-R BS.1770-4, EBU R 128):
momentary, short-term, integrated, loudness range, true peak, readable live
(``rtengine status``, ``Engine.meters()``)."""
from kernels import layout
from rtengine import loudness
from rtengine.processor import Processor


class LoudnessMeter(Processor):
    name = "loudness"
    description = ("Loudness meter to EBU R 128: momentary, short-term, integrated (gated), "
                   "loudness range, true peak (4x); the audio passes unchanged")
    kernel = "loudness"

    def allocate(self, sample_rate, max_block, channels):
        return layout.loudness_state(channels, sample_rate)

    def reset(self):
        layout.loudness_reset(self.state)

    def meters(self):
        return loudness.read(self.state).as_dict() if self.state is not None else {}
