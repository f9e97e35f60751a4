"""rtengine: a real-time audio plugin host and DAW bridge with native kernels.

    import rtengine
    engine = rtengine.Engine("chain.toml", sample_rate=48000, block_size=128, channels=2)
    out = engine.process(block)          # one (channels, frames) float32 block
    whole = engine.render(signal)        # a whole signal, latency-compensated
    engine.set("comp.threshold_db", -24)
"""
from .chain import Chain, StageSpec
from .engine import Engine
from .errors import (AudioFormatError, ChainError, NativeError, ParameterError, PluginError,
                     RtEngineError)
from .params import Param
from .processor import Processor
from .registry import plugins, register

__version__ = "0.1.0"

__all__ = ["Engine", "Chain", "StageSpec", "Param", "Processor", "plugins", "register",
           "RtEngineError", "ChainError", "ParameterError", "PluginError", "AudioFormatError",
           "NativeError", "__version__"]
