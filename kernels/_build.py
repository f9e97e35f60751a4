"""cffi (API mode) build of the C kernels into ``kernels._ck``.

setup.py points cffi at ``ffibuilder`` below; ``python kernels/_build.py``
builds in place for development.
"""
from pathlib import Path
import re

from cffi import FFI

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
SOURCES = ["biquad.c", "gain.c", "compressor.c", "limiter.c", "delay.c"]
CFLAGS = ["-O3", "-fno-math-errno", "-std=c11", "-Wall", "-Wextra"]


def cdef_text(header: Path) -> str:
    """The declarations of a header without its preprocessor lines."""
    text = header.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    keep = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(keep)


ffibuilder = FFI()
ffibuilder.cdef(cdef_text(C_DIR / "rtk.h"))
ffibuilder.set_source(
    "kernels._ck",
    '#include "rtk.h"',
    sources=[str((C_DIR / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(C_DIR.relative_to(HERE.parent))],
    extra_compile_args=CFLAGS,
    libraries=["m"],
)

if __name__ == "__main__":
    import os
    os.chdir(HERE.parent)
    ffibuilder.compile(verbose=False)
