"""cffi (API mode) build of the C kernels into ``kernels._ck``.

setup.py points cffi at ``ffibuilder`` below; ``python kernels/_build.py``
builds in place for development.
"""
from pathlib import Path
import re

from cffi import FFI

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
SOURCES = ["biquad.c", "gain.c", "compressor.c", "limiter.c", "delay.c", "loudness.c", "master.c",
           "denoise.c", "balance.c"]
CFLAGS = ["-O3", "-fno-math-errno", "-std=c11", "-Wall", "-Wextra"]


DEFINE = re.compile(r"\s*#define\s+\w+\s+\d+\s*$")   # integer constants cffi can read


def cdef_text(header: Path) -> str:
    """The declarations of a header (and its integer #defines) for cffi."""
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    return "\n".join(ln for ln in text.splitlines()
                     if not ln.lstrip().startswith("#") or DEFINE.match(ln))


ffibuilder = FFI()
ffibuilder.cdef(cdef_text(C_DIR / "rtk.h"))
ffibuilder.set_source(
    "kernels._ck",
    '#include "rtk.h"',
    sources=[str((C_DIR / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(C_DIR.relative_to(HERE.parent))],
    extra_compile_args=CFLAGS,
    libraries=["m", "fftw3"],
)

if __name__ == "__main__":
    import os
    os.chdir(HERE.parent)
    ffibuilder.compile(verbose=False)
