"""DSP kernels of rtengine, in C (cffi, ``kernels._ck``) and numba (``kernels.nb``).

Both implementations share one stage signature (kernels/c/rtk.h) and one state
layout per kernel (kernels/layout.py), so the native runner can call either by
address and one test body checks both.  Nothing here imports the rest of the
project.
"""
from __future__ import annotations

NAMES = ("biquad", "gain", "compressor", "limiter", "delay", "loudness", "master", "denoise",
         "balance")
IMPLS = ("c", "numba")


def address(name: str, impl: str = "c") -> int:
    """Address of kernel ``name`` in implementation ``impl`` ("c" or "numba").

    Control thread; the numba kernels compile (or load from cache) on first use.
    """
    if name not in NAMES:
        raise ValueError(f"unknown kernel {name!r}; kernels are {', '.join(NAMES)}")
    if impl == "c":
        from ._ck import ffi, lib
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, "rtk_" + name)))
    if impl == "numba":
        from . import nb
        return int(getattr(nb, name).address)
    raise ValueError(f"unknown kernel implementation {impl!r}; use 'c' or 'numba'")
