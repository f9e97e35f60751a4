"""A pyo patch for rtengine's ``pyo`` stage: pyo's Freeverb with a dry/wet
balance.  Use it from a chain file:

    [[stage]]
    plugin = "pyo"
    name = "room"
    [stage.options]
    patch = "reverb.py"          # this file (a path relative to the chain file)
    [stage.params]
    mix = 0.25

A patch is Python code and runs with your rights: only run patches you wrote
or trust.
"""
import pyo

# Parameters of the stage: MIDI-mappable, automatable and saved in chains like
# any other.  Keys: id, name, min, max, default, and optionally unit, scale
# ("linear" or "log"), smoothing_ms, toggle.
PARAMS = [
    {"id": "size", "name": "Room size", "min": 0.0, "max": 1.0, "default": 0.6},
    {"id": "damp", "name": "Damping", "min": 0.0, "max": 1.0, "default": 0.5},
    {"id": "mix", "name": "Dry/wet", "min": 0.0, "max": 1.0, "default": 0.3},
]


def build(inp, p):
    """``inp``: a pyo Input with the stage's channels; ``p``: one pyo signal per
    parameter, following the stage's values.  Returns the stage's output."""
    return pyo.Freeverb(inp, size=p["size"], damp=p["damp"], bal=p["mix"])
