"""Small helpers the file-based benchmarks (master, balance, denoise) share."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A file as (channels, frames) float32 and its sample rate."""
    import soundfile as sf
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


def write_audio(path: Path, x: np.ndarray, sample_rate: int) -> None:
    """A (channels, frames) signal as a 32-bit float file."""
    import soundfile as sf
    sf.write(str(path), np.asarray(x, dtype=np.float32).T, int(sample_rate), subtype="FLOAT")


def error_text(exc: BaseException) -> str:
    """An exception as the one line a report records."""
    return f"{type(exc).__name__}: {str(exc).strip() or repr(exc)}"


def cell(v, fmt: str, width: int) -> str:
    """A table cell: the number formatted, or '-' for a missing one."""
    return f"{'-' if v is None else format(v, fmt):>{width}}"
