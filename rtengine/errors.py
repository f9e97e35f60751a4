"""Errors raised to users; each message names the file, stage or parameter and
says what to do next."""


class RtEngineError(Exception):
    """Base class of rtengine's errors."""


class ChainError(RtEngineError):
    """A chain file or stage list is malformed."""


class ParameterError(RtEngineError, ValueError):
    """A parameter id or value is invalid."""


class PluginError(RtEngineError):
    """A plugin is unknown or failed to load."""


class AudioFormatError(RtEngineError):
    """Audio of a shape, type or sample rate the engine cannot take."""


class NativeError(RtEngineError):
    """A native call returned an error code."""

    def __init__(self, code: int, what: str):
        super().__init__(f"{what} failed with code {code}")
        self.code = code
