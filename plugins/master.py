"""``master``: one-step mastering in a stage: slow automatic gain toward a
loudness target, a glue compressor and a true-peak limiter, with loudness
meters (EBU R 128) on its input and output.

Auto gain (live): every 100 ms the output's loudness at unity gain (compressor
and limiter included) is estimated from gated short-term values averaged over
``adapt_s``; the gain slews toward target minus that estimate at ``speed_db_s``
within +-``max_gain_db``, after the first 3 s of signal.  With auto off the gain
is ``gain_db`` (what ``rtengine master`` sets after measuring a whole file).
Latency: the limiter's lookahead plus 18 samples.
"""
import math

from kernels import layout
from rtengine import loudness
from rtengine.params import Param, toggle
from rtengine.processor import Processor


class Master(Processor):
    name = "master"
    description = ("Mastering: auto gain to a loudness target (default -14 LUFS), glue "
                   "compressor, true-peak limiter (default -1 dBTP), input/output meters")
    kernel = "master"
    params = (
        Param("target_lufs", "Target loudness", -36.0, -5.0, -14.0, "LUFS"),
        toggle("auto", "Auto gain", True),
        Param("gain_db", "Gain", -48.0, 48.0, 0.0, "dB", smoothing_ms=50.0),
        Param("max_gain_db", "Auto gain range", 0.0, 48.0, 18.0, "dB"),
        Param("speed_db_s", "Auto gain speed", 0.1, 10.0, 1.0, "dB/s", scale="log"),
        Param("adapt_s", "Auto gain memory", 1.0, 120.0, 10.0, "s", scale="log"),
        Param("glue_threshold_db", "Glue threshold", -40.0, 0.0, -10.0, "dB"),
        Param("glue_ratio", "Glue ratio", 1.0, 10.0, 2.0, ":1", scale="log"),
        Param("glue_attack_ms", "Glue attack", 1.0, 100.0, 30.0, "ms", scale="log"),
        Param("glue_release_ms", "Glue release", 20.0, 2000.0, 300.0, "ms", scale="log"),
        Param("glue_mix", "Glue amount", 0.0, 1.0, 1.0),
        Param("ceiling_db", "Ceiling", -12.0, 0.0, -1.0, "dBTP"),
        Param("release_ms", "Limiter release", 1.0, 1000.0, 80.0, "ms", scale="log"),
        Param("lookahead_ms", "Limiter lookahead", 0.5, 10.0, 1.5, "ms", lane=False,
              realtime=False),
    )

    def lookahead_samples(self, sample_rate: float) -> int:
        return layout.lookahead_frames(self.values["lookahead_ms"], sample_rate)

    @property
    def latency(self) -> int:
        return layout.limiter_latency(self.lookahead_samples(self.spec[0]))

    def allocate(self, sample_rate, max_block, channels):
        return layout.master_state(channels, sample_rate, self.lookahead_samples(sample_rate),
                                   max_block)

    def reset(self):
        layout.master_reset(self.state, float(self.values["gain_db"]))

    def meters(self):
        if self.state is None:
            return {}
        st = self.state
        comp = layout.master_part(st, "compressor")
        lim = layout.master_part(st, "limiter")
        env = float(lim[3])
        return {
            "input": loudness.read(layout.master_part(st, "meter_in")).as_dict(),
            "output": loudness.read(layout.master_part(st, "meter_out")).as_dict(),
            "gain_db": round(float(st[8]), 3),
            "glue_reduction_db": round(float(comp[1]), 3),
            "limiter_reduction_db": round(-20.0 * math.log10(max(env, 1e-9)), 3),
        }
