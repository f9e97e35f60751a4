"""A pyo patch for rtengine's ``pyo`` stage: pyo's 8-voice Chorus.  See
reverb.py for how a chain uses a patch.  A patch is Python code: only run
patches you wrote or trust."""
import pyo

PARAMS = [
    {"id": "depth", "name": "Depth", "min": 0.0, "max": 5.0, "default": 1.0},
    {"id": "feedback", "name": "Feedback", "min": 0.0, "max": 1.0, "default": 0.25},
    {"id": "mix", "name": "Dry/wet", "min": 0.0, "max": 1.0, "default": 0.5},
]


def build(inp, p):
    return pyo.Chorus(inp, depth=p["depth"], feedback=p["feedback"], bal=p["mix"])
