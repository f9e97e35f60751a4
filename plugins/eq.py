"""``eq``: eight parametric bands plus low and high cut (Butterworth, 12-48 dB/oct).

Coefficients are designed on the control thread (kernels.design, RBJ cookbook)
and published to the biquad cascade kernel, which ramps them in coefficient
space over ``RAMP_MS``: moving a band's frequency or gain makes no zipper noise.
"""
from kernels import design, layout
from rtengine.params import Param, choice, toggle
from rtengine.processor import Processor

BANDS = 8
CUT_SLOPES = ("12", "24", "36", "48")
MAX_CUT_SECTIONS = 4
NSEC = BANDS + 2 * MAX_CUT_SECTIONS
RAMP_MS = 20.0
BAND_TYPES = ("peak", "lowshelf", "highshelf", "notch", "bandpass", "lowpass", "highpass")
DEFAULT_FREQS = (60.0, 150.0, 400.0, 1000.0, 2500.0, 5000.0, 10000.0, 15000.0)


def _eq_params():
    ps = [
        toggle("lowcut_on", "Low cut on", lane=False),
        Param("lowcut_freq", "Low cut frequency", 10.0, 2000.0, 80.0, "Hz", scale="log",
              lane=False),
        choice("lowcut_slope", "Low cut slope (dB/oct)", CUT_SLOPES, "24"),
        toggle("highcut_on", "High cut on", lane=False),
        Param("highcut_freq", "High cut frequency", 500.0, 24000.0, 16000.0, "Hz", scale="log",
              lane=False),
        choice("highcut_slope", "High cut slope (dB/oct)", CUT_SLOPES, "24"),
    ]
    for k in range(1, BANDS + 1):
        ps += [
            toggle(f"band{k}_on", f"Band {k} on", lane=False),
            choice(f"band{k}_type", f"Band {k} type", BAND_TYPES, "peak"),
            Param(f"band{k}_freq", f"Band {k} frequency", 10.0, 24000.0, DEFAULT_FREQS[k - 1],
                  "Hz", scale="log", lane=False),
            Param(f"band{k}_gain_db", f"Band {k} gain", -24.0, 24.0, 0.0, "dB", lane=False),
            Param(f"band{k}_q", f"Band {k} Q", 0.1, 18.0, 0.7071, scale="log", lane=False),
        ]
    return tuple(ps)


class Eq(Processor):
    name = "eq"
    description = ("Parametric EQ: 8 bands (peak, shelves, notch, band/low/high pass) plus "
                   "low/high cut")
    kernel = "biquad"
    params = _eq_params()
    blob_offset = layout.BQ_HDR

    @property
    def blob_size(self) -> int:
        return layout.biquad_blob_size(NSEC)

    def allocate(self, sample_rate, max_block, channels):
        st = layout.biquad_state(channels, NSEC, sample_rate)
        layout.biquad_blob(st)[:] = self.design(self.values, 1)
        return st

    def reset(self):
        layout.biquad_reset(self.state)

    def sections(self, values, sample_rate):
        """The 16 sections for ``values`` (identity where a band is off)."""
        v = values
        secs = []
        for k in range(1, BANDS + 1):
            if v[f"band{k}_on"] >= 0.5:
                kind = BAND_TYPES[int(v[f"band{k}_type"])]
                secs.append(design.section(kind, v[f"band{k}_freq"], sample_rate,
                                           v[f"band{k}_q"], v[f"band{k}_gain_db"]))
            else:
                secs.append(design.IDENTITY)
        for side, kind in (("lowcut", "highpass"), ("highcut", "lowpass")):
            cut = []
            if v[f"{side}_on"] >= 0.5:
                order = int(CUT_SLOPES[int(v[f"{side}_slope"])]) // 6
                cut = design.butterworth(kind, v[f"{side}_freq"], sample_rate, order)
            secs += cut + [design.IDENTITY] * (MAX_CUT_SECTIONS - len(cut))
        return secs

    def design(self, values, generation):
        sr = self.spec[0] if self.spec else 48000.0
        ramp = int(round(RAMP_MS * 1e-3 * sr))
        return layout.biquad_pack(generation, ramp, self.sections(values, sr))
